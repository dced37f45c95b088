"""MQTT output: the publisher, its TLS settings, the embedded broker and the per-stream stats."""
