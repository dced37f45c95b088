"""Who said it: online speaker attribution of one stream's utterances from their voice embeddings.

Each new utterance is embedded (`engines.speaker_encoder`) and the stream's recent utterances are
clustered again from scratch (average-linkage agglomeration of cosine similarities), so that later
evidence can correct early, uncertain groupings: clusters whose members converge merge, and centroids
follow the conversation. Clusters are then matched to the speakers of the previous round by shared
members (Hungarian assignment), so a speaker keeps its label `S1`, `S2`, ... (in order of first
appearance) for the life of the stream; a label retired by a merge is never reused.

Utterances shorter than `min_new_speaker_s` have noisy embeddings: they join the closest cluster and
never found one (except the very first utterance). Utterances that leave the re-clustered window
are folded into a fixed summary (sum of embeddings) of their speaker, which keeps taking part, so a
speaker silent for a long time is still recognised. Enrolled voices are such fixed summaries from
the start; two fixed speakers never merge. Overlapping speech gets the voice that dominates it.
"""

from __future__ import annotations

import itertools
import logging
import re
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from scipy.optimize import linear_sum_assignment

from realtime.frames import SAMPLE_RATE_HZ
from realtime.speakers.voice_change import HOP_S, WINDOW_S, change_points

logger = logging.getLogger(__name__)

_AUTOMATIC = re.compile(r"S\d+")


@dataclass(slots=True)
class SpeakerOptions:
    """Speaker attribution of one stream."""

    enabled: bool = True
    """Attribute every utterance to a speaker (costs one voice embedding, ~30 ms, per utterance)."""
    threshold: float = 0.7
    """Average cosine similarity of two groups' utterances above which they are one speaker. Lower
    it if one person gets two labels; raise it if two people share one."""
    max_speakers: int = 8
    """Most speakers told apart in one stream; beyond it the closest clusters are merged."""
    min_new_speaker_s: float = 2.0
    """Utterances shorter than this join the closest speaker and never start a new one. Voice
    embeddings of a 1.5-2 s emotional sentence vary so much that at 1.5 s one actor became several
    speakers (RAVDESS actors 1-12, bench/conversations.py)."""
    short_new_speaker_below: float = 0.55
    """A short utterance still starts a new speaker when its similarity to every speaker is below this."""
    ema_factor: float = 0.3
    """Weight of the newest utterance in each speaker's smoothed scores (retained state topics)."""
    enrol: tuple[str, ...] = ()
    """Known voices as `NAME=FILE` (also `--speaker NAME=FILE`): messages carry NAME for that voice."""
    history_utterances: int = 64
    """Recent utterances re-clustered each time. Older ones are folded into their speaker's fixed
    summary (oldest first, counted in `SpeakerMetrics.folded`): bounded cost per utterance."""
    change_below: float = 0.6
    """An utterance is split where the voices of the second before and the second after are less
    similar than this (the next person started without a pause; `realtime/speakers/voice_change.py`). Raise
    it to split more readily, lower it if one person's sentence gets split; -1 never splits."""


@dataclass(frozen=True, slots=True)
class SpeakerTurn:
    """Who said one utterance."""

    label: str
    """`S1`, `S2`, ... in order of first appearance in the stream: what the recognizer sees."""
    name: str
    """What messages carry: the enrolled name of the voice if it has one, else `label`."""
    embed_ms: float
    cluster_ms: float
    revised: tuple[tuple[int, str], ...] = ()
    """(key, name) of earlier utterances that the re-clustering moved to another speaker since
    their speaker was last told (see `SpeakerAttributor.revisions`)."""


@dataclass(frozen=True, slots=True)
class Voice:
    """One utterance's voice embedding (`SpeakerAttributor.embed`), not yet attributed."""

    vector: np.ndarray
    duration_s: float
    embed_ms: float


@dataclass(slots=True)
class SpeakerMetrics:
    utterances: int = 0
    folded: int = 0
    """Utterances that left the re-clustered window (folded into their speaker's summary)."""
    merges: int = 0
    """Speakers retired because their utterances joined another speaker's."""


class Embedder(Protocol):
    def embed(self, samples: np.ndarray) -> np.ndarray: ...

    def embed_many(self, utterances: list[np.ndarray]) -> list[np.ndarray]: ...


class EnrolmentError(ValueError):
    """A `--speaker NAME=FILE` that cannot be used; the message names it."""


@dataclass(eq=False, slots=True)
class _Speaker:
    label: str | None = None
    name: str | None = None
    fixed_sum: np.ndarray | None = None
    """Sum of unit embeddings of enrolment audio and of folded utterances."""
    fixed_count: int = 0

    @property
    def shown(self) -> str:
        """What messages call this speaker: the enrolled name, else the label."""
        return self.name or self.label or ""


@dataclass(slots=True)
class _Item:
    vector: np.ndarray
    duration_s: float
    speaker: _Speaker | None = None
    key: int | None = None
    """The caller's id of the utterance (the message's utterance id), for revisions."""
    told: str | None = None
    """The speaker name last told for this utterance."""


class SpeakerAttributor:
    """One stream's speakers. Not thread-safe: call `embed` and `assign` from the recognizer's worker thread."""

    def __init__(
        self,
        embedder: Embedder,
        options: SpeakerOptions | None = None,
        enrolled: dict[str, np.ndarray] | None = None,
    ) -> None:
        """`enrolled`: name -> unit voice embedding of that person (see `enrol`)."""
        self.options = options or SpeakerOptions()
        self.metrics = SpeakerMetrics()
        self._embedder = embedder
        self._history: deque[_Item] = deque()
        self._speakers: list[_Speaker] = [
            _Speaker(name=name, fixed_sum=np.asarray(vector, np.float64), fixed_count=1)
            for name, vector in (enrolled or {}).items()
        ]
        self._next_label = 1

    def embed(self, samples: np.ndarray, sample_rate_hz: int = SAMPLE_RATE_HZ) -> Voice:
        """The utterance's voice embedding, learning nothing: it needs only the audio, so the live loop
        runs it while Whisper transcribes (`assign` then costs about a millisecond). Not thread-safe
        either: the shared encoder runs on the recognizer's worker thread."""
        started = time.perf_counter()
        vector = np.asarray(self._embedder.embed(samples), np.float64)
        return Voice(vector, len(samples) / sample_rate_hz, (time.perf_counter() - started) * 1000)

    def changes(self, samples: np.ndarray) -> list[int]:
        """Sample offsets inside one utterance where the voice changes (see `SpeakerOptions.change_below`);
        learns nothing. On the recognizer's worker thread, as `embed`."""
        if not hasattr(self._embedder, "embed_windows"):
            return []
        cuts = change_points(self._embedder, samples, self.options.change_below)  # type: ignore[arg-type]
        return self.distinct_parts(samples, cuts)

    def voice_windows(self, samples: np.ndarray) -> np.ndarray:
        """Unit vectors of the 1 s voice windows every `HOP_S` from the start of `samples` (none if the
        encoder cannot window), for a search that grows with the audio (`realtime/session/voice_watch.py`)."""
        if not hasattr(self._embedder, "embed_windows"):
            return np.zeros((0, 0))
        return self._embedder.embed_windows(samples, WINDOW_S, HOP_S)  # type: ignore[attr-defined]

    def distinct_parts(self, samples: np.ndarray, cuts: list[int]) -> list[int]:
        """The cuts whose two sides sound like two people as wholes."""
        if not cuts:
            return []
        # Parts on both sides that sound alike as wholes, or like the same known speaker, are one
        # person's own variation (a long sentence, a change of tone): kept together.
        edges = [0, *cuts, len(samples)]
        parts = [
            np.asarray(v, np.float64)
            for v in self._embedder.embed_many([samples[a:b] for a, b in itertools.pairwise(edges)])
        ]
        known = [self._closest(v) for v in parts]
        return [
            cut
            for i, cut in enumerate(cuts)
            if float(parts[i] @ parts[i + 1]) < self.options.threshold
            and (known[i] is None or known[i] is not known[i + 1])
        ]

    def _closest(self, vector: np.ndarray) -> _Speaker | None:
        """The labelled speaker whose utterances `vector` resembles most on average, if above the threshold."""
        vector = vector / max(float(np.linalg.norm(vector)), 1e-12)
        best, best_similarity = None, self.options.threshold
        for speaker in self._speakers:
            if speaker.label is None:
                continue
            total = speaker.fixed_sum.copy() if speaker.fixed_sum is not None else np.zeros_like(vector)
            count = speaker.fixed_count
            for item in self._history:
                if item.speaker is speaker:
                    total += item.vector
                    count += 1
            similarity = float(total @ vector) / max(count, 1)
            if similarity >= best_similarity:
                best, best_similarity = speaker, similarity
        return best

    def assign(self, voice: Voice, key: int | None = None) -> SpeakerTurn:
        """Re-cluster the recent history with an embedded utterance and return its speaker, with the
        earlier utterances (by their `key`) whose speaker the new evidence changed."""
        started = time.perf_counter()
        speaker = self.add(voice.vector, voice.duration_s, key)
        return SpeakerTurn(
            label=speaker.label or "",
            name=speaker.shown,
            embed_ms=voice.embed_ms,
            cluster_ms=(time.perf_counter() - started) * 1000,
            revised=tuple(self.revisions()),
        )

    def identify(self, samples: np.ndarray) -> SpeakerTurn | None:
        """The known speaker whose utterances `samples` resemble (average similarity above the
        threshold), without learning from them: for interim results. None if nobody is close."""
        started = time.perf_counter()
        vector = np.asarray(self._embedder.embed(samples), np.float64)
        embedded = time.perf_counter()
        best = self._closest(vector)
        if best is None or best.label is None:
            return None
        return SpeakerTurn(
            best.label,
            best.shown,
            (embedded - started) * 1000,
            (time.perf_counter() - embedded) * 1000,
        )

    def add(self, vector: np.ndarray, duration_s: float, key: int | None = None) -> _Speaker:
        """Attribute one unit embedding; the returned speaker always has a label."""
        self.metrics.utterances += 1
        item = _Item(vector / max(float(np.linalg.norm(vector)), 1e-12), duration_s, key=key)
        self._history.append(item)
        while len(self._history) > self.options.history_utterances:
            self._fold(self._history.popleft())
        self._recluster()
        speaker = item.speaker
        assert speaker is not None
        self._label(speaker)
        item.told = speaker.shown
        return speaker

    def revisions(self) -> list[tuple[int, str]]:
        """(key, name) of the keyed utterances still re-clustered whose speaker is no longer the one
        last told, each told once. Published labels are a first guess on a few seconds of voice; the
        conversation heard since groups voices better (docs/speakers.md), so consumers that keep a
        transcript can correct it."""
        changed = []
        for item in self._history:
            if item.key is None or item.speaker is None:
                continue
            self._label(item.speaker)
            name = item.speaker.shown
            if name != item.told:
                changed.append((item.key, name))
                item.told = name
        return changed

    def _label(self, speaker: _Speaker) -> None:
        """A group of voices heard as a new person gets the next label when first told."""
        if speaker.label is None:
            speaker.label = f"S{self._next_label}"
            self._next_label += 1

    @property
    def speakers(self) -> list[str]:
        """Labels of the speakers alive now, in order of first appearance."""
        labels = [s.label for s in self._speakers if s.label is not None]
        return sorted(labels, key=lambda label: int(label[1:]))

    @property
    def names(self) -> set[str]:
        """What messages call the speakers alive now (enrolled name or label)."""
        return {s.shown for s in self._speakers if s.label is not None}

    def _fold(self, item: _Item) -> None:
        self.metrics.folded += 1
        speaker = item.speaker
        if speaker is None:
            return
        speaker.fixed_sum = item.vector if speaker.fixed_sum is None else speaker.fixed_sum + item.vector
        speaker.fixed_count += 1

    def _recluster(self) -> None:
        """Group fixed summaries and history, then hand every group a speaker (see the module doc)."""
        fixed = [s for s in self._speakers if s.fixed_count > 0]
        items = list(self._history)
        long_items = [i for i, it in enumerate(items) if it.duration_s >= self.options.min_new_speaker_s]
        if not fixed and not long_items:
            long_items = [0]  # the first, short, utterance founds the first speaker
        sums = [s.fixed_sum for s in fixed] + [items[i].vector for i in long_items]
        counts = [s.fixed_count for s in fixed] + [1] * len(long_items)
        owners: list[_Speaker | None] = [*fixed, *([None] * len(long_items))]
        members: list[list[int]] = [[] for _ in fixed] + [[i] for i in long_items]
        self._agglomerate(sums, counts, owners, members)
        grouped = {i for group in members for i in group}
        for i, item in enumerate(items):
            if i in grouped:
                continue
            similarity = [float(total @ item.vector) / n for total, n in zip(sums, counts)]
            closest = int(np.argmax(similarity))
            if (
                similarity[closest] < self.options.short_new_speaker_below
                and len(sums) < self.options.max_speakers
            ):
                sums.append(item.vector)
                counts.append(1)
                owners.append(None)
                members.append([i])
            else:
                members[closest].append(i)
        self._assign_speakers(items, owners, members)

    def _agglomerate(
        self,
        sums: list[np.ndarray],
        counts: list[int],
        owners: list[_Speaker | None],
        members: list[list[int]],
    ) -> None:
        """Average linkage in place: merge the most similar pair while it is above the threshold or
        while there are more groups than `max_speakers`; two fixed speakers never merge."""
        while len(sums) > 1:
            matrix = np.stack(sums)
            n = np.asarray(counts, np.float64)
            similarity = (matrix @ matrix.T) / np.outer(n, n)
            np.fill_diagonal(similarity, -np.inf)
            is_fixed = np.array([o is not None for o in owners])
            similarity[np.outer(is_fixed, is_fixed)] = -np.inf
            a, b = np.unravel_index(int(np.argmax(similarity)), similarity.shape)
            best = similarity[a, b]
            if best == -np.inf or (best < self.options.threshold and len(sums) <= self.options.max_speakers):
                return
            a, b = min(a, b), max(a, b)
            sums[a] = sums[a] + sums[b]
            counts[a] += counts[b]
            owners[a] = owners[a] or owners[b]
            members[a] += members[b]
            for group in (sums, counts, owners, members):
                del group[b]

    def _assign_speakers(
        self, items: list[_Item], owners: list[_Speaker | None], members: list[list[int]]
    ) -> None:
        """Fixed groups keep their speaker; the others take the previous speaker they share the most
        utterances with, or a new one. Speakers left with nothing are retired."""
        taken = {id(o) for o in owners if o is not None}
        free = [g for g, o in enumerate(owners) if o is None]
        candidates = [s for s in self._speakers if id(s) not in taken and s.fixed_count == 0]
        if free and candidates:
            overlap = np.zeros((len(free), len(candidates)))
            for row, g in enumerate(free):
                for i in members[g]:
                    previous = items[i].speaker
                    if previous is not None and id(previous) not in taken:
                        overlap[row, candidates.index(previous)] += 1
            rows, cols = linear_sum_assignment(-overlap)
            for row, col in zip(rows, cols):
                if overlap[row, col] > 0:
                    owners[free[row]] = candidates[col]
        for g, owner in enumerate(owners):
            if owner is None:
                owners[g] = _Speaker()
            for i in members[g]:
                items[i].speaker = owners[g]
        alive = {id(o) for o in owners}
        retired = [s for s in self._speakers if id(s) not in alive and s.label is not None]
        self.metrics.merges += len(retired)
        for speaker in retired:
            logger.info("speaker %s merged into another speaker", speaker.label)
        self._speakers = [s for s in self._speakers if id(s) in alive] + [
            o for o in owners if not any(o is s for s in self._speakers)
        ]


def check_enrolment(specs: tuple[str, ...] | list[str]) -> list[tuple[str, Path]]:
    """`NAME=FILE` specs -> (name, path), checked before any model loads; `EnrolmentError` names the bad one.

    A name is one MQTT topic level (`<prefix>/<stream>/speakers/<name>/state`) and may not look like an
    automatic label (`S3`), which it would shadow."""
    checked: list[tuple[str, Path]] = []
    for spec in specs:
        name, sep, file = spec.partition("=")
        name = name.strip()
        if not sep or not name or not file:
            raise EnrolmentError(f"--speaker {spec!r}: expected NAME=FILE")
        if any(c in name for c in "/+#\0") or _AUTOMATIC.fullmatch(name):
            raise EnrolmentError(f"--speaker {spec!r}: NAME may not hold / + # or look like S1, S2, ...")
        if name in {n for n, _ in checked}:
            raise EnrolmentError(f"--speaker {spec!r}: the name {name!r} is enrolled twice")
        path = Path(file)
        if not path.is_file():
            raise EnrolmentError(f"--speaker {spec!r}: no such file {path}")
        checked.append((name, path))
    return checked


def enrol(embedder: Embedder, specs: tuple[str, ...] | list[str]) -> dict[str, np.ndarray]:
    """`NAME=FILE` specs -> name -> unit voice embedding of the file's audio (the whole file)."""
    voices: dict[str, np.ndarray] = {}
    for name, path in check_enrolment(specs):
        samples = _read_audio(path)
        if len(samples) < SAMPLE_RATE_HZ // 2:
            raise EnrolmentError(f"--speaker {name}={path}: under 0.5 s of audio")
        vector = np.asarray(embedder.embed(samples), np.float64)
        voices[name] = vector / max(float(np.linalg.norm(vector)), 1e-12)
    return voices


def _read_audio(path: Path) -> np.ndarray:
    """A media file's first audio stream as 16 kHz mono float32."""
    import av

    pieces = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise EnrolmentError(f"--speaker ...={path}: no audio stream")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE_HZ)
            for frame in container.decode(container.streams.audio[0]):
                pieces += [out.to_ndarray()[0] for out in resampler.resample(frame)]
            pieces += [out.to_ndarray()[0] for out in resampler.resample(None)]
    except (av.FFmpegError, OSError) as exc:
        raise EnrolmentError(f"--speaker ...={path}: cannot decode audio ({exc})") from None
    return np.concatenate(pieces).astype(np.float32) if pieces else np.zeros(0, np.float32)
