"""TLS and authentication for broker connections: the `ssl.SSLContext` of an `mqtts://` URL, and the short
reason a user can act on when the first connection fails (wrong CA, wrong password, TLS to a plain port).

Below `realtime.outputs.mqtt.publisher` (which imports it): it takes any options object with the three file fields
(`TlsFiles`, which `MqttOptions` is).
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Protocol

import aiomqtt

NOT_AUTHORISED_CODES = frozenset({4, 5, 134, 135})
"""CONNACK refusals for credentials: MQTT 3.1.1 return codes 4 and 5, their MQTT 5 reason codes 134, 135."""
_CA = "MQTT CA file (--mqtt-ca, mqtt.ca_file)"
_CERT = "MQTT client certificate (--mqtt-cert, mqtt.cert_file)"
_KEY = "MQTT client key (--mqtt-key, mqtt.key_file)"


class TlsFiles(Protocol):
    """Where the CA, the client certificate and its key are (PEM paths, or None)."""

    ca_file: str | None
    cert_file: str | None
    key_file: str | None


class TlsSettingError(ValueError):
    """A CA, client certificate or key that cannot be used; the message names the file and its flag."""


def tls_context(tls: bool, options: TlsFiles) -> ssl.SSLContext | None:
    """The context for a connection: None without `tls`; else the broker's certificate is verified
    against `options.ca_file` (None: the system's trust store) and its host name checked, and
    `cert_file` / `key_file`, when given, are shown to a broker that asks for a client certificate."""
    given = [what for what, path in _files(options) if path]
    if not tls:
        if given:
            raise TlsSettingError(f"{given[0]} is for TLS: give an mqtts:// broker URL (--mqtt)")
        return None
    if options.key_file and not options.cert_file:
        raise TlsSettingError(f"{_KEY} {options.key_file}: a key needs its certificate, {_CERT}")
    ca = _readable(options.ca_file, _CA)
    try:
        context = ssl.create_default_context(cafile=ca)
    except ssl.SSLError:
        raise TlsSettingError(f"{_CA} {ca}: no PEM certificate in it") from None
    cert = _readable(options.cert_file, _CERT)
    if cert is not None:
        key = _readable(options.key_file, _KEY)
        try:
            context.load_cert_chain(cert, key)
        except ssl.SSLError as exc:
            raise TlsSettingError(
                f"{_CERT} {cert}: no PEM certificate with its private key "
                f"({f'{_KEY} {key}, ' if key else ''}{exc.reason or 'unreadable'})"
            ) from None
    return context


def describe_connect_error(exc: aiomqtt.MqttError, tls: bool) -> str:
    """Why a connection was not accepted, in words a user can act on."""
    if isinstance(exc, aiomqtt.MqttCodeError) and _code(exc.rc) in NOT_AUTHORISED_CODES:
        return "not authorised (user name or password)"
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, ssl.SSLCertVerificationError):
        return f"TLS certificate verify failed: {cause.verify_message} (check the {_CA})"
    if tls and isinstance(cause, ssl.SSLError | ConnectionResetError):
        return f"TLS handshake failed ({exc}); is the port a TLS listener?"
    if isinstance(cause, TimeoutError):
        if tls:
            return f"no answer ({exc}); over TLS a refused client certificate also looks like this ({_CERT})"
        return f"no answer ({exc}); if the port expects TLS, use mqtts://"
    return str(exc)


def _files(options: TlsFiles) -> list[tuple[str, str | None]]:
    return [(_CA, options.ca_file), (_CERT, options.cert_file), (_KEY, options.key_file)]


def _readable(path: str | None, flag: str) -> str | None:
    """`path` with `~` expanded, once it is known to be a readable file; None stays None."""
    if path is None:
        return None
    expanded = Path(path).expanduser()
    try:
        with expanded.open("rb"):
            pass
    except OSError as exc:
        raise TlsSettingError(f"{flag} {path}: cannot read ({exc.strerror})") from None
    return str(expanded)


def _code(rc: object) -> int | None:
    value = getattr(rc, "value", rc)
    return value if isinstance(value, int) else None
