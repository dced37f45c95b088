"""The pipecat processor (realtime/consumers/pipecat.py) through examples/pipecat_emotion.py: pipecat's
own test harness, the demo clip's audio as input frames, the real stages behind the processor."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import jiwer
import numpy as np
import pytest

pytest.importorskip("pipecat", reason="the pipecat extra is not installed (docs/api.md)")

from pipecat.frames.frames import InputAudioRawFrame, InputImageRawFrame, LLMMessagesAppendFrame

REPO = Path(__file__).resolve().parents[1]
needs_checkpoint = pytest.mark.skipif(
    not (REPO / "models" / "m2fnet-meld-causal").is_dir(), reason="no shipped checkpoint"
)


def load_example():
    spec = importlib.util.spec_from_file_location("pipecat_emotion", REPO / "examples" / "pipecat_emotion.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def words(text: str) -> str:
    return " ".join("".join(c for c in text.lower() if c.isalnum() or c in " '").split())


@needs_checkpoint
def test_the_example_pipeline_gives_one_emotion_frame_per_turn_and_passes_every_frame_on() -> None:
    from realtime import LiveRecognizer
    from realtime.consumers.pipecat import EmotionFrame

    example = load_example()
    frames = example.demo_frames()
    image = InputImageRawFrame(image=np.zeros((48, 64, 3), np.uint8).tobytes(), size=(64, 48), format="RGB")
    frames.insert(len(frames) // 2, image)

    async def scenario() -> tuple[list, object]:
        async with LiveRecognizer.from_config(example.config()) as rec:
            down = await example.run(rec, frames)
            return down, rec._pushes[0].metrics

    down, metrics = asyncio.run(scenario())
    emotions = [f for f in down if isinstance(f, EmotionFrame)]
    turns = example.demo_turns()
    assert len(emotions) == len(turns), [f.text for f in emotions]
    said, heard = (
        " ".join(words(text) for text in texts)
        for texts in ([t["text"] for t in turns], [f.text for f in emotions])
    )
    assert jiwer.wer(said, heard) <= 0.35, heard  # tiny.en on espeak speech: 0.18-0.27 (test_run_live_e2e)
    for frame in emotions:
        assert frame.label == max(frame.scores, key=frame.scores.__getitem__)
        assert frame.message["text"] == frame.text and frame.message["emotion"] == frame.label
    appended = [f for f in down if isinstance(f, LLMMessagesAppendFrame)]
    assert len(appended) == len(turns) and not any(f.run_llm for f in appended)
    assert emotions[0].text in appended[0].messages[0]["content"]
    sent_audio = [f for f in frames if isinstance(f, InputAudioRawFrame)]
    assert [f for f in down if isinstance(f, InputAudioRawFrame)] == sent_audio  # unchanged, in order
    assert any(f is image for f in down)
    assert metrics.dropped_audio_chunks == 0 and metrics.video_frames == 1
