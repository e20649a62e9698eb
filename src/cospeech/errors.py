"""Error types that end in one clear line for the user (the CLI prints them, no traceback)."""


class CospeechError(Exception):
    """Base class: a problem the user can fix, reported as one line."""


class InputError(CospeechError, ValueError):
    """Bad user input: a file that is not what it should be, wrong shapes, NaNs, ..."""


class CheckpointError(CospeechError):
    """A checkpoint that cannot be loaded: missing/unexpected keys, wrong shapes, unsafe format."""
