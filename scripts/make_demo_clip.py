"""Build assets/demo/demo_conversation.mp4 and its ground truth, demo_conversation.json.

A two-speaker conversation of emotional sentences spoken by espeak-ng, with a still of the public-domain
astronaut photo (skimage) per speaker: the original for Alex, a mirrored and tinted copy for Sam.
Deterministic for a given espeak-ng and ffmpeg: single-threaded x264, bit-exact flags, no metadata.

    python scripts/make_demo_clip.py [--out-dir assets/demo]
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np

logger = logging.getLogger("make_demo_clip")

SPEAKERS = {"Alex": "en-us+m3", "Sam": "en-us+f3"}
"""Speaker name -> espeak-ng voice."""
CONVERSATION = [
    ("Alex", "neutral", "Hi Sam, the project meeting starts at ten tomorrow morning."),
    ("Sam", "joy", "That is wonderful news, I am so happy we finally got the contract!"),
    ("Alex", "surprise", "Wait, really? I had no idea they said yes already!"),
    ("Sam", "anger", "I am furious that they changed the deadline again without asking us."),
    ("Alex", "sadness", "I feel so sad and tired, we worked so hard for nothing."),
    ("Sam", "fear", "I am scared we will lose our jobs if this goes wrong."),
    ("Alex", "disgust", "Ugh, that report was disgusting, full of lies and mistakes."),
    ("Sam", "neutral", "Let us write a new plan and send it before Friday."),
    ("Alex", "joy", "Great idea, I love it, this is going to be fun!"),
]
"""(speaker, emotion, sentence); the emotions are MELD's seven classes."""

LEAD_S = 0.6
"""Silence before the first sentence."""
GAP_S = 0.8
"""Silence between one sentence's last sound and the next one's first."""
TAIL_S = 0.8
FPS = 10
WIDTH, HEIGHT = 320, 240
SAMPLE_RATE_HZ = 16_000
_VOICED = 0.02
"""Amplitude (of full scale) that counts as sound when trimming espeak's own leading/trailing silence."""


def speak(text: str, voice: str, work: Path) -> tuple[np.ndarray, int]:
    """One sentence as int16 samples at espeak-ng's native rate, trimmed to its sound."""
    path = work / "sentence.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True, capture_output=True)
    with wave.open(str(path)) as wav:
        rate = wav.getframerate()
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
    voiced = np.flatnonzero(np.abs(samples) > _VOICED * 32767)
    return samples[voiced[0] : voiced[-1] + 1], rate


def speaker_frames() -> dict[str, np.ndarray]:
    """One 320x240 RGB still per speaker, with the name written under the face."""
    import cv2
    from skimage import data

    face = cv2.resize(data.astronaut(), (200, 200), interpolation=cv2.INTER_AREA)
    looks = {
        "Alex": (face, (46, 64, 92)),
        "Sam": (np.clip(face[:, ::-1] * np.array([1.15, 0.9, 0.8]), 0, 255).astype(np.uint8), (92, 58, 70)),
    }
    stills = {}
    for name, (image, background) in looks.items():
        frame = np.empty((HEIGHT, WIDTH, 3), np.uint8)
        frame[:] = background
        frame[8:208, 60:260] = image
        cv2.putText(frame, name, (130, 230), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (240, 240, 240), 1, cv2.LINE_AA)
        stills[name] = frame
    return stills


def build(out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    clip_path, truth_path = out_dir / "demo_conversation.mp4", out_dir / "demo_conversation.json"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        pieces, utterances, rate = [], [], 0
        cursor = 0
        for index, (speaker, emotion, text) in enumerate(CONVERSATION):
            samples, rate = speak(text, SPEAKERS[speaker], work)
            silence = np.zeros(int((LEAD_S if index == 0 else GAP_S) * rate), np.int16)
            pieces += [silence, samples]
            start = cursor + len(silence)
            cursor = start + len(samples)
            utterances.append(
                {
                    "utterance_id": index,
                    "speaker": speaker,
                    "voice": SPEAKERS[speaker],
                    "emotion": emotion,
                    "text": text,
                    "start_s": round(start / rate, 3),
                    "end_s": round(cursor / rate, 3),
                }
            )
        pieces.append(np.zeros(int(TAIL_S * rate), np.int16))
        track = np.concatenate(pieces)
        duration_s = len(track) / rate
        audio_path = work / "track.wav"
        with wave.open(str(audio_path), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(rate)
            wav.writeframes(track.tobytes())

        # Each sentence's speaker is on screen from the end of the previous sentence to the end of hers.
        stills = speaker_frames()
        frame_count = int(np.ceil(duration_s * FPS))
        video = bytearray()
        for i in range(frame_count):
            time_s = i / FPS
            current = next((u for u in utterances if time_s < u["end_s"]), utterances[-1])
            video += stills[current["speaker"]].tobytes()
        command = [
            "ffmpeg", "-v", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{WIDTH}x{HEIGHT}", "-r", str(FPS), "-i", "-",
            "-i", str(audio_path),
            "-map", "0:v", "-map", "1:a", "-t", f"{duration_s:.3f}",
            "-c:v", "libx264", "-preset", "medium", "-crf", "26", "-pix_fmt", "yuv420p", "-threads", "1",
            "-c:a", "aac", "-b:a", "48k", "-ar", str(SAMPLE_RATE_HZ), "-ac", "1",
            "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact",
            "-movflags", "+faststart",
            str(clip_path),
        ]  # fmt: skip
        subprocess.run(command, input=bytes(video), check=True)
    truth = {
        "clip": clip_path.name,
        "duration_s": round(duration_s, 3),
        "fps": FPS,
        "size": [WIDTH, HEIGHT],
        "sample_rate_hz": SAMPLE_RATE_HZ,
        "speakers": SPEAKERS,
        "note": "start_s/end_s span each sentence's sound (espeak's own silence trimmed)",
        "utterances": utterances,
    }
    truth_path.write_text(json.dumps(truth, indent=2) + "\n")
    return clip_path, truth_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_dir = Path(__file__).resolve().parents[1] / "assets" / "demo"
    parser.add_argument("--out-dir", type=Path, default=default_dir, help=f"default: {default_dir}")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    clip, truth = build(args.out_dir)
    logger.info("wrote %s (%.0f kB) and %s", clip, clip.stat().st_size / 1024, truth)
    return 0


if __name__ == "__main__":
    sys.exit(main())
