"""The real microphone path end to end: PulseAudio with a virtual source playing espeak-ng speech,
PyAudio through ALSA's pulse plugin, `run_live.py --source mic --jsonl -`, then SIGINT.

Everything runs in a private runtime directory: the ALSA configuration that routes `default` to
PulseAudio is found through HOME, so nothing outside the test changes. Skipped without Debian's
pulseaudio and libasound2-plugins or without PyAudio.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import jiwer
import pytest
from conftest import SpeechAudio
from test_run_live_e2e import RUN_LIVE, WER_BOUND, needs_checkpoint, normalise

PULSE_PLUGIN = Path("/usr/lib/x86_64-linux-gnu/alsa-lib/libasound_module_pcm_pulse.so")

pytestmark = pytest.mark.skipif(
    shutil.which("pulseaudio") is None
    or shutil.which("pactl") is None
    or not PULSE_PLUGIN.exists()
    or shutil.which("ffmpeg") is None,
    reason="needs Debian's pulseaudio, pulseaudio-utils, libasound2-plugins and ffmpeg",
)


@pytest.fixture
def virtual_mic(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    """A PulseAudio server whose default source reads s16le 16 kHz mono from a FIFO; the env to reach it."""
    pytest.importorskip("pyaudio")
    (tmp_path / ".asoundrc").write_text("pcm.!default { type pulse }\nctl.!default { type pulse }\n")
    socket = tmp_path / "native"
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "XDG_RUNTIME_DIR": str(tmp_path),
        "PULSE_SERVER": f"unix:{socket}",
        "PYTHONUNBUFFERED": "1",
    }
    server = subprocess.Popen(
        ["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--use-pid-file=no"]
        + ["-L", f"module-native-protocol-unix socket={socket} auth-anonymous=1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            if subprocess.run(["pactl", "info"], check=False, env=env, capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        fifo = tmp_path / "mic.fifo"
        load = ["pactl", "load-module", "module-pipe-source", "source_name=virtual_mic", f"file={fifo}"]
        subprocess.run([*load, "format=s16le", "rate=16000", "channels=1"], env=env, check=True)
        subprocess.run(["pactl", "set-default-source", "virtual_mic"], env=env, check=True)
        yield env, fifo
    finally:
        server.terminate()
        server.wait(10)


@needs_checkpoint
def test_spoken_sentences_through_pulseaudio_come_out(virtual_mic, espeak_wav: SpeechAudio) -> None:
    env, fifo = virtual_mic
    process = subprocess.Popen(
        [sys.executable, str(RUN_LIVE), "--source", "mic", "--jsonl", "-"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Ready once the broker line is printed: the models are loaded and the mic is open.
        for line in process.stderr:
            if line.startswith("MQTT "):
                break
        with open(fifo, "wb") as mic:
            speak = ["ffmpeg", "-v", "error", "-re", "-i", str(espeak_wav.path)]
            subprocess.run([*speak, "-f", "s16le", "-ar", "16000", "-ac", "1", "-"], stdout=mic, check=True)
        time.sleep(2.0)  # the last pause, so the VAD cuts the last sentence by itself
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 0, stderr[-2000:]
    messages = [json.loads(line) for line in stdout.splitlines()]
    assert [m["utterance_id"] for m in messages] == list(range(1, len(espeak_wav.sentences) + 1)), messages
    assert all(m["stream_id"] == "mic" for m in messages)
    error_rate = jiwer.wer(
        [normalise(s) for s in espeak_wav.sentences], [normalise(m["text"]) for m in messages]
    )
    assert error_rate <= WER_BOUND, [m["text"] for m in messages]
