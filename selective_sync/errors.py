"""Every error the tool raises on purpose, with a message fit to show a person as-is.

One base class, ``SelectiveSyncError``: the CLI prints its message as one ``error:`` line,
the flows end a run with it. Errors survive pickling with their attributes (Dask workers
send them back to the flow). Whether trying again may help is a property of the type:
``transient`` is True only for faults worth retrying (see ``selective_sync.sync.faults``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from selective_sync.models import KeyOutcome


def _rebuild(cls: type[BaseException], args: tuple[Any, ...], state: dict[str, Any]):
    exc = cls.__new__(cls)
    exc.args = args
    exc.__dict__.update(state)
    return exc


class SelectiveSyncError(Exception):
    """Base class: the message names the problem; the CLI prints it as one line."""

    transient: ClassVar[bool] = False

    def __reduce__(self):
        # Subclasses build their message from attributes with their own __init__ signature;
        # rebuild from args + attributes so pickling never calls that __init__ again.
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


class BadInput(SelectiveSyncError):
    """The request itself is wrong (unknown object, bad IDs, bad option); nothing was changed."""


class DistrictNotConfigured(BadInput):
    """A district number this installation does not serve."""

    def __init__(self, number: int, configured: list[str]):
        self.number, self.configured = number, configured
        super().__init__(
            f"district {number} is not configured here (configured: {', '.join(configured)})"
        )


class DistrictsFileError(BadInput):
    """The districts file cannot be read or holds a bad entry (the message names the line)."""


class DistrictBusy(SelectiveSyncError):
    """Another sync or reconciliation of the same district held its lock for too long."""

    transient: ClassVar[bool] = False


class RightsError(SelectiveSyncError):
    """A user lacks the right an action needs (or bootstrap is no longer allowed)."""


class DatabaseUnavailable(SelectiveSyncError):
    """A database could not be reached or opened."""


class SchemaMissing(SelectiveSyncError):
    """A database was reached but does not hold the tables this tool needs."""


class DataDirError(SelectiveSyncError):
    """The data directory cannot be created or written."""


class StoreUnavailable(SelectiveSyncError):
    """The store that holds the Sync History or the stored summaries (the Prefect API)
    could not be reached or answered an error."""


class StoredSummaryError(SelectiveSyncError):
    """Stored artifacts that do not decode (another format, a missing chunk)."""


class RequestFailed(SelectiveSyncError):
    """The request could not be processed (refused, or every key hit a database fault)."""


class ReconcileIncomplete(SelectiveSyncError):
    """Some district or object could not be reconciled (the others were)."""


class TransientFault(SelectiveSyncError):
    """A fault that may pass if the same work is tried again (lock, deadlock, lost link).

    ``cause`` is the original exception; the message names the key and the fault.
    """

    transient = True

    def __init__(self, message: str, cause: BaseException | None = None):
        super().__init__(message)
        self.cause = cause


class BatchAborted(TransientFault):
    """Several keys in a row exhausted their retries: the database is likely down.

    ``outcomes`` holds the keys finished before the abort, ``remaining`` the keys not done.
    """

    def __init__(
        self,
        message: str,
        cause: BaseException | None = None,
        outcomes: list[KeyOutcome] | None = None,
        remaining: list[int] | None = None,
    ):
        super().__init__(message, cause)
        self.outcomes = outcomes or []
        self.remaining = remaining or []


class ServerRequired(SelectiveSyncError):
    """The command needs a Prefect server (PREFECT_API_URL), not the ephemeral API."""


class StartupFailed(SelectiveSyncError):
    """A part of the tool did not come up; everything already started is stopped."""


class ReportNotReady(SelectiveSyncError):
    """The report cannot be made (yet): no such request, or it has not finished."""


class ReportFailed(SelectiveSyncError):
    """The report could not be rendered or stored."""


class IdentityError(SelectiveSyncError):
    """A request whose identity is refused: ``status`` 401 (none, or forged from outside
    the sign-in proxy) or 400 (a malformed identity header)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
