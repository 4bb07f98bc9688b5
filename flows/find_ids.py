"""The Find IDs flow: the personIDs or enrollmentIDs that match an ad hoc filter, as artifacts
an administrator can read in the UI and paste into a selective sync."""

from __future__ import annotations

from typing import Annotated, Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run
from pydantic import BeforeValidator, Field

from flows.acting import acting_user, display_user
from flows.forms import (
    DistrictNumber,
    OptionalDate,
    OptionalNumber,
    OptionalText,
    district_or_default,
    parse_date,
    title,
)
from flows.refusals import refused
from selective_sync.db import check_databases
from selective_sync.errors import SelectiveSyncError
from selective_sync.find import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    FindObject,
    FindResult,
    SummaryKind,
    build_query,
    stored_keys,
)
from selective_sync.models import ISSUE_LABELS
from selective_sync.rights import Right, authorise
from selective_sync.settings import get_settings, resolve_district
from selective_sync.text import md_escape
from tasks.find import find_records_task

# The "From the stored summary" dropdown, in plain words: no summary (the filters alone), or
# one key list of the stored summary. API callers may also send the kind itself
# ("missing_at_state") or None; both become the dropdown's words when the flow validates.
NO_SUMMARY = "None (the filters only)"
SUMMARY_CHOICES = {ISSUE_LABELS[kind.value]: kind for kind in SummaryKind}


def _summary_choice(value: object) -> object:
    if value is None or value == "no (the filters only)":  # the choice's words before 1 Dec 2026
        return NO_SUMMARY
    if isinstance(value, str) and value in SummaryKind.__members__:
        return ISSUE_LABELS[SummaryKind(value).value]
    return value


FromSummary = Annotated[
    Literal[NO_SUMMARY, *SUMMARY_CHOICES],  # type: ignore[valid-type]
    BeforeValidator(_summary_choice),
]


def find_ids_key(district: int, kind: str = "") -> str:
    """Artifact key of the district's Find IDs table (``kind="note"``: its markdown note)."""
    return f"find-ids-{kind}-{district}" if kind else f"find-ids-{district}"


def _run_name() -> str:
    """E.g. "Find PersonIdentity IDs by alice"."""
    params = flow_run.get_parameters()
    obj = params.get("object") or FindObject.PersonIdentity
    return f"Find {getattr(obj, 'value', obj)} IDs by {display_user(params)}"


@flow(name="find-ids", flow_run_name=_run_name, validate_parameters=True)
def find_ids(
    requested_by: Annotated[OptionalText, title("Requested by")] = "",
    object: Annotated[FindObject, title("Object")] = FindObject.PersonIdentity,
    first_name: Annotated[OptionalText, title("First name")] = "",
    last_name: Annotated[OptionalText, title("Last name")] = "",
    birth_date: Annotated[OptionalDate, title("Birth date")] = "",
    state_id: Annotated[OptionalText, title("State ID")] = "",
    school: Annotated[OptionalText, title("School")] = "",
    grade: Annotated[OptionalText, title("Grade")] = "",
    end_year: Annotated[OptionalNumber, title("End year")] = 0,
    from_summary: Annotated[FromSummary, title("From the stored summary")] = NO_SUMMARY,
    limit: Annotated[int, Field(ge=1, le=MAX_LIMIT), title("Show at most")] = DEFAULT_LIMIT,
    district: Annotated[DistrictNumber, title("District")] = 0,
) -> FindResult:
    """Find the district IDs that match a filter, to paste into a selective sync.

    Args:
        requested_by: Who asks; needs the R right on the district.
        object: PersonIdentity lists persons (personIDs); Enrollment lists enrollments
            (enrollmentIDs) with their person.
        first_name: First name starts with this (case and accents ignored: jose finds José).
        last_name: Last name starts with this (case and accents ignored).
        birth_date: Birth date (YYYY-MM-DD).
        state_id: State ID, exactly.
        school: School ID or name (a unique start of the name will do).
        grade: Grade: PK, KG, 1-12 or another district grade code.
        end_year: School year's end year, e.g. 2026 for 2025-26; 0 means any year.
        from_summary: Instead of (or narrowed by) the filters, the keys of the latest stored
            Verification Summary: those missing at state, mismatched or missing at district.
        limit: Show at most this many; the note says how many more match.
        district: District number; 0 means the district this deployment serves.
    """
    logger = get_run_logger()
    try:
        query = build_query(
            object,
            first=first_name or None,
            last=last_name or None,
            birth_date=parse_date("Birth date", birth_date),
            state_id=state_id or None,
            school=school or None,
            grade=grade or None,
            end_year=end_year or None,
            limit=limit,
            from_summary=SUMMARY_CHOICES.get(from_summary),
        )
        settings = get_settings()
        config = resolve_district(settings, district_or_default(district))
        authorise(
            acting_user(requested_by),
            Right.R,
            config.number,
            entry_point="flow:find-ids",
            asked=f"find {query.object} IDs in district {config.number}",
        )
        check_databases(district_url=config.url)
        keys = stored_keys(settings, query, config.number)
    except SelectiveSyncError as exc:
        return refused(exc)
    result = find_records_task(query, config.number, keys)
    logger.info("%s: %s matches, %s shown", result.heading(), result.total, len(result.records))
    publish_find_artifacts(result)
    return result


def publish_find_artifacts(result: FindResult) -> None:
    """The result as a table artifact, and a markdown note with the IDs ready to paste."""
    description = md_escape(result.heading())
    create_table_artifact(
        key=find_ids_key(result.district_number),
        table=result.rows(),
        description=description,
    )
    create_markdown_artifact(
        key=find_ids_key(result.district_number, "note"),
        markdown=note_markdown(result),
        description=description,
    )


def note_markdown(result: FindResult) -> str:
    """How many matched, the "N more" note, and the comma-separated IDs."""
    noun = result.key_label + ("s" if result.total != 1 else "")
    lines = [f"**{result.total:,} {noun} match** ({md_escape(result.heading())})."]
    note = result.more_note()
    if note:
        lines.append(f"**{note}**: raise `limit` (at most {MAX_LIMIT:,}) or narrow the filters.")
    if result.state_only:
        lines.append("These records are at the state only: the district has no row for them.")
    if result.ids:
        lines += ["", "IDs to paste into a selective sync:", "", "```", result.ids_text, "```"]
    return "\n".join(lines)
