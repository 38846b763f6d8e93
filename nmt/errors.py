"""The one exception type for user errors: the CLI prints its message on one line, no traceback."""


class NMTError(Exception):
    """A problem the user can fix (bad config, missing file, corrupt model); the message says what and where."""
