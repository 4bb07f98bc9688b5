"""The verification-summary flow on a real Prefect API."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.usefixtures("prefect_api")


def test_flow_finds_the_manifest_and_publishes_the_summary(demo, admin):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.verification_summary import verification_summary

    summary = verification_summary(requested_by=admin)
    assert summary.district_number == 275
    by_object = {o.object: o for o in summary.objects}
    assert set(by_object) == {"PersonIdentity", "Enrollment", "Graduation"}
    for name, result in by_object.items():
        for kind in ("missing_at_state", "missing_at_district", "mismatched"):
            assert getattr(result, kind) == demo.manifest[name][kind], (name, kind)
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["verification-summary-275"]))
        )
    assert artifacts, "no verification-summary-275 artifact"
    latest = max(artifacts, key=lambda a: a.created)
    assert latest.type == "table"
    assert "MAPLE VALLEY" in latest.description
    assert f"{summary.overall_accuracy:.2f}%" in latest.description
    rows = {r["object"]: r for r in json.loads(latest.data)}
    assert set(rows) == set(by_object)
    for name, result in by_object.items():
        assert rows[name]["verified_at"] == result.verified_at.isoformat()
        assert rows[name]["errors"] == result.errors


def test_flow_refuses_an_unknown_district(demo, admin):
    from flows.verification_summary import verification_summary
    from selective_sync.errors import BadInput

    with pytest.raises(BadInput, match="district 999 is not configured"):
        verification_summary(district=999, requested_by=admin)
