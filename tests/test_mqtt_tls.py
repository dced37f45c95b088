"""MQTT over TLS with passwords (realtime/outputs/mqtt/tls.py): a CA made by the test, a real Mosquitto TLS listener
that refuses anonymous clients, and `run_live.py` against it; wrong CA, password or port are one-line errors."""

from __future__ import annotations

import asyncio
import json
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest
from mosquitto import Mosquitto, ServerTls
from test_run_live_e2e import assert_one_line_error, run_cli
from tls_certs import CertFiles, make_certs

from realtime.consumers.ha_discovery import HaDiscoveryOptions, announce_once, config_topic
from realtime.consumers.overlay import Overlay, OverlayOptions
from realtime.messages import EmotionResult
from realtime.outputs.mqtt.address import BrokerUnreachableError, parse_mqtt_url
from realtime.outputs.mqtt.publisher import MqttOptions, MqttPublisher
from realtime.outputs.mqtt.tls import TlsSettingError, tls_context
from realtime.runtime.config import load_live_config

USER, PASSWORD = "edge", "s3cret pass"
"""The password has a space: it travels percent-encoded in the URL."""
CREDENTIALS = f"{USER}:s3cret%20pass"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    return make_certs(tmp_path_factory.mktemp("certs"), "broker")


@pytest.fixture(scope="module")
def other_certs(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    """Another CA, which did not sign the broker's certificate."""
    return make_certs(tmp_path_factory.mktemp("other-certs"), "other")


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory, certs: CertFiles) -> Iterator[Mosquitto]:
    broker = Mosquitto(
        tmp_path_factory.mktemp("mosquitto-tls"),
        tls=ServerTls(certs.ca, certs.server_cert, certs.server_key),
        users={USER: PASSWORD},
    )
    broker.start()
    yield broker
    broker.stop()


def broker_url(broker: Mosquitto, credentials: str = CREDENTIALS) -> str:
    return broker.url.replace("://", f"://{credentials}@")


def result(stream_id: str) -> EmotionResult:
    return EmotionResult(
        stream_id=stream_id,
        utterance_id=1,
        start_s=0.0,
        end_s=1.0,
        text="over TLS",
        emotion="joy",
        scores={"joy": 1.0},
        modalities={"text": True},
        model="test",
    )


def test_mqtts_url_defaults_to_port_8883_and_hides_the_password() -> None:
    address = parse_mqtt_url("mqtts://edge:pw%40x@broker.example")
    assert (address.host, address.port, address.tls) == ("broker.example", 8883, True)
    assert (address.username, address.password) == ("edge", "pw@x")
    assert address.url == "mqtts://edge@broker.example:8883"
    assert parse_mqtt_url("mqtt://h").port == 1883 and not parse_mqtt_url("mqtt://h").tls


def test_tls_files_are_checked_and_named(tmp_path: Path, certs: CertFiles) -> None:
    assert tls_context(False, MqttOptions()) is None
    assert isinstance(tls_context(True, MqttOptions()), ssl.SSLContext), "system trust store"
    not_pem = tmp_path / "notes.txt"
    not_pem.write_text("hello\n")
    missing = tmp_path / "missing.pem"
    cases = [
        (False, MqttOptions(ca_file=str(certs.ca)), r"--mqtt-ca.*is for TLS.*mqtts://"),
        (True, MqttOptions(ca_file=str(missing)), rf"--mqtt-ca.*{missing}: cannot read"),
        (True, MqttOptions(ca_file=str(tmp_path)), rf"--mqtt-ca.*{tmp_path}: cannot read"),
        (True, MqttOptions(ca_file=str(not_pem)), rf"--mqtt-ca.*{not_pem}: no PEM certificate"),
        (True, MqttOptions(key_file=str(certs.client_key)), r"--mqtt-key.*needs its certificate"),
        (True, MqttOptions(cert_file=str(missing)), rf"--mqtt-cert.*{missing}: cannot read"),
        (
            True,
            MqttOptions(cert_file=str(certs.client_cert), key_file=str(certs.server_key)),
            rf"--mqtt-cert.*{certs.client_cert}: no PEM certificate with its private key",
        ),
    ]
    for tls, options, message in cases:
        with pytest.raises(TlsSettingError, match=message):
            tls_context(tls, options)


def test_tls_files_are_settable_in_yaml(tmp_path: Path, certs: CertFiles) -> None:
    config_file = tmp_path / "live.yaml"
    config_file.write_text(
        f"mqtt:\n  url: mqtts://h\n  ca_file: {certs.ca}\n  cert_file: {certs.client_cert}\n"
        f"  key_file: {certs.client_key}\n"
    )
    options = load_live_config(config_file).mqtt
    assert (options.ca_file, options.cert_file, options.key_file) == tuple(
        map(str, (certs.ca, certs.client_cert, certs.client_key))
    )
    assert isinstance(tls_context(True, options), ssl.SSLContext)


async def _subscribe_and_publish(
    broker: Mosquitto, certs: CertFiles, options: MqttOptions, url: str | None = None
) -> list[dict]:
    """Publish one result through `MqttPublisher` at `url` and read it back with a TLS subscriber."""
    stream_id = f"tls-{uuid.uuid4().hex[:8]}"
    received: list[dict] = []
    subscriber_tls = ssl.create_default_context(cafile=str(certs.ca))
    async with aiomqtt.Client(
        "127.0.0.1", broker.port, username=USER, password=PASSWORD, tls_context=subscriber_tls
    ) as subscriber:
        await subscriber.subscribe(f"m2fnet/{stream_id}/utterance", qos=1)
        publisher = MqttPublisher(parse_mqtt_url(url or broker_url(broker)), options)
        await publisher.start()
        publisher.open_stream(stream_id).emit(result(stream_id))
        await publisher.close()
        async with asyncio.timeout(10):
            async for message in subscriber.messages:
                received.append(json.loads(message.payload))
                break
    assert publisher.metrics.published == 1
    return received


def test_publisher_over_tls_with_password(tls_broker: Mosquitto, certs: CertFiles) -> None:
    options = MqttOptions(ca_file=str(certs.ca))
    received = asyncio.run(_subscribe_and_publish(tls_broker, certs, options))
    assert [r["text"] for r in received] == ["over TLS"]


def test_client_certificate(tmp_path: Path, certs: CertFiles, other_certs: CertFiles) -> None:
    broker = Mosquitto(
        tmp_path,
        tls=ServerTls(certs.ca, certs.server_cert, certs.server_key, require_client_cert=True),
        users={USER: PASSWORD},
    )
    broker.start()
    try:
        asyncio.run(_client_certificate(broker, certs, other_certs))
    finally:
        broker.stop()


async def _client_certificate(broker: Mosquitto, certs: CertFiles, other_certs: CertFiles) -> None:
    # The subscriber of `_subscribe_and_publish` has no certificate: check delivery with the publisher alone.
    with_cert = MqttOptions(
        ca_file=str(certs.ca), cert_file=str(certs.client_cert), key_file=str(certs.client_key)
    )
    publisher = MqttPublisher(parse_mqtt_url(broker_url(broker)), with_cert)
    await publisher.start()
    publisher.open_stream("cert").emit(result("cert"))
    await publisher.close()
    assert publisher.metrics.published == 1 and len(publisher.outbox) == 0

    wrong_cert = MqttOptions(
        ca_file=str(certs.ca),
        cert_file=str(other_certs.client_cert),
        key_file=str(other_certs.client_key),
        connect_timeout_s=1.0,
    )
    for options in (wrong_cert, MqttOptions(ca_file=str(certs.ca), connect_timeout_s=1.0)):
        with pytest.raises(BrokerUnreachableError, match=r"refused client certificate.*--mqtt-cert"):
            await MqttPublisher(parse_mqtt_url(broker_url(broker)), options).start()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        (
            "wrong CA",
            r"TLS certificate verify failed: self-signed certificate in certificate chain.*--mqtt-ca",
        ),
        ("wrong password", r"not authorised \(user name or password\)"),
        ("no password", r"not authorised \(user name or password\)"),
        ("plain to TLS port", r"no answer.*if the port expects TLS, use mqtts://"),
        ("TLS to plain port", r"TLS handshake failed.*TLS listener"),
    ],
)
def test_first_connect_failures_say_why(
    case: str,
    message: str,
    tls_broker: Mosquitto,
    mosquitto: Mosquitto,
    certs: CertFiles,
    other_certs: CertFiles,
) -> None:
    url, ca = broker_url(tls_broker), certs.ca
    if case == "wrong CA":
        ca = other_certs.ca
    elif case == "wrong password":
        url = broker_url(tls_broker, f"{USER}:nope")
    elif case == "no password":
        url = tls_broker.url
    elif case == "plain to TLS port":
        url = url.replace("mqtts://", "mqtt://")
    else:
        url = mosquitto.url.replace("mqtt://", f"mqtts://{CREDENTIALS}@")
    tls = url.startswith("mqtts")
    options = MqttOptions(ca_file=str(ca) if tls else None, connect_timeout_s=1.0)
    shown = parse_mqtt_url(url).url
    with pytest.raises(BrokerUnreachableError, match=rf"^cannot reach MQTT broker at {shown}: {message}"):
        asyncio.run(MqttPublisher(parse_mqtt_url(url), options).start())


def test_overlay_and_ha_discovery_follow_over_tls(tls_broker: Mosquitto, certs: CertFiles) -> None:
    asyncio.run(_overlay_and_ha_discovery(tls_broker, certs))


async def _overlay_and_ha_discovery(broker: Mosquitto, certs: CertFiles) -> None:
    tls = tls_context(True, MqttOptions(ca_file=str(certs.ca)))
    stream_id = f"tls-ov-{uuid.uuid4().hex[:8]}"
    async with Overlay(OverlayOptions(port=0)) as overlay:
        await overlay.connect(broker_url(broker), tls)
        publisher = MqttPublisher(parse_mqtt_url(broker_url(broker)), MqttOptions(ca_file=str(certs.ca)))
        await publisher.start()
        publisher.open_stream(stream_id).emit(result(stream_id))
        await publisher.close()
        async with asyncio.timeout(10):
            while not (stream_id in overlay.state.streams and overlay.state.streams[stream_id].utterances):
                await asyncio.sleep(0.05)
        assert overlay.state.streams[stream_id].utterances[0]["text"] == "over TLS"
    ha = HaDiscoveryOptions()
    topic = await announce_once(parse_mqtt_url(broker_url(broker)), ha, stream_id, tls)
    assert topic == config_topic(ha, stream_id)


def test_run_live_publishes_over_tls(tls_broker: Mosquitto, certs: CertFiles) -> None:
    asyncio.run(_run_live_over_tls(tls_broker, certs))


async def _run_live_over_tls(broker: Mosquitto, certs: CertFiles) -> None:
    stream_id = f"tls-live-{uuid.uuid4().hex[:8]}"
    subscriber_tls = ssl.create_default_context(cafile=str(certs.ca))
    async with aiomqtt.Client(
        "127.0.0.1", broker.port, username=USER, password=PASSWORD, tls_context=subscriber_tls
    ) as subscriber:
        await subscriber.subscribe(f"m2fnet/{stream_id}/utterance", qos=1)
        run = await asyncio.to_thread(
            run_cli,
            *("--source", "demo", "--no-realtime", "--stream-id", stream_id),
            *("--mqtt", broker_url(broker), "--mqtt-ca", str(certs.ca), "--overlay", "0", "--ha-discovery"),
        )
        assert run.returncode == 0, run.stderr
        assert "overlay:" not in run.stderr and "discovery not published" not in run.stderr, run.stderr
        assert f"MQTT {broker.url.replace('://', f'://{USER}@')}" in run.stdout, "the URL, no password"
        assert PASSWORD not in run.stdout + run.stderr
        texts = []
        async with asyncio.timeout(10):
            async for message in subscriber.messages:
                texts.append(json.loads(message.payload)["text"])
                if len(texts) == 3:
                    break
        assert all(texts)


@pytest.mark.parametrize("case", ["wrong CA", "wrong password", "missing CA file", "TLS to plain port"])
def test_run_live_tls_errors_are_one_line(
    case: str,
    tmp_path: Path,
    tls_broker: Mosquitto,
    mosquitto: Mosquitto,
    certs: CertFiles,
    other_certs: CertFiles,
) -> None:
    url, ca = broker_url(tls_broker), str(certs.ca)
    needles = [parse_mqtt_url(url).url]
    if case == "wrong CA":
        ca = str(other_certs.ca)
        needles.append("TLS certificate verify failed")
    elif case == "wrong password":
        url = broker_url(tls_broker, f"{USER}:nope")
        needles.append("not authorised")
    elif case == "missing CA file":
        ca = str(tmp_path / "no-such-ca.pem")
        needles = [ca, "--mqtt-ca"]
    else:
        url = mosquitto.url.replace("mqtt://", f"mqtts://{CREDENTIALS}@")
        needles = [parse_mqtt_url(url).url, "TLS handshake failed"]
    run = run_cli("--source", "demo", "--no-realtime", "--mqtt", url, "--mqtt-ca", ca)
    assert_one_line_error(run, *needles)
    assert "nope" not in run.stderr and PASSWORD not in run.stderr
