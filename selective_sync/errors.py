"""Errors that carry a message fit to show a person as-is."""


class SelectiveSyncError(Exception):
    """Base class: the message names the problem; the CLI prints it as one line."""


class BadInput(SelectiveSyncError):
    """The request itself is wrong (unknown object, bad IDs, bad option); nothing was changed."""


class DatabaseUnavailable(SelectiveSyncError):
    """A database could not be reached or opened."""


class SchemaMissing(SelectiveSyncError):
    """A database was reached but does not hold the tables this tool needs."""


class DataDirError(SelectiveSyncError):
    """The data directory cannot be created or written."""
