"""Per-component latency of each backend at one thread, and the live loop's `segment_to_publish` with each.

    python bench/engines.py [--checkpoint DIR] [--data MELD_CSV] [--repeats 40] [--no-live|--no-components]

Text inputs are the real per-utterance token sequences of `--data` (MELD dev when present: context of
2 past utterances, as the shipped checkpoint); fusion runs over a 12-utterance context window; audio
is 3 s, visual 15 frames with one face, both through extractors of the default size (random weights:
speed does not depend on them). Prints p50/p95 ms per call and the speed-up over eager torch. Asserts
nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from realtime.runtime import env as runtime_env

runtime_env.apply()

import numpy as np
import torch

from engines.backends import load_engines
from engines.checkpoint import load_checkpoint
from engines.compile import export_graph
from engines.engine import EngineOptions
from engines.export_graphs import audio_spec, visual_spec
from engines.extractor_store import new_extractor
from engines.media_features import audio_vector
from engines.onnx_backend import OnnxAudio, OnnxVisual, OrtGraph
from engines.stream import SHIPPED_CHECKPOINT
from engines.text_encoder import build_input
from engines.torch_backend import TorchAudio, TorchVisual

MELD_DEV = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "meld" / "dev_sent_emo.csv"
CONTEXT = 12


def timed(calls: dict, repeats: int) -> dict[str, tuple[float, float]]:
    """p50/p95 ms of each call; the calls take turns, so load from other processes hits them alike."""
    for call in calls.values():
        for _ in range(3):
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            times[name].append((time.perf_counter() - started) * 1000)
    return {n: (float(np.percentile(t, 50)), float(np.percentile(t, 95))) for n, t in times.items()}


def token_batches(checkpoint, data: Path | None, batch: int, count: int) -> list[tuple]:
    """`count` padded (ids, attention, target) batches of real utterance inputs."""
    if data and data.is_file():
        from training.data import load_dialogues

        dialogues = load_dialogues(data)
        pairs = [([u.text for u in d.utterances], [u.speaker for u in d.utterances]) for d in dialogues]
    else:
        pairs = [(["I can't believe you did that!", "Sorry.", "Whatever, just go."] * 4, ["A", "B"] * 6)]
    inputs = [
        build_input(checkpoint.tokenizer, texts, speakers, i, checkpoint.text_config)
        for texts, speakers in pairs
        for i in range(len(texts))
    ]
    rng = np.random.default_rng(0)
    out = []
    for _ in range(count):
        rows = [inputs[i] for i in rng.choice(len(inputs), batch)]
        longest = max(len(s) for s, _ in rows)
        ids = np.zeros((batch, longest), np.int64)
        attention = np.zeros_like(ids)
        target = np.zeros(ids.shape, bool)
        for row, (sequence, (start, end)) in enumerate(rows):
            ids[row, : len(sequence)], attention[row, : len(sequence)] = sequence, 1
            target[row, start:end] = True
        out.append((ids, attention, target))
    return out


def cycling(items: list):
    state = {"i": 0}

    def next_item():
        state["i"] += 1
        return items[state["i"] % len(items)]

    return next_item


def media_engines(folder: Path) -> dict[str, dict]:
    """Audio and visual extractors of the default size, eager and compiled."""
    out: dict[str, dict] = {}
    for modality, eager_type, onnx_type, spec_of in (
        ("audio", TorchAudio, OnnxAudio, audio_spec),
        ("visual", TorchVisual, OnnxVisual, visual_spec),
    ):
        model = new_extractor(modality).eval()
        spec = spec_of(model)
        export_graph(spec.module.eval(), spec.example, spec.axes, folder / f"{modality}.onnx")
        graph = OrtGraph(folder / f"{modality}.onnx", 1)
        out[modality] = {
            "torch": eager_type(model),
            "onnx fp32": onnx_type(graph, model) if modality == "audio" else onnx_type(graph, model.config),
        }
    return out


def visual_arrays(config, batch: int, rng) -> tuple:
    frames = config.frames_per_utterance
    from engines.faces import GEOMETRY_NAMES

    return (
        rng.normal(size=(batch, frames, 3, config.scene_px, config.scene_px)).astype(np.float32),
        np.ones((batch, frames), bool),
        rng.normal(size=(batch, frames, 1, 3, config.face_px, config.face_px)).astype(np.float32),
        np.ones((batch, frames, 1), np.float32),
        rng.normal(size=(batch, frames, 1, len(GEOMETRY_NAMES))).astype(np.float32),
    )


def print_row(component: str, batch: int, backend: str, p50: float, p95: float, base: float) -> None:
    print(f"{component:<22}{batch:>6}  {backend:<10}{p50:>9.2f}{p95:>9.2f}{base / p50:>9.2f}x", flush=True)


def bench_components(args) -> None:
    checkpoint = load_checkpoint(args.checkpoint)
    backends = {
        "torch": load_engines(checkpoint, EngineOptions("torch")),
        "onnx fp32": load_engines(checkpoint, EngineOptions("onnx", "fp32")),
        "onnx int8": load_engines(checkpoint, EngineOptions("onnx", "int8")),
    }
    rng = np.random.default_rng(0)
    print(f"{'component':<22}{'batch':>6}  {'backend':<10}{'p50 ms':>9}{'p95 ms':>9}{'vs torch':>10}")
    for batch in (1, 8):
        inputs = token_batches(checkpoint, args.data, batch, 60)
        print(f"# text: mean tokens per utterance {np.mean([i[1].sum(1).mean() for i in inputs]):.0f}")
        window = {
            "text": rng.normal(size=(batch, CONTEXT, checkpoint.model_config.text_dim)).astype(np.float32)
        }
        valid = np.ones((batch, CONTEXT), bool)
        feeds = {name: cycling(inputs) for name in backends}
        text = timed(
            {n: (lambda e=e, f=feeds[n]: e.text.encode(*f())) for n, e in backends.items()}, args.repeats
        )
        fusion = timed(
            {n: (lambda e=e, w=window, v=valid: e.fusion.logits(w, {}, v)) for n, e in backends.items()},
            args.repeats,
        )
        both = {n: (text[n][0] + fusion[n][0], text[n][1] + fusion[n][1]) for n in backends}
        for component, rows in (("text", text), ("fusion", fusion), ("text + fusion", both)):
            for name, (p50, p95) in rows.items():
                print_row(component, batch, name, p50, p95, rows["torch"][0])
    with tempfile.TemporaryDirectory() as folder:
        media = media_engines(Path(folder))
        speech = (rng.normal(size=48_000) * 0.1).astype(np.float32)
        for batch in (1, 8):
            waves = np.repeat(speech[None], batch, 0)
            frames = visual_arrays(media["visual"]["torch"].config, batch, rng)
            audio = timed(
                {n: (lambda e=e, w=waves: e.embed(w)) for n, e in media["audio"].items()}, args.repeats
            )
            visual = timed(
                {n: (lambda e=e, f=frames: e.embed(*f)) for n, e in media["visual"].items()},
                max(5, args.repeats // 4),
            )
            for name, (p50, p95) in audio.items():
                print_row("audio (3 s)", batch, name, p50, p95, audio["torch"][0])
            for name, (p50, p95) in visual.items():
                print_row("visual (15 frames)", batch, name, p50, p95, visual["torch"][0])
        whole = timed(
            {n: (lambda e=e: audio_vector(e, speech)) for n, e in media["audio"].items()}, args.repeats
        )
        for name, (p50, p95) in whole.items():
            print_row("audio + prosody", 1, name, p50, p95, whole["torch"][0])


def bench_live(args) -> None:
    from realtime.runtime.app import run_stream
    from realtime.runtime.config import LiveConfig

    print(f"\n{'live loop (demo)':<22}{'backend':<12}{'n':>4}{'p50 ms':>9}{'p95 ms':>9}  stage")
    for backend in ("torch", "onnx"):
        config = LiveConfig()
        config.checkpoint_dir = str(args.checkpoint)
        config.engine.backend = backend
        config.capture.realtime = False
        report = asyncio.run(run_stream(config, "demo", console=None))
        for stage in ("features", "fusion", "segment_to_publish"):
            s = getattr(report.pipeline, stage).summary()
            print(f"{'':<22}{backend:<12}{s['count']:>4}{s['p50_ms']:>9.1f}{s['p95_ms']:>9.1f}  {stage}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=SHIPPED_CHECKPOINT)
    parser.add_argument("--data", type=Path, default=MELD_DEV, help="conversations whose texts are timed")
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--no-live", action="store_true", help="components only")
    parser.add_argument("--no-components", action="store_true", help="the live loop only")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    print("threads per component: 1 (torch.set_num_threads, ORT intra_op)")
    if not args.no_components:
        bench_components(args)
    if not args.no_live:
        bench_live(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
