"""Text as the live loop sees it: Whisper's surface form, generic speakers, marks kept at a rate."""

from engines.text_encoder import TextEncoderConfig, build_input
from engines.text_form import generic_speaker_labels, normalize_transcript
from training.data import Dialogue, Utterance
from training.text_augment import TextAugmentOptions, live_style


def test_subtitle_shouting_and_stacked_marks_take_whispers_form():
    assert normalize_transcript("WHAT?!") == "What?"
    assert normalize_transcript("Oh my God!!!  You guys....") == "Oh my God! You guys..."
    assert normalize_transcript("no way !") == "No way!"
    assert normalize_transcript("I know, OK?") == "I know, OK?"


def test_normalisation_leaves_whisper_output_alone():
    for text in ("I think so. Are you coming?", "Yeah, that's great!", "Well... maybe."):
        assert normalize_transcript(text) == text


def test_generic_speakers_follow_first_appearance():
    assert generic_speaker_labels(["Ross", "Rachel", "Ross", "Joey", ""]) == ["S1", "S2", "S1", "S3", ""]


def test_build_input_normalises_only_when_configured():
    class Words:
        cls_token_id, sep_token_id = 0, 1

        def encode(self, text, add_special_tokens=False):
            self.seen = text
            return [2]

    words = Words()
    build_input(words, ["WHAT?!"], ["S1"], 0, TextEncoderConfig(normalize_text=True))
    assert words.seen == "S1: What?"
    build_input(words, ["WHAT?!"], ["S1"], 0, TextEncoderConfig())
    assert words.seen == "S1: WHAT?!"


def test_prompt_form_asks_how_the_speaker_feels_and_pools_at_the_mask():
    class Words:
        cls_token_id, sep_token_id, mask_token_id = 0, 1, 9

        def encode(self, text, add_special_tokens=False):
            return [len(word) + 10 for word in text.split()]

    config = TextEncoderConfig(past_utterances=1, future_utterances=0, prompt_form=True)
    sequence, (start, end) = build_input(Words(), ["Hi.", "No way!"], ["S1", "S2"], 1, config)
    # [CLS] "S1: Hi." [SEP] "S2: No way!" "now S2 feels" [MASK] [SEP]
    assert sequence == [0, 13, 13, 1, 13, 12, 14, 13, 12, 15, 9, 1]
    assert (start, end) == (10, 11) and sequence[start] == 9
    nameless = TextEncoderConfig(
        past_utterances=0, future_utterances=0, speaker_names=False, prompt_form=True
    )
    assert build_input(Words(), ["Hi."], ["S1"], 0, nameless)[0] == [0, 13, 13, 13, 17, 15, 9, 1]


def dialogues(n: int) -> list[Dialogue]:
    return [
        Dialogue(str(d), [Utterance(str(d), str(i), "A", "Hey! You? Really!", "joy") for i in range(10)])
        for d in range(n)
    ]


def test_marks_are_kept_at_the_configured_rate_and_fixed_per_utterance():
    options = TextAugmentOptions(exclamation_keep_prob=0.4, question_keep_prob=0.8)
    first, again = live_style(dialogues(50), options), live_style(dialogues(50), options)
    texts = [u.text for d in first for u in d.utterances]
    assert texts == [u.text for d in again for u in d.utterances]
    kept_exclamation = sum("!" in t for t in texts) / len(texts)
    kept_question = sum("?" in t for t in texts) / len(texts)
    assert 0.3 < kept_exclamation < 0.5
    assert 0.7 < kept_question < 0.9
    assert all(t.replace("!", ".").replace("?", ".") == "Hey. You. Really." for t in texts)


def test_default_options_change_nothing():
    original = dialogues(2)
    assert live_style(original, TextAugmentOptions()) is original


def test_a_share_of_utterances_takes_the_live_transcript(tmp_path):
    import json

    heard = tmp_path / "heard.jsonl"
    original = dialogues(20)
    heard.write_text(
        "".join(
            json.dumps(
                {"dialogue_id": u.dialogue_id, "utterance_id": u.utterance_id, "speaker": "A"}
                | {"text": "hey you really", "emotion": "joy"}
            )
            + "\n"
            for d in original
            for u in d.utterances
        )
    )
    options = TextAugmentOptions(transcripts=str(heard), transcript_prob=0.5)
    texts = [u.text for d in live_style(original, options) for u in d.utterances]
    assert set(texts) == {"hey you really", "Hey! You? Really!"}
    assert 0.4 < texts.count("hey you really") / len(texts) < 0.6


def test_transcript_share_without_a_file_is_a_config_error():
    import pytest

    from training.data import DataError

    with pytest.raises(DataError, match="text_augment.transcripts"):
        live_style(dialogues(1), TextAugmentOptions(transcript_prob=0.5))


def test_a_share_of_dialogues_gets_generic_speakers_for_the_whole_dialogue():
    named = [
        Dialogue(
            str(d), [Utterance(str(d), str(i), "Ross" if i % 2 else "Rachel", "Hi.", "joy") for i in range(4)]
        )
        for d in range(200)
    ]
    options = TextAugmentOptions(generic_speaker_prob=0.5)
    first, again = live_style(named, options), live_style(named, options)
    speakers = [[u.speaker for u in d.utterances] for d in first]
    assert speakers == [[u.speaker for u in d.utterances] for d in again]
    generic = sum(s == ["S1", "S2", "S1", "S2"] for s in speakers)
    assert generic + sum(s == ["Rachel", "Ross", "Rachel", "Ross"] for s in speakers) == 200
    assert 70 < generic < 130
    assert [u.text for d in first for u in d.utterances] == ["Hi."] * 800
