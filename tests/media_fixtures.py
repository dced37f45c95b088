"""Generated media for the extractor and loader tests: espeak-ng speech, PyAV-written clips, the
public-domain astronaut face (skimage), and data sets whose label lives in one modality only."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

NEUTRAL_TEXT = "The meeting is at nine tomorrow."

ASTRONAUT_FACE = (174, 68, 278, 172)
"""(x0, y0, x1, y1) of the face in skimage.data.astronaut(), as mediapipe finds it."""

SPEECH_CUES = {
    # label: (espeak pitch 0-99, rate words/min, amplitude 0-200)
    "neutral": (45, 165, 100),
    "anger": (75, 235, 180),
    "sadness": (18, 110, 45),
}
TRAIN_VOICES = ("en-us+m1", "en-us+f2", "en-gb+m3", "en-us+f4")
TEST_VOICES = ("en-gb+m5", "en-us+f1")

MOUTH_CUES = {"neutral": 0.0, "joy": 0.55, "surprise": 1.0}
"""label -> how open the drawn mouth is (0 closed .. 1 wide open)."""
TRAIN_LOOKS = ((40, 60, 90), (200, 190, 170), (90, 140, 60), (150, 80, 120))
TEST_LOOKS = ((30, 30, 30), (180, 200, 230))
"""Background colours standing in for different speakers/scenes."""


def have_espeak() -> bool:
    return shutil.which("espeak-ng") is not None


needs_espeak = pytest.mark.skipif(
    not have_espeak(), reason="espeak-ng not installed (apt-get install espeak-ng)"
)


def espeak(
    path: Path,
    text: str = NEUTRAL_TEXT,
    voice: str = "en-us",
    pitch: int = 50,
    rate_wpm: int = 175,
    amplitude: int = 100,
) -> Path:
    """A wav (22.05 kHz mono) of `text` spoken by espeak-ng."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "espeak-ng",
            "-v",
            voice,
            "-p",
            str(pitch),
            "-s",
            str(rate_wpm),
            "-a",
            str(amplitude),
            "-w",
            str(path),
            text,
        ],
        check=True,
        capture_output=True,
    )
    return path


def read_wav_16k(path: Path) -> np.ndarray:
    from training.media import decode_audio

    return decode_audio(path)


def write_clip(
    path: Path, frames: list[np.ndarray], fps: int = 10, audio_16k: np.ndarray | None = None
) -> Path:
    """An mp4 (H.264, plus AAC audio when given) like MELD's clips."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = None
        if audio_16k is not None:
            audio = container.add_stream("aac", rate=16_000)
            audio.layout = "mono"
        for frame in frames:
            for packet in video.encode(
                av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            ):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if audio is not None:
            pcm = (np.clip(audio_16k, -1, 1) * 32767).astype(np.int16)
            step = 1024
            for offset in range(0, len(pcm), step):
                chunk = pcm[offset : offset + step]
                frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
                frame.sample_rate = 16_000
                frame.pts = offset
                frame.time_base = Fraction(1, 16_000)
                for packet in audio.encode(frame):
                    container.mux(packet)
            for packet in audio.encode():
                container.mux(packet)
    return path


@functools.cache
def astronaut_face() -> np.ndarray:
    """The astronaut's head with some margin, RGB uint8 (~150 x 130). Do not modify: it is shared."""
    from skimage import data

    x0, y0, x1, y1 = ASTRONAUT_FACE
    return np.ascontiguousarray(data.astronaut()[max(0, y0 - 30) : y1 + 20, x0 - 15 : x1 + 15])


def face_frame(
    size: tuple[int, int] = (192, 144),
    face_px: int = 80,
    centre: tuple[float, float] = (0.5, 0.5),
    background: tuple[int, int, int] = (40, 60, 90),
    mouth_open: float = 0.0,
) -> np.ndarray:
    """A frame (width, height = size) with the astronaut's head pasted at `centre` (fractions), `face_px`
    wide, and a dark mouth drawn `mouth_open` (0..1) wide open: the visual-only cue."""
    width, height = size
    frame = np.empty((height, width, 3), np.uint8)
    frame[:] = background
    head = astronaut_face()
    scale = face_px / head.shape[1]
    head = cv2.resize(head, (face_px, int(head.shape[0] * scale)), interpolation=cv2.INTER_AREA)  # a copy
    if mouth_open > 0:
        # The mouth sits ~76% down the face box; the head crop adds 30 px above it.
        x0, y0, x1, y1 = ASTRONAUT_FACE
        cx = int((x1 - x0) / 2 + 15) * scale
        cy = int(30 + 0.76 * (y1 - y0)) * scale
        axes = (max(2, int(14 * scale * (0.6 + 0.4 * mouth_open))), max(1, int(14 * scale * mouth_open)))
        cv2.ellipse(head, (int(cx), int(cy)), axes, 0, 0, 360, (60, 10, 20), -1)
    top = int(centre[1] * height - head.shape[0] / 2)
    left = int(centre[0] * width - head.shape[1] / 2)
    top, left = min(max(top, 0), height - head.shape[0]), min(max(left, 0), width - head.shape[1])
    frame[top : top + head.shape[0], left : left + head.shape[1]] = head
    return frame


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def make_audio_cue_set(
    root: Path, cue: bool = True, repeats: int = 4, seed: int = 0, strength: float = 1.0
) -> tuple[Path, Path]:
    """train.jsonl / test.jsonl of one-utterance dialogues, a fixed neutral text, and speech whose pitch,
    rate and loudness follow the label (cue=True) or a random label (cue=False: the control). Train and
    test use different espeak voices. `strength` scales the classes' distance from neutral."""
    rng = np.random.default_rng(seed)
    labels = list(SPEECH_CUES)
    paths = []
    for split, voices in (("train", TRAIN_VOICES), ("test", TEST_VOICES)):
        records = []
        for voice in voices:
            for label in labels:
                for repeat in range(repeats):
                    source = label if cue else labels[int(rng.integers(len(labels)))]
                    pitch, rate, amp = (
                        base + strength * (value - base)
                        for value, base in zip(SPEECH_CUES[source], SPEECH_CUES["neutral"])
                    )
                    name = f"{split}-{voice.replace('+', '_')}-{label}-{repeat}"
                    espeak(
                        root / "audio" / f"{name}.wav",
                        voice=voice,
                        pitch=int(pitch + rng.integers(-5, 6)),
                        rate_wpm=int(rate + rng.integers(-10, 11)),
                        amplitude=int(amp + rng.integers(-8, 9)),
                    )
                    records.append(
                        {
                            "dialogue_id": name,
                            "utterance_id": 0,
                            "speaker": voice,
                            "text": NEUTRAL_TEXT,
                            "emotion": label,
                            "audio": f"audio/{name}.wav",
                        }
                    )
        order = rng.permutation(len(records))
        paths.append(_write_jsonl(root / f"{split}.jsonl", [records[i] for i in order]))
    return paths[0], paths[1]


def make_visual_cue_set(
    root: Path, cue: bool = True, repeats: int = 4, frames: int = 16, seed: int = 0
) -> tuple[Path, Path]:
    """train.jsonl / test.jsonl with video clips of the astronaut whose mouth opening follows the label
    (cue=True) or is random (cue=False). Train and test use different backgrounds, face sizes and places."""
    rng = np.random.default_rng(seed)
    labels = list(MOUTH_CUES)
    paths = []
    for split, looks in (("train", TRAIN_LOOKS), ("test", TEST_LOOKS)):
        records = []
        for look_index, background in enumerate(looks):
            for label in labels:
                for repeat in range(repeats):
                    source = label if cue else labels[int(rng.integers(len(labels)))]
                    openness = MOUTH_CUES[source]
                    face_px = int(rng.integers(70, 95))
                    cx, cy = rng.uniform(0.35, 0.65), rng.uniform(0.45, 0.55)
                    clip = [
                        face_frame(
                            face_px=face_px,
                            centre=(cx + 0.01 * np.sin(i / 3), cy),
                            background=background,
                            mouth_open=float(np.clip(openness + rng.normal(0, 0.05), 0, 1))
                            if openness
                            else 0.0,
                        )
                        for i in range(frames)
                    ]
                    name = f"{split}-look{look_index}-{label}-{repeat}"
                    write_clip(root / "video" / f"{name}.mp4", clip)
                    records.append(
                        {
                            "dialogue_id": name,
                            "utterance_id": 0,
                            "speaker": f"look{look_index}",
                            "text": NEUTRAL_TEXT,
                            "emotion": label,
                            "video": f"video/{name}.mp4",
                        }
                    )
        order = rng.permutation(len(records))
        paths.append(_write_jsonl(root / f"{split}.jsonl", [records[i] for i in order]))
    return paths[0], paths[1]


MELD_HEADER = (
    "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime\n"
)


def make_meld_tree(root: Path, nested: bool = False) -> dict[str, set[str]]:
    """A small MELD.Raw-shaped folder with real clips and every known kind of bad one. Returns, per
    split, the utterance keys that must load."""
    speech = read_wav_16k(espeak(root / "_speech.wav", "Hello there."))
    frames = [face_frame(mouth_open=0.3)] * 8
    train_dir = root / ("train" if nested else "") / "train_splits"
    dev_dir = root / ("dev" if nested else "") / "dev_splits_complete"
    rows = {"train": [], "dev": []}
    for split, folder, good in (("train", train_dir, [(0, 0), (0, 1), (1, 0)]), ("dev", dev_dir, [(0, 0)])):
        for dia, utt in good:
            write_clip(folder / f"dia{dia}_utt{utt}.mp4", frames, audio_16k=speech)
            rows[split].append((dia, utt))
    # A corrupt clip with a row, the known-corrupt dia125_utt3, a row with no clip, a dot-file and a clip
    # with no row.
    (train_dir / "dia0_utt2.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    rows["train"].append((0, 2))
    (train_dir / "dia125_utt3.mp4").write_bytes(b"garbage")
    rows["train"].append((125, 3))
    rows["train"].append((2, 0))
    (train_dir / "._dia0_utt0.mp4").write_bytes(b"\x00\x05\x16\x07AppleDouble")
    write_clip(train_dir / "dia7_utt0.mp4", frames, audio_16k=speech)
    rows["dev"].append((110, 7))
    for split, items in rows.items():
        csv_dir = root / (split if nested else "")
        csv_dir.mkdir(parents=True, exist_ok=True)
        lines = [
            f'{i},"Line {i}.",Joey,{"joy" if i % 2 else "neutral"},positive,{dia},{utt},1,1,"0:00:01,000","0:00:02,000"\n'
            for i, (dia, utt) in enumerate(items)
        ]
        (csv_dir / f"{split}_sent_emo.csv").write_text(MELD_HEADER + "".join(lines))
    return {"train": {"0/0", "0/1", "1/0"}, "dev": {"0/0"}}
