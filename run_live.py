"""Live emotion recognition: capture -> VAD -> Whisper -> M2FNet -> MQTT (+ console, JSON lines).

Examples: `python run_live.py --source demo` (embedded broker, its URL printed);
`python run_live.py --source talk.mp4 --no-realtime --mqtt mqtt://localhost:1883 --jsonl -`;
`python run_live.py --source a.mp4 --source rtsp://cam/1 --jsonl -` (two streams, one process).
Exit status: 0 when every result was acknowledged by the broker; 2 for a user error (one line
`error: ...` on stderr) or a stream whose source failed; 3 when results were produced that the broker
never acknowledged (it stayed away until the end; the line says how many).
SIGINT/SIGTERM: once the models are loaded, the streams stop gracefully (what was heard is published;
a second signal aborts) and the status is as above; earlier, the start-up is interrupted: one line
`interrupted (SIGINT)`, status 130 (SIGINT) or 143 (SIGTERM), no traceback. The handlers are
installed first thing, before any heavy import (engines/interrupts.py).
"""

from __future__ import annotations

from engines import interrupts

if __name__ == "__main__":  # imported (by a test), it leaves the signals alone
    interrupts.install()

from realtime.runtime import env as runtime_env

runtime_env.apply()

import argparse
import logging
import sys
from contextlib import ExitStack
from typing import TextIO

UNDELIVERED_EXIT = 3
"""Exit status of a run whose results did not all reach the broker."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--source",
        action="append",
        help="mic[:N|NAME] | webcam[:N] | live | demo | a media file | rtsp:// rtmp:// http(s):// URL; "
        "repeat for several streams in one process",
    )
    parser.add_argument(
        "--streams", metavar="FILE.yaml", help="streams to serve: a list of {id, source, ...}"
    )
    parser.add_argument(
        "--cluster",
        metavar="auto|HOST:PORT",
        help="serve the streams on a Ray cluster (auto: RAY_ADDRESS, a cluster on this machine, or a new "
        "local one); needs the cluster extra",
    )
    parser.add_argument("--config", help="YAML options (see configs/live.yaml)")
    parser.add_argument("--checkpoint", help="recognizer checkpoint directory (default: the shipped one)")
    parser.add_argument(
        "--voice",
        metavar="DIR|none",
        help="voice emotion head (default: the shipped one, trained on RAVDESS: non-commercial); "
        "none: words only",
    )
    parser.add_argument(
        "--backend", choices=["torch", "onnx", "auto"], help="recognizer backend (default: auto)"
    )
    parser.add_argument(
        "--mqtt", help="mqtt://[user:pass@]host:port or mqtts://... (TLS) (default: an embedded broker)"
    )
    parser.add_argument("--mqtt-ca", metavar="FILE", help="CA of an mqtts:// broker (default: system store)")
    parser.add_argument("--mqtt-cert", metavar="FILE", help="client certificate for an mqtts:// broker")
    parser.add_argument("--mqtt-key", metavar="FILE", help="private key of --mqtt-cert")
    parser.add_argument("--topic-prefix", help="first topic level (default: m2fnet)")
    parser.add_argument(
        "--stream-id",
        action="append",
        help="stream id in topics and messages (default: from the source); repeat in --source order",
    )
    parser.add_argument("--jsonl", metavar="PATH|-", help="also write JSON lines; '-' = stdout (only them)")
    parser.add_argument(
        "--speaker",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="enrol a known voice from an audio file (repeatable); its utterances carry NAME",
    )
    parser.add_argument("--no-speakers", action="store_true", help="no speaker attribution (speaker: null)")
    parser.add_argument(
        "--no-realtime", action="store_true", help="process a file as fast as possible, not at real-time pace"
    )
    parser.add_argument(
        "--overlay", metavar="[HOST:]PORT", help="serve the live overlay page (host: 127.0.0.1)"
    )
    parser.add_argument("--preview", metavar="window|FILE.mp4", help="annotated video: a window or a file")
    parser.add_argument(
        "--ha-discovery", nargs="?", const="homeassistant", metavar="PREFIX", help="Home Assistant discovery"
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log progress (-v) or everything (-vv) on stderr"
    )
    args = parser.parse_args(argv)
    if not args.source and not args.streams:
        parser.error("one of --source (repeatable) or --streams FILE.yaml is required")
    if args.source and args.streams:
        parser.error("give --source (repeatable) or --streams FILE.yaml, not both")
    if args.cluster and args.preview:
        parser.error("--preview draws frames in this process: not with --cluster")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("amqtt", "transitions", "faster_whisper", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # The one-time ONNX compile (about a minute) is said once at INFO: the first run is not silent.
    logging.getLogger("engines.onnx_backend").setLevel(logging.DEBUG if args.verbose >= 2 else logging.INFO)
    # aiomqtt logs socket errors at ERROR; the publisher reports each failure itself (one line at start).
    logging.getLogger("mqtt").setLevel(logging.DEBUG if args.verbose >= 2 else logging.CRITICAL)

    from engines.errors import CheckpointError, MediaError
    from realtime.consumers.launch import Consumers
    from realtime.consumers.overlay import OverlayError
    from realtime.outputs.mqtt import topics
    from realtime.outputs.mqtt.address import BrokerUnreachableError, MqttSettingError
    from realtime.outputs.mqtt.tls import TlsSettingError
    from realtime.outputs.preview import Preview, PreviewError, PreviewOptions
    from realtime.runtime.app import serve
    from realtime.runtime.config import ConfigError, load_live_config
    from realtime.runtime.stream_specs import load_stream_specs, specs_from_flags
    from realtime.sources.feed import DeviceError
    from realtime.speakers.attributor import EnrolmentError
    from realtime.speech.whisper_models import AsrModelError

    serve_on_cluster, cluster_errors = _cluster_entry(args.cluster)

    user_errors = (
        MediaError,
        DeviceError,
        BrokerUnreachableError,
        MqttSettingError,
        TlsSettingError,
        ConfigError,
        CheckpointError,
        AsrModelError,
        EnrolmentError,
        OverlayError,
        PreviewError,
        *cluster_errors,
    )
    console: TextIO = sys.stderr if args.jsonl == "-" else sys.stdout
    try:
        config = load_live_config(args.config)
        _apply_flags(config, args)
        consumers = Consumers.from_flags(args.overlay, args.ha_discovery, config.mqtt)
        if args.streams:
            specs = load_stream_specs(args.streams, config)
        else:
            specs = specs_from_flags(config, args.source, args.stream_id)
        with ExitStack() as stack:
            jsonl = _open_jsonl(args.jsonl, stack)
            preview = None
            if args.preview:
                preview = Preview(PreviewOptions(args.preview, fps=config.capture.video_fps))
                stack.callback(preview.close)

            def on_broker(url: str, stream_ids: list[str]) -> None:
                prefix = config.mqtt.topic_prefix
                if len(stream_ids) == 1:
                    line = (
                        f"MQTT {url}  topics {topics.stream_topic(prefix, stream_ids[0], 'utterance')}, "
                        "/available, /state, /speakers/+/state"
                    )
                else:
                    node = topics.node_id(config.mqtt.node_id, stream_ids)
                    line = (
                        f"MQTT {url}  topics {topics.stream_topic(prefix, '<stream>', 'utterance')}, /available, "
                        f"/status, /state, /speakers/+/state for streams {', '.join(stream_ids)}; "
                        f"process {topics.stream_topic(prefix, node, 'available')}"
                    )
                print(line, file=console, flush=True)
                if consumers.overlay is not None:
                    print(f"overlay {consumers.overlay.url}", file=console, flush=True)

            async def run() -> list:
                async with consumers:
                    on = consumers.wrap(on_broker)
                    if args.cluster:
                        return await serve_on_cluster(
                            config, specs, args.cluster, console=console, jsonl=jsonl, on_broker=on
                        )
                    return await serve(
                        config, specs, console=console, jsonl=jsonl, on_broker=on, preview=preview
                    )

            reports = interrupts.run_async(run())
    except user_errors as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = [r for r in reports if r.error is not None]
    for report in failed:
        print(f"error: stream {report.stream_id}: {report.error}", file=sys.stderr)
    undelivered = [r for r in reports if _delivery(r).undelivered]
    for report in undelivered:
        print(
            f"error: stream {report.stream_id}: {_delivery(report).undelivered} of {_delivery(report).produced} "
            f"results not acknowledged by the MQTT broker at {report.broker_url}",
            file=sys.stderr,
        )
    return 2 if failed else UNDELIVERED_EXIT if undelivered else 0


def _cluster_entry(address: str | None) -> tuple:
    """`serve_on_cluster` and its user errors; Ray is imported only with `--cluster`."""
    if not address:
        return None, ()
    try:
        from realtime.cluster.client import ClusterError, serve_on_cluster
    except ImportError as exc:
        print(f"error: --cluster needs the cluster extra (pip install -e .[cluster]): {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    return serve_on_cluster, (ClusterError,)


def _delivery(report):
    """A single-process `StreamReport` carries `delivery`; a `ClusterReport` is its own."""
    return getattr(report, "delivery", report)


_VALUE_FLAGS = {
    "checkpoint": (None, "checkpoint_dir"),
    "backend": ("engine", "backend"),
    "mqtt": ("mqtt", "url"),
    "mqtt_ca": ("mqtt", "ca_file"),
    "mqtt_cert": ("mqtt", "cert_file"),
    "mqtt_key": ("mqtt", "key_file"),
    "topic_prefix": ("mqtt", "topic_prefix"),
}
"""Flags that set one config value: flag -> (config section or None for the top level, key)."""


def _apply_flags(config, args: argparse.Namespace) -> None:
    for flag, (section, key) in _VALUE_FLAGS.items():
        value = getattr(args, flag)
        if value:
            setattr(config if section is None else getattr(config, section), key, value)
    if args.stream_id and len(args.stream_id) == 1:
        config.stream_id = args.stream_id[0]
    if args.speaker:
        config.speakers.enrol = (*config.speakers.enrol, *args.speaker)
    if args.no_speakers:
        config.speakers.enabled = False
    if args.voice:
        config.voice.model_dir = None if args.voice.lower() == "none" else args.voice
    if args.no_realtime:
        config.capture.realtime = False


def _open_jsonl(target: str | None, stack: ExitStack) -> TextIO | None:
    if target is None:
        return None
    if target == "-":
        return sys.stdout
    from realtime.runtime.config import ConfigError

    try:
        return stack.enter_context(open(target, "w", encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"--jsonl {target}: cannot write ({exc.strerror})") from None


if __name__ == "__main__":
    interrupts.run_cli(main)
