"""Speaker attribution: clustering rules on known vectors, then generated conversations of 2, 3 and 4
espeak-ng voices through the real VAD and the packaged voice encoder, and enrolment."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_wav
from conversations import VOICES, attribute_conversation, best_mapping_accuracy, make_conversation, speak

from engines.speaker_encoder import load_voice_encoder
from realtime.speakers.attributor import (
    EnrolmentError,
    SpeakerAttributor,
    SpeakerOptions,
    Voice,
    check_enrolment,
    enrol,
)


def voice(index: int, dim: int = 16) -> np.ndarray:
    vector = np.zeros(dim)
    vector[index] = 1.0
    return vector


def near(vector: np.ndarray, rng: np.random.Generator, noise: float = 0.15) -> np.ndarray:
    return vector + rng.normal(0, noise / np.sqrt(len(vector)), len(vector))


def test_labels_follow_first_appearance_and_stay() -> None:
    rng = np.random.default_rng(0)
    attributor = SpeakerAttributor(embedder=None)
    order = [2, 0, 2, 5, 0, 5, 2, 0, 0, 5]
    labels = [attributor.add(near(voice(v), rng), 2.0).label for v in order]
    assert labels == ["S1", "S2", "S1", "S3", "S2", "S3", "S1", "S2", "S2", "S3"]
    assert attributor.speakers == ["S1", "S2", "S3"]


def test_max_speakers_caps_the_labels() -> None:
    rng = np.random.default_rng(1)
    attributor = SpeakerAttributor(embedder=None, options=SpeakerOptions(max_speakers=2))
    labels = {attributor.add(near(voice(v), rng), 2.0).label for v in [0, 1, 2, 3, 0, 1, 2, 3]}
    assert len(attributor.speakers) <= 2
    assert labels <= {"S1", "S2", "S3", "S4"}


def test_short_utterance_joins_the_closest_speaker_and_similar_groups_merge() -> None:
    rng = np.random.default_rng(2)
    attributor = SpeakerAttributor(embedder=None)
    for v in [0, 1, 0, 1]:
        attributor.add(near(voice(v), rng), 2.0)
    # A short utterance close to speaker 2's voice, but not identical: it joins, it founds nothing.
    assert attributor.add(0.6 * voice(1) + 0.4 * voice(7), 0.5).label == "S2"
    assert attributor.speakers == ["S1", "S2"]


def test_a_voice_that_leaves_the_window_is_still_recognised() -> None:
    rng = np.random.default_rng(3)
    attributor = SpeakerAttributor(embedder=None, options=SpeakerOptions(history_utterances=4))
    first = attributor.add(near(voice(0), rng), 2.0).label
    for _ in range(8):
        attributor.add(near(voice(1), rng), 2.0)
    assert attributor.metrics.folded == 5
    assert attributor.add(near(voice(0), rng), 2.0).label == first


def test_an_utterance_regrouped_by_later_voices_is_revised_once() -> None:
    rng = np.random.default_rng(4)
    attributor = SpeakerAttributor(embedder=None)
    first = attributor.assign(Voice(near(voice(0), rng), 2.0, 0.0), key=1)
    # Short, between the two voices: with only S1 known it joins S1 ...
    short = attributor.assign(Voice(0.6 * voice(0) + 0.8 * voice(1), 1.0, 0.0), key=2)
    assert (first.label, short.label, short.revised) == ("S1", "S1", ())
    # ... until the other person talks at length: it is theirs, and told so once.
    turns = [attributor.assign(Voice(near(voice(1), rng), 2.0, 0.0), key=k) for k in (3, 4, 5)]
    assert [t.label for t in turns] == ["S2", "S2", "S2"]
    assert [t.revised for t in turns] == [((2, "S2"),), (), ()]


@pytest.fixture(scope="module")
def encoder():
    torch.set_num_threads(1)
    return load_voice_encoder()


@pytest.mark.parametrize(
    ("n_speakers", "least_accuracy"),
    [(2, 0.95), (3, 0.85), (4, 0.85)],
)
def test_generated_conversations(tmp_path: Path, encoder, n_speakers: int, least_accuracy: float) -> None:
    conversation = make_conversation(tmp_path / "talk.wav", n_speakers, n_turns=20, seed=11)
    result = attribute_conversation(conversation, encoder)
    assert len(result.labels) >= 18  # the VAD keeps (almost) every turn apart
    accuracy = best_mapping_accuracy(result.truth, result.labels)
    assert accuracy >= least_accuracy, (result.truth, result.labels)
    assert abs(len(set(result.labels)) - n_speakers) <= 1
    assert result.alive == n_speakers
    assert all(t.label.startswith("S") and t.embed_ms > 0 for t in result.turns)


def test_enrolled_voices_are_named(tmp_path: Path, encoder) -> None:
    enrolment = [
        write_wav(
            tmp_path / f"voice{i}.wav", speak("This is my voice, recorded for the enrolment.", VOICES[i])
        )
        for i in (0, 1)
    ]
    voices = enrol(encoder, [f"Ana={enrolment[0]}", f"Bo={enrolment[1]}"])
    conversation = make_conversation(tmp_path / "talk.wav", 3, n_turns=12, seed=12)
    result = attribute_conversation(conversation, encoder, enrolled=voices)
    names = {0: "Ana", 1: "Bo"}
    hits = [label == names[who] for who, label in zip(result.truth, result.labels) if who in names]
    assert np.mean(hits) >= 0.9
    strangers = {label for who, label in zip(result.truth, result.labels) if who == 2}
    assert strangers and all(label.startswith("S") for label in strangers)


def test_bad_enrolment_is_one_line(tmp_path: Path) -> None:
    audio = write_wav(tmp_path / "a.wav", np.zeros(16_000, np.float32))
    cases = {
        "Ana": "expected NAME=FILE",
        f"S2={audio}": "look like S1",
        f"a/b={audio}": "may not hold",
        f"Ana={tmp_path / 'missing.wav'}": "no such file",
    }
    for spec, reason in cases.items():
        with pytest.raises(EnrolmentError, match=reason):
            check_enrolment([spec])
    with pytest.raises(EnrolmentError, match="enrolled twice"):
        check_enrolment([f"Ana={audio}", f"Ana={audio}"])
    (tmp_path / "bad.wav").write_bytes(b"not audio at all")
    with pytest.raises(EnrolmentError, match="cannot decode"):
        enrol(None, [f"Ana={tmp_path / 'bad.wav'}"])


class TableEmbedder:
    """Voice vectors looked up by the utterance's first sample."""

    def __init__(self, vectors: list[np.ndarray]) -> None:
        self.vectors = vectors

    def embed(self, samples: np.ndarray) -> np.ndarray:
        return self.vectors[int(samples[0])]


def test_embedding_ahead_then_assigning_gives_the_labels_of_attribute() -> None:
    """The live loop embeds while Whisper runs, possibly several utterances ahead of their assignment:
    embedding learns nothing, so the labels are those of `embed` + `assign` one by one."""
    rng = np.random.default_rng(5)
    order = [2, 0, 2, 5, 0, 5, 2, 0, 0, 5]
    embedder = TableEmbedder([near(voice(v), rng) for v in order])
    utterances = [np.full(32_000, i, np.float32) for i in range(len(order))]
    one_by_one = SpeakerAttributor(embedder)
    expected = [one_by_one.assign(one_by_one.embed(samples)).label for samples in utterances]
    ahead = SpeakerAttributor(embedder)
    voices = [ahead.embed(samples) for samples in utterances]
    turns = [ahead.assign(v) for v in voices]
    assert (
        [t.label for t in turns] == expected == ["S1", "S2", "S1", "S3", "S2", "S3", "S1", "S2", "S2", "S3"]
    )
    assert all(v.duration_s == 2.0 and v.embed_ms >= 0 for v in voices)
