"""User-facing errors of the engines: one line naming the file or setting."""


class CheckpointError(Exception):
    """A checkpoint or model directory that cannot be used; the message names it."""
