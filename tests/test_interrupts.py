"""SIGINT and SIGTERM at any moment (engines/interrupts.py): one line, no traceback, a documented status.

Real processes and real signals: small scripts for the mechanism, `run_live.py` on the demo clip for the
moments that matter (imports, model loading with a real Mosquitto, the running streams). A run is
signalled once the process has taken over the signals (its SIGTERM mask in /proc shows a handler),
then after real delays; no wall-clock asserts, timeouts only bound a hung run.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from mosquitto import Mosquitto
from test_run_live_e2e import child_env, needs_checkpoint, retained, run_live_args, run_with_subscriber

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 300


def handles_sigterm(pid: int) -> bool:
    """The process has a handler for SIGTERM (Python installs none by default)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signal.SIGTERM - 1) & 1)
    return False


def wait_until_handled(process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not handles_sigterm(process.pid):
        assert process.poll() is None and time.monotonic() < deadline, "the handlers never came"
        time.sleep(0.002)


def start_script(code: str, *args: str) -> subprocess.Popen[bytes]:
    return start([sys.executable, "-c", textwrap.dedent(code), *args])


def start(command: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env(),
    )


def read_until(process: subprocess.Popen[bytes], line: str) -> None:
    assert process.stdout is not None
    while (got := process.stdout.readline()) and got.decode().strip() != line:
        pass
    assert got, f"the process ended before printing {line!r}"


def assert_interrupted(returncode: int, stderr: str, sig: signal.Signals) -> None:
    assert returncode == 128 + sig, stderr
    assert stderr.strip().splitlines() == [f"interrupted ({sig.name})"], stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_outside_any_loop_is_one_line_and_128_plus_its_number(sig: signal.Signals) -> None:
    process = start_script(
        """
        from engines import interrupts
        interrupts.install()
        import time
        try:
            print("ready", flush=True)
            time.sleep(60)
        finally:
            print("cleaned", flush=True)
        """
    )
    read_until(process, "ready")
    process.send_signal(sig)
    stdout, stderr = process.communicate(timeout=TIMEOUT_S)
    assert_interrupted(process.returncode, stderr.decode(), sig)
    assert stdout.decode().split() == ["cleaned"]


ASYNC_SCRIPT = """
    import asyncio
    import sys
    from engines import interrupts
    interrupts.install()

    async def main():
        try:
            print("ready", flush=True)
            await asyncio.sleep(60)
        finally:
            print("cleaning", flush=True)
            await asyncio.sleep(float(sys.argv[1]))  # cleanups still await, their tasks still alive
            print("cleaned", flush=True)

    interrupts.run_cli(lambda: interrupts.run_async(main()) or 0)
    """


def test_in_a_loop_a_signal_cancels_the_main_task_and_its_cleanup_runs() -> None:
    process = start_script(ASYNC_SCRIPT, "0.2")
    read_until(process, "ready")
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=TIMEOUT_S)
    assert_interrupted(process.returncode, stderr.decode(), signal.SIGTERM)
    assert stdout.decode().split() == ["cleaning", "cleaned"]


def test_a_second_signal_exits_at_once() -> None:
    process = start_script(ASYNC_SCRIPT, "600")
    read_until(process, "ready")
    process.send_signal(signal.SIGINT)
    read_until(process, "cleaning")
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=TIMEOUT_S)
    assert_interrupted(process.returncode, stderr.decode(), signal.SIGINT)
    assert "cleaned" not in stdout.decode()


def test_a_loop_borrows_the_signals_and_gives_them_back() -> None:
    """`lend_to_loop`: the callback runs in the loop (a graceful stop); after `take_back`, a signal
    interrupts again."""
    process = start_script(
        """
        import asyncio
        import signal
        from engines import interrupts
        interrupts.install()

        async def main():
            stop = asyncio.Event()
            saved = interrupts.lend_to_loop(asyncio.get_running_loop(), stop.set)
            print("lent", flush=True)
            await stop.wait()
            interrupts.take_back(saved)
            print("stopped gracefully", flush=True)
            await asyncio.sleep(60)

        interrupts.run_cli(lambda: interrupts.run_async(main()) or 0)
        """
    )
    read_until(process, "lent")
    process.send_signal(signal.SIGINT)
    read_until(process, "stopped gracefully")
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=TIMEOUT_S)
    assert_interrupted(process.returncode, stderr.decode(), signal.SIGTERM)


def test_once_main_has_returned_a_signal_keeps_its_status() -> None:
    """A worker thread still holds the process at exit: a signal then ends it with `main`'s status."""
    process = start_script(
        """
        import signal
        import threading
        import time
        from engines import interrupts
        interrupts.install()

        def worker():
            while signal.getsignal(signal.SIGTERM) is interrupts._on_signal:
                time.sleep(0.01)
            print("returned", flush=True)  # run_cli has taken the status
            time.sleep(60)

        def main():
            threading.Thread(target=worker).start()
            return 0

        interrupts.run_cli(main)
        """
    )
    read_until(process, "returned")
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=TIMEOUT_S)
    assert process.returncode == 0 and stderr == b"", stderr.decode()


def start_demo(*extra: str) -> subprocess.Popen[bytes]:
    args = run_live_args("--source", "demo", "--no-realtime", "--jsonl", "-", *extra)
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env())


@needs_checkpoint
@pytest.mark.parametrize(
    ("sig", "delay_s"),
    [(signal.SIGINT, 0.0), (signal.SIGTERM, 0.0), (signal.SIGINT, 0.3), (signal.SIGTERM, 1.0)],
)
def test_run_live_interrupted_while_importing(sig: signal.Signals, delay_s: float) -> None:
    """From its first line on (torch alone takes seconds to import here)."""
    process = start_demo()
    wait_until_handled(process)
    time.sleep(delay_s)
    process.send_signal(sig)
    stdout, stderr = process.communicate(timeout=TIMEOUT_S)
    assert_interrupted(process.returncode, stderr.decode(), sig)
    assert stdout == b""


@needs_checkpoint
def test_run_live_interrupted_while_loading_models_still_goes_offline(mosquitto: Mosquitto) -> None:
    """The MQTT connection is up (`online`) before the models load: a signal then still ends with
    `offline` on the broker, as the cleanups run."""
    stream_id = f"interrupt-{uuid.uuid4().hex[:8]}"

    async def interrupt_when_online(process: asyncio.subprocess.Process, messages: list) -> None:
        async with asyncio.timeout(TIMEOUT_S):
            while not any(t.endswith("/available") and p == "online" for t, p, _ in messages):
                await asyncio.sleep(0.005)
        process.send_signal(signal.SIGINT)

    args = ["--source", "demo", "--no-realtime", "--mqtt", mosquitto.url, "--stream-id", stream_id]
    run = asyncio.run(
        run_with_subscriber(mosquitto, stream_id, [*args, "--jsonl", "-"], interrupt_when_online)
    )
    assert_interrupted(run.returncode, run.stderr, signal.SIGINT)
    assert run.utterances() == [] and run.stdout == ""
    assert asyncio.run(retained(mosquitto, f"m2fnet/{stream_id}/available")) == "offline"


@needs_checkpoint
def test_run_live_sigint_while_running_stops_gracefully() -> None:
    """Once the streams run, the first signal finishes what was heard: status 0, no traceback, the
    results consecutive. (SIGTERM at real-time pace: tests/test_run_live_e2e.py.)"""
    process = start_demo()
    assert process.stdout is not None
    first = process.stdout.readline()
    process.send_signal(signal.SIGINT)
    rest, stderr = process.communicate(timeout=TIMEOUT_S)
    assert process.returncode == 0, stderr.decode()[-3000:]
    assert "Traceback" not in stderr.decode() and "interrupted" not in stderr.decode()
    ids = [json.loads(line)["utterance_id"] for line in [first, *rest.splitlines()]]
    assert ids == list(range(1, len(ids) + 1))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_training_cli_interrupted_while_importing(tmp_path: Path, sig: signal.Signals) -> None:
    """`python -m training` shares the handling (its parser imports torch: seconds here)."""
    args = ["evaluate", "--checkpoint", str(tmp_path), "--data", str(tmp_path / "dev.csv")]
    process = start([sys.executable, "-m", "training", *args])
    wait_until_handled(process)
    process.send_signal(sig)
    stdout, stderr = process.communicate(timeout=TIMEOUT_S)
    assert_interrupted(process.returncode, stderr.decode(), sig)
    assert stdout == b""


@needs_checkpoint
def test_a_second_signal_stops_waiting_for_a_broker_that_is_gone(private_mosquitto: Mosquitto) -> None:
    """The broker dies after the first result; once the streams have ended the runtime waits for it
    to take the outbox (`mqtt.shutdown_drain_timeout_s`). A first signal changes nothing there, a
    second gives up at once: one warning with the count, no traceback, status 3 (not acknowledged)."""
    process = start_demo("--mqtt", private_mosquitto.url, "-v")
    assert process.stdout is not None and process.stderr is not None
    process.stdout.readline()
    private_mosquitto.kill()
    while (line := process.stderr.readline()) and "Whisper:" not in line.decode():
        pass  # logged by `Runtime.close` just before the final delivery
    assert line, "the run ended before closing"
    process.send_signal(signal.SIGINT)
    time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=TIMEOUT_S)
    text = stderr.decode()
    assert process.returncode == 3, text[-3000:]
    assert "Traceback" not in text and "unreachable at shutdown" not in text, text[-3000:]
    assert "results not acknowledged by the MQTT broker" in text
    assert re.search(r"stopped waiting for the MQTT broker: [1-9]\d* message\(s\) not delivered", text), text
