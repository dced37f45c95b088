"""User-facing errors of the engines: one line naming the file or setting."""


class MediaError(Exception):
    """A media file, clip or stream that cannot be opened or decoded; the message names it, in one line."""


class CheckpointError(Exception):
    """A checkpoint or model directory that cannot be used; the message names it."""
