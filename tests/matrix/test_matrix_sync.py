"""Sync outcomes, atomicity, idempotence and the other district, over the database matrix.

One demo per pair for the whole module: each test works on its own keys, chosen from
the demo manifest so that no test depends on another having run (the persons missing at
the state are left to the dependency test, which needs them missing).
"""

from __future__ import annotations

import re

import pytest
from helpers import rows_checksum
from sqlalchemy import event

from selective_sync.demo import OTHER_DISTRICT
from selective_sync.models import Outcome
from selective_sync.registry import get_object
from selective_sync.sync import sync_key, sync_keys, sync_with_dependencies
from selective_sync.verification.engine import verify_object

PERSON = get_object("PersonIdentity")
ENROLLMENT = get_object("Enrollment")
GRADUATION = get_object("Graduation")
NOWHERE = 10**8
UNMAPPED = re.compile(r"^\w+ code '[^']*' has no state mapping")


@pytest.fixture(autouse=True)
def other_district_untouched(pair_demo):
    """Whatever a test syncs, the other district's rows at the state stay byte-identical."""
    before = rows_checksum(pair_demo.state_url, OTHER_DISTRICT[0])
    yield
    assert rows_checksum(pair_demo.state_url, OTHER_DISTRICT[0]) == before


def failing(manifest, name: str) -> set[int]:
    return set(manifest.failing(name, "parent_missing")) | set(
        manifest.failing(name, "unmapped_code")
    )


def parents_of(demo, spec, keys) -> dict[int, int]:
    """{child key: its person_id} at the district."""
    marks = ", ".join(str(int(k)) for k in keys)
    with demo.district.connect() as conn:
        rows = conn.exec_driver_sql(
            f"SELECT {spec.key_column}, person_id FROM {spec.root} "
            f"WHERE {spec.key_column} IN ({marks})"
        )
        return dict(rows.all())


def clean_keys(demo, spec, count: int) -> list[int]:
    with demo.district.connect() as conn:
        keys = conn.exec_driver_sql(
            f"SELECT {spec.key_column} FROM {spec.root} ORDER BY {spec.key_column}"
        ).scalars()
        return [k for k in keys if demo.manifest.issue_of(spec.name, k) is None][:count]


def errors_of(demo, spec, keys) -> dict[int, str]:
    result = verify_object(demo.district, demo.state, spec, demo.number, keys)
    return {issue.key: issue.issue for issue in result.issues}


def district_checksum(demo) -> str:
    return rows_checksum(demo.state_url, demo.number)


def test_person_outcomes_then_idempotent(pair_demo):
    demo, manifest = pair_demo, pair_demo.manifest
    bad = failing(manifest, "PersonIdentity")
    mismatched = [k for k in manifest.keys("PersonIdentity", "mismatched") if k not in bad]
    synced = mismatched[1:]  # the first is kept for the atomicity test
    unchanged = clean_keys(demo, PERSON, 3)
    gone = manifest.keys("PersonIdentity", "missing_at_district")[:2]
    unmapped = manifest.failing("PersonIdentity", "unmapped_code")
    assert synced and unchanged and gone and unmapped
    keys = synced + unchanged + gone + [NOWHERE] + unmapped

    outcomes = {o.key: o for o in sync_keys(demo.district, demo.state, PERSON, demo.number, keys)}
    assert list(outcomes) == keys  # one outcome per key, in order
    for key in synced:
        assert outcomes[key].outcome is Outcome.SYNCED, outcomes[key]
        assert outcomes[key].changes
    for key in unchanged:
        assert outcomes[key].outcome is Outcome.UNCHANGED and not outcomes[key].changes
    for key in [*gone, NOWHERE]:
        assert outcomes[key].outcome is Outcome.NOT_FOUND
        assert outcomes[key].reason == f"personID {key} not found at the district"
    for key in unmapped:
        assert outcomes[key].outcome is Outcome.FAILED
        assert UNMAPPED.match(outcomes[key].reason), outcomes[key].reason

    # Verified again: only the keys that could not be synced still differ, as before.
    after = errors_of(demo, PERSON, keys)
    assert after == {k: manifest.issue_of("PersonIdentity", k) for k in gone + unmapped}

    # A second sync of the same keys changes no row and reports nothing as synced.
    before = rows_checksum(demo.state_url)
    again = sync_keys(demo.district, demo.state, PERSON, demo.number, keys)
    assert rows_checksum(demo.state_url) == before
    assert {o.outcome for o in again if o.key in synced + unchanged} == {Outcome.UNCHANGED}
    assert [o.outcome for o in again if o.key in unmapped] == [Outcome.FAILED] * len(unmapped)


def test_single_key_paths_match(pair_demo):
    """sync_key (one transaction, no snapshot) gives the batch path's outcomes."""
    demo, manifest = pair_demo, pair_demo.manifest
    bad = failing(manifest, "Graduation")
    mismatched = [k for k in manifest.keys("Graduation", "mismatched") if k not in bad]
    unmapped = manifest.failing("Graduation", "unmapped_code")
    gone = manifest.keys("Graduation", "missing_at_district")[0]
    assert mismatched and unmapped
    before = district_checksum(demo)
    for key in unmapped:
        out = sync_key(demo.district, demo.state, GRADUATION, demo.number, key)
        assert out.outcome is Outcome.FAILED and UNMAPPED.match(out.reason), out
    out = sync_key(demo.district, demo.state, GRADUATION, demo.number, gone)
    assert out.outcome is Outcome.NOT_FOUND
    assert district_checksum(demo) == before  # failures and not-found wrote nothing

    out = sync_key(demo.district, demo.state, GRADUATION, demo.number, mismatched[0])
    assert out.outcome is Outcome.SYNCED, out
    (change,) = out.changes
    assert change.action == "update" and change.columns
    assert errors_of(demo, GRADUATION, [mismatched[0]]) == {}
    again = sync_key(demo.district, demo.state, GRADUATION, demo.number, mismatched[0])
    assert again.outcome is Outcome.UNCHANGED and again.changes == []


def test_failed_parent_then_check_dependencies(pair_demo):
    demo, manifest = pair_demo, pair_demo.manifest
    orphans = manifest.failing("Enrollment", "parent_missing")
    parents = parents_of(demo, ENROLLMENT, orphans)
    unmapped_people = set(manifest.failing("PersonIdentity", "unmapped_code"))
    fixable = [k for k in orphans if parents[k] not in unmapped_people]
    hopeless = [k for k in orphans if parents[k] in unmapped_people]
    assert fixable

    before = district_checksum(demo)
    for out in sync_keys(demo.district, demo.state, ENROLLMENT, demo.number, orphans):
        assert out.outcome is Outcome.FAILED
        assert out.reason == f"parent PersonIdentity {parents[out.key]} is not at the state"
    assert district_checksum(demo) == before

    key = fixable[0]
    out = sync_with_dependencies(demo.district, demo.state, ENROLLMENT, demo.number, key)
    assert out.outcome is Outcome.SYNCED, out
    assert out.parents_synced == [f"PersonIdentity {parents[key]}"]
    assert errors_of(demo, ENROLLMENT, [key]) == {}
    assert errors_of(demo, PERSON, [parents[key]]) == {}
    for key in hopeless:
        out = sync_with_dependencies(demo.district, demo.state, ENROLLMENT, demo.number, key)
        assert out.outcome is Outcome.FAILED
        assert out.reason.startswith(f"parent PersonIdentity {parents[key]} could not be synced")

    # The batch path with check_dependencies syncs the rest whose parent can be synced.
    rest = sync_keys(
        demo.district, demo.state, ENROLLMENT, demo.number, fixable[1:], check_dependencies=True
    )
    assert {o.outcome for o in rest} <= {Outcome.SYNCED}
    assert errors_of(demo, ENROLLMENT, fixable) == {}


def test_unmapped_code_failure_inside_the_transaction_leaves_the_key_untouched(pair_demo):
    """Persons that are at the state but whose district identity has an unmapped code:
    the state refuses a row part-way through the key; nothing of the key may change."""
    demo, manifest = pair_demo, pair_demo.manifest
    keys = [
        k
        for k in manifest.failing("PersonIdentity", "unmapped_code")
        if k in manifest.keys("PersonIdentity", "mismatched")
    ]
    assert keys
    before = district_checksum(demo)
    for key in keys:
        out = sync_key(demo.district, demo.state, PERSON, demo.number, key)
        assert out.outcome is Outcome.FAILED and UNMAPPED.match(out.reason), out
    assert district_checksum(demo) == before


class InjectedFault(Exception):
    """Raised by the test after a write statement has run inside the key's transaction."""


def test_fault_after_a_write_rolls_the_key_back(pair_demo):
    demo, manifest = pair_demo, pair_demo.manifest
    bad = failing(manifest, "PersonIdentity")
    key = next(k for k in manifest.keys("PersonIdentity", "mismatched") if k not in bad)
    writes = []

    def after_write(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
            writes.append(statement)
            raise InjectedFault(f"injected after: {statement[:40]}")

    before = district_checksum(demo)
    event.listen(demo.state, "after_cursor_execute", after_write)
    try:
        try:
            out = sync_key(demo.district, demo.state, PERSON, demo.number, key)
        except InjectedFault:
            pass  # not a database error: it may propagate
        else:
            assert out.outcome is Outcome.FAILED, out
    finally:
        event.remove(demo.state, "after_cursor_execute", after_write)
    assert writes, "the key's sync never wrote: the fault was not injected"
    assert district_checksum(demo) == before
    assert errors_of(demo, PERSON, [key]) == {key: "mismatched"}

    # Without the fault the same key syncs, and only then does the state change.
    out = sync_key(demo.district, demo.state, PERSON, demo.number, key)
    assert out.outcome is Outcome.SYNCED
    assert district_checksum(demo) != before
    assert errors_of(demo, PERSON, [key]) == {}


def test_enrollment_batch_idempotent(pair_demo):
    demo, manifest = pair_demo, pair_demo.manifest
    bad = failing(manifest, "Enrollment")
    mismatched = [k for k in manifest.keys("Enrollment", "mismatched") if k not in bad]
    unmapped = manifest.failing("Enrollment", "unmapped_code")
    keys = mismatched + unmapped + clean_keys(demo, ENROLLMENT, 2)
    first = sync_keys(demo.district, demo.state, ENROLLMENT, demo.number, keys)
    assert [o.outcome for o in first] == (
        [Outcome.SYNCED] * len(mismatched)
        + [Outcome.FAILED] * len(unmapped)
        + [Outcome.UNCHANGED] * 2
    )
    before = rows_checksum(demo.state_url)
    second = sync_keys(demo.district, demo.state, ENROLLMENT, demo.number, keys)
    assert rows_checksum(demo.state_url) == before
    assert [o.outcome for o in second] == (
        [Outcome.UNCHANGED] * len(mismatched)
        + [Outcome.FAILED] * len(unmapped)
        + [Outcome.UNCHANGED] * 2
    )
