"""Extraction speed on this machine: audio (3 s utterance), visual (15 frames), face detection per frame.

    python bench/extract_speed.py [--width 32] [--repeats 10]

Untrained extractors at the default sizes (speed does not depend on the weights). Each number is the
median over `--repeats` runs after one warm-up, at one torch thread. Prints a table; asserts nothing.
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch
from skimage import data

from engines.audio_extractor import AudioExtractor, AudioExtractorConfig, embed_audio
from engines.faces import FaceDetector, FaceDetectorOptions, FaceMeshGeometry
from engines.visual_extractor import FramePreparer, VisualExtractor, VisualExtractorConfig, collate_visual


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--width", type=int, default=None, help="ResNet18 stage-1 channels (default: each config's)"
    )
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)

    rng = np.random.default_rng(0)
    speech = (0.1 * rng.standard_normal(3 * 16_000)).astype(np.float32)
    audio_config = AudioExtractorConfig() if args.width is None else AudioExtractorConfig(width=args.width)
    audio = AudioExtractor(audio_config).eval()

    photo = data.astronaut()
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[:, 64:576] = photo[16:496]
    frames = [np.roll(frame, 4 * i, axis=1) for i in range(15)]

    rows = [
        (
            f"audio embed, 3 s utterance (width {audio_config.width})",
            median_ms(lambda: embed_audio(audio, speech), args.repeats),
        )
    ]
    for geometry in (False, True):
        config = VisualExtractorConfig(use_geometry=geometry)
        if args.width is not None:
            config.width = args.width
        visual = VisualExtractor(config).eval()
        preparer = FramePreparer(config)
        prepared = preparer(frames)
        label = f"(width {config.width}, geometry {'on' if geometry else 'off'})"
        prep_ms = median_ms(lambda p=preparer: p(frames), max(3, args.repeats // 3))

        def network(visual=visual, prepared=prepared):
            with torch.inference_mode():
                visual(collate_visual([prepared]))

        net_ms = median_ms(network, max(3, args.repeats // 3))
        rows += [
            (f"visual prepare: detect + crop, 15 frames {label}", prep_ms),
            (f"visual network, 15 frames {label}", net_ms),
            (f"visual total per utterance {label}", prep_ms + net_ms),
        ]
        preparer.close()

    for backend in ("mediapipe", "haar"):
        detector = FaceDetector(FaceDetectorOptions(backend=backend))
        rows.append(
            (
                f"face detection per 640x480 frame ({backend})",
                median_ms(lambda d=detector: d.detect(frame), args.repeats),
            )
        )
        detector.close()
    mesh = FaceMeshGeometry()
    rows.append(("face-mesh geometry per 640x480 frame", median_ms(lambda: mesh(frame), args.repeats)))
    mesh.close()

    width = max(len(name) for name, _ in rows)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {os.cpu_count()} CPUs (shared: upper bounds)"
    )
    for name, ms in rows:
        print(f"{name:<{width}}  {ms:8.1f} ms")


if __name__ == "__main__":
    main()
