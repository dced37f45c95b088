"""Outputs: where results go (console, JSON lines, MQTT, the preview video)."""
