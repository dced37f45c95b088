"""The ONNX Runtime backend: the checkpoint's compiled graphs behind the numpy interface of engines/engine.py.

Artifacts come from `EngineOptions.artifacts_dir` (made by `python -m engines compile --out`), or from
the cache directory, where the checkpoint is compiled on first use.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np

from engines.checkpoint import Checkpoint, extractor_path
from engines.compile import cache_dir, compile_checkpoint, read_manifest, source_sha256
from engines.engine import EngineOptions, Engines
from engines.torch_backend import prosody_scale

log = logging.getLogger(__name__)
_compiling = threading.Lock()


class OrtGraph:
    """One inference session, one thread (the other components need the other core)."""

    def __init__(self, file: Path, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
        # The exporter drops inputs a graph does not read (e.g. face geometry when it is off).
        self.inputs = {i.name for i in self.session.get_inputs()}

    def run(self, **feeds: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {k: v for k, v in feeds.items() if k in self.inputs})


class OnnxText:
    def __init__(self, graph: OrtGraph) -> None:
        self.graph = graph

    def encode(self, input_ids: np.ndarray, attention: np.ndarray, target: np.ndarray) -> np.ndarray:
        return self.graph.run(
            input_ids=input_ids.astype(np.int64, copy=False),
            attention=attention.astype(np.int64, copy=False),
            target=target.astype(bool, copy=False),
        )[0]


class OnnxFusion:
    def __init__(self, graph: OrtGraph) -> None:
        self.graph = graph

    def logits(
        self, features: dict[str, np.ndarray], present: dict[str, np.ndarray], valid: np.ndarray
    ) -> np.ndarray:
        feeds = {"valid": valid.astype(bool, copy=False)}
        for modality, values in features.items():
            feeds[modality] = values.astype(np.float32, copy=False)
            if modality != "text":
                feeds[f"{modality}_present"] = present[modality].astype(bool, copy=False)
        return self.graph.run(**feeds)[0]


class OnnxAudio:
    def __init__(self, graph: OrtGraph, model) -> None:
        self.graph, self.config = graph, model.config
        self.prosody_scale = prosody_scale(model)

    def embed(self, wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        embedding, mel = self.graph.run(wave=wave.astype(np.float32, copy=False))
        return embedding, mel


class OnnxVisual:
    def __init__(self, graph: OrtGraph, config) -> None:
        self.graph, self.config = graph, config

    def embed(
        self,
        scenes: np.ndarray,
        frame_mask: np.ndarray,
        faces: np.ndarray,
        face_weights: np.ndarray,
        geometry: np.ndarray,
    ) -> np.ndarray:
        return self.graph.run(
            scenes=scenes, frame_mask=frame_mask, faces=faces, face_weights=face_weights, geometry=geometry
        )[0]


def artifacts_for(checkpoint: Checkpoint, options: EngineOptions) -> tuple[Path, dict]:
    """The checked artifact folder of `checkpoint`, compiling it into the cache on first use."""
    sha256 = source_sha256(checkpoint.path)
    if options.artifacts_dir:
        folder = Path(options.artifacts_dir)
        return folder, read_manifest(folder, checkpoint.path, options.precision, sha256)
    folder = cache_dir(checkpoint.path, options.precision, sha256)
    # One export at a time per process: the exporter keeps global state, and streams start together.
    with _compiling:
        if not (folder / "manifest.json").is_file():
            # Expected once per checkpoint and precision, so INFO: nothing is wrong.
            log.info(
                "first use of %s: compiling it for ONNX Runtime (%s, about a minute, once) into %s",
                checkpoint.path.name,
                options.precision,
                folder,
            )
            started = time.perf_counter()
            compile_checkpoint(checkpoint, folder, options.precision, replace=False)
            log.info("compiled in %.0f s; later runs start from %s", time.perf_counter() - started, folder)
    return folder, read_manifest(folder, checkpoint.path, options.precision, sha256)


def onnx_engines(checkpoint: Checkpoint, options: EngineOptions) -> Engines:
    folder, manifest = artifacts_for(checkpoint, options)
    graphs = {name: OrtGraph(folder / g["file"], options.threads) for name, g in manifest["graphs"].items()}
    audio = visual = None
    if "audio" in graphs or "visual" in graphs:
        from engines.extractor_store import load_extractor

        if "audio" in graphs:
            audio = OnnxAudio(graphs["audio"], load_extractor(extractor_path(checkpoint.path, "audio")))
        if "visual" in graphs:
            config = load_extractor(extractor_path(checkpoint.path, "visual")).config
            visual = OnnxVisual(graphs["visual"], config)
    return Engines(
        backend="onnx",
        precision=options.precision,
        text=OnnxText(graphs["text"]),
        fusion=OnnxFusion(graphs["fusion"]),
        audio=audio,
        visual=visual,
    )
