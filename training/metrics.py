"""The field's metrics for emotion recognition in conversation, and the confusion-matrix plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support


def classification_report(truth: list[int], predicted: list[int], labels: list[str]) -> dict:
    """Percentages (0-100) as MELD papers report them: weighted F1 first."""
    ids = list(range(len(labels)))
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=ids, zero_division=0
    )
    return {
        "weighted_f1": 100 * f1_score(truth, predicted, labels=ids, average="weighted", zero_division=0),
        "accuracy": 100 * accuracy_score(truth, predicted),
        "macro_f1": 100 * f1_score(truth, predicted, labels=ids, average="macro", zero_division=0),
        "per_class": {
            label: {
                "precision": 100 * float(precision[i]),
                "recall": 100 * float(recall[i]),
                "f1": 100 * float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "n_utterances": len(truth),
        "labels": labels,
    }


def save_confusion_matrix(truth: list[int], predicted: list[int], labels: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = confusion_matrix(truth, predicted, labels=list(range(len(labels))))
    rows = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.1 * len(labels) + 2, 1.1 * len(labels) + 1.5))
    ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(
                j,
                i,
                str(matrix[i, j]),
                ha="center",
                va="center",
                color="white" if rows[i, j] > 0.5 else "black",
            )
    ax.set_title("confusion matrix (counts; colour = row share)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
