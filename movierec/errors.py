"""Our own exceptions: the CLI turns every one of them into a one-line error and a non-zero exit."""


class MovierecError(Exception):
    """A problem the user can fix (bad input, missing data, busy store); the message says what and where."""


class BadInputError(MovierecError):
    """Input data or arguments are malformed."""


class NotFoundError(MovierecError):
    """A file, user, movie, query, model or run does not exist."""


class BusyError(MovierecError):
    """Another process holds a lock we need (DuckDB writer, vector store, a running batch)."""


class ModelError(MovierecError):
    """A model cannot be loaded or does not match the data it is used with."""


class DamagedError(MovierecError):
    """A file we wrote (database, vector store, model, published run) is missing, unreadable or holds
    values that cannot be right; the message names the file and the command that recovers."""


class EngineError(MovierecError):
    """The batch's compute engine (a Ray cluster) is missing, unreachable, mismatched, or lost a task."""


class LockFileError(MovierecError):
    """A lock file cannot be opened (read-only or full disk, a directory in its place): nothing stored is
    damaged, so nothing is to be rebuilt; the message says what to do."""
