"""Which database errors are worth retrying (the retry budget itself: ``retry``)."""

from __future__ import annotations

import sqlite3

from sqlalchemy import exc as sa_exc

from ..errors import SelectiveSyncError

# PostgreSQL SQLSTATEs that mean "try again": deadlock, serialization failure,
# lock_not_available, and the admin-shutdown / cannot-connect-now family.
_PG_TRANSIENT_STATES = {"40P01", "40001", "55P03", "57P01", "57P02", "57P03", "53300"}
# Classes that are never transient even though psycopg raises OperationalError for
# them: bad credentials (28) and an unknown database (3D) will not fix themselves.
_PG_PERMANENT_CLASSES = ("28", "3D")
# MySQL/MariaDB error numbers: server gone (2006), lost connection (2013, 2055),
# cannot connect (2002, 2003), too many connections (1040), lock wait timeout (1205),
# deadlock (1213).
_MYSQL_TRANSIENT_CODES = {1040, 1205, 1213, 2002, 2003, 2006, 2013, 2055}
_SQLITE_TRANSIENT_NAMES = {"SQLITE_BUSY", "SQLITE_LOCKED"}
_SQLITE_TRANSIENT_TEXT = ("database is locked", "database table is locked", "database is busy")


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` is a fault worth retrying; permanent refusals never are."""
    if isinstance(exc, SelectiveSyncError):
        return exc.transient
    if isinstance(exc, (sa_exc.IntegrityError, sa_exc.DataError)):
        return False
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        return _driver_error_is_transient(exc.orig)
    if isinstance(exc, (sa_exc.DisconnectionError, sa_exc.TimeoutError)):
        # Pool checkout timeout / a connection the pool found dead.
        return True
    return _driver_error_is_transient(exc)


def _driver_error_is_transient(orig: BaseException | None) -> bool:
    if orig is None:
        return False
    if isinstance(orig, sqlite3.Error):
        if getattr(orig, "sqlite_errorname", None) in _SQLITE_TRANSIENT_NAMES:
            return True
        text = str(orig).lower()
        return any(t in text for t in _SQLITE_TRANSIENT_TEXT)
    module = type(orig).__module__ or ""
    if module.startswith("psycopg"):
        state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
        if state in _PG_TRANSIENT_STATES:
            return True
        if state and state.startswith(_PG_PERMANENT_CLASSES):
            return False
        # psycopg raises OperationalError without a SQLSTATE for a lost or refused
        # connection; with one (class 08 etc.) it is also a connection-level fault.
        return type(orig).__name__ == "OperationalError" or bool(state and state[:2] == "08")
    if module.startswith(("pymysql", "MySQLdb", "mariadb")):
        code = orig.args[0] if orig.args and isinstance(orig.args[0], int) else None
        return code in _MYSQL_TRANSIENT_CODES
    return False
