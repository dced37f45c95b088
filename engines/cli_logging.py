"""Logging for the project's command-line tools: progress lines on stderr, library chatter muted."""

from __future__ import annotations

import logging
import sys


def configure_cli_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    for noisy in ("httpx", "transformers", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
