"""The few exception types the tap raises; each message is one plain sentence a user can act on."""


class TapError(Exception):
    """A failure the user can act on; the CLI prints its message as one line and exits non-zero."""


class InputError(TapError):
    """Bad config, state or catalog given on the command line."""


class ApiError(TapError):
    """The store answered in a way the tap cannot continue from (after any retries)."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


class Stopped(Exception):
    """Raised in a worker thread when the sync is stopping (an error elsewhere, or a signal)."""
