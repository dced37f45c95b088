"""A real Mosquitto broker on a free loopback port, for publisher and end-to-end tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Mosquitto:
    """One mosquitto process; `stop()` and `start()` again keep the same port (restart tests)."""

    def __init__(self, workdir: Path, port: int | None = None, persistence: bool = False) -> None:
        """With `persistence`, sessions and queued QoS 1 messages survive `stop()` + `start()` (not `kill()`)."""
        self.port = port or free_port()
        self.config = workdir / f"mosquitto-{self.port}.conf"
        store = (
            f"persistence true\npersistence_location {workdir}/\n" if persistence else "persistence false\n"
        )
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n{store}log_dest stderr\nlog_type error\n"
        )
        self.log = workdir / f"mosquitto-{self.port}.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self._process = subprocess.Popen([MOSQUITTO, "-c", str(self.config)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log.read_text()[-500:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port}")

    def kill(self) -> None:
        """Hard kill (no clean disconnects), as a crashed or unplugged broker."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A broker shared by the session; tests use their own topics (unique stream ids)."""
    if not Path(MOSQUITTO).exists():
        pytest.fail("mosquitto is not installed (Debian package `mosquitto`; .ci/run installs it)")
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def private_mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A broker of this test alone, which it may kill and restart."""
    broker = Mosquitto(tmp_path)
    broker.start()
    yield broker
    broker.kill()
