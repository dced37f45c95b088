"""espeak-ng speech with the time of every word, read from the synthesizer itself (libespeak-ng word
events) rather than estimated from the audio: the ground truth for "no word is cut in two"."""

from __future__ import annotations

import ctypes
import ctypes.util
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from scipy.signal import resample_poly

SAMPLE_RATE_HZ = 16_000
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_EVENT_LIST_TERMINATED, _EVENT_WORD = 0, 1
_PARAMETER_RATE = 1
_POSITION_CHARACTER = 1
_CHARS_UTF8 = 1
_SOUND_LEVEL = 0.01
"""A sample above this (about -40 dBFS) is sound: where a word's sound ends inside its time slot."""

MONOLOGUE = (
    "Good morning everyone, and thank you for coming in so early today. "
    "I want to walk you through the plan for the next quarter, because a few things have changed. "
    "First, the new warehouse on the river road is open, and the team there, as you know, "
    "has shipped its first orders. Second, we are hiring four engineers, for the mobile app, "
    "so please, send good candidates my way. Third, the travel budget is smaller this year, "
    "which means that most customer visits, for now, will happen over video. I know, that is not ideal, "
    "but the numbers, from last spring, show that video calls work almost as well. Finally, "
    "I would like every team to write a short report, before the end of the month, describing what went "
    "well, what went badly, and what you would change. We will read them together, at the next meeting, "
    "and then, as a group, decide where to spend the rest of the money."
)
"""About 50 s at espeak's normal rate, with a pause of 110-350 ms at most commas and full stops: none
reaches `min_silence_ms`, so only forced splits cut it."""


class _Event(ctypes.Structure):
    """`espeak_EVENT` of speak_lib.h (the `id` union is pointer-sized)."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_void_p),
    ]


_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


@dataclass(frozen=True)
class SpokenWords:
    """A text spoken in one go, with where each word's sound is."""

    samples: np.ndarray
    """float32 at 16 kHz."""
    words: tuple[str, ...]
    spans: np.ndarray
    """(first sample, last sample with sound) of each word, shape (n, 2), at 16 kHz."""

    def cuts_word(self, sample: int, tolerance: int = 160) -> str | None:
        """The word whose sound `sample` falls inside (more than `tolerance` samples from its edges)."""
        inside = (self.spans[:, 0] + tolerance < sample) & (sample < self.spans[:, 1] - tolerance)
        hits = np.flatnonzero(inside)
        return self.words[hits[0]] if len(hits) else None

    def pauses(self, min_samples: int) -> list[tuple[int, int]]:
        """(last sound of a word, first sound of the next) for the silences of at least `min_samples`."""
        ends, starts = self.spans[:-1, 1], self.spans[1:, 0]
        return [(int(a), int(b)) for a, b in zip(ends, starts, strict=True) if b - a >= min_samples]


def speak_words(text: str, voice: str = "en-us", rate_wpm: int = 175) -> SpokenWords:
    """`text` through libespeak-ng, collecting the audio and the sample where each word starts."""
    name = ctypes.util.find_library("espeak-ng")
    if name is None:
        pytest.fail("libespeak-ng is not installed (apt-get install espeak-ng)")
    lib = ctypes.CDLL(name)
    rate_hz = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None, _INITIALIZE_DONT_EXIT)
    lib.espeak_SetVoiceByName(voice.encode())
    lib.espeak_SetParameter(_PARAMETER_RATE, rate_wpm, 0)
    pieces: list[np.ndarray] = []
    starts: list[int] = []
    words: list[str] = []
    encoded = text.encode()

    def on_audio(wav: Any, count: int, events: Any) -> int:
        if count > 0:
            pieces.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        index = 0
        while events[index].type != _EVENT_LIST_TERMINATED:
            event = events[index]
            if event.type == _EVENT_WORD:
                starts.append(event.sample)
                first = event.text_position - 1  # 1-based
                words.append(encoded[first : first + event.length].decode())
            index += 1
        return 0

    callback = _CALLBACK(on_audio)  # kept alive until synthesis ends
    lib.espeak_SetSynthCallback(callback)
    lib.espeak_Synth(encoded, len(encoded) + 1, 0, _POSITION_CHARACTER, 0, _CHARS_UTF8, None, None)
    lib.espeak_Synchronize()
    audio = np.concatenate(pieces).astype(np.float32) / 32768
    samples = resample_poly(audio, SAMPLE_RATE_HZ, rate_hz).astype(np.float32)
    first = np.round(np.array(starts) * SAMPLE_RATE_HZ / rate_hz).astype(int)
    slots_end = np.append(first[1:], len(samples))
    spans = []
    for start, stop in zip(first, slots_end, strict=True):
        sound = np.flatnonzero(np.abs(samples[start:stop]) > _SOUND_LEVEL)
        spans.append((start, start + (sound[-1] if len(sound) else 0)))
    return SpokenWords(samples, tuple(words), np.array(spans))
