"""The overlay's HTTP side on asyncio streams: the page (with the current state in it), its script and
style, `/events` (server-sent events) and `/state.json`. GET only, no dependencies."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from dataclasses import dataclass
from importlib import resources
from typing import Self

from realtime.consumers.overlay.state import OverlayState, sse_event
from realtime.consumers.overlay.subscriber import follow
from realtime.outputs.mqtt import topics
from realtime.outputs.mqtt.address import parse_mqtt_url
from realtime.outputs.mqtt.topics import check_topic_levels

logger = logging.getLogger(__name__)

_STATIC = {
    "/overlay.js": ("overlay.js", "text/javascript; charset=utf-8"),
    "/overlay.css": ("overlay.css", "text/css; charset=utf-8"),
}
_SNAPSHOT_MARK = "<!--snapshot-->"
_MAX_REQUEST_BYTES = 8192
_REQUEST_TIMEOUT_S = 10.0


class OverlayError(ValueError):
    """An overlay address that cannot be used; the message names it."""


@dataclass(slots=True)
class OverlayOptions:
    """Where the page is served and how much it keeps."""

    host: str = "127.0.0.1"
    """Interface to listen on; loopback unless the page is opened from another machine."""
    port: int = 8765
    """HTTP port; 0 picks a free one."""
    topic_prefix: str = topics.DEFAULT_PREFIX
    """First topic level of the results to show."""
    history_utterances: int = 200
    """Results kept per stream for the page's lines and timeline (oldest forgotten beyond)."""
    page_queue_events: int = 256
    """Events queued per open page; a page further behind is disconnected (see `PageFeed`)."""
    max_pages: int = 32
    """Open event streams at once; more are refused with 503 (counted)."""
    heartbeat_s: float = 15.0
    """Comment line sent on an idle event stream, so proxies and the browser keep it open."""


def parse_listen_address(text: str) -> tuple[str, int]:
    """`[HOST:]PORT` -> (host, port); the host defaults to 127.0.0.1."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise OverlayError(f"bad overlay address {text!r}: expected [HOST:]PORT with PORT 0-65535")
    return host, int(port)


class Overlay:
    """The page server plus the subscriber that feeds it; `start()` listens, `connect()` subscribes."""

    def __init__(self, options: OverlayOptions | None = None) -> None:
        self.options = options or OverlayOptions()
        check_topic_levels(self.options.topic_prefix, "topic prefix")
        if not 0 <= self.options.port <= 65535:
            raise OverlayError(f"bad overlay port {self.options.port}: expected 0-65535")
        self.state = OverlayState(
            self.options.history_utterances, self.options.page_queue_events, self.options.max_pages
        )
        self._server: asyncio.Server | None = None
        self._follower: asyncio.Task[None] | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port: int | None = None

    @property
    def url(self) -> str:
        host = f"[{self.options.host}]" if ":" in self.options.host else self.options.host
        return f"http://{host}:{self.port}/"

    async def start(self) -> None:
        """Listen for pages; raise `OverlayError` naming the address if that is impossible."""
        try:
            self._server = await asyncio.start_server(self._serve, self.options.host, self.options.port)
        except OSError as exc:
            raise OverlayError(
                f"cannot serve the overlay on {self.options.host}:{self.options.port}: {exc.strerror or exc}"
            ) from None
        self.port = self._server.sockets[0].getsockname()[1]
        logger.info("overlay page at %s", self.url)

    async def connect(self, mqtt_url: str, tls_context: ssl.SSLContext | None = None) -> None:
        """Follow the results on `mqtt_url` (`tls_context` for `mqtts://`); raise `BrokerUnreachableError`
        if the first connect fails."""
        address = parse_mqtt_url(mqtt_url)
        connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._follower = asyncio.create_task(
            follow(address, self.options.topic_prefix, self.state, connected, tls_context),
            name="overlay-subscriber",
        )
        await connected

    async def close(self) -> None:
        """Stop following and serving; open pages are closed, not cancelled (asyncio logs cancelled
        connection handlers of `start_server` as errors)."""
        if self._follower is not None:
            self._follower.cancel()
            await asyncio.gather(self._follower, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            self.state.close_pages()
            for writer in list(self._writers):
                writer.close()
            await asyncio.gather(*self._connections, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        self._writers.add(writer)
        try:
            path = await self._read_request(reader)
            if path is None:
                await _respond(writer, 400, "text/plain", b"bad request\n")
            else:
                await self._route(path, writer)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._connections.discard(task)
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    @staticmethod
    async def _read_request(reader: asyncio.StreamReader) -> str | None:
        async with asyncio.timeout(_REQUEST_TIMEOUT_S):
            head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > _MAX_REQUEST_BYTES:
            return None
        parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        if len(parts) != 3 or parts[0] != "GET":
            return None
        return parts[1].split("?", 1)[0]

    async def _route(self, path: str, writer: asyncio.StreamWriter) -> None:
        if path == "/":
            snapshot = json.dumps(self.state.snapshot(), ensure_ascii=False).replace("<", "\\u003c")
            page = _static("index.html").replace(_SNAPSHOT_MARK, snapshot)
            await _respond(writer, 200, "text/html; charset=utf-8", page.encode())
        elif path in _STATIC:
            name, content_type = _STATIC[path]
            await _respond(writer, 200, content_type, _static(name).encode())
        elif path == "/state.json":
            body = json.dumps(self.state.snapshot(), ensure_ascii=False).encode()
            await _respond(writer, 200, "application/json", body)
        elif path == "/events":
            await self._stream_events(writer)
        else:
            await _respond(writer, 404, "text/plain", b"not found\n")

    async def _stream_events(self, writer: asyncio.StreamWriter) -> None:
        feed = self.state.open_page()
        if feed is None:
            await _respond(writer, 503, "text/plain", b"too many open overlay pages\n")
            return
        try:
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                b"Connection: close\r\n\r\nretry: 2000\n\n"
            )
            writer.write(sse_event("snapshot", self.state.snapshot()).encode())
            await writer.drain()
            closed = asyncio.create_task(feed.closed.wait())
            try:
                while True:
                    getter = asyncio.create_task(feed.queue.get())
                    done, _ = await asyncio.wait(
                        {getter, closed},
                        timeout=self.options.heartbeat_s,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                    if getter in done:
                        writer.write(getter.result().encode())
                    else:
                        getter.cancel()
                        if closed in done:
                            break
                        writer.write(b": keep-alive\n\n")
                    await writer.drain()
            finally:
                closed.cancel()
        finally:
            self.state.close_page(feed)


def _static(name: str) -> str:
    return resources.files("realtime.consumers.overlay").joinpath("static", name).read_text(encoding="utf-8")


async def _respond(writer: asyncio.StreamWriter, status: int, content_type: str, body: bytes) -> None:
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 503: "Service Unavailable"}[status]
    writer.write(
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        "Cache-Control: no-cache\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    await writer.drain()
