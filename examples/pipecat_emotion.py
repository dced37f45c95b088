"""A pipecat pipeline with the emotion processor, no network service: the demo clip's audio goes in as
20 ms `InputAudioRawFrame`s with a user turn (`UserStartedSpeakingFrame` .. `UserStoppedSpeakingFrame`)
around each sentence, through pipecat's own test harness (`pipecat.tests.utils.run_test`); one
`EmotionFrame` comes out per turn, each followed by the `LLMMessagesAppendFrame` for the LLM context.

    python3 examples/pipecat_emotion.py
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone, not installed

import av
import numpy as np
from pipecat.frames.frames import (
    Frame,
    InputAudioRawFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.tests.utils import run_test

from realtime import LiveRecognizer
from realtime.consumers.pipecat import EmotionFrame, EmotionParams, EmotionProcessor
from realtime.runtime.config import LiveConfig
from realtime.sources.open import DEMO_CLIP_PATH

RATE_HZ, FRAME_MS = 16_000, 20
STOP_AFTER_S = 0.2
"""A turn ends this long after the sentence's last sound (pipecat's VAD waits `stop_secs` likewise)."""


def demo_turns() -> list[dict]:
    return json.loads(DEMO_CLIP_PATH.with_suffix(".json").read_text())["utterances"]


def demo_frames() -> list[Frame]:
    """The demo clip's audio as pipecat input frames, with the turn frames at the sentences' times."""
    with av.open(str(DEMO_CLIP_PATH)) as container:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE_HZ)
        decoded = [f for frame in container.decode(audio=0) for f in resampler.resample(frame)]
        decoded += resampler.resample(None)
    pcm = np.concatenate([f.to_ndarray()[0] for f in decoded]).astype(np.int16)
    marks = sorted(
        [(turn["start_s"], UserStartedSpeakingFrame) for turn in demo_turns()]
        + [(turn["end_s"] + STOP_AFTER_S, UserStoppedSpeakingFrame) for turn in demo_turns()]
    )
    frames: list[Frame] = []
    step = RATE_HZ * FRAME_MS // 1000
    for start in range(0, len(pcm), step):
        while marks and marks[0][0] <= start / RATE_HZ:
            frames.append(marks.pop(0)[1]())
        frames.append(
            InputAudioRawFrame(audio=pcm[start : start + step].tobytes(), sample_rate=RATE_HZ, num_channels=1)
        )
    return frames + [mark() for _, mark in marks]


async def run(recognizer: LiveRecognizer, frames: list[Frame]) -> list[Frame]:
    """Every frame that comes out of the processor downstream (the EndFrame aside)."""
    processor = EmotionProcessor(recognizer, EmotionParams(append_to_context=True))
    down, _ = await run_test(processor, frames_to_send=frames)
    return list(down)


def config() -> LiveConfig:
    config = LiveConfig()
    # The frames come faster than real time here: wait for Whisper rather than drop an utterance.
    config.capture.realtime = False
    return config


async def main() -> None:
    async with LiveRecognizer.from_config(config()) as recognizer:
        for frame in await run(recognizer, demo_frames()):
            if isinstance(frame, EmotionFrame):
                print(
                    f"{frame.speaker} {frame.label:8} v{frame.valence:+.2f} a{frame.arousal:.2f} {frame.text}"
                )


if __name__ == "__main__":
    asyncio.run(main())
