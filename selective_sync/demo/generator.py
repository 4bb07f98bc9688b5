"""Build a demo district database and a state database with known, seeded discrepancies."""

from __future__ import annotations

import logging
import os
import random
import sqlite3
import time
from collections.abc import Iterable
from datetime import date
from pathlib import Path

from sqlalchemy import Date, Engine, MetaData, delete, exists, insert, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from ..db import make_engine, mask_url
from ..errors import BadInput, DatabaseUnavailable, DataDirError
from ..initdb import create_district_schema, create_state_schema, upgrade_engine
from ..schema import district_metadata, state_metadata
from ..settings import DEMO_DISTRICT_NAME, DEMO_DISTRICT_NUMBER, sqlite_url
from .manifest import DemoManifest
from .people import SCHOOLS, Person, PersonFactory
from .seeding import Seeder, make_plan, shape

log = logging.getLogger(__name__)

OTHER_DISTRICT: tuple[int, str] = (312, "CEDAR FALLS")
OTHER_DISTRICT_FILE = f"district-{OTHER_DISTRICT[0]}.db"
# Persons of the other district whose last name differs at its district (seeded drift).
OTHER_DISTRICT_MISMATCHED = 3

# Persons generated and written per round: bounds memory whatever the demo's size.
CHUNK_PERSONS = 20_000
# Rows per INSERT round trip on engines other than SQLite.
CORE_BATCH_ROWS = 5_000
# Rows per multi-row INSERT statement on MariaDB / MySQL (about 0.5 MB of SQL, well under
# the default max_allowed_packet of 16 MB).
SERVER_BATCH_ROWS = 5_000
# SQLite is loaded through the raw DBAPI connection (several times faster than Core);
# tests turn it off to run the generic Core path.
RAW_SQLITE = True
# PostgreSQL is loaded with COPY and MariaDB with multi-row INSERTs; tests turn it off to
# compare with the Core path.
FAST_SERVER = True

_DISTRICT_TABLES = ("person", "identity", "enrollment", "graduation")
_STATE_TABLES = tuple("state_" + name for name in _DISTRICT_TABLES)


def generate_demo(
    directory: Path,
    persons: int = 2000,
    seed: int = 7,
    *,
    district_url: str | None = None,
    state_url: str | None = None,
    district_number: int = DEMO_DISTRICT_NUMBER,
    district_name: str = DEMO_DISTRICT_NAME,
    other_district_db: bool = False,
) -> DemoManifest:
    """Write the demo district and state databases and ``directory/manifest.json``.

    Without URLs both databases are SQLite files in ``directory`` (built under temporary
    names and then moved into place, so a failure never leaves half a demo). With a URL,
    that database's demo rows are replaced in place. The state also holds a second district
    (``OTHER_DISTRICT``); with ``other_district_db`` its own district database is written
    too, as ``directory/district-312.db`` (the state's rows, a few persons renamed since):
    a second district to serve with ``SELECTIVE_SYNC_DISTRICTS`` (see ``demo_districts``).
    """
    _check_input(persons, seed, district_number, district_name)
    directory = Path(directory).expanduser()
    created = _prepare_directory(directory)
    started = time.perf_counter()
    temp_files: list[tuple[Path, Path]] = []  # (temporary, final)
    engines: list[Engine] = []
    try:
        district_engine = _open(district_url, directory / "district.db", temp_files, engines)
        state_engine = _open(state_url, directory / "state.db", temp_files, engines)
        other_engine = (
            _open(None, directory / OTHER_DISTRICT_FILE, temp_files, engines)
            if other_district_db
            else None
        )
        manifest = _build(
            district_engine,
            state_engine,
            persons=persons,
            seed=seed,
            district_number=district_number,
            district_name=district_name,
            bulk=(district_url is None, state_url is None),
            other_engine=other_engine,
        )
        for engine in engines:
            engine.dispose()
        manifest_temp = directory / f".manifest.json.tmp-{os.getpid()}"
        temp_files.append((manifest_temp, directory / "manifest.json"))
        manifest_temp.write_text(manifest.to_json(), encoding="utf-8")
        # Everything is written: only renames remain, so a failure leaves the old demo whole.
        for temporary, final in temp_files:
            _remove_sqlite_sidecars(final)
            os.replace(temporary, final)
    except BaseException as exc:
        for engine in engines:
            engine.dispose()
        for temporary, _final in temp_files:
            temporary.unlink(missing_ok=True)
        if created is not None:
            _remove_empty_dirs(created, directory)
        if isinstance(exc, sqlite3.IntegrityError | IntegrityError):
            raise  # the generator broke its own rules: a bug, not the environment
        if isinstance(exc, OSError | sqlite3.Error | DBAPIError):
            if district_url is None and state_url is None:
                raise DataDirError(f"cannot write the demo to {directory}: {_reason(exc)}") from exc
            raise DatabaseUnavailable(f"cannot write the demo databases: {_reason(exc)}") from exc
        raise
    log.info(
        "demo district %s %s: %d persons (seed %d) written in %.1f s",
        district_number,
        district_name,
        persons,
        seed,
        time.perf_counter() - started,
    )
    return manifest


def _check_input(persons, seed, district_number, district_name) -> None:
    if isinstance(persons, bool) or not isinstance(persons, int) or persons < 1:
        raise BadInput(f"persons must be a whole number of at least 1, got {persons!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise BadInput(f"seed must be a whole number, got {seed!r}")
    if isinstance(district_number, bool) or not isinstance(district_number, int):
        raise BadInput(f"district number must be a whole number, got {district_number!r}")
    if district_number < 1:
        raise BadInput(f"district number must be positive, got {district_number}")
    if district_number == OTHER_DISTRICT[0]:
        raise BadInput(
            f"district number {district_number} is taken by the demo's other district "
            f"{OTHER_DISTRICT[1]}: choose another"
        )
    if not isinstance(district_name, str) or not district_name.strip():
        raise BadInput("district name must not be empty")


def _prepare_directory(directory: Path) -> Path | None:
    """Create ``directory`` if needed and prove it writable; return the topmost dir created."""
    if directory.exists() and not directory.is_dir():
        raise DataDirError(f"demo directory {directory} exists and is not a directory")
    created = None
    if not directory.exists():
        created = directory
        while not created.parent.exists():
            created = created.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        if created is not None:
            _remove_empty_dirs(created, directory)
        raise DataDirError(f"demo directory {directory} is not writable: {_reason(exc)}") from exc
    return created


def _remove_empty_dirs(top: Path, leaf: Path) -> None:
    """Undo the directories this call created (only while they are empty)."""
    path = leaf
    while True:
        try:
            path.rmdir()
        except OSError:
            return
        if path == top:
            return
        path = path.parent


def _open(url, final: Path, temp_files: list, engines: list) -> Engine:
    """An engine on ``url``, or on a new temporary SQLite file that will become ``final``."""
    if url is None:
        temporary = final.with_name(f".{final.name}.tmp-{os.getpid()}")
        temporary.unlink(missing_ok=True)
        temp_files.append((temporary, final))
        engine = make_engine(sqlite_url(temporary), must_exist=False)
    else:
        engine = make_engine(url, must_exist=False)
        try:
            with engine.connect():
                pass
        except SQLAlchemyError as exc:
            engine.dispose()
            raise DatabaseUnavailable(
                f"cannot reach the demo database {mask_url(url)}: {_reason(exc)}"
            ) from exc
    engines.append(engine)
    return engine


def _remove_sqlite_sidecars(path: Path) -> None:
    # A journal or WAL left by the database being replaced must not be applied to the new one.
    if path.suffix != ".db":
        return
    for suffix in ("-journal", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        exc = exc.orig
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _build(
    district_engine: Engine,
    state_engine: Engine,
    *,
    persons: int,
    seed: int,
    district_number: int,
    district_name: str,
    bulk: tuple[bool, bool],
    other_engine: Engine | None = None,
) -> DemoManifest:
    other_number, other_name = OTHER_DISTRICT
    registered = {district_number: district_name, other_number: other_name}
    # Server databases get the versioned schema (the Alembic migrations, as `init-db`
    # makes it); SQLite files, throwaway or not, the same tables with no version table.
    if district_engine.dialect.name == "sqlite":
        create_district_schema(district_engine)
    else:
        upgrade_engine(district_engine, "district")
    if state_engine.dialect.name == "sqlite":
        create_state_schema(state_engine, registered)
    else:
        upgrade_engine(state_engine, "state", districts=registered)
    _clear(district_engine, state_engine, (district_number, other_number))

    manifest = DemoManifest(district_number, district_name, persons, seed)
    other_persons = max(50, persons // 10)
    plan = make_plan(random.Random(f"selective-sync demo {seed} plan"), persons, other_persons)
    seeder = Seeder(random.Random(f"selective-sync demo {seed} seeding"), manifest)
    # Two new SQLite files: the state's identical rows are copied from the district file
    # by SQLite itself (INSERT ... SELECT), and Python writes only the seeded persons.
    copy = bulk[0] and bulk[1] and RAW_SQLITE
    district = _Loader(district_engine, district_metadata, bulk=bulk[0])
    state = _Loader(state_engine, state_metadata, bulk=bulk[1])
    other_district: _Loader | None = None
    try:
        district.insert({"school": [(school_id, name) for school_id, name, _ in SCHOOLS]})
        factory = PersonFactory(
            random.Random(f"selective-sync demo {seed} district {district_number}"),
            seed,
            district_number,
        )
        for start in range(0, persons, CHUNK_PERSONS):
            stop = min(persons, start + CHUNK_PERSONS)
            d_rows, s_rows = _chunk(
                factory, seeder, plan, district_number, start, stop, all_state=not copy
            )
            district.insert(d_rows)
            state.insert(s_rows)
            log.debug("demo: persons %d-%d of %d written", start, stop, persons)
        if copy:
            seeded = sorted(factory.person_id(index) for index in plan)
            state.copy_from_district(district_engine, district_number, seeded)
        # The other district is at the state, with the same personID numbers (and, with
        # other_district_db, in its own district database).
        other = PersonFactory(
            random.Random(f"selective-sync demo {seed} district {other_number}"),
            seed,
            other_number,
        )
        if other_engine is not None:
            create_district_schema(other_engine)
            other_district = _Loader(other_engine, district_metadata, bulk=True)
            other_district.insert({"school": [(school_id, name) for school_id, name, _ in SCHOOLS]})
        for start in range(0, other_persons, CHUNK_PERSONS):
            stop = min(other_persons, start + CHUNK_PERSONS)
            d_rows, s_rows = _chunk(other, seeder, {}, other_number, start, stop)
            state.insert(s_rows)
            if other_district is not None:
                other_district.insert(d_rows)
        loaders = [district, state] + ([other_district] if other_district else [])
        for loader in loaders:
            loader.check()
            loader.analyze()
    finally:
        district.close()
        state.close()
        if other_district is not None:
            other_district.close()
    if other_engine is not None:
        manifest.other_district = _rename_some(other_engine, other, other_number, other_name)
    if state_engine.dialect.name == "sqlite":
        _store_dates_as_datetime_text(state_engine, district_number, seeder.datetime_noise)
    manifest.sort()
    return manifest


def _rename_some(engine: Engine, factory: PersonFactory, number: int, name: str) -> dict:
    """Seed drift in the other district's database: the first persons' names changed there
    since the state got them (so a sync of them would write). Returns the manifest entry."""
    identity = district_metadata.tables["identity"]
    keys = [factory.person_id(index) for index in range(OTHER_DISTRICT_MISMATCHED)]
    with engine.begin() as conn:
        conn.execute(
            identity.update()
            .where(identity.c.person_id.in_(keys))
            .values(last_name=identity.c.last_name + "-RENAMED")
        )
    return {
        "number": number,
        "name": name,
        "file": OTHER_DISTRICT_FILE,
        "PersonIdentity": {"mismatched": keys},
    }


def demo_districts(directory: Path) -> list[dict]:
    """``SELECTIVE_SYNC_DISTRICTS`` for the demo's other district (written by
    ``generate_demo(..., other_district_db=True)``), to serve it beside the demo district."""
    number, name = OTHER_DISTRICT
    path = Path(directory).expanduser() / OTHER_DISTRICT_FILE
    if not path.exists():
        raise BadInput(
            f"no database of district {number} at {path}: run selective-sync demo --second-district"
        )
    return [{"number": number, "name": name, "url": sqlite_url(path)}]


def _store_dates_as_datetime_text(engine: Engine, number: int, noise: list[tuple]) -> None:
    """Rewrite a few state dates as 'YYYY-MM-DD 00:00:00', as some SQLite writers store them."""
    with engine.begin() as conn:
        for table, id_column, column, row_id in noise:
            conn.execute(
                text(
                    f"UPDATE {table} SET {column} = {column} || ' 00:00:00' "
                    f"WHERE district_number = :number AND {id_column} = :row_id"
                ),
                {"number": number, "row_id": row_id},
            )


def _clear(district_engine: Engine, state_engine: Engine, numbers: tuple[int, ...]) -> None:
    """Remove an earlier demo's rows (a URL database may hold one); new files are empty."""
    with district_engine.begin() as conn:
        removed = 0
        for name in (*reversed(_DISTRICT_TABLES), "school"):
            removed += conn.execute(delete(district_metadata.tables[name])).rowcount or 0
    if removed:
        log.warning("demo: replaced %d rows of an earlier district database", removed)
    with state_engine.begin() as conn:
        removed = 0
        for name in reversed(_STATE_TABLES):
            table = state_metadata.tables[name]
            stmt = delete(table).where(table.c.district_number.in_(numbers))
            removed += conn.execute(stmt).rowcount or 0
    if removed:
        log.warning("demo: replaced %d state rows of districts %s", removed, numbers)


def _chunk(
    factory: PersonFactory,
    seeder: Seeder,
    plan: dict[int, tuple[str, int]],
    number: int,
    start: int,
    stop: int,
    *,
    all_state: bool = True,
) -> tuple[dict[str, list[tuple]], dict[str, list[tuple]]]:
    """District rows and state rows of persons ``start`` to ``stop``.

    Without ``all_state`` the state rows are only those of seeded persons (the others are
    copied from the district database afterwards).
    """
    d_person: list[tuple] = []
    d_identity: list[tuple] = []
    d_enrollment: list[tuple] = []
    d_graduation: list[tuple] = []
    s_person: list[tuple] = []
    s_identity: list[tuple] = []
    s_enrollment: list[tuple] = []
    s_graduation: list[tuple] = []
    key = (number,)
    make = factory.make
    for index in range(start, stop):
        action = plan.get(index)
        if action is None:
            # The common case, kept tight: identical rows on both sides.
            p = make(index)
            d_person.append(p.person)
            d_identity += p.identities
            d_enrollment += p.enrollments
            d_graduation += p.graduations
            if all_state:
                s_person.append(key + p.person)
                s_identity += [key + row for row in p.identities]
                s_enrollment += [key + row for row in p.enrollments]
                s_graduation += [key + row for row in p.graduations]
            continue
        name, variant = action
        at_district, at_state = seeder.apply(name, variant, make(index, **shape(name, variant)))
        for p, people, identities, enrollments, graduations, prefix in (
            (at_district, d_person, d_identity, d_enrollment, d_graduation, ()),
            (at_state, s_person, s_identity, s_enrollment, s_graduation, key),
        ):
            if p is not None:
                _add(p, prefix, people, identities, enrollments, graduations)
    return (
        {
            "person": d_person,
            "identity": d_identity,
            "enrollment": d_enrollment,
            "graduation": d_graduation,
        },
        {
            "state_person": s_person,
            "state_identity": s_identity,
            "state_enrollment": s_enrollment,
            "state_graduation": s_graduation,
        },
    )


def _add(p: Person, prefix: tuple, people, identities, enrollments, graduations) -> None:
    people.append(prefix + p.person)
    identities += [prefix + row for row in p.identities]
    enrollments += [prefix + row for row in p.enrollments]
    graduations += [prefix + row for row in p.graduations]


class _Loader:
    """Inserts rows into one database, by the fastest way its driver offers.

    SQLite: raw ``executemany``. PostgreSQL (psycopg): ``COPY ... FROM STDIN``. MariaDB /
    MySQL (PyMySQL, mysqlclient): multi-row ``INSERT ... VALUES (...), (...)`` statements
    written here (the driver's own quoting of every value costs more than the server).
    Anything else: Core INSERT batches.
    Every way writes the same rows (dates go in as ISO text, which each server parses).
    """

    def __init__(self, engine: Engine, metadata: MetaData, *, bulk: bool) -> None:
        self.engine = engine
        self.metadata = metadata
        self.raw = None
        self.way = "core"
        self.loaded: set[str] = set()
        self.unchecked = False  # rows went in without per-row foreign-key checks
        self.replica: bool | None = None  # PostgreSQL: may we skip them? (None: not tried)
        dialect = engine.dialect
        if dialect.name == "sqlite" and RAW_SQLITE:
            self.way = "sqlite"
            self.raw = engine.raw_connection()
            cursor = self.raw.cursor()
            if bulk:
                # A new temporary file: a crash discards it anyway, so skip the journal.
                cursor.execute("PRAGMA journal_mode=OFF")
                cursor.execute("PRAGMA synchronous=OFF")
            cursor.execute("PRAGMA cache_size=-16384")
            cursor.close()
            self.sql = self._insert_sql("?")
        elif dialect.name == "postgresql" and dialect.driver == "psycopg" and FAST_SERVER:
            self.way = "copy"
            self.raw = engine.raw_connection()
            self.sql = {
                name: "COPY {} ({}) FROM STDIN".format(
                    name, ", ".join(c.name for c in table.columns)
                )
                for name, table in metadata.tables.items()
            }
        elif (
            dialect.name in ("mysql", "mariadb")
            and dialect.driver in ("pymysql", "mysqldb")
            and FAST_SERVER
        ):
            self.way = "many"
            self.raw = engine.raw_connection()
            self.sql = {
                name: "INSERT INTO {} ({}) VALUES ".format(
                    name, ", ".join(c.name for c in table.columns)
                )
                for name, table in metadata.tables.items()
            }

    def _insert_sql(self, marker: str) -> dict[str, str]:
        return {
            name: "INSERT INTO {} ({}) VALUES ({})".format(
                name,
                ", ".join(c.name for c in table.columns),
                ", ".join(marker for _ in table.columns),
            )
            for name, table in self.metadata.tables.items()
        }

    def insert(self, rows_by_table: dict[str, list[tuple]]) -> None:
        """Insert each table's rows (in the dict's order) in one transaction."""
        self.loaded.update(name for name, rows in rows_by_table.items() if rows)
        if self.way == "core":
            with self.engine.begin() as conn:
                for name, rows in rows_by_table.items():
                    table = self.metadata.tables[name]
                    for batch in _batches(rows, CORE_BATCH_ROWS):
                        conn.execute(insert(table), _as_dicts(table, batch))
            return
        cursor = self.raw.cursor()
        try:
            self._skip_fk_checks(cursor)
            for name, rows in rows_by_table.items():
                if not rows:
                    continue
                if self.way == "copy":
                    with cursor.copy(self.sql[name]) as copy:
                        write = copy.write_row
                        for row in rows:
                            write(row)
                elif self.way == "many":
                    head = self.sql[name]
                    for batch in _batches(rows, SERVER_BATCH_ROWS):
                        cursor.execute(head + ",".join(map(_values_sql, batch)))
                else:
                    cursor.executemany(self.sql[name], rows)
            self.raw.commit()
        except BaseException:
            self.raw.rollback()
            raise
        finally:
            cursor.close()

    def _skip_fk_checks(self, cursor) -> None:
        """Load without per-row foreign-key checks where the server lets us; ``check``
        then proves every key afterwards with one set-based query per foreign key.

        Per-row checks cost PostgreSQL two thirds of the load time. Switching them off
        there needs a superuser (``session_replication_role``); without one the rows are
        simply checked as they go in.
        """
        if self.way == "many":
            cursor.execute("SET foreign_key_checks = 0")  # this session only
            self.unchecked = True
        elif self.way == "copy" and self.replica is not False:
            try:
                cursor.execute("SAVEPOINT replica_role")
                cursor.execute("SET LOCAL session_replication_role = replica")  # this transaction
                cursor.execute("RELEASE SAVEPOINT replica_role")
                self.replica = self.unchecked = True
            except self.engine.dialect.loaded_dbapi.Error as exc:  # e.g. not a superuser
                cursor.execute("ROLLBACK TO SAVEPOINT replica_role")
                self.replica = False
                log.debug("demo: loading with per-row foreign-key checks (%s)", _reason(exc))

    def check(self) -> None:
        """Prove every foreign key of the tables loaded unchecked; a broken one is a bug."""
        if not self.unchecked:
            return
        with self.engine.connect() as conn:
            for name in sorted(self.loaded):
                table = self.metadata.tables[name]
                for fk in table.foreign_key_constraints:
                    parent = fk.referred_table
                    pairs = [(e.parent, e.column) for e in fk.elements]
                    orphan = (
                        select(*(child for child, _ in pairs))
                        .where(*(child.is_not(None) for child, _ in pairs))
                        .where(
                            ~exists()
                            .where(*(col == child for child, col in pairs))
                            .select_from(parent)
                        )
                        .limit(1)
                    )
                    found = conn.execute(orphan).first()
                    if found is not None:
                        raise IntegrityError(
                            f"{name}{tuple(found)} has no parent in {parent.name}", None, None
                        )

    def analyze(self) -> None:
        """Give a server fresh planner statistics for the tables just loaded.

        Freshly bulk-loaded PostgreSQL tables have none until autovacuum gets to them, and
        the first verification would otherwise be planned blind.
        """
        if not self.loaded or self.engine.dialect.name not in ("postgresql", "mysql", "mariadb"):
            return
        names = ", ".join(sorted(self.loaded))
        with self.engine.begin() as conn:
            if self.engine.dialect.name == "postgresql":
                conn.exec_driver_sql(f"ANALYZE {names}")
            else:
                conn.exec_driver_sql(f"ANALYZE TABLE {names}").fetchall()

    def copy_from_district(self, district: Engine, number: int, skip: list[int]) -> None:
        """Copy the district file's rows of every person not in ``skip`` into the state."""
        path = district.url.database
        cursor = self.raw.cursor()
        try:
            cursor.execute("ATTACH DATABASE ? AS district", (path,))
            cursor.execute("CREATE TEMP TABLE seeded (person_id INTEGER PRIMARY KEY)")
            cursor.executemany("INSERT INTO seeded VALUES (?)", ((pid,) for pid in skip))
            for name in _DISTRICT_TABLES:
                columns = ", ".join(c.name for c in district_metadata.tables[name].columns)
                key = district_metadata.tables[name].primary_key.columns.keys()[0]
                cursor.execute(
                    f"INSERT INTO state_{name} (district_number, {columns}) "
                    f"SELECT ?, {columns} FROM district.{name} "
                    "WHERE person_id NOT IN (SELECT person_id FROM temp.seeded) "
                    f"ORDER BY {key}",
                    (number,),
                )
            self.raw.commit()
            cursor.execute("DROP TABLE temp.seeded")
            cursor.execute("DETACH DATABASE district")
        finally:
            cursor.close()

    def close(self) -> None:
        if self.raw is not None:
            self.raw.close()
            self.raw = None


def _batches(rows: list[tuple], size: int) -> Iterable[list[tuple]]:
    for offset in range(0, len(rows), size):
        yield rows[offset : offset + size]


def _values_sql(row: tuple) -> str:
    """One row as a SQL ``(v1, v2, ...)`` literal; values are ints, None or text."""
    return "(" + ",".join(map(_literal, row)) + ")"


def _literal(value) -> str:
    if value is None:
        return "NULL"
    if type(value) is int:
        return str(value)
    if type(value) is not str:
        raise TypeError(f"demo value of unexpected type: {value!r}")
    if "\\" in value or "\0" in value:
        # Quoting of backslashes depends on the server's sql_mode; the demo never makes
        # such text, so refuse rather than guess.
        raise ValueError(f"demo text with a backslash or NUL: {value!r}")
    # Doubled quotes mean the same with or without NO_BACKSLASH_ESCAPES.
    return "'" + value.replace("'", "''") + "'"


def _as_dicts(table, rows: list[tuple]) -> list[dict]:
    names = [c.name for c in table.columns]
    dates = [i for i, c in enumerate(table.columns) if isinstance(c.type, Date)]
    out = []
    for row in rows:
        if dates:
            row = list(row)
            for i in dates:
                if row[i] is not None:
                    row[i] = date.fromisoformat(row[i])
        out.append(dict(zip(names, row, strict=True)))
    return out
