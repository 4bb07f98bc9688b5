"""Verification exactness over the database matrix: the demo's seeded truth, nothing else."""

from __future__ import annotations

import pytest

from selective_sync.models import ISSUE_KINDS
from selective_sync.registry import REGISTRY, get_object
from selective_sync.verification.engine import fetch_compared_rows, verify_district, verify_object


@pytest.mark.parametrize("chunk_rows", [20_000, 37])
def test_verification_finds_exactly_the_manifest(pair_demo, chunk_rows):
    demo, manifest = pair_demo, pair_demo.manifest
    summary = verify_district(
        demo.district, demo.state, demo.number, manifest.district_name, chunk_rows=chunk_rows
    )
    assert [o.object for o in summary.objects] == list(REGISTRY)
    for result in summary.objects:
        for kind in ISSUE_KINDS:
            expected = manifest.keys(result.object, kind)
            assert expected, f"{result.object}: the demo seeds no {kind}"
            assert getattr(result, kind) == expected, (result.object, kind)
        mismatches = [i for i in result.issues if i.issue == "mismatched"]
        assert mismatches and all(i.diffs for i in mismatches), result.object
        # Every listed difference really differs; nothing equal is reported.
        for issue in mismatches:
            assert all(d.district != d.state for d in issue.diffs), (result.object, issue)


def test_counts_and_accuracy(pair_demo):
    demo = pair_demo
    for name in REGISTRY:
        result = verify_object(demo.district, demo.state, get_object(name), demo.number)
        missing_at_district = len(result.missing_at_district)
        missing_at_state = len(result.missing_at_state)
        both = result.at_district - missing_at_state
        assert both == result.at_state - missing_at_district, name
        distinct = result.at_district + missing_at_district
        errors = missing_at_state + missing_at_district + len(result.mismatched)
        assert result.errors == errors
        assert result.accuracy == pytest.approx(100 * (distinct - errors) / distinct, abs=0.01)


def test_key_subsets_give_exactly_the_manifest_kinds(pair_demo):
    demo, manifest = pair_demo, pair_demo.manifest
    for name in REGISTRY:
        seeded = manifest.error_keys(name)
        first_keys = [k for (k,) in _some_keys(demo, name)]
        keys = seeded[::2] + first_keys + [10**9]
        result = verify_object(
            demo.district, demo.state, get_object(name), demo.number, keys, chunk_rows=5
        )
        for kind in ISSUE_KINDS:
            assert getattr(result, kind) == [k for k in manifest.keys(name, kind) if k in keys]


def test_both_sides_normalise_to_the_same_values(pair_demo):
    """Keys without a seeded issue read back as equal tuples from both vendors."""
    demo, manifest = pair_demo, pair_demo.manifest
    for name in REGISTRY:
        spec = get_object(name)
        clean = [k for (k,) in _some_keys(demo, name) if manifest.issue_of(name, k) is None]
        assert clean, name
        district = fetch_compared_rows(demo.district, spec, "district", demo.number, clean)
        state = fetch_compared_rows(demo.state, spec, "state", demo.number, clean)
        assert district == state and len(district) == len(clean), name


def _some_keys(demo, name: str, limit: int = 25):
    spec = get_object(name)
    with demo.district.connect() as conn:
        return conn.exec_driver_sql(
            f"SELECT {spec.key_column} FROM {spec.root} ORDER BY {spec.key_column} LIMIT {limit}"
        ).all()
