"""One base class for every error a user can cause, so the CLI and API report them uniformly."""


class RungError(ValueError):
    """Bad input, data, ladder or bundle: the message says what and where; never a traceback."""
