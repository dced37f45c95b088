"""Streams across a Ray cluster: one host actor per machine owns a `Runtime` (host.py), one named,
detached supervisor places the streams and moves them when a host dies (supervisor.py, placement.py),
and `run_live.py --cluster` submits a stream file and prints the results from MQTT (client.py).
Ray is imported only here: without `--cluster` nothing of it loads."""
