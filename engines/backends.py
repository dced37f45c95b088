"""Picks and loads a backend behind the engine interface (engines/engine.py); each backend is imported
only when chosen, so a CPU install never imports what it does not run."""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from engines.engine import EngineOptions, Engines
from engines.errors import CheckpointError

if TYPE_CHECKING:
    from engines.checkpoint import Checkpoint


def onnx_available() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx"))


def resolve_backend(backend: str) -> str:
    """`auto` -> `onnx` when it can run here (ONNX Runtime was faster than eager torch on every component
    at one thread: README, bench/engines.py), else `torch`."""
    if backend != "auto":
        return backend
    return "onnx" if onnx_available() else "torch"


def load_engines(checkpoint: Checkpoint, options: EngineOptions | None = None) -> Engines:
    """The engines of a loaded `Checkpoint` (engines/checkpoint.py) on the chosen backend."""
    options = options or EngineOptions()
    backend = resolve_backend(options.backend)
    if backend == "torch":
        if options.precision != "fp32":
            raise CheckpointError(f"precision {options.precision}: only the onnx backend offers it")
        from engines.torch_backend import torch_engines

        return torch_engines(checkpoint, options)
    if not onnx_available():
        raise CheckpointError("backend onnx needs the onnxruntime and onnx packages (pip install -e .)")
    from engines.onnx_backend import onnx_engines

    return onnx_engines(checkpoint, options)
