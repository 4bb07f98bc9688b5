"""Scheduled reconciliation, the plain part: which keys to re-sync, and what happened.

A district's night (``reconcile_run``) verifies every object, asks :func:`plan_object`
which keys to re-sync (missing at the state, then mismatched, capped at ``max_keys``) and
runs one selective sync per object as ``scheduled reconciliation``; each district reports
its objects as a table (:func:`district_table`), read back as one line of the state-wide
summary (:func:`summary_from_table`, :func:`state_markdown`); the districts go to the work
pool in batches (:func:`district_batches`). Nothing here knows Prefect.

Keys *missing at the district* are never planned: the district is the source of truth and
a sync of a key the district does not have changes nothing (it would only be reported as
not found). They are counted so the report says how many need a person to look at them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from selective_sync.text import format_accuracy, format_timestamp, md_escape

from .errors import BadInput
from .models import ObjectVerification, Outcome, SyncResult, accuracy
from .registry import get_object, object_names

REQUESTER = "scheduled reconciliation"
"""The user name reconciliation syncs are requested by; it needs the W right."""

DEFAULT_MAX_KEYS = 1000

RUNS_PER_SLOT = 3
"""Runs on the work pool per run that goes at once, when the batch size is left to the
nightly: fewer means fewer process starts, more means a more even end of the night."""

MIN_PER_RUN = 10
"""Districts a run takes at least (but the last), when there are enough for every slot: a
run's process start (2-3 CPU-s) is then a small part of its work (about 1 CPU-s a
district)."""


@dataclass(frozen=True)
class ObjectPlan:
    """The keys one object's reconciliation sync will send, and what it leaves for later."""

    object: str
    keys: list[int]
    missing_at_state: int
    mismatched: int
    missing_at_district: int

    @property
    def differing(self) -> int:
        """Keys a sync can fix: missing at the state plus mismatched."""
        return self.missing_at_state + self.mismatched

    @property
    def leftover(self) -> int:
        """Fixable keys beyond ``max_keys``: left for the next run."""
        return self.differing - len(self.keys)


@dataclass
class ObjectReconciliation:
    """One object of one district: the plan and, when a sync ran, its outcome counts."""

    plan: ObjectPlan
    # (Distinct, Errors) verified before the syncs, and after them: None when nothing was
    # sent or the re-verification failed. The district's overall accuracy adds these up.
    counts_before: tuple[int, int]
    counts_after: tuple[int, int] | None = None
    sync_run_id: str | None = None
    synced: int = 0
    unchanged: int = 0
    not_found: int = 0
    failed: int = 0
    error: str | None = None

    @property
    def accuracy_before(self) -> float:
        return accuracy(*self.counts_before)

    @property
    def accuracy_after(self) -> float | None:
        return None if self.counts_after is None else accuracy(*self.counts_after)

    @property
    def object(self) -> str:
        return self.plan.object

    @property
    def leftover(self) -> int:
        return self.plan.leftover

    @property
    def sent(self) -> int:
        return len(self.plan.keys)

    @property
    def succeeded(self) -> int:
        return self.synced + self.unchanged

    def record(self, result: SyncResult, run_id: str | None = None) -> None:
        """Take the counts of the selective sync that ran for this object."""
        self.sync_run_id = run_id
        counts = {o: 0 for o in Outcome}
        for key in result.keys:
            counts[key.outcome] += 1
        self.synced = counts[Outcome.SYNCED]
        self.unchanged = counts[Outcome.UNCHANGED]
        self.not_found = counts[Outcome.NOT_FOUND]
        self.failed = counts[Outcome.FAILED]


@dataclass
class DistrictReconciliation:
    """One district's reconciliation: every object, parents first."""

    district_number: int
    district_name: str
    objects: list[ObjectReconciliation] = field(default_factory=list)
    overall_accuracy_before: float | None = None
    error: str | None = None

    @property
    def leftover(self) -> int:
        return sum(o.leftover for o in self.objects)

    @property
    def errors(self) -> list[str]:
        """Why the district, or one of its objects, was not fully reconciled."""
        return ([self.error] if self.error else []) + [
            f"{o.object}: {o.error}" for o in self.objects if o.error
        ]

    def summary(self, run_id: str | None = None, seconds: float | None = None) -> DistrictSummary:
        """This district's line of the state-wide summary."""
        before = [o.counts_before for o in self.objects]
        after = [o.counts_after or o.counts_before for o in self.objects]
        return DistrictSummary(
            number=self.district_number,
            name=self.district_name,
            counts_before=_add(before) if before else None,
            counts_after=_add(after) if after else None,
            sent=sum(o.sent for o in self.objects),
            succeeded=sum(o.succeeded for o in self.objects),
            failed=sum(o.failed for o in self.objects),
            leftover=self.leftover,
            error="; ".join(self.errors) or None,
            run_id=run_id,
            seconds=seconds,
        )


def _add(counts: list[tuple[int, int]]) -> tuple[int, int]:
    return sum(c[0] for c in counts), sum(c[1] for c in counts)


@dataclass
class DistrictSummary:
    """One district in the state-wide reconciliation: its totals and its run (the task run
    that reconciled it; the flow run of its batch when it never got one)."""

    number: int
    name: str
    counts_before: tuple[int, int] | None = None  # (distinct, errors) over its objects
    counts_after: tuple[int, int] | None = None
    sent: int = 0
    succeeded: int = 0
    failed: int = 0
    leftover: int = 0
    error: str | None = None
    run_id: str | None = None
    seconds: float | None = None
    run_kind: str = "task-run"
    """What ``run_id`` names in Prefect: "task-run" or "flow-run"."""

    @property
    def run_path(self) -> str | None:
        """The run's page under the UI's ``/runs/``, e.g. ``task-run/<id>``."""
        return f"{self.run_kind}/{self.run_id}" if self.run_id else None

    @property
    def accuracy_before(self) -> str:
        return format_accuracy(*self.counts_before) if self.counts_before else ""

    @property
    def accuracy_after(self) -> str:
        return format_accuracy(*self.counts_after) if self.counts_after else ""


@dataclass
class StateReconciliation:
    """The nightly over every district: one summary per district, each from its own run."""

    started_at: datetime
    max_keys: int
    mode: str  # "work pool" or "in-process"
    districts: list[DistrictSummary] = field(default_factory=list)
    completed_at: datetime | None = None

    @property
    def sent(self) -> int:
        return sum(d.sent for d in self.districts)

    @property
    def succeeded(self) -> int:
        return sum(d.succeeded for d in self.districts)

    @property
    def failed(self) -> int:
        return sum(d.failed for d in self.districts)

    @property
    def leftover(self) -> int:
        return sum(d.leftover for d in self.districts)

    @property
    def errors(self) -> list[str]:
        return [f"district {d.number}: {d.error}" for d in self.districts if d.error]


def check_max_keys(max_keys: int) -> int:
    """``max_keys`` if it is a positive whole number; BadInput otherwise."""
    if isinstance(max_keys, bool) or not isinstance(max_keys, int) or max_keys < 1:
        raise BadInput(f"max_keys must be a whole number of at least 1, got {max_keys!r}")
    return max_keys


def district_batches(numbers: Sequence[int], slots: int, per_run: int = 0) -> list[list[int]]:
    """The districts as the nightly's runs on the work pool take them: ``per_run`` each, or
    (0) about ``RUNS_PER_SLOT`` runs for each of the ``slots`` runs that go at once, so the
    workers share the night evenly while each run's process start is paid once a batch,
    and at least ``MIN_PER_RUN`` districts a run while every slot still gets one."""
    if isinstance(per_run, bool) or not isinstance(per_run, int) or per_run < 0:
        raise BadInput(f"districts per run must be a whole number of at least 0, got {per_run!r}")
    slots = max(int(slots), 1)
    even = math.ceil(len(numbers) / (RUNS_PER_SLOT * slots))
    size = per_run or max(1, even, min(MIN_PER_RUN, math.ceil(len(numbers) / slots)))
    return [list(numbers[i : i + size]) for i in range(0, len(numbers), size)]


def objects_in_order(names: Iterable[str] | None = None) -> list[str]:
    """The objects to reconcile (default: all), each after its parent object.

    Parents go first so that a child whose parent was missing at the state finds it there
    when its own sync runs (check dependencies would fix it anyway, at one extra sync).
    """
    wanted = [get_object(str(getattr(n, "value", n))).name for n in names] if names else None
    chosen = list(dict.fromkeys(wanted)) if wanted else object_names()

    def depth(name: str) -> int:
        spec, levels = get_object(name), 0
        while spec.parent is not None:
            spec, levels = get_object(spec.parent.object), levels + 1
        return levels

    # sorted() is stable: objects at the same depth keep the registry's (or caller's) order.
    return sorted(chosen, key=depth)


def plan_object(verification: ObjectVerification, max_keys: int) -> ObjectPlan:
    """The keys to re-sync: missing at the state first, then mismatched, at most ``max_keys``.

    Within each group keys go in ascending order, so a capped run fixes the same keys again
    and again only if they keep failing; fixed keys leave the list and the cap moves on.
    """
    check_max_keys(max_keys)
    missing = sorted(set(verification.missing_at_state))
    mismatched = sorted(set(verification.mismatched) - set(missing))
    keys = (missing + mismatched)[:max_keys]
    return ObjectPlan(
        object=verification.object,
        keys=keys,
        missing_at_state=len(missing),
        mismatched=len(mismatched),
        missing_at_district=len(set(verification.missing_at_district)),
    )


# ---------------------------------------------------------------- one district's table

DISTRICT_TABLE_FORMAT = 1


def district_key(district: int) -> str:
    """Artifact key of a district's reconciliation table."""
    return f"reconcile-district-{int(district)}"


def district_table(district: DistrictReconciliation) -> list[dict]:
    """A district's reconciliation as table rows, one per object (one row for a district
    that could not be verified): the child run's artifact, read back by the parent."""
    base = {
        "district": district.district_number,
        "district_name": district.district_name,
        "format": DISTRICT_TABLE_FORMAT,
    }
    if district.error or not district.objects:
        rows = [{**base, "object": "", "error": district.error or ""}]
    else:
        rows = []
    for o in district.objects:
        after = o.counts_after
        rows.append(
            {
                **base,
                "object": o.object,
                "accuracy_before": format_accuracy(*o.counts_before),
                "accuracy_after": format_accuracy(*after) if after else "",
                "distinct_before": o.counts_before[0],
                "errors_before": o.counts_before[1],
                "distinct_after": after[0] if after else None,
                "errors_after": after[1] if after else None,
                "missing_at_state": o.plan.missing_at_state,
                "mismatched": o.plan.mismatched,
                "missing_at_district": o.plan.missing_at_district,
                "sent": o.sent,
                "synced": o.synced,
                "unchanged": o.unchanged,
                "not_found": o.not_found,
                "failed": o.failed,
                "left_over": o.leftover,
                "sync_run": o.sync_run_id or "",
                "error": o.error or "",
            }
        )
    return rows


def summary_from_table(
    rows: Sequence[Mapping], run_id: str | None = None, seconds: float | None = None
) -> DistrictSummary:
    """The state-wide line of a district from its child run's table (``district_table``)."""
    if not rows or any(r.get("format") != DISTRICT_TABLE_FORMAT for r in rows):
        raise ValueError("not a reconcile-district table of this version")
    objects = [r for r in rows if r["object"]]
    before = [(int(r["distinct_before"]), int(r["errors_before"])) for r in objects]
    after = [
        (int(r["distinct_after"]), int(r["errors_after"]))
        if r.get("distinct_after") is not None
        else (int(r["distinct_before"]), int(r["errors_before"]))
        for r in objects
    ]
    errors = [r["error"] if not r["object"] else f"{r['object']}: {r['error']}" for r in rows]
    return DistrictSummary(
        number=int(rows[0]["district"]),
        name=str(rows[0]["district_name"]),
        counts_before=_add(before) if objects else None,
        counts_after=_add(after) if objects else None,
        sent=sum(int(r["sent"]) for r in objects),
        succeeded=sum(int(r["synced"]) + int(r["unchanged"]) for r in objects),
        failed=sum(int(r["failed"]) for r in objects),
        leftover=sum(int(r["left_over"]) for r in objects),
        error="; ".join(e for e, r in zip(errors, rows, strict=True) if r["error"]) or None,
        run_id=run_id,
        seconds=seconds,
    )


# ---------------------------------------------------------------- the state-wide table


def state_markdown(result: StateReconciliation, run_link: Callable[[str], str]) -> str:
    """The parent run's artifact: a narrow table, one line per district, with a link to
    each district's own run (which holds the per-object table; ``run_link`` makes a UI
    address of a ``DistrictSummary.run_path``); failed districts first."""
    lines = [
        "# Scheduled reconciliation of every district",
        "",
        f"Started {format_timestamp(result.started_at)}, completed "
        f"{format_timestamp(result.completed_at) or 'not yet'}; {len(result.districts):,} "
        f"districts ({result.mode}); at most {result.max_keys:,} keys per object; requested "
        f"by *{md_escape(REQUESTER)}*.",
        "",
        f"Keys sent: **{result.sent:,}**, succeeded: **{result.succeeded:,}**, "
        f"failed: **{result.failed:,}**, left over: **{result.leftover:,}**; districts "
        f"not reconciled: **{len(result.errors):,}**.",
        "",
        "| District | Accuracy before | after | Sent | Succeeded | Failed | Left over | Run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ordered = sorted(result.districts, key=lambda d: (d.error is None, d.number))
    for d in ordered:
        run = f"[{'failed: ' if d.error else ''}run]({run_link(d.run_path)})" if d.run_path else ""
        if d.error:
            run = f"{run} {md_escape(d.error[:200])}".strip()
        lines.append(
            f"| {d.number} {md_escape(d.name)} | {d.accuracy_before} | {d.accuracy_after} "
            f"| {d.sent:,} | {d.succeeded:,} | {d.failed:,} | {d.leftover:,} | {run} |"
        )
    if not result.districts:
        lines.append("| | | | | | | | |")
    return "\n".join(lines)
