"""The live overlay: an MQTT subscriber keeping recent results, and a small page fed by server-sent events.

Server-sent events, not MQTT over WebSockets in the browser: the subscriber works against any broker
(the embedded amqtt one and a default Mosquitto have no WebSocket listener), the browser needs neither
a JavaScript MQTT library nor the broker's credentials, and the server can put the recent history in
the page itself, so a page opened mid-conversation shows it at once.
"""

from realtime.consumers.overlay.server import Overlay, OverlayError, OverlayOptions, parse_listen_address

__all__ = ["Overlay", "OverlayError", "OverlayOptions", "parse_listen_address"]
