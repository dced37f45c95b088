"""Honest delivery: results counted when the broker acknowledges them, a fast jittered reconnect, and the
stats topic. Real Mosquitto, real live loop; no wall-clock asserts (timeouts only bound a hung run)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from pathlib import Path

import pytest
from conftest import TalkingClip
from mosquitto import Mosquitto
from test_publish import result
from test_run_live_e2e import (
    RUN_TIMEOUT_S,
    Run,
    needs_checkpoint,
    retained,
    run_with_subscriber,
)

from realtime.outputs.mqtt.address import parse_mqtt_url
from realtime.outputs.mqtt.publisher import MqttOptions, MqttPublisher


@needs_checkpoint
def test_broker_gone_for_good_exits_3_and_says_how_many(talking_clip: TalkingClip, tmp_path: Path) -> None:
    """The broker dies after the first result and never returns: the run ends with status 3 and one line
    saying how many results the broker never acknowledged (the JSON lines still carry every result)."""
    broker = Mosquitto(tmp_path)
    broker.start()
    stream_id = f"gone-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "short_drain.yaml"
    config.write_text("mqtt:\n  shutdown_drain_timeout_s: 1.0\n")

    async def kill_after_first_result(process: asyncio.subprocess.Process, messages: list) -> None:
        async with asyncio.timeout(RUN_TIMEOUT_S):
            while not any(t.endswith("/utterance") for t, _, _ in messages):
                await asyncio.sleep(0.02)
        broker.kill()

    args = ["--source", str(talking_clip.path), "--mqtt", broker.url, "--stream-id", stream_id]
    args += ["--config", str(config), "--jsonl", "-"]
    try:
        run = asyncio.run(run_with_subscriber(broker, stream_id, args, during=kill_after_first_result))
    finally:
        broker.kill()
    produced = [json.loads(line) for line in run.stdout.splitlines()]
    delivered = len(run.utterances())
    assert run.returncode == 3, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, run.stderr
    match = re.search(
        r"stream (\S+): (\d+) of (\d+) results not acknowledged by the MQTT broker at (\S+)", errors[0]
    )
    assert match, errors[0]
    assert match[1] == stream_id and match[4] == broker.url
    assert int(match[3]) == len(produced) and int(match[2]) == len(produced) - delivered >= 1


def test_reconnect_waits_are_jittered_and_capped_then_availability_returns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With the broker away, every wait between attempts stays within `reconnect_max_s` and the waits
    differ (jitter); once it is back the stream is announced `online` again and the outbox delivered."""
    broker = Mosquitto(tmp_path)
    broker.start()
    stream_id = f"backoff-{uuid.uuid4().hex[:8]}"
    options = MqttOptions(url=broker.url, reconnect_max_s=0.5, stats_interval_s=0)

    async def scenario() -> tuple[list[float], str | None, list[int]]:
        publisher = MqttPublisher(parse_mqtt_url(broker.url), options, node_id=stream_id)
        await publisher.start()
        channel = publisher.open_stream(stream_id)
        channel.emit(result(stream_id, 1))
        async with asyncio.timeout(10):
            while channel.delivery.acknowledged < 1:
                await asyncio.sleep(0.02)
        broker.kill()
        await asyncio.sleep(0.2)
        channel.emit(result(stream_id, 2))
        async with asyncio.timeout(30):
            while publisher.metrics.connection_losses < 1 or len(_waits(caplog)) < 6:
                await asyncio.sleep(0.05)
        broker.start()  # a fresh broker: no retained state survives
        async with asyncio.timeout(30):
            while channel.delivery.acknowledged < 2:
                await asyncio.sleep(0.02)
        availability = await retained(broker, f"m2fnet/{stream_id}/available")
        await publisher.close()
        return _waits(caplog), availability, [channel.delivery.produced, channel.delivery.acknowledged]

    caplog.set_level(logging.WARNING, logger="realtime.outputs.mqtt.publisher")
    try:
        waits, availability, counts = asyncio.run(scenario())
    finally:
        broker.kill()
    assert all(0 < w <= options.reconnect_max_s for w in waits), waits
    assert len(set(waits)) > 1, waits
    assert availability == "online"
    assert counts == [2, 2]


def _waits(caplog: pytest.LogCaptureFixture) -> list[float]:
    found = (re.search(r"retrying in ([\d.]+) s", r.getMessage()) for r in caplog.records)
    return [float(m[1]) for m in found if m]


def test_duplicate_free_key_and_counts_survive_an_outbox_overflow(tmp_path: Path) -> None:
    """A full outbox drops the oldest result: it is counted as dropped and undelivered, never hidden."""
    broker = Mosquitto(tmp_path)
    broker.start()
    options = MqttOptions(
        url=broker.url, outbox_max_messages=2, stats_interval_s=0, shutdown_drain_timeout_s=5
    )

    async def scenario() -> tuple[int, int, int, int]:
        publisher = MqttPublisher(parse_mqtt_url(broker.url), options, node_id="overflow")
        await publisher.start()
        broker.kill()
        channel = publisher.open_stream("overflow")
        async with asyncio.timeout(30):
            while publisher.metrics.connection_losses < 1:
                await asyncio.sleep(0.02)
        for i in range(1, 6):
            channel.emit(result("overflow", i))
        broker.start()
        await publisher.close()
        d = channel.delivery
        return d.produced, d.acknowledged, d.dropped, d.undelivered

    try:
        produced, acknowledged, dropped, undelivered = asyncio.run(scenario())
    finally:
        broker.kill()
    assert (produced, acknowledged, dropped, undelivered) == (5, 2, 3, 3)


@needs_checkpoint
def test_stats_topic_reports_queues_counts_latency_and_process(
    mosquitto: Mosquitto, talking_clip: TalkingClip, tmp_path: Path
) -> None:
    stream_id = f"stats-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "stats.yaml"
    config.write_text("mqtt:\n  stats_interval_s: 1.0\n")
    args = ["--source", str(talking_clip.path), "--mqtt", mosquitto.url, "--stream-id", stream_id]
    run: Run = asyncio.run(run_with_subscriber(mosquitto, stream_id, [*args, "--config", str(config)]))
    assert run.returncode == 0, run.stderr[-3000:]
    stats = [json.loads(p) for t, p, _ in run.messages if t == f"m2fnet/{stream_id}/stats"]
    assert len(stats) >= 3, [t for t, _, _ in run.messages]
    final = len(run.utterances())
    for message in stats:
        assert message["stream_id"] == stream_id
        assert set(message["queues"]) == {"segments", "utterances", "outbox"}
        assert message["queues"]["segments"]["dropped"] == 0 and message["queues"]["outbox"]["dropped"] == 0
        assert 0 <= message["results"]["acknowledged"] <= message["results"]["produced"] <= final
        assert message["process"]["rss_mib"] > 100 and message["process"]["threads"] >= 2
        assert message["process"]["open_fds"] > 0
    produced = [m["results"]["produced"] for m in stats]
    assert produced == sorted(produced) and produced[-1] >= 1
    turns = stats[-1]["turns"]  # every sentence of the clip ends in a pause prepared before the cut
    assert turns["speculations_used"] >= 1
    assert turns["speculations_used"] + turns["speculations_discarded"] <= turns["speculations"]
    uptimes = [m["uptime_s"] for m in stats]
    assert uptimes == sorted(uptimes)
    # Each interval's latency covers only the results made in it: the counts add up to what was made.
    counted = sum(m["latency_ms"]["segment_to_publish"]["count"] for m in stats)
    assert counted == produced[-1]
    with_results = [
        m["latency_ms"]["segment_to_publish"] for m in stats if m["latency_ms"]["segment_to_publish"]["count"]
    ]
    assert with_results and all(0 < s["p50"] <= s["p95"] for s in with_results)
    acked = [m["latency_ms"]["segment_to_ack"] for m in stats if m["latency_ms"]["segment_to_ack"]["count"]]
    assert acked and all(0 < s["p50"] <= s["p95"] for s in acked)
