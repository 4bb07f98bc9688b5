"""The tool's R/W/D rights: a small persistent store and the checks every entry point makes.

R: see the tool, the Sync History and reports. W: run syncs (and, for reading, counts as R).
D: delete history entries, clear the history and administer rights.

The store is two tables in an ordinary SQLAlchemy database (by default the state database,
which every worker of every deployment already reaches), not in Prefect: so it behaves the
same with Prefect's ephemeral API and with a server, and survives restarts of either.
Nobody ever gets a right implicitly: an unknown user has none, and the first administrator
is made only by an explicit :meth:`RightsStore.bootstrap_admin`.
"""

from __future__ import annotations

import shlex
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, OperationalError

from selective_sync.errors import RightsError

from .db import make_engine, mask_url
from .errors import BadInput, DatabaseUnavailable, SelectiveSyncError
from .settings import Settings

MAX_USER_LEN = 128


class Right(StrEnum):
    """One right on the tool."""

    R = "R"
    W = "W"
    D = "D"


RIGHT_MEANING: dict[Right, str] = {
    Right.R: "see the tool, the Sync History and reports",
    Right.W: "run syncs",
    Right.D: "delete history entries, clear the history and administer rights",
}

# Canonical order used whenever rights are stored or shown.
_ORDER = (Right.R, Right.W, Right.D)


@dataclass(frozen=True)
class RightsEntry:
    """One user's rights as stored."""

    user: str
    rights: str
    granted_by: str
    granted_at: datetime

    def as_dict(self) -> dict[str, str]:
        return {
            "user": self.user,
            "rights": self.rights,
            "granted_by": self.granted_by,
            "granted_at": self.granted_at.isoformat(),
        }


@dataclass(frozen=True)
class AuditEntry:
    """One bootstrap, grant or revoke, as recorded in the audit table."""

    at: datetime
    actor: str
    action: str
    user: str
    old_rights: str | None
    new_rights: str | None

    def as_dict(self) -> dict[str, str | None]:
        return {
            "at": self.at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "user": self.user,
            "old_rights": self.old_rights,
            "new_rights": self.new_rights,
        }


# ---------------------------------------------------------------- schema

# User names compare case-sensitively everywhere; MariaDB/MySQL default collations are
# case-insensitive, so the name columns get a binary collation there.
_UserName = String(MAX_USER_LEN).with_variant(
    mysql.VARCHAR(MAX_USER_LEN, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
)

rights_metadata = MetaData()

rights_table = Table(
    "selective_sync_rights",
    rights_metadata,
    Column("user_name", _UserName, primary_key=True),
    Column("rights", String(3), nullable=False),
    Column("granted_by", _UserName, nullable=False),
    # Naive UTC: the one datetime form SQLite, PostgreSQL and MariaDB all store alike.
    Column("granted_at", DateTime(), nullable=False),
)

audit_table = Table(
    "selective_sync_rights_audit",
    rights_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(), nullable=False),
    Column("actor", _UserName, nullable=False),
    Column("action", String(16), nullable=False),
    Column("user_name", _UserName, nullable=False),
    Column("old_rights", String(3)),
    Column("new_rights", String(3)),
)


# ---------------------------------------------------------------- validation


def normalize_user(user: str | None, what: str = "user name") -> str:
    """The stripped user name; BadInput when empty, too long or holding control characters."""
    if not isinstance(user, str):
        raise BadInput(f"{what} must be text, got {type(user).__name__}")
    name = user.strip()
    if not name:
        raise BadInput(f"{what} is empty")
    if len(name) > MAX_USER_LEN:
        raise BadInput(f"{what} is longer than {MAX_USER_LEN} characters")
    # Control and format characters (incl. invisible bidi overrides) would let two names
    # look alike or garble output; refuse them outright.
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp") for ch in name):
        raise BadInput(f"{what} {name!r} contains control characters")
    return name


def parse_rights(rights: str | Iterable[str]) -> frozenset[Right]:
    """Parse letters like ``"RWD"``, ``"rw"`` or ``"R,W"`` into a non-empty set of rights."""
    text = rights if isinstance(rights, str) else "".join(rights)
    letters = text.replace(",", "").replace(" ", "").upper()
    if not letters:
        raise BadInput("no rights given: use letters from R, W, D (to remove all, use revoke)")
    bad = sorted({ch for ch in letters if ch not in Right.__members__})
    if bad:
        raise BadInput(
            f"unknown right letter(s) {', '.join(map(repr, bad))} in {text!r}: "
            "use letters from R (read), W (write/sync), D (delete/administer)"
        )
    return frozenset(Right(ch) for ch in letters)


def format_rights(rights: Iterable[str]) -> str:
    """Rights in canonical order, e.g. ``"RWD"``; ``"-"`` for none."""
    have = set(rights)
    return "".join(r.value for r in _ORDER if r in have) or "-"


def _as_right(right: Right | str) -> Right:
    try:
        return Right(str(right).strip().upper())
    except ValueError:
        raise BadInput(f"unknown right {right!r}: use R, W or D") from None


def _effective(rights: frozenset[Right]) -> frozenset[Right]:
    # W implies R for reading (history, reports); D does not imply R on purpose.
    return rights | {Right.R} if Right.W in rights else rights


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _stored(text: str) -> frozenset[Right]:
    # Tolerate hand edits of the table: ignore anything that is not a known letter.
    return frozenset(Right(ch) for ch in (text or "").upper() if ch in Right.__members__)


# ---------------------------------------------------------------- store


class RightsStore:
    """The rights of every user, kept in ``selective_sync_rights`` at ``url``.

    The tables are created on first use. A SQLite file is created only when
    ``create_missing`` is true (a dedicated rights database); the default store lives in
    the state database, which must already exist.
    """

    def __init__(
        self, url: str | None = None, *, create_missing: bool = False, engine: Engine | None = None
    ) -> None:
        if engine is None:
            url = url or Settings().resolved_rights_url
            if create_missing:
                _make_sqlite_parent(url)
            engine = make_engine(url, must_exist=not create_missing)
            self._owns_engine = True
        else:
            self._owns_engine = False
        self.engine = engine
        self._ready = False

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> RightsStore:
        """The store the settings name; a dedicated ``SELECTIVE_SYNC_RIGHTS_URL`` is created."""
        settings = settings or Settings()
        # A store of its own (not the state database) is created on first use.
        dedicated = settings.resolved_rights_url != settings.resolved_state_url
        return cls(settings.resolved_rights_url, create_missing=dedicated)

    def close(self) -> None:
        if self._owns_engine:
            self.engine.dispose()

    def __enter__(self) -> RightsStore:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    # ---- reading

    def rights_of(self, user: str) -> frozenset[Right]:
        """The rights granted to ``user`` (empty for an unknown user). W is not expanded."""
        name = normalize_user(user)
        with self._begin() as conn:
            text = self._current(conn, name)
        return _stored(text) if text is not None else frozenset()

    def has(self, user: str, right: Right | str) -> bool:
        """Whether ``user`` may act with ``right`` (W counts as R)."""
        return _as_right(right) in _effective(self.rights_of(user))

    def require(self, user: str, right: Right | str) -> None:
        """Return if ``user`` holds ``right`` (W counts as R); raise RightsError otherwise."""
        wanted = _as_right(right)
        name = normalize_user(user)
        with self._begin() as conn:
            self._check(conn, name, wanted)

    def list_rights(self, actor: str) -> list[RightsEntry]:
        """Every user's rights, by user name; ``actor`` needs R."""
        actor_name = normalize_user(actor, "acting user name")
        with self._begin() as conn:
            self._check(conn, actor_name, Right.R)
            rows = conn.execute(select(rights_table)).all()
        entries = [
            RightsEntry(
                r.user_name, format_rights(_stored(r.rights)), r.granted_by, _utc(r.granted_at)
            )
            for r in rows
        ]
        return sorted(entries, key=lambda e: e.user)

    def audit_log(self, actor: str, limit: int = 100) -> list[AuditEntry]:
        """The latest ``limit`` bootstraps, grants and revokes, newest first; ``actor`` needs R."""
        if limit <= 0:
            raise BadInput("limit must be positive")
        actor_name = normalize_user(actor, "acting user name")
        query = select(audit_table).order_by(audit_table.c.id.desc()).limit(limit)
        with self._begin() as conn:
            self._check(conn, actor_name, Right.R)
            rows = conn.execute(query).all()
        return [
            AuditEntry(_utc(r.at), r.actor, r.action, r.user_name, r.old_rights, r.new_rights)
            for r in rows
        ]

    # ---- changing

    def bootstrap_admin(self, user: str) -> RightsEntry:
        """Make ``user`` the first administrator (RWD); refused once anyone holds D."""
        name = normalize_user(user)
        with self._begin() as conn:
            if self._admins(conn):
                raise RightsError(
                    "an administrator (a user holding D) already exists, so bootstrap is "
                    f"refused; ask an administrator: selective-sync rights grant "
                    f"{shlex.quote(name)} RWD"
                )
            return self._set(conn, name, name, frozenset(_ORDER), "bootstrap")

    def grant(self, actor: str, user: str, rights: str | Iterable[str]) -> RightsEntry:
        """Set ``user``'s rights to exactly ``rights`` (e.g. ``"RW"``); ``actor`` needs D."""
        actor_name = normalize_user(actor, "acting user name")
        name = normalize_user(user)
        wanted = parse_rights(rights)
        with self._begin() as conn:
            # Checked in the same transaction as the write, so a revoked actor cannot slip by.
            self._check(conn, actor_name, Right.D)
            self._guard_last_admin(conn, name, wanted)
            return self._set(conn, actor_name, name, wanted, "grant")

    def revoke(self, actor: str, user: str) -> frozenset[Right]:
        """Remove every right of ``user``; ``actor`` needs D. Returns the rights removed."""
        actor_name = normalize_user(actor, "acting user name")
        name = normalize_user(user)
        with self._begin() as conn:
            self._check(conn, actor_name, Right.D)
            old = self._current(conn, name)
            if old is None:
                raise BadInput(f"user {name!r} holds no rights; nothing to revoke")
            self._guard_last_admin(conn, name, frozenset())
            conn.execute(delete(rights_table).where(rights_table.c.user_name == name))
            self._audit(conn, actor_name, "revoke", name, old, None)
        return _stored(old)

    # ---- internals

    def _begin(self):
        self._ensure_tables()
        return _Guarded(self.engine)

    def _ensure_tables(self) -> None:
        if self._ready:
            return
        try:
            rights_metadata.create_all(self.engine, checkfirst=True)
        except DBAPIError:
            # Another process may have created the tables between our check and our
            # CREATE; a second checkfirst pass sees them. A real problem fails again.
            try:
                rights_metadata.create_all(self.engine, checkfirst=True)
            except OperationalError as exc:
                raise _unavailable(self.engine, exc) from exc
        self._ready = True

    def _check(self, conn, name: str, wanted: Right) -> None:
        old = self._current(conn, name)
        held = _stored(old) if old is not None else frozenset()
        if wanted not in _effective(held):
            raise RightsError(_refusal(name, wanted, held))

    @staticmethod
    def _current(conn, name: str) -> str | None:
        return conn.scalar(select(rights_table.c.rights).where(rights_table.c.user_name == name))

    @staticmethod
    def _admins(conn) -> list[str]:
        # FOR UPDATE (ignored by SQLite, which locks the whole file on write anyway) so two
        # administrators demoting each other at once cannot leave nobody holding D.
        rows = conn.execute(
            select(rights_table.c.user_name, rights_table.c.rights).with_for_update()
        ).all()
        return [r.user_name for r in rows if Right.D in _stored(r.rights)]

    def _guard_last_admin(self, conn, name: str, new: frozenset[Right]) -> None:
        if Right.D in new:
            return
        admins = self._admins(conn)
        if admins == [name]:
            raise RightsError(
                f"user {name!r} is the only administrator (holds D); removing D would leave "
                "nobody able to administer rights: grant D to someone else first"
            )

    def _set(self, conn, actor: str, name: str, rights: frozenset[Right], action: str):
        text = format_rights(rights)
        now = _now()
        old = self._current(conn, name)
        values = {"rights": text, "granted_by": actor, "granted_at": now}
        if old is None:
            conn.execute(insert(rights_table).values(user_name=name, **values))
        else:
            conn.execute(
                update(rights_table).where(rights_table.c.user_name == name).values(values)
            )
        self._audit(conn, actor, action, name, old, text)
        return RightsEntry(name, text, actor, _utc(now))

    @staticmethod
    def _audit(conn, actor: str, action: str, name: str, old: str | None, new: str | None):
        conn.execute(
            insert(audit_table).values(
                at=_now(),
                actor=actor,
                action=action,
                user_name=name,
                old_rights=old,
                new_rights=new,
            )
        )


class _Guarded:
    """``engine.begin()`` that turns unreachable databases and races into clear errors."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._cm = None

    def __enter__(self):
        self._cm = self.engine.begin()
        try:
            return self._cm.__enter__()
        except OperationalError as exc:
            raise _unavailable(self.engine, exc) from exc

    def __exit__(self, exc_type, exc, tb):
        try:
            self._cm.__exit__(exc_type, exc, tb)  # commits, or rolls back on an exception
        except (OperationalError, IntegrityError) as err:
            raise _translate(self.engine, err) from err
        if isinstance(exc, (OperationalError, IntegrityError)):
            raise _translate(self.engine, exc) from exc
        return False


def _translate(engine: Engine, exc: OperationalError | IntegrityError) -> SelectiveSyncError:
    if isinstance(exc, IntegrityError):
        # Two grants creating the same user at once: the loser's transaction was rolled back.
        return RightsError(
            "the rights changed concurrently (another change for the same user); try again"
        )
    return _unavailable(engine, exc)


def _unavailable(engine: Engine, exc: BaseException) -> DatabaseUnavailable:
    orig = getattr(exc, "orig", None) or exc
    first = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    return DatabaseUnavailable(f"cannot use the rights store {mask_url(str(engine.url))}: {first}")


def _refusal(name: str, wanted: Right, held: frozenset[Right]) -> str:
    # Suggest a grant that keeps what the user already holds, since grant sets exactly.
    suggested = format_rights(held | {wanted})
    return (
        f"user {name!r} lacks the {wanted.value} right ({RIGHT_MEANING[wanted]}); ask an "
        f"administrator: selective-sync rights grant {shlex.quote(name)} {suggested}"
    )


def _make_sqlite_parent(url: str) -> None:
    try:
        parsed = make_url(url)
    except ArgumentError:
        return  # make_engine reports a bad URL clearly
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)


# ---------------------------------------------------------------- the acting user


@dataclass(frozen=True)
class Actor:
    """The acting user of one entry point (a flow run, a CLI command), with the rights read
    once from the store: what runs below checks ``actor.require(...)`` without a database."""

    name: str
    rights: frozenset[Right]  # as stored: W is not expanded

    def holds(self, right: Right | str) -> bool:
        return _as_right(right) in _effective(self.rights)

    def require(self, right: Right | str) -> Actor:
        """Return the actor if it holds ``right`` (W counts as R); RightsError otherwise."""
        wanted = _as_right(right)
        if not self.holds(wanted):
            raise RightsError(_refusal(self.name, wanted, self.rights))
        return self


def authorise(
    user: str | Actor, right: Right | str | None = None, *, settings: Settings | None = None
) -> Actor:
    """The acting user with their rights, read once from the configured store (an ``Actor``
    passes through unread); with ``right``, refused unless the user holds it.

    Every entry point (flow, CLI, API) calls this once before it touches anything, and
    passes the ``Actor`` down.
    """
    if isinstance(user, Actor):
        actor = user
    else:
        name = normalize_user(user)
        with RightsStore.from_settings(settings) as store:
            actor = Actor(name, store.rights_of(name))
    return actor.require(right) if right is not None else actor
