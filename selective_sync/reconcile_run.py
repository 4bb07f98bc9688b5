"""One district's nightly reconciliation, run in this process with no Prefect.

:func:`reconcile_district` does a district's whole night under the district's lock, taken
exclusive (no selective sync of the district overlaps it, ``selective_sync.locks``):

1. each object verified once, whole (``verification.engine``);
2. its differing keys planned (``reconcile.plan_object``: missing at the state, then
   mismatched, at most ``max_keys``) and synced as one Sync History entry of their own
   (``sync.request.run_keys``): a ledger request with origin ``nightly``, requested by
   ``reconcile.REQUESTER``, dependencies checked, each key's row in its own transaction, the
   whole verification standing for the one before the sync, and the verification after
   the sync on those keys only;
3. the parents those syncs wrote first (an enrollment's person) verified after every sync;
4. the district's Verification Summary after the syncs: each whole verification with the
   keys verified after the syncs in place (``verification.recheck``), stored in the state
   database as the run ``run_id`` (``verification.records``).

Nothing is verified twice and no report is made: reports are made when someone asks for
them (``selective-sync report RUN``, ``summary --report``, the report server). The caller
(``flows.reconcile``) authorises the requester once, before, and shows what came out
(artifacts, drift events, the View History table). A district that cannot be reconciled
(its database gone, its lock held too long) comes back with its ``error``; an object whose
sync fails comes back with its own, and the district's other objects go on.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from selective_sync.db import check_databases
from selective_sync.ledger import NIGHTLY_ORIGIN
from selective_sync.locks import district_lock
from selective_sync.models import DistrictVerification, ObjectVerification, accuracy
from selective_sync.reconcile import (
    REQUESTER,
    DistrictReconciliation,
    ObjectReconciliation,
    plan_object,
)
from selective_sync.registry import get_object
from selective_sync.settings import DistrictConfig, Settings, resolve_district
from selective_sync.sync.parents import parents_written
from selective_sync.sync.request import (
    RequestOutcome,
    SyncRequest,
    open_engines,
    retrying,
    run_keys,
)
from selective_sync.sync.retry import RetryPolicy
from selective_sync.text import first_line
from selective_sync.verification.codec import IssueChunk, encode_summary
from selective_sync.verification.engine import verify_object
from selective_sync.verification.recheck import with_rechecked
from selective_sync.verification.records import current_rows, store_encoded

log = logging.getLogger(__name__)


@dataclass
class DistrictNight:
    """What one district's reconciliation did, and the Verification Summary it left."""

    reconciliation: DistrictReconciliation
    summary: DistrictVerification | None = None
    """The district's summary after the syncs (None: it could not be told exactly)."""
    previous: list[dict[str, Any]] | None = None
    """The stored summary's rows before this night (the drift alert's previous figures)."""
    stored: list[dict[str, Any]] | None = None
    """The rows stored for ``summary`` (None: not stored)."""
    issue_chunks: list[IssueChunk] = field(default_factory=list)
    """The stored summary's record issues, as the UI shows them (``codec.IssueChunk``)."""
    requests: list[RequestOutcome] = field(default_factory=list)
    """The night's syncs of the district, one per object that had keys to send."""


def reconcile_district(
    settings: Settings, district: int, objects: list[str], max_keys: int, run_id: str
) -> DistrictNight:
    """Reconcile one district's ``objects`` (parents first), at most ``max_keys`` keys each;
    the summary after the syncs is stored as run ``run_id``. The requester is authorised
    by the caller."""
    config = resolve_district(settings, district)
    night = DistrictNight(DistrictReconciliation(config.number, config.name))
    try:
        with district_lock(
            settings.resolved_state_url,
            config.number,
            settings.district_lock_timeout_s,
            holder=f"the reconciliation of district {config.number}",
            exclusive=True,
        ):
            _Night(settings, config, night, RetryPolicy.from_settings(settings)).run(
                objects, max_keys, run_id
            )
    except Exception as exc:  # the lock could not be had, or the state is unreachable
        night.reconciliation.error = first_line(exc)
        log.error("District %s: %s", config.number, night.reconciliation.error)
    return night


@dataclass
class _Night:
    settings: Settings
    config: DistrictConfig
    night: DistrictNight
    policy: RetryPolicy

    def run(self, objects: list[str], max_keys: int, run_id: str) -> None:
        result = self.night.reconciliation
        try:
            check_databases(self.config.url, self.settings.resolved_state_url)
        except Exception as exc:
            result.error = f"verification failed: {first_line(exc)}"
            log.error("District %s: %s", self.config.number, result.error)
            return
        with open_engines(self.config.url, self.settings.resolved_state_url) as engines:
            try:
                whole = [self.verify(engines, name) for name in objects]
            except Exception as exc:
                result.error = f"verification failed: {first_line(exc)}"
                log.error("District %s: %s", self.config.number, result.error)
                return
            checks = self.sync_objects(engines, whole, max_keys)
            result.overall_accuracy_before = accuracy(
                sum(o.counts_before[0] for o in result.objects),
                sum(o.counts_before[1] for o in result.objects),
            )
            if checks is not None:
                self.summarise(engines, whole, checks, run_id)

    def verify(
        self, engines: tuple[Engine, Engine], name: str, keys: set[int] | None = None
    ) -> ObjectVerification:
        district_engine, state_engine = engines
        return retrying(
            self.policy,
            lambda: verify_object(
                district_engine,
                state_engine,
                get_object(name),
                self.config.number,
                None if keys is None else sorted(keys),
                chunk_rows=self.settings.verify_chunk_rows,
            ),
        )

    def sync_objects(
        self, engines: tuple[Engine, Engine], whole: list[ObjectVerification], max_keys: int
    ) -> dict[str, list[tuple[set[int], ObjectVerification]]] | None:
        """Each object's keys synced; the verifications after them, by object, in the order
        they were made (None when a sync's keys could not be verified afterwards: the
        summary after the syncs cannot be told exactly)."""
        checks: dict[str, list[tuple[set[int], ObjectVerification]]] = defaultdict(list)
        parents: dict[str, set[int]] = defaultdict(set)
        exact = True
        for verification in whole:
            plan = plan_object(verification, max_keys)
            entry = ObjectReconciliation(plan, (verification.distinct, verification.errors))
            self.night.reconciliation.objects.append(entry)
            if plan.leftover:
                log.warning(
                    "District %s %s: %s keys differ, sending %s; %s left over for the next run",
                    self.config.number,
                    plan.object,
                    plan.differing,
                    len(plan.keys),
                    plan.leftover,
                )
            if not plan.keys:
                continue
            done = self.sync(engines, entry, verification)
            if done is None or done.after is None:
                exact = False
                continue
            checks[plan.object].append((set(plan.keys), done.after))
            for name, keys in parents_written(done.result.keys).items():
                parents[name] |= keys
        verified = {v.object for v in whole}
        for name, keys in parents.items():
            if name not in verified:
                continue  # not reconciled tonight: its stored results stay as they were
            try:
                checks[name].append((keys, self.verify(engines, name, keys)))
            except Exception as exc:
                log.warning("The parents synced first could not be verified: %s", first_line(exc))
                exact = False
        return checks if exact else None

    def sync(
        self,
        engines: tuple[Engine, Engine],
        entry: ObjectReconciliation,
        before: ObjectVerification,
    ) -> RequestOutcome | None:
        """One Sync History entry for the object's planned keys."""
        request = SyncRequest(
            object=entry.object,
            ids=entry.plan.keys,
            requested_by=REQUESTER,
            district=self.config.number,
            check_dependencies=True,
        )
        try:
            done = run_keys(
                request,
                entry.plan.keys,
                get_object(entry.object),
                self.config,
                self.settings,
                engines,
                origin=NIGHTLY_ORIGIN,
                before=before,
            )
        except Exception as exc:  # not recorded, or a database fault stopped it midway
            entry.error = first_line(exc)
            log.error("District %s %s: %s", self.config.number, entry.object, entry.error)
            return None
        self.night.requests.append(done)
        entry.record(done.result, done.run_id)
        if done.failure is not None:
            entry.error = done.failure
            log.error("District %s %s: %s", self.config.number, entry.object, entry.error)
        log.info(
            "District %s %s: %s sent, %s succeeded, %s failed",
            self.config.number,
            entry.object,
            entry.sent,
            entry.succeeded,
            entry.failed,
        )
        return done

    def summarise(
        self,
        engines: tuple[Engine, Engine],
        whole: list[ObjectVerification],
        checks: dict[str, list[tuple[set[int], ObjectVerification]]],
        run_id: str,
    ) -> None:
        """The summary after the syncs, each object's figures after, and the summary stored
        (a failure to store it is logged: the syncs stand, the next verification stores)."""
        after = []
        for verification in whole:
            for keys, part in checks.get(verification.object, []):
                verification = with_rechecked(verification, part, keys)
            after.append(verification)
        for entry, verification in zip(self.night.reconciliation.objects, after, strict=True):
            entry.counts_after = (verification.distinct, verification.errors)
        summary = DistrictVerification(self.config.number, self.config.name, after)
        self.night.summary = summary
        _district_engine, state_engine = engines
        number = self.config.number
        try:
            self.night.previous = retrying(
                self.policy, lambda: current_rows(state_engine, [number]).get(number)
            )
            rows, chunks = encode_summary(summary, run_id)
            retrying(self.policy, lambda: store_encoded(state_engine, number, rows, chunks))
            self.night.stored, self.night.issue_chunks = rows, chunks
        except Exception as exc:
            log.warning(
                "District %s: the Verification Summary after the syncs was not stored: %s",
                number,
                first_line(exc),
            )
