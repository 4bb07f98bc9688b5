"""Who a flow run acts as (``flows.acting``): the name it claims, normalised; with none, a run
a deployment's schedule created acts as the scheduled-reconciliation user, any other run is
refused. On a real Prefect API, with a run the API itself schedules."""

from __future__ import annotations

from datetime import timedelta

import pytest
from prefect import flow

from flows.acting import acting_user
from selective_sync.errors import BadInput
from selective_sync.reconcile import REQUESTER

pytestmark = pytest.mark.usefixtures("prefect_api")


@flow(name="acting-user-probe")
def probe(claimed: str = "") -> str:
    return acting_user(claimed)


def test_a_claimed_name_is_the_acting_user_normalised():
    assert probe("  alice ") == "alice"
    with pytest.raises(BadInput, match="control characters"):
        probe("al\x1bice")


@pytest.mark.parametrize("claimed", ["", "   "])
def test_no_name_outside_a_schedule_is_refused(claimed):
    with pytest.raises(BadInput, match="user name is empty: say who is acting"):
        probe(claimed)


def test_a_run_the_schedule_made_acts_as_the_scheduled_reconciliation_user():
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.client.schemas.schedules import IntervalSchedule
    from prefect.flow_engine import run_flow
    from prefect.states import Scheduled
    from prefect.types._datetime import now

    with get_client(sync_client=True) as client:
        flow_id = client.create_flow(probe)
        deployment_id = client.create_deployment(
            flow_id,
            "acting-user-probe-schedule",
            schedules=[
                DeploymentScheduleCreate(
                    schedule=IntervalSchedule(interval=timedelta(hours=1)), active=True
                )
            ],
        )
        # What Prefect's scheduler service calls: the runs it makes are auto-scheduled.
        response = client._client.post(f"/deployments/{deployment_id}/schedule", json={})
        response.raise_for_status()
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
        )
        scheduled = [r for r in runs if r.auto_scheduled]
        assert scheduled, runs
        # Due now (the schedule made it for later): the engine would wait until then.
        client.set_flow_run_state(scheduled[0].id, Scheduled(scheduled_time=now()), force=True)
        due = client.read_flow_run(scheduled[0].id)
        manual = client.create_flow_run_from_deployment(deployment_id, parameters={"claimed": ""})
        assert due.auto_scheduled and not manual.auto_scheduled
    assert run_flow(probe, flow_run=due, parameters={"claimed": ""}) == REQUESTER
    # A person's run of the same deployment must say who they are.
    state = run_flow(probe, flow_run=manual, parameters={"claimed": ""}, return_type="state")
    assert state.is_failed() and "user name is empty" in state.message


# ---------------------------------------------------------------- sign-in on: the stamp


@flow(name="acting-user-parent")
def parent_passes(claimed: str = "") -> str:
    return probe(claimed)


def test_with_sign_in_the_stamp_is_the_acting_user_whatever_the_run_claims(monkeypatch):
    from prefect import tags

    monkeypatch.setenv("SELECTIVE_SYNC_SIGN_IN", "proxy")
    with tags("acting-user:carol"):
        assert probe("mallory") == "carol"
        assert probe("") == "carol"


def test_with_sign_in_a_run_without_a_stamp_is_refused_even_if_it_names_someone(monkeypatch):
    monkeypatch.setenv("SELECTIVE_SYNC_SIGN_IN", "proxy")
    with pytest.raises(BadInput, match="this run has no signed-in user"):
        probe("alice")


def test_with_sign_in_two_stamps_are_refused(monkeypatch):
    from prefect import tags

    monkeypatch.setenv("SELECTIVE_SYNC_SIGN_IN", "proxy")
    with (
        tags("acting-user:carol", "acting-user:dave"),
        pytest.raises(BadInput, match="more than one"),
    ):
        probe("")


def test_with_sign_in_a_subflow_acts_as_the_user_its_authorised_parent_passes(monkeypatch):
    from prefect import tags

    monkeypatch.setenv("SELECTIVE_SYNC_SIGN_IN", "proxy")
    # The parent is stamped; its subflow (made by the parent's code) gets the name passed.
    with tags("acting-user:carol"):
        assert parent_passes("carol") == "carol"
