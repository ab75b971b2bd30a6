"""The one exception a user is meant to see: a clear message, no traceback."""


class LceError(Exception):
    """A user-facing failure (bad input, unreachable database, ...).

    The CLI prints ``str(error)`` as one paragraph and exits with ``exit_code``.
    """

    exit_code = 1

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


def first_line(error: Exception) -> str:
    """The first line of an exception's message (drivers append hints and context), or its type's name."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
