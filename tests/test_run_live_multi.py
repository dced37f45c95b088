"""End to end, several streams in one `run_live.py` process: real clips, Whisper, recognizer, Mosquitto.

No wall-clock asserts: timeouts only bound a hung run.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from pathlib import Path

import aiomqtt
import jiwer
import pytest
from conftest import TalkingClip
from mosquitto import Mosquitto
from test_run_live_e2e import (
    RUN_TIMEOUT_S,
    WAITING,
    WER_BOUND,
    Run,
    _collect,
    assert_one_line_error,
    check_schema,
    child_env,
    needs_checkpoint,
    normalise,
    retained,
    run_cli,
    run_live_args,
)

from realtime.runtime.stream_specs import load_stream_specs
from realtime.sources.feed import CaptureOptions


async def run_with_prefix(broker: Mosquitto, prefix: str, args: list[str]) -> Run:
    """Subscribe to every topic under `prefix`, run `run_live.py args`, collect until it exits."""
    messages: list[tuple[str, str, bool]] = []
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:
        await client.subscribe(f"{prefix}/#", qos=1)
        collector = asyncio.create_task(_collect(client, messages))
        process = await asyncio.create_subprocess_exec(
            *run_live_args(*args, "--topic-prefix", prefix),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child_env(),
        )
        async with asyncio.timeout(RUN_TIMEOUT_S):
            stdout, stderr = await process.communicate()
        await asyncio.sleep(0.5)
        collector.cancel()
        await asyncio.gather(collector, return_exceptions=True)
    return Run(process.returncode, stdout.decode(), stderr.decode(), messages)


@pytest.fixture(scope="module")
def two_streams(mosquitto: Mosquitto, talking_clip: TalkingClip) -> tuple[str, Run]:
    """Two copies of conftest's clip as two streams of one `--no-realtime --jsonl -` process."""
    from test_run_live_e2e import CHECKPOINT

    if not CHECKPOINT.is_dir():
        pytest.skip(WAITING)
    prefix = f"multi-{uuid.uuid4().hex[:8]}"
    clip = str(talking_clip.path)
    args = ["--source", clip, "--source", clip, "--stream-id", "left", "--stream-id", "right"]
    args += ["--no-realtime", "--mqtt", mosquitto.url, "--jsonl", "-"]
    return prefix, asyncio.run(run_with_prefix(mosquitto, prefix, args))


@needs_checkpoint
def test_every_utterance_of_both_streams_arrives_with_ids_per_stream(
    two_streams: tuple[str, Run], talking_clip: TalkingClip
) -> None:
    _, run = two_streams
    assert run.returncode == 0, run.stderr[-3000:]
    sentences = talking_clip.speech.sentences
    for stream in ("left", "right"):
        messages = [m for m in run.utterances() if m["stream_id"] == stream]
        assert len(messages) == len(sentences), [m["text"] for m in messages]
        for message in messages:
            check_schema(message, stream)
        assert [m["utterance_id"] for m in messages] == list(range(1, len(sentences) + 1))
        hypotheses = [normalise(m["text"]) for m in messages]
        error_rate = jiwer.wer([normalise(s) for s in sentences], hypotheses)
        assert error_rate <= WER_BOUND, (stream, hypotheses)


@needs_checkpoint
def test_jsonl_stdout_carries_both_streams(two_streams: tuple[str, Run]) -> None:
    _, run = two_streams
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert sorted(json.dumps(m, sort_keys=True) for m in lines) == sorted(
        json.dumps(m, sort_keys=True) for m in run.utterances()
    )
    assert {m["stream_id"] for m in lines} == {"left", "right"}


@needs_checkpoint
def test_availability_of_the_process_and_each_stream(
    two_streams: tuple[str, Run], mosquitto: Mosquitto
) -> None:
    prefix, run = two_streams
    seen = [(t, p) for t, p, _ in run.messages]
    assert (f"{prefix}/node/available", "online") in seen
    assert seen[-1] == (f"{prefix}/node/available", "offline")
    for stream in ("left", "right"):
        assert [p for t, p in seen if t == f"{prefix}/{stream}/status"] == ["online", "offline"]
        assert [p for t, p in seen if t == f"{prefix}/{stream}/available"] == ["online", "offline"]
        assert asyncio.run(retained(mosquitto, f"{prefix}/{stream}/status")) == "offline"


def test_stream_id_count_must_match_the_sources(talking_clip: TalkingClip) -> None:
    clip = str(talking_clip.path)
    run = run_cli("--source", clip, "--source", clip, "--stream-id", "only-one")
    assert_one_line_error(run, "--stream-id", "2 --source")


def test_bad_streams_file_is_one_line(tmp_path: Path, talking_clip: TalkingClip) -> None:
    streams = tmp_path / "streams.yaml"
    streams.write_text(f"- {{id: a, source: {talking_clip.path}, vad: {{treshold: 0.4}}}}\n")
    assert_one_line_error(run_cli("--streams", str(streams)), str(streams), "entry 1", "treshold")


def test_streams_file_gives_each_stream_its_overrides(tmp_path: Path) -> None:
    from realtime.runtime.config import ConfigError, LiveConfig

    streams = tmp_path / "streams.yaml"
    streams.write_text(
        "- {id: door, source: rtsp://10.0.0.5/stream1}\n"
        "- source: talk.mp4\n"
        "  vad: {min_silence_ms: 300}\n"
        "  capture: {video_fps: 5}\n"
    )
    base = LiveConfig()
    door, talk = load_stream_specs(streams, base)
    assert (door.stream_id, talk.stream_id) == ("door", "talk")
    assert talk.config.vad.min_silence_ms == 300 and door.config.vad.min_silence_ms == 500
    assert talk.config.capture == CaptureOptions(video_fps=5.0)
    assert base.vad.min_silence_ms == 500
    streams.write_text("- {id: a, source: x.mp4, asr: {model: base}}\n")
    with pytest.raises(ConfigError, match="entry 1: unknown key 'asr'"):
        load_stream_specs(streams, base)
    streams.write_text("- {id: a, source: x.mp4}\n- {id: a, source: y.mp4}\n")
    with pytest.raises(ConfigError, match="'a' is used twice"):
        load_stream_specs(streams, base)
