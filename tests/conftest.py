"""Generic media fixtures shared by the test files: espeak-ng speech with known sentences and times, and
an mp4 of the public-domain astronaut face speaking it (ffmpeg: H.264 + AAC)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

SPEECH_RATE_HZ = 16_000
SENTENCES = (
    "Please send me the report before the meeting on Monday.",
    "I can't believe you forgot my birthday again.",
    "The children were laughing and running around the garden.",
    "Could you turn off the lights when you leave the room?",
)
VOICES = ("en-us+m3", "en-us+f3")
LEAD_S, GAP_S, TAIL_S = 0.5, 1.0, 0.8
CLIP_FPS, CLIP_SIZE = 10, (320, 240)


@dataclass(frozen=True)
class SpeechAudio:
    """Sentences spoken one after another with silences between them."""

    path: Path
    """16 kHz mono 16-bit wav."""
    samples: np.ndarray
    """The same audio as float32."""
    sentences: tuple[str, ...]
    spans_s: tuple[tuple[float, float], ...]
    """(first sound, last sound) of each sentence, in seconds from the start."""

    @property
    def duration_s(self) -> float:
        return len(self.samples) / SPEECH_RATE_HZ


@dataclass(frozen=True)
class TalkingClip:
    """An mp4 whose audio is `speech` and whose video shows the astronaut at `fps`."""

    path: Path
    speech: SpeechAudio
    fps: int
    size: tuple[int, int]


def _require(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is not installed (apt-get install {tool})")


def synthesize(
    text: str, voice: str = VOICES[0], pitch: int | None = None, rate_wpm: int | None = None
) -> np.ndarray:
    """`text` spoken by espeak-ng, float32 at 16 kHz, trimmed to its sound."""
    _require("espeak-ng")
    _require("ffmpeg")
    options = [
        *(["-p", str(pitch)] if pitch is not None else []),
        *(["-s", str(rate_wpm)] if rate_wpm else []),
    ]
    command = ["espeak-ng", "-v", voice, *options, "--stdout", text]
    wav = subprocess.run(command, capture_output=True, check=True).stdout
    pcm = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", "-", "-ar", str(SPEECH_RATE_HZ), "-ac", "1", "-f", "s16le", "-"],
        input=wav,
        capture_output=True,
        check=True,
    ).stdout
    samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768
    voiced = np.flatnonzero(np.abs(samples) > 0.02)
    return samples[voiced[0] : voiced[-1] + 1]


def write_wav(path: Path, samples: np.ndarray) -> Path:
    import wave

    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SPEECH_RATE_HZ)
        wav.writeframes((np.clip(samples, -1, 1) * 32767).astype(np.int16).tobytes())
    return path


def make_speech(path: Path, sentences: tuple[str, ...] = SENTENCES) -> SpeechAudio:
    pieces, spans, cursor = [np.zeros(int(LEAD_S * SPEECH_RATE_HZ), np.float32)], [], LEAD_S
    for index, text in enumerate(sentences):
        spoken = synthesize(text, VOICES[index % len(VOICES)])
        spans.append((cursor, cursor + len(spoken) / SPEECH_RATE_HZ))
        gap = GAP_S if index < len(sentences) - 1 else TAIL_S
        pieces += [spoken, np.zeros(int(gap * SPEECH_RATE_HZ), np.float32)]
        cursor += (len(spoken) + int(gap * SPEECH_RATE_HZ)) / SPEECH_RATE_HZ
    samples = np.concatenate(pieces)
    # The wav holds int16: keep `samples` equal to what a decoder will read back.
    samples = np.round(np.clip(samples, -1, 1) * 32767) / 32767
    write_wav(path, samples.astype(np.float32))
    return SpeechAudio(path, samples.astype(np.float32), sentences, tuple(spans))


def make_talking_clip(path: Path, speech: SpeechAudio, fps: int = CLIP_FPS) -> TalkingClip:
    """H.264 + AAC mp4: the astronaut, mirrored on every other second so frames differ."""
    import cv2
    from skimage import data

    width, height = CLIP_SIZE
    face = cv2.resize(data.astronaut(), (height, height), interpolation=cv2.INTER_AREA)
    still = np.zeros((height, width, 3), np.uint8)
    still[:, (width - height) // 2 : (width + height) // 2] = face
    frames = int(np.ceil(speech.duration_s * fps))
    video = b"".join(
        (still if (i // fps) % 2 == 0 else still[:, ::-1].copy()).tobytes() for i in range(frames)
    )
    command = [
        "ffmpeg", "-v", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(fps), "-i", "-",
        "-i", str(speech.path), "-map", "0:v", "-map", "1:a", "-t", f"{speech.duration_s:.3f}",
        "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-threads", "1",
        "-c:a", "aac", "-b:a", "64k", str(path),
    ]  # fmt: skip
    subprocess.run(command, input=video, check=True, capture_output=True)
    return TalkingClip(path, speech, fps, CLIP_SIZE)


@pytest.fixture(scope="session")
def espeak_wav(tmp_path_factory: pytest.TempPathFactory) -> SpeechAudio:
    """Four known sentences, two voices, 1 s pauses (~14 s), as a 16 kHz wav."""
    return make_speech(tmp_path_factory.mktemp("speech") / "sentences.wav")


@pytest.fixture(scope="session")
def talking_clip(tmp_path_factory: pytest.TempPathFactory, espeak_wav: SpeechAudio) -> TalkingClip:
    """`espeak_wav`'s speech over astronaut frames at 10 fps, 320x240, as an mp4."""
    return make_talking_clip(tmp_path_factory.mktemp("clip") / "talking.mp4", espeak_wav)


RECIPE_CONFIG = """
text: {encoder: minilm, finetune_top_layers: 0, past_utterances: 0, future_utterances: 0}
model:
  {causal: true, hidden_dim: 32, feedforward_dim: 64, dialogue_heads: 2, fusion_heads: 2, fusion_layers: 1}
optim: {epochs: 3, dialogues_per_batch: 8, head_lr: 0.001}
media:
  pretrain: {epochs: 2, lr: 0.001, batch_size: 12, progress: false, audio: {width: 8}}
  extract: {progress: false}
"""


@dataclass(frozen=True)
class RecipeCheckpoint:
    """A causal text+audio checkpoint made by `python -m training train --modalities text,audio`."""

    path: Path
    train: Path
    dev: Path
    """One-utterance dialogues of espeak-ng speech (tests/media_fixtures.make_audio_cue_set)."""
    cache: Path
    """The run's M2FNET_CACHE_DIR: recipe work folder and feature caches."""
    result: subprocess.CompletedProcess


def run_training_cli(*args: str, cache: Path) -> subprocess.CompletedProcess:
    env = {"HF_HUB_OFFLINE": "1", "M2FNET_CACHE_DIR": str(cache), "PATH": "/usr/bin:/bin"}
    env["OMP_NUM_THREADS"] = "1"
    command = [sys.executable, "-m", "training", *args]
    root = Path(__file__).resolve().parents[1]
    return subprocess.run(
        command, check=False, cwd=root, capture_output=True, text=True, env=env, timeout=600
    )


@pytest.fixture(scope="session")
def text_audio_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> RecipeCheckpoint:
    """The one-command recipe on a tiny generated set (12 training clips, 6 dev clips, small networks)."""
    from media_fixtures import have_espeak, make_audio_cue_set

    if not have_espeak():
        pytest.skip("espeak-ng not installed (apt-get install espeak-ng)")
    root = tmp_path_factory.mktemp("recipe")
    train, dev = make_audio_cue_set(root / "data", repeats=1)
    (root / "tiny.yaml").write_text(RECIPE_CONFIG)
    out, cache = root / "ckpt", root / "cache"
    result = run_training_cli(
        "train", "--config", str(root / "tiny.yaml"), "--modalities", "text,audio",
        "--train", str(train), "--dev", str(dev), "--out", str(out), cache=cache,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return RecipeCheckpoint(out, train, dev, cache, result)


# A real Mosquitto for the publisher and end-to-end tests (tests/mosquitto.py).
from mosquitto import mosquitto, private_mosquitto  # noqa: F401 (fixtures registered by import)
