"""The one exception type the CLI turns into a one-line message and exit status 1."""


class PixzipError(Exception):
    """A user-facing error: bad input, corrupt file, missing model. Its message is the whole report."""
