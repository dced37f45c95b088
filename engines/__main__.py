"""`python -m engines compile --checkpoint DIR --backend onnx [--precision fp32|int8] [--out DIR]`."""

from __future__ import annotations

from engines import interrupts

if __name__ == "__main__":  # imported (by a test), it leaves the signals alone
    interrupts.install()

import argparse
import os
import sys

from engines.cli_logging import configure_cli_logging

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engines", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    compile_ = commands.add_parser("compile", help="export a checkpoint's networks for a backend")
    compile_.add_argument("--checkpoint", required=True, help="checkpoint directory")
    compile_.add_argument("--backend", choices=["onnx"], default="onnx")
    compile_.add_argument("--precision", choices=["fp32", "int8"], default="fp32")
    compile_.add_argument("--out", help="artifact directory (default: the cache that first use reads)")
    return parser


def run_compile(args: argparse.Namespace) -> int:
    import torch

    from engines.backends import onnx_available
    from engines.checkpoint import load_checkpoint
    from engines.compile import cache_dir, compile_checkpoint, source_sha256
    from engines.errors import CheckpointError

    if not onnx_available():
        raise CheckpointError("--backend onnx needs the onnxruntime and onnx packages (pip install -e .)")
    torch.set_num_threads(1)
    checkpoint = load_checkpoint(args.checkpoint)
    out = args.out or cache_dir(checkpoint.path, args.precision, source_sha256(checkpoint.path))
    manifest = compile_checkpoint(checkpoint, out, args.precision)
    print(f"compiled {', '.join(manifest['graphs'])} ({args.precision}) -> {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_cli_logging()
    from engines.errors import CheckpointError
    from engines.extractor_store import ExtractorError

    try:
        return run_compile(args)
    except (CheckpointError, ExtractorError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    interrupts.run_cli(main)
