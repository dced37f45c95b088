"""Live recognition with a text+audio checkpoint: audio is used when the utterance has samples, masked when
it has none, and the live result matches offline evaluation on the same clip (same extractor, same code).
Text-only sessions are covered in test_train.py."""

import numpy as np
import pytest
import torch
from media_fixtures import read_wav_16k

import engines.text_encoder
from engines.stream import UtteranceInput, load_recognizer
from training.data import load_dialogues


@pytest.fixture(scope="module")
def recognizer(text_audio_checkpoint):
    return load_recognizer(text_audio_checkpoint.path)


def test_audio_is_used_when_given_and_masked_when_not(recognizer, text_audio_checkpoint):
    utterance = load_dialogues(text_audio_checkpoint.dev)[0].utterances[0]
    session = recognizer.new_session(4)
    heard = session.add(UtteranceInput(utterance.text, audio=read_wav_16k(utterance.audio_path)))
    assert heard.modalities == {"text": True, "audio": True, "visual": False}
    silent = session.add(UtteranceInput(utterance.text, audio=None))
    assert silent.modalities == {"text": True, "audio": False, "visual": False}
    empty = session.add(UtteranceInput(utterance.text, audio=np.zeros(0, np.float32)))
    assert empty.modalities["audio"] is False
    assert all(abs(sum(p.scores.values()) - 1) < 1e-4 for p in (heard, silent, empty))


def test_live_matches_offline_evaluation(recognizer, text_audio_checkpoint, monkeypatch):
    from training.extract import ExtractOptions, checkpoint_features
    from training.train import encode_for_checkpoint, predict_probabilities

    monkeypatch.setattr(engines.text_encoder, "CACHE_ROOT", text_audio_checkpoint.cache)
    checkpoint = recognizer.checkpoint
    dev = text_audio_checkpoint.dev
    dialogues = load_dialogues(dev)
    features = checkpoint_features(checkpoint.path, "audio", dev, ExtractOptions(progress=False))
    encoded = encode_for_checkpoint(checkpoint, dialogues, {"audio": (features.dim, features.vectors)})
    offline = predict_probabilities(checkpoint.encoder, checkpoint.network, encoded)
    for dialogue, probs in zip(dialogues, offline):
        utterance = dialogue.utterances[0]
        live = recognizer.new_session(4).add(
            UtteranceInput(utterance.text, utterance.speaker, audio=read_wav_16k(utterance.audio_path))
        )
        scores = torch.tensor([live.scores[label] for label in recognizer.labels])
        assert torch.allclose(scores, probs[0], atol=1e-4)


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_add_many_gives_the_predictions_of_one_by_one(backend):
    """Several sessions' utterances in one padded text call (lockstep streams): the scores and contexts
    of `add` one by one, whatever the padding (contexts of different lengths)."""
    if backend == "onnx":
        pytest.importorskip("onnxruntime")
    recognizer = load_recognizer(backend=backend)
    lines = ["Oh really?", "I can't believe you did that without asking me first!", "Okay.", "We won!"]

    def sessions():
        out = []
        for n in range(4):
            session = recognizer.new_session(12)
            for i in range(n):
                session.add(UtteranceInput(lines[(n + i) % 4], f"S{1 + i % 2}"))
            out.append(session)
        return out

    new = [UtteranceInput(line, "S1") for line in reversed(lines)]
    one_by_one = [session.add(u) for session, u in zip(sessions(), new)]
    batched_sessions = sessions()
    batched = recognizer.add_many(list(zip(batched_sessions, new)))
    for single, many in zip(one_by_one, batched, strict=True):
        assert single.emotion == many.emotion and single.modalities == many.modalities
        assert all(abs(single.scores[k] - many.scores[k]) < 1e-5 for k in single.scores)
    assert [len(s.context) for s in batched_sessions] == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="one utterance per session"):
        recognizer.add_many([(batched_sessions[0], new[0]), (batched_sessions[0], new[1])])
