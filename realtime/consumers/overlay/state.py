"""What the overlay knows: per stream its availability, recent results and the current interim result,
and the live feeds of the connected pages."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

KINDS = ("utterance", "interim", "available")
"""The last topic level of every message the overlay reads."""
_UTTERANCE_KEYS = ("utterance_id", "start_s", "end_s", "wall_time", "speaker", "text", "emotion", "scores")
"""What the page uses of an utterance message; the rest stays out of the page and its events."""


@dataclass(slots=True)
class OverlayMetrics:
    messages: int = 0
    """MQTT messages taken into the state."""
    malformed: int = 0
    """MQTT messages ignored because their payload was not the documented JSON."""
    pages_refused: int = 0
    """Event-stream connections refused because `max_pages` were already open."""
    pages_dropped: int = 0
    """Pages disconnected because they fell `page_queue_events` behind (they reconnect and reload)."""


@dataclass(slots=True)
class StreamState:
    available: str | None = None
    utterances: deque[dict[str, Any]] = field(default_factory=deque)
    interim: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"available": self.available, "utterances": list(self.utterances), "interim": self.interim}


class PageFeed:
    """Events for one connected page, bounded at `max_events`.

    A page that falls that far behind is cut off (`closed`, counted in `OverlayMetrics.pages_dropped`)
    rather than fed a history with holes: its EventSource reconnects and starts from a fresh snapshot.
    """

    def __init__(self, max_events: int) -> None:
        self.queue: asyncio.Queue[str] = asyncio.Queue(max_events)
        self.closed = asyncio.Event()


class OverlayState:
    """Recent results per stream (at most `history_utterances` each) and the feeds of the open pages."""

    def __init__(self, history_utterances: int, page_queue_events: int, max_pages: int) -> None:
        self.metrics = OverlayMetrics()
        self.streams: dict[str, StreamState] = {}
        self._history = history_utterances
        self._page_queue_events = page_queue_events
        self._max_pages = max_pages
        self._pages: set[PageFeed] = set()

    def snapshot(self) -> dict[str, Any]:
        return {"streams": {stream_id: s.to_dict() for stream_id, s in sorted(self.streams.items())}}

    def take(self, stream_id: str, kind: str, payload: bytes) -> None:
        """Fold one MQTT message into the state and pass it on to every page."""
        event = self._parse(stream_id, kind, payload)
        if event is None:
            self.metrics.malformed += 1
            logger.debug("overlay: ignored a malformed %s message of stream %s", kind, stream_id)
            return
        self.metrics.messages += 1
        stream = self.streams.setdefault(stream_id, StreamState(utterances=deque(maxlen=self._history)))
        if kind == "available":
            stream.available = event["state"]
        elif kind == "interim":
            stream.interim = event
        else:
            revised = {r["utterance_id"]: r["speaker"] for r in event["speaker_revisions"]}
            for utterance in stream.utterances:
                utterance["speaker"] = revised.get(utterance["utterance_id"], utterance["speaker"])
            stream.utterances.append(event)
            if stream.interim is not None and stream.interim.get("utterance_id", 0) <= event["utterance_id"]:
                stream.interim = None
        self._broadcast(kind, {"stream_id": stream_id, **event})

    @staticmethod
    def _parse(stream_id: str, kind: str, payload: bytes) -> dict[str, Any] | None:
        if kind == "available":
            state = payload.decode("utf-8", "replace")
            return {"state": state} if state in ("online", "offline") else None
        try:
            message = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None
        if not isinstance(message, dict) or not isinstance(message.get("text"), str):
            return None
        if kind == "utterance" and not (
            isinstance(message.get("emotion"), str) and isinstance(message.get("utterance_id"), int)
        ):
            return None
        event = {key: message.get(key) for key in _UTTERANCE_KEYS}
        if kind == "utterance":
            event["speaker_revisions"] = _revisions(message.get("speaker_revisions"))
        return event

    def open_page(self) -> PageFeed | None:
        """A feed for a new page, or None when `max_pages` are open (counted)."""
        if len(self._pages) >= self._max_pages:
            self.metrics.pages_refused += 1
            return None
        feed = PageFeed(self._page_queue_events)
        self._pages.add(feed)
        return feed

    def close_page(self, feed: PageFeed) -> None:
        self._pages.discard(feed)

    def close_pages(self) -> None:
        """End every page's event stream (at shutdown)."""
        for feed in self._pages:
            feed.closed.set()
        self._pages.clear()

    def _broadcast(self, kind: str, data: dict[str, Any]) -> None:
        text = sse_event(kind, data)
        for feed in list(self._pages):
            try:
                feed.queue.put_nowait(text)
            except asyncio.QueueFull:
                self.metrics.pages_dropped += 1
                logger.warning("overlay: a page fell %d events behind; disconnected it", feed.queue.maxsize)
                self._pages.discard(feed)
                feed.closed.set()


def _revisions(value: Any) -> list[dict[str, Any]]:
    """The well-formed `speaker_revisions` entries (schema 3; none in older messages)."""
    if not isinstance(value, list):
        return []
    return [
        {"utterance_id": r["utterance_id"], "speaker": r["speaker"]}
        for r in value
        if isinstance(r, dict)
        and isinstance(r.get("utterance_id"), int)
        and isinstance(r.get("speaker"), str)
    ]


def sse_event(kind: str, data: dict[str, Any]) -> str:
    """One server-sent event; the JSON is on one line, so one `data:` field carries it."""
    return f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"
