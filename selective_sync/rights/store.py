"""The rights store (grants, their audit, the refusal audit) and ``authorise``, the one
check every entry point makes."""

from __future__ import annotations

import logging
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    IntegrityError,
    OperationalError,
    SQLAlchemyError,
)

from ..db import make_engine, mask_url
from ..errors import BadInput, DatabaseUnavailable, RightsError, SelectiveSyncError
from ..settings import Settings, configured_districts
from .model import (
    ALL_DISTRICTS,
    MAX_ASKED_LEN,
    Actor,
    Refusal,
    Right,
    as_right,
    check_district,
    district_text,
    format_rights,
    normalize_user,
    parse_rights,
    stored_rights,
)
from .schema import (
    audit_table,
    grants_table,
    migrate,
    needs_migration,
    refusals_table,
    rights_metadata,
)

log = logging.getLogger(__name__)

DistrictsSource = Callable[[], Mapping[int, str]]


@dataclass(frozen=True)
class GrantEntry:
    """One grant as stored: a user's letters on one district (0: all districts)."""

    user: str
    district: int
    rights: str
    granted_by: str
    granted_at: datetime

    def as_dict(self) -> dict[str, str | int | None]:
        return {
            "user": self.user,
            "district": self.district or None,
            "all_districts": self.district == ALL_DISTRICTS,
            "rights": self.rights,
            "granted_by": self.granted_by,
            "granted_at": self.granted_at.isoformat(),
        }


@dataclass(frozen=True)
class AuditEntry:
    """One bootstrap, grant, revoke or migration, as recorded in the audit table."""

    at: datetime
    actor: str
    action: str
    user: str
    old_rights: str | None
    new_rights: str | None
    district: int

    def as_dict(self) -> dict[str, str | int | bool | None]:
        return {
            "at": self.at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "user": self.user,
            "district": self.district or None,
            "all_districts": self.district == ALL_DISTRICTS,
            "old_rights": self.old_rights,
            "new_rights": self.new_rights,
        }


@dataclass(frozen=True)
class RefusalEntry:
    """One refused request, as the refusal audit holds it."""

    at: datetime
    user: str
    entry_point: str
    right: str
    district: int
    asked: str
    message: str

    def as_dict(self) -> dict[str, str | int | bool | None]:
        return {
            "at": self.at.isoformat(),
            "user": self.user,
            "entry_point": self.entry_point,
            "right": self.right,
            "district": self.district or None,
            "all_districts": self.district == ALL_DISTRICTS,
            "asked": self.asked,
            "message": self.message,
        }


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def known_districts(settings: Settings) -> dict[int, str]:
    """Every district a grant may name: those registered at the state (``state_district``)
    and those configured here, by number with their names."""
    from ..schema import state_metadata

    known = {d.number: d.name for d in configured_districts(settings)}
    table = state_metadata.tables["state_district"]
    try:
        engine = make_engine(settings.resolved_state_url)
        try:
            with engine.connect() as conn:
                for number, name in conn.execute(select(table.c.district_number, table.c.name)):
                    known.setdefault(int(number), name)
        finally:
            engine.dispose()
    except (SelectiveSyncError, SQLAlchemyError) as exc:
        # Without the state database, the configured districts are the ones known.
        log.info("the state's registered districts were not read: %s", exc)
    return known


# ---------------------------------------------------------------- store


class RightsStore:
    """Grants, their audit and the refusal audit, kept in the database at ``url``.

    The tables are created on first use (and global grants of an older store moved to all
    districts: see ``selective_sync.rights.schema``). A SQLite file is created only when
    ``create_missing`` is true (a dedicated rights database); the default store lives in the
    state database, which must already exist. ``districts`` says which districts a grant may
    name (default: those the settings configure or the state registers).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        create_missing: bool = False,
        engine: Engine | None = None,
        districts: DistrictsSource | None = None,
        settings: Settings | None = None,
    ) -> None:
        self._settings = settings
        if engine is None:
            url = url or (settings or Settings()).resolved_rights_url
            if create_missing:
                _make_sqlite_parent(url)
            engine = make_engine(url, must_exist=not create_missing)
            self._owns_engine = True
        else:
            self._owns_engine = False
        self.engine = engine
        self._districts = districts
        self._ready = False

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> RightsStore:
        """The store the settings name; a dedicated ``SELECTIVE_SYNC_RIGHTS_URL`` is created."""
        settings = settings or Settings()
        # A store of its own (not the state database) is created on first use.
        dedicated = settings.resolved_rights_url != settings.resolved_state_url
        return cls(settings.resolved_rights_url, create_missing=dedicated, settings=settings)

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=False)

    def close(self) -> None:
        if self._owns_engine:
            self.engine.dispose()

    def __enter__(self) -> RightsStore:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    # ---- reading

    def grants_of(self, user: str) -> dict[int, frozenset[Right]]:
        """Every grant of ``user``: district (0 for all districts) -> letters as granted."""
        name = normalize_user(user)
        with self._begin() as conn:
            return self._grants(conn, name)

    def rights_of(self, user: str, district: int) -> frozenset[Right]:
        """The letters that apply to ``user`` on ``district`` (its grant and the
        all-districts grant; on ``ALL_DISTRICTS`` the latter alone). W is not expanded."""
        return self.actor(user).rights_on(check_district(district))

    def has(self, user: str, right: Right | str, district: int) -> bool:
        """Whether ``user`` may act with ``right`` on ``district`` (W counts as R)."""
        return self.actor(user).holds(right, district)

    def actor(self, user: str, entry_point: str = "") -> Actor:
        """``user`` with their grants, recording refusals in this store."""
        name = normalize_user(user)
        return Actor.of(name, self.grants_of(name), entry_point=entry_point, rights_url=self.url)

    def require(
        self, user: str, right: Right | str, district: int, *, entry_point: str = "", asked=""
    ) -> Actor:
        """The actor if ``user`` holds ``right`` on ``district``; RightsError (recorded)
        otherwise."""
        return self.actor(user, entry_point).require(right, district, asked=asked)

    def list_rights(
        self, actor: str, *, district: int | None = None, entry_point: str = "rights list"
    ) -> list[GrantEntry]:
        """The grants ``actor`` may read (needs R: on all districts for every grant, else
        the grants on their districts), by user then district; ``district`` narrows."""
        actor_name = normalize_user(actor, "acting user name")
        asked = "list rights" + (f" of {district_text(district)}" if district is not None else "")
        with self._refusals_recorded(), self._begin() as conn:
            visible = self._readable(conn, actor_name, Right.R, district, entry_point, asked)
            rows = conn.execute(select(grants_table)).all()
        entries = [
            GrantEntry(
                r.user_name,
                r.district,
                format_rights(stored_rights(r.rights)),
                r.granted_by,
                _utc(r.granted_at),
            )
            for r in rows
            if visible(r.district)
        ]
        return sorted(entries, key=lambda e: (e.user, e.district))

    def audit_log(
        self,
        actor: str,
        limit: int = 100,
        *,
        user: str | None = None,
        district: int | None = None,
        entry_point: str = "rights audit",
    ) -> list[AuditEntry]:
        """The latest ``limit`` bootstraps, grants, revokes and migrations ``actor`` may read,
        newest first (needs R, scoped like ``list_rights``); ``user``, ``district`` narrow."""
        if limit <= 0:
            raise BadInput("limit must be positive")
        actor_name = normalize_user(actor, "acting user name")
        query = select(audit_table).order_by(audit_table.c.id.desc())
        if user is not None:
            query = query.where(audit_table.c.user_name == normalize_user(user))
        with self._refusals_recorded(), self._begin() as conn:
            visible = self._readable(
                conn, actor_name, Right.R, district, entry_point, "read the rights audit"
            )
            entries = []
            for r in conn.execute(query).yield_per(500):
                if visible(r.district):
                    entries.append(
                        AuditEntry(
                            _utc(r.at),
                            r.actor,
                            r.action,
                            r.user_name,
                            r.old_rights,
                            r.new_rights,
                            r.district,
                        )
                    )
                    if len(entries) >= limit:
                        break
        return entries

    def refusals(
        self,
        actor: str,
        *,
        user: str | None = None,
        district: int | None = None,
        limit: int = 100,
        entry_point: str = "rights refusals",
    ) -> list[RefusalEntry]:
        """The latest ``limit`` refusals ``actor`` may read, newest first: an administrator's
        (D on all districts: every refusal; D on a district: that district's)."""
        if limit <= 0:
            raise BadInput("limit must be positive")
        actor_name = normalize_user(actor, "acting user name")
        query = select(refusals_table).order_by(refusals_table.c.id.desc())
        if user is not None:
            query = query.where(refusals_table.c.user_name == normalize_user(user))
        with self._refusals_recorded(), self._begin() as conn:
            visible = self._readable(
                conn, actor_name, Right.D, district, entry_point, "read the refusals"
            )
            entries = []
            for r in conn.execute(query).yield_per(500):
                if visible(r.district):
                    entries.append(
                        RefusalEntry(
                            _utc(r.at),
                            r.user_name,
                            r.entry_point,
                            r.right_letter,
                            r.district,
                            r.asked,
                            r.message,
                        )
                    )
                    if len(entries) >= limit:
                        break
        return entries

    def administrators(self) -> list[str]:
        """The users holding D on all districts (who may grant anything)."""
        with self._begin() as conn:
            return sorted(self._admins(conn))

    # ---- changing

    def bootstrap_admin(self, user: str) -> GrantEntry:
        """Make ``user`` the first administrator (RWD on all districts); refused once
        anyone holds D on all districts."""
        name = normalize_user(user)
        with self._begin() as conn:
            if self._admins(conn):
                raise RightsError(
                    "an administrator (a user holding D on all districts) already exists, so "
                    "bootstrap is refused; ask an administrator: selective-sync rights grant "
                    f"{shlex.quote(name)} RWD --all-districts"
                )
            return self._set(conn, name, name, frozenset(Right), ALL_DISTRICTS, "bootstrap")

    def grant(
        self,
        actor: str,
        user: str,
        rights: str | Iterable[str],
        *,
        district: int,
        entry_point: str = "rights grant",
    ) -> GrantEntry:
        """Set ``user``'s letters on ``district`` (``ALL_DISTRICTS``: on all) to exactly
        ``rights``. ``actor`` needs D there: D on a district administers that district's
        grants only; grants on all districts need D on all districts."""
        actor_name = normalize_user(actor, "acting user name")
        name = normalize_user(user)
        wanted = parse_rights(rights)
        number = self._known(district)
        asked = f"grant {format_rights(wanted)} to {name} on {district_text(number)}"
        with self._refusals_recorded(), self._begin() as conn:
            # Checked in the same transaction as the write: a revoked actor cannot slip by.
            self._actor(conn, actor_name, entry_point).require(Right.D, number, asked=asked)
            if number == ALL_DISTRICTS and Right.D not in wanted:
                self._guard_last_admin(conn, name)
            return self._set(conn, actor_name, name, wanted, number, "grant")

    def revoke(
        self, actor: str, user: str, *, district: int, entry_point: str = "rights revoke"
    ) -> frozenset[Right]:
        """Remove ``user``'s grant on ``district`` (``ALL_DISTRICTS``: their grant on all);
        ``actor`` needs D there, as for ``grant``. Returns the letters removed."""
        actor_name = normalize_user(actor, "acting user name")
        name = normalize_user(user)
        number = check_district(district)
        asked = f"revoke the grant of {name} on {district_text(number)}"
        with self._refusals_recorded(), self._begin() as conn:
            self._actor(conn, actor_name, entry_point).require(Right.D, number, asked=asked)
            old = self._current(conn, name, number)
            if old is None:
                raise BadInput(
                    f"user {name!r} holds no grant on {district_text(number)}; nothing to "
                    "revoke (selective-sync rights list shows every grant)"
                )
            if number == ALL_DISTRICTS:
                self._guard_last_admin(conn, name)
            conn.execute(
                delete(grants_table).where(
                    grants_table.c.user_name == name, grants_table.c.district == number
                )
            )
            self._audit(conn, actor_name, "revoke", name, old, None, number)
        return stored_rights(old)

    def record_refusal(self, refusal: Refusal) -> None:
        """Add ``refusal`` to the refusal audit, in a transaction of its own."""
        with self._begin() as conn:
            conn.execute(
                insert(refusals_table).values(
                    at=_now(),
                    user_name=refusal.user,
                    entry_point=refusal.entry_point[:64],
                    right_letter=refusal.right.value,
                    district=refusal.district,
                    asked=refusal.asked[:MAX_ASKED_LEN],
                    message=refusal.message[:1000],
                )
            )

    # ---- internals

    def _begin(self):
        self._ensure_tables()
        return _Guarded(self.engine)

    def _ensure_tables(self) -> None:
        if self._ready:
            return
        for attempt in (1, 2):
            try:
                rights_metadata.create_all(self.engine, checkfirst=True)
                if needs_migration(self.engine):
                    with self.engine.begin() as conn:
                        migrate(conn, _now())
                break
            except DBAPIError as exc:
                # Another process may have created (or migrated) the tables between our
                # check and our change; a second pass sees them. A real problem fails again.
                if attempt == 2:
                    if isinstance(exc, OperationalError):
                        raise _unavailable(self.engine, exc) from exc
                    raise
        self._ready = True

    def _known(self, district: int) -> int:
        number = check_district(district)
        if number == ALL_DISTRICTS:
            return number
        source = self._districts or (lambda: known_districts(self._settings or Settings()))
        known = source()
        if number not in known:
            listed = ", ".join(f"{n} {known[n]}" for n in sorted(known)) or "none"
            raise BadInput(
                f"district {number} is not a known district: it is neither registered at the "
                f"state nor configured here (known: {listed})"
            )
        return number

    @staticmethod
    def _grants(conn, name: str) -> dict[int, frozenset[Right]]:
        rows = conn.execute(
            select(grants_table.c.district, grants_table.c.rights).where(
                grants_table.c.user_name == name
            )
        ).all()
        return {int(r.district): stored_rights(r.rights) for r in rows}

    def _actor(self, conn, name: str, entry_point: str) -> Actor:
        # Refusals are recorded by _refusals_recorded, after this transaction rolls back.
        return Actor.of(name, self._grants(conn, name), entry_point=entry_point)

    def _readable(
        self, conn, name: str, right: Right, district: int | None, entry_point: str, asked: str
    ) -> Callable[[int | None], bool]:
        """Which districts' rows ``name`` may read with ``right``; refused when none (or
        not ``district``, when one is asked)."""
        actor = self._actor(conn, name, entry_point)
        scope = actor.scope(right)
        if district is not None:
            number = check_district(district)
            actor.require(right, number, asked=asked)
            return lambda d: d == number
        if scope.empty:
            raise actor.refuse(right, ALL_DISTRICTS, asked=asked)
        if scope.everywhere:
            return lambda _d: True
        return lambda d: d is not None and scope.covers(d)

    def _refusals_recorded(self):
        return _RecordRefusals(self)

    @staticmethod
    def _current(conn, name: str, district: int) -> str | None:
        return conn.scalar(
            select(grants_table.c.rights).where(
                grants_table.c.user_name == name, grants_table.c.district == district
            )
        )

    @staticmethod
    def _admins(conn) -> list[str]:
        # FOR UPDATE (ignored by SQLite, which locks the whole file on write anyway) so two
        # administrators demoting each other at once cannot leave nobody holding D.
        rows = conn.execute(
            select(grants_table.c.user_name, grants_table.c.rights)
            .where(grants_table.c.district == ALL_DISTRICTS)
            .with_for_update()
        ).all()
        return [r.user_name for r in rows if Right.D in stored_rights(r.rights)]

    def _guard_last_admin(self, conn, name: str) -> None:
        """Refuse to take D on all districts from the last user holding it."""
        if self._admins(conn) == [name]:
            raise RightsError(
                f"user {name!r} is the only administrator of all districts (holds D on all "
                "districts); removing it would leave nobody able to administer every "
                "district: grant D on all districts to someone else first"
            )

    def _set(
        self, conn, actor: str, name: str, rights: frozenset[Right], district: int, action: str
    ) -> GrantEntry:
        text = format_rights(rights)
        now = _now()
        old = self._current(conn, name, district)
        values = {"rights": text, "granted_by": actor, "granted_at": now}
        if old is None:
            conn.execute(insert(grants_table).values(user_name=name, district=district, **values))
        else:
            conn.execute(
                update(grants_table)
                .where(grants_table.c.user_name == name, grants_table.c.district == district)
                .values(values)
            )
        self._audit(conn, actor, action, name, old, text, district)
        return GrantEntry(name, district, text, actor, _utc(now))

    @staticmethod
    def _audit(
        conn, actor: str, action: str, name: str, old: str | None, new: str | None, district: int
    ) -> None:
        conn.execute(
            insert(audit_table).values(
                at=_now(),
                actor=actor,
                action=action,
                user_name=name,
                old_rights=old,
                new_rights=new,
                district=district,
            )
        )


class _RecordRefusals:
    """Records the refusal a RightsError carries once its transaction has rolled back, so
    the record survives the refused request and nothing else of it is written."""

    def __init__(self, store: RightsStore) -> None:
        self.store = store

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        refusal = getattr(exc, "refusal", None)
        if isinstance(exc, RightsError) and refusal is not None:
            _record_quietly(lambda: self.store.record_refusal(refusal), refusal)
        return False


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
        # Two grants creating the same grant at once: the loser's transaction was rolled back.
        return RightsError(
            "the rights changed concurrently (another change of the same grant); try again"
        )
    return _unavailable(engine, exc)


def _unavailable(engine: Engine, exc: BaseException) -> DatabaseUnavailable:
    orig = getattr(exc, "orig", None) or exc
    first = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    return DatabaseUnavailable(f"cannot use the rights store {mask_url(str(engine.url))}: {first}")


def _make_sqlite_parent(url: str) -> None:
    try:
        parsed = make_url(url)
    except ArgumentError:
        return  # make_engine reports a bad URL clearly
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _record_quietly(record: Callable[[], None], refusal: Refusal) -> None:
    """Run ``record``; a failure is logged, never raised: the refusal itself must stand."""
    try:
        record()
    except Exception as exc:  # the store went away between reading the grants and now
        log.error(
            "the refusal of %s (%s on %s) could not be recorded: %s",
            refusal.user,
            refusal.right.value,
            district_text(refusal.district),
            exc,
        )


def record_refusal(rights_url: str, refusal: Refusal) -> None:
    """Record ``refusal`` in the store at ``rights_url`` (errors logged, not raised)."""

    def record() -> None:
        with RightsStore(rights_url) as store:
            store.record_refusal(refusal)

    _record_quietly(record, refusal)


# ---------------------------------------------------------------- the one check


def authorise(
    user: str | Actor,
    right: Right | str | None = None,
    district: int | None = None,
    *,
    entry_point: str = "",
    asked: str = "",
    settings: Settings | None = None,
) -> Actor:
    """The acting user with their grants, read once from the configured store (an
    ``Actor`` passes through unread); with ``right``, refused unless the user holds it on
    ``district`` (``ALL_DISTRICTS``: on every district, as the state's view needs).

    Every entry point (flow, CLI, report server, API) calls this once with its
    ``entry_point`` (e.g. ``"flow:selective-sync"``) before it touches anything, and passes
    the ``Actor`` down; a refusal is recorded in the refusal audit with ``asked`` (what was
    asked, e.g. ``"sync PersonIdentity 3 keys"``) and raised as RightsError.
    """
    if isinstance(user, Actor):
        actor = user.at(entry_point)
    else:
        name = normalize_user(user)
        with RightsStore.from_settings(settings) as store:
            actor = store.actor(name, entry_point)
    if right is None:
        return actor
    if district is None:
        raise TypeError("authorise: a right is checked on a district (or ALL_DISTRICTS)")
    return actor.require(as_right(right), district, asked=asked)
