"""SIGINT and SIGTERM for the command-line tools: at any moment, a clean end without a traceback.

`install()` runs first thing in a tool, before its heavy imports (torch alone takes seconds), so no
moment is left to Python's defaults: a KeyboardInterrupt traceback for SIGINT, an abrupt kill that
skips every `finally` for SIGTERM. The first signal raises `Interrupted` in the main thread (or, inside
`run_async`, cancels its coroutine), so cleanups run; the process then prints one line and exits
128 + the signal number, as shells report. A second signal exits at once. Code that stops gracefully
instead (the live runtime while its streams run) lends the signals to its event loop with
`lend_to_loop` and gives them back with `take_back`.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

if TYPE_CHECKING:  # imported where used: `install()` runs before any import it can avoid
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

SIGNALS = (signal.SIGINT, signal.SIGTERM)

Handler = Callable[[int, FrameType | None], Any] | int
T = TypeVar("T")

_received: int | None = None
"""The first signal; a second one exits at once."""
_main_task: tuple[asyncio.AbstractEventLoop, asyncio.Task[Any]] | None = None
"""The coroutine `run_async` runs: a signal cancels it rather than raising in the middle of the loop."""


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived. A KeyboardInterrupt, so code that already cleans up after Ctrl-C
    treats SIGTERM the same way."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def install() -> None:
    """Handle SIGINT and SIGTERM from now on (main thread only, as signal handlers are)."""
    for sig in SIGNALS:
        signal.signal(sig, _on_signal)
    sys.excepthook = _excepthook


def run_cli(main: Callable[[], int]) -> NoReturn:
    """Exit with `main()`'s status. An interrupt propagates to `install`'s hook (one line, 128 + the
    signal number). Once `main` has returned, the status is decided: a signal while the interpreter
    waits for worker threads exits with it at once, and during the teardown after that signals are
    ignored (Python puts its default back there, which would kill the process)."""
    status = main()

    def exit_with_status(signum: int, frame: FrameType | None) -> None:
        _flush()
        os._exit(status)

    for sig in SIGNALS:
        signal.signal(sig, exit_with_status)
    atexit.register(_ignore_signals)  # atexit runs after the threads are joined, before the teardown
    sys.exit(status)


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)`, but a signal cancels `main` (then raises `Interrupted`) instead of raising
    inside the loop: `main`'s cleanups then run while the tasks they need (an embedded broker, an MQTT
    connection) are still alive, where `asyncio.run` would cancel them all at once."""
    import asyncio

    async def tracked() -> T:
        global _main_task
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        loop.set_default_executor(_pool_that_lets_go())
        _main_task = (loop, task)
        try:
            return await main
        finally:
            _main_task = None

    try:
        result = asyncio.run(tracked())
    except asyncio.CancelledError:
        if _received is None:
            raise
        raise Interrupted(_received) from None
    if _received is not None:  # `main` swallowed the cancellation
        raise Interrupted(_received)
    return result


def _pool_that_lets_go() -> ThreadPoolExecutor:
    """`asyncio.to_thread`'s pool, which `asyncio.run` waits for at its end: after an interrupt, not
    for a model that is still loading (seconds, and it cannot be cancelled)."""
    from concurrent.futures import ThreadPoolExecutor

    class Pool(ThreadPoolExecutor):
        def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
            interrupted = _received is not None
            super().shutdown(wait=wait and not interrupted, cancel_futures=cancel_futures or interrupted)

    return Pool()


def lend_to_loop(loop: asyncio.AbstractEventLoop, callback: Callable[[], object]) -> dict[int, Handler]:
    """Run `callback` in `loop` on SIGINT/SIGTERM instead (a graceful stop); returns the handlers for
    `take_back`.

    Not `loop.add_signal_handler`: removing that one installs Python's default for a moment, and a
    SIGTERM then kills the process without its cleanups. Swapping Python handlers leaves no gap.
    """

    def on_signal(signum: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(callback)

    saved = {sig: signal.signal(sig, on_signal) for sig in SIGNALS}
    return {sig: signal.SIG_DFL if handler is None else handler for sig, handler in saved.items()}


def take_back(saved: dict[int, Handler]) -> None:
    """Undo `lend_to_loop`."""
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    global _received
    if _received is not None:
        _exit_now(_received)
    _received = signum
    if _main_task is None:
        raise Interrupted(signum)
    loop, task = _main_task
    task.cancel()
    loop.call_soon_threadsafe(lambda: None)  # wakes the loop if it waits in select


def _excepthook(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
    if isinstance(error, KeyboardInterrupt):
        _exit_now(error.signum if isinstance(error, Interrupted) else signal.SIGINT)
    sys.__excepthook__(kind, error, tb)


def _exit_now(signum: int) -> NoReturn:
    """One line, then exit at once: worker threads still loading a model would otherwise hold the
    process at interpreter exit."""
    _ignore_signals()
    try:
        print(f"interrupted ({signal.Signals(signum).name})", file=sys.stderr)
    except OSError:  # a closed pipe on the other end has nothing left to tell
        pass
    _flush()
    os._exit(128 + signum)


def _ignore_signals() -> None:
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed by the other end, or by the program
            pass
