"""m2fnet-live's live loop. `from realtime import LiveRecognizer` is the in-process API (`realtime.api`);
it is imported on first use, so `import realtime.<module>` stays light."""

from typing import Any

__all__ = ["FinalResult", "InterimResult", "LiveRecognizer", "SpeakerState", "UtteranceStarted"]

_HOMES = {
    "LiveRecognizer": "realtime.api",
    "FinalResult": "realtime.outputs.events",
    "InterimResult": "realtime.outputs.events",
    "SpeakerState": "realtime.outputs.events",
    "UtteranceStarted": "realtime.outputs.events",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'realtime' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_HOMES[name]), name)
