"""Compiles a checkpoint's networks to ONNX graphs with a manifest that ties them to the source weights.

One graph per network the checkpoint uses: `text` (token ids -> utterance vector: frozen bottom and
fine-tuned top together, the whole per-utterance path of the live loop), `fusion` (M2FNet), and `audio` /
`visual` for media checkpoints. Axes that vary at run time (tokens, utterances, frames, faces, batch) are
dynamic. The legacy TorchScript exporter is used: it writes one self-contained file per graph in about a
second, where the dynamo exporter was slower and writes weights beside the graph.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import shutil
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from engines import text_encoder
from engines.checkpoint import WEIGHTS, Checkpoint, extractor_path
from engines.errors import CheckpointError
from engines.export_graphs import graph_specs

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
OPSET = 17
QUANTISED_GRAPHS = ("text", "fusion")
"""Graphs that int8 quantises (their MatMul/Gemm weights); the convolutional extractors stay fp32."""


def source_sha256(checkpoint_dir: str | Path) -> str:
    """sha256 over the checkpoint's weights and its extractors' weights: what the graphs were made from."""
    path = Path(checkpoint_dir)
    digest = hashlib.sha256()
    files = [path / WEIGHTS] + sorted(path.glob("*_extractor/*.safetensors"))
    for file in files:
        digest.update(file.relative_to(path).as_posix().encode())
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def cache_dir(checkpoint_dir: str | Path, precision: str, sha256: str) -> Path:
    """Where first use compiles to; keyed by the weights' hash, so a retrained checkpoint never meets
    stale graphs."""
    name = Path(checkpoint_dir).resolve().name
    return text_encoder.CACHE_ROOT / "engines" / f"{name}-{sha256[:16]}-onnx-{precision}"


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def read_manifest(artifacts: Path, checkpoint_dir: Path, precision: str, sha256: str) -> dict:
    """The manifest of compiled graphs, checked against the checkpoint they are about to run for."""
    path = artifacts / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"engine artifacts {artifacts}: unreadable {MANIFEST} ({error})") from None
    if manifest.get("format_version") != FORMAT_VERSION or manifest.get("backend") != "onnx":
        raise CheckpointError(f"engine artifacts {artifacts}: not onnx artifacts of format {FORMAT_VERSION}")
    if manifest.get("source_sha256") != sha256:
        raise CheckpointError(
            f"engine artifacts {artifacts}: compiled from other weights than checkpoint {checkpoint_dir} "
            "(sha256 differs); recompile with `python -m engines compile`"
        )
    if manifest.get("precision") != precision:
        raise CheckpointError(
            f"engine artifacts {artifacts}: precision {manifest.get('precision')}, not {precision}"
        )
    for graph in manifest["graphs"].values():
        if not (artifacts / graph["file"]).is_file():
            raise CheckpointError(f"engine artifacts {artifacts}: missing {graph['file']}")
    return manifest


def export_graph(module: nn.Module, example: tuple, names: dict, file: Path) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        # The tracer warns about every shape-dependent Python branch; the dynamic axes are tested instead.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            example,
            str(file),
            dynamo=False,
            opset_version=OPSET,
            input_names=list(names["inputs"]),
            output_names=list(names["outputs"]),
            dynamic_axes={**names["inputs"], **names["outputs"]},
        )


def quantise(file: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32 = file.with_suffix(".fp32.onnx")
    file.rename(fp32)
    # The quantiser logs a line per activation and a pre-processing hint on the root logger.
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        # Per output channel and 7-bit weights: on MELD dev, per-tensor 8-bit weights cost 0.8 w-F1 points
        # (MiniLM vectors at cosine 0.91 of fp32); these cost 0.3.
        quantize_dynamic(
            fp32,
            file,
            op_types_to_quantize=["MatMul", "Gemm"],
            per_channel=True,
            reduce_range=True,
            weight_type=QuantType.QInt8,
        )
    finally:
        root.setLevel(level)
    fp32.unlink()


def _shapes(axes: dict[str, dict[int, str]], tensors) -> dict[str, dict]:
    """name -> dtype and shape, with the dynamic axes named (e.g. ["batch", "tokens"])."""
    return {
        name: {
            "dtype": str(tensor.dtype).removeprefix("torch."),
            "shape": [dynamic.get(i, size) for i, size in enumerate(tensor.shape)],
        }
        for (name, dynamic), tensor in zip(axes.items(), tensors)
    }


def compile_checkpoint(
    checkpoint: Checkpoint, out_dir: str | Path, precision: str = "fp32", replace: bool = True
) -> dict:
    """Writes `<graph>.onnx` and `manifest.json` into `out_dir` atomically -> manifest. An existing
    compile there is replaced, or with `replace=False` kept (another process may be reading it)."""
    out = Path(out_dir)
    if out.exists() and not (out / MANIFEST).is_file() and any(out.iterdir()):
        raise CheckpointError(f"--out {out}: exists and holds no compiled engines; give a new directory")
    sha256 = source_sha256(checkpoint.path)
    out.parent.mkdir(parents=True, exist_ok=True)
    # A private folder per call: two streams of one process may compile the same checkpoint at once.
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    graphs = {}
    for spec in graph_specs(checkpoint):
        file = work / f"{spec.name}.onnx"
        export_graph(spec.module.eval(), spec.example, spec.axes, file)
        quantised = precision == "int8" and spec.name in QUANTISED_GRAPHS
        if quantised:
            quantise(file)
        with torch.no_grad():
            outputs = spec.module(*spec.example)
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        graphs[spec.name] = {
            "file": file.name,
            "inputs": _shapes(spec.axes["inputs"], spec.example),
            "outputs": _shapes(spec.axes["outputs"], outputs),
            "precision": "int8 (MatMul/Gemm weights)" if quantised else "fp32",
        }
    manifest = {
        "format_version": FORMAT_VERSION,
        "backend": "onnx",
        "precision": precision,
        "checkpoint": str(Path(checkpoint.path).resolve()),
        "source_sha256": sha256,
        "opset": OPSET,
        "exporter": "torch.onnx.export (TorchScript, dynamo=False)",
        "versions": {name: _version(name) for name in ("torch", "onnx", "onnxruntime")},
        "graphs": graphs,
        "media_extractors": [m for m in ("audio", "visual") if extractor_path(checkpoint.path, m).is_dir()],
    }
    (work / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    if (out / MANIFEST).is_file() and not replace:
        shutil.rmtree(work)
        return manifest
    shutil.rmtree(out, ignore_errors=True)
    try:
        work.rename(out)
    except OSError:
        # Another process finished the same compile first: its result is as good as ours.
        shutil.rmtree(work, ignore_errors=True)
    return manifest
