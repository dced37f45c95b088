"""A real Mosquitto broker on a free loopback port, for publisher and end-to-end tests; optionally a TLS
listener (tests/tls_certs.py) and user names with passwords instead of anonymous access."""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class ServerTls:
    """PEM files of a TLS listener; with `require_client_cert`, clients must show a certificate `ca` signed."""

    ca: Path
    cert: Path
    key: Path
    require_client_cert: bool = False


class Mosquitto:
    """One mosquitto process; `stop()` and `start()` again keep the same port (restart tests)."""

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        persistence: bool = False,
        tls: ServerTls | None = None,
        users: dict[str, str] | None = None,
    ) -> None:
        """With `persistence`, sessions and queued QoS 1 messages survive `stop()` + `start()` (not `kill()`).
        With `tls`, the listener speaks only TLS; with `users` (name: password), anonymous clients are refused."""
        self.port = port or free_port()
        self.tls = tls
        self.config = workdir / f"mosquitto-{self.port}.conf"
        store = (
            f"persistence true\npersistence_location {workdir}/\n" if persistence else "persistence false\n"
        )
        access = "allow_anonymous true\n"
        if users:
            passwords = workdir / f"mosquitto-{self.port}.passwd"
            for index, (user, password) in enumerate(users.items()):
                create = ["-c"] if index == 0 else []
                subprocess.run([MOSQUITTO_PASSWD, *create, "-b", str(passwords), user, password], check=True)
            access = f"allow_anonymous false\npassword_file {passwords}\n"
        listener = f"listener {self.port} 127.0.0.1\n"
        if tls is not None:
            listener += f"cafile {tls.ca}\ncertfile {tls.cert}\nkeyfile {tls.key}\n"
            if tls.require_client_cert:
                listener += "require_certificate true\n"
        if tls is not None or users:
            # Started as root, mosquitto switches to user `mosquitto`, which cannot read a test's private files.
            listener += f"user {getpass.getuser()}\n"
        self.config.write_text(f"{listener}{access}{store}log_dest stderr\nlog_type error\n")
        self.log = workdir / f"mosquitto-{self.port}.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL without credentials: `mqtts://` for a TLS listener."""
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

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
