"""Real voices taking turns through the live loop: one result per turn, one label per person.

Conversations of RAVDESS actors (tests/conversations.py) are built at test time from ../shared (the
audio is CC BY-NC-SA 4.0 and never committed); without it the tests are skipped. Turn gaps are drawn
in [-0.2, 1.0] s as in bench/conversations.py, so some turns start before the VAD's pause would cut
and only the voice-change split (realtime/speakers/voice_change.py) separates them. The seeds are fixed: the
benchmark measures the rates, these pin two conversations that the loop gets right today (the first
has two turns that overlap the one before by 0.15 and 0.18 s).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from conversations import (
    RAVDESS,
    RealConversation,
    make_real_conversation,
    ravdess_rows,
    segmentation,
)

pytestmark = pytest.mark.skipif(
    not (RAVDESS / "dev.jsonl").is_file(), reason=f"RAVDESS not found at {RAVDESS} (../shared is optional)"
)


class _Collector:
    def __init__(self) -> None:
        self.results: list = []

    def emit(self, result) -> None:
        self.results.append(result)


@pytest.fixture(scope="module")
def models() -> dict:
    import torch

    from engines.speaker_encoder import load_voice_encoder
    from engines.stream import load_recognizer
    from realtime.runtime.config import LiveConfig
    from realtime.speech.whisper import Transcriber

    torch.set_num_threads(1)
    config = LiveConfig()
    return {
        "config": config,
        "asr": Transcriber(config.asr),
        "recognizer": load_recognizer(None, "torch", "fp32", None, None),
        "voices": load_voice_encoder(),
    }


def run_live(conversation: RealConversation, models: dict) -> list:
    """The live loop over the conversation's file, `--no-realtime` (paced by the loop, nothing dropped)."""
    from realtime.runtime.models import utterance_input
    from realtime.session.pipeline import Pipeline
    from realtime.sources.file import FileSource
    from realtime.speakers.attributor import SpeakerAttributor
    from realtime.speech.vad import VadSegmenter

    config = models["config"]
    config.capture.realtime = False
    source = FileSource(conversation.path, config.capture)
    collector = _Collector()
    pipeline = Pipeline(
        stream_id="conversation",
        model_id=models["recognizer"].model_id,
        source=source,
        segmenter=VadSegmenter(config.vad),
        transcriber=models["asr"],
        session=models["recognizer"].new_session(config.pipeline.max_context_utterances),
        make_input=utterance_input,
        sinks=[collector],
        realtime=False,
        attributor=SpeakerAttributor(models["voices"], config.speakers),
    )
    try:
        asyncio.run(pipeline.run())
    finally:
        source.close()
    return collector.results


@pytest.mark.parametrize(
    ("kind", "n_speakers", "n_turns", "seed"),
    [("2 voices m/f", 2, 6, 0), ("3 voices", 3, 9, 0)],
    ids=["two", "three"],
)
def test_every_turn_is_one_result_and_every_person_one_speaker(
    tmp_path: Path, models: dict, kind: str, n_speakers: int, n_turns: int, seed: int
) -> None:
    rows = ravdess_rows(range(13, 17))
    conversation = make_real_conversation(tmp_path / "talk.wav", rows, kind, n_speakers, n_turns, seed)
    results = run_live(conversation, models)
    cut = segmentation(conversation.turns, results)
    assert len(results) == len(conversation.turns)
    assert cut.found == len(conversation.turns)
    assert len({r.speaker for r in results}) == n_speakers
