"""Hostile district data goes through the real flows on SQLite, PostgreSQL and MariaDB.

Person and identity text columns of a few district records get quotes, backslashes, SQL,
control characters (tab, U+0001 and U+001F: the verifier packs rows with U+001F and falls
back to a typed read when a value holds it), HTML, right-to-left text, emoji with ZWJ
sequences, combining characters and values as long as the columns allow (60 characters,
also 4-byte ones). Then:

* the Verification Summary flow finds each record mismatched with the exact column values,
  and its PDF, DOCX and CSV print them literally;
* the Selective Sync flow copies them: the state rows equal the district rows byte for byte
  and verify clean; keys refused for an unmapped code whose value is markup get a reason
  that both Sync Request History reports print literally.

What the PDF check can rely on: pypdf extracts the PDF's text in glyph order, so
right-to-left runs may come back reordered and emoji/ZWJ sequences drawn from a colour font
may come back as other code points. Values made of ASCII (markup, quotes, backslashes,
SQL) are compared exactly; for the others the PDF check is that the report renders, that
the record's line is there, and that whatever the value's non-RTL, non-emoji characters
are come back (the DOCX, read as XML, is compared exactly for every value).
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import unicodedata
from pathlib import Path

import openpyxl
import pytest
import tally
from dbservers import server_database
from docx import Document
from docx.oxml.ns import qn
from pypdf import PdfReader
from sqlalchemy import create_engine, select, update

from selective_sync.models import Outcome
from selective_sync.reports._output import printable
from selective_sync.reports.csv import FORMULA_STARTS, neutralise
from selective_sync.schema import district_table, state_table

from .conftest import release_engines, run_flow

pytestmark = pytest.mark.usefixtures("prefect_api")

DISTRICT = 275

# 60 is the state's (and the district's) limit for the name columns: schema.py.
NAMES = [
    "Robert'); DROP TABLE state_person;--",
    "O'Brien \"The Quote\" d'Artagnan",
    "C:\\Users\\back\\slash \\n \\' \\\\",
    "tab\there\tand\x01ctl",
    "unit\x1fseparator",
    "<script>alert(1)</script>",
    "Tom &amp; Jerry &lt;b&gt; <b>bold</b> &#x27;",
    "محمد بن عبد الله",
    "דוד בן־גוריון",
    "👩\u200d👩\u200d👧\u200d👦 Family 🏳\ufe0f\u200d🌈 👍🏽",
    "Zoe\u0308 Mu\u0308ller e\u0301\u0301 Łukasz",
    '=HYPERLINK("http://evil.example","click")',
    "Ω" * 60,
    "😀" * 60,
    "x" * 60,
    "mixed עברית and English <i>x</i> ‮reversed‬",
    "+1-555-0100 @home -minus",
    "{{ 7*7 }} ${7*7} %s %(x)s",
    "double  space and a trailing tab\t",  # trim strips the tab (ASCII white space)
]
SUFFIXES = ["<i>&\"'\\", "\x1f\t<>", "Jr. 🎓", "ש"]  # 10 characters at most
STATE_IDS = ["'; --<b>\\", '"1" OR 1=1', "\x1f\x01"]  # 12 characters at most
STATE_SIDE = '<b>state & "side"</b> \'\\'  # a hostile value held by the state, not the district
BAD_GENDER = '"&'  # unmapped code (2 characters): its reason quotes it
BAD_GRADE = "<b>"  # unmapped code (4 characters at most)

NAME_COLUMNS = ("last_name", "first_name", "middle_name")


# ---------------------------------------------------------------- report readers


def pdf_text(path: Path) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(path).pages)


def docx_cells(path: Path) -> list[tuple[str, ...]]:
    doc = Document(str(path))
    rows = []
    for tr in doc.element.body.iter(qn("w:tr")):
        rows.append(
            tuple("".join(t.text or "" for t in tc.iter(qn("w:t"))) for tc in tr.iter(qn("w:tc")))
        )
    return rows


def flat(text: str) -> str:
    """Text without any white space: a long value may wrap anywhere in the PDF."""
    return re.sub(r"\s+", "", text)


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def is_rtl(text: str) -> bool:
    """Right-to-left letters or bidi controls: the PDF holds these in visual order."""
    return any(unicodedata.bidirectional(ch) in ("R", "AL", "RLO", "RLE", "RLI") for ch in text)


def in_pdf(value: str, pdf: str) -> bool:
    """Whether ``value`` is printed in the PDF whose extracted text is ``pdf``.

    Compared as printed (control characters shown as U+FFFD, see ``printable``), without
    white space, on one line or wrapped onto the next, and in NFC (pypdf may give combining
    sequences back composed). Right-to-left text comes back in visual order, so for it only
    the characters are checked: each one of the value's is in the PDF (the DOCX check is
    exact).
    """
    text = _nfc(printable(value))
    if not is_rtl(text):
        wanted = flat(text)
        lines = [flat(line) for line in _nfc(pdf).splitlines()]
        if any(wanted in line for line in lines):
            return True
        # A value wider than its column wraps onto the next lines (beside other cells):
        # with the identity history's long values beside it, over more than two.
        return any(
            wanted[:k] in first and wanted[k:] in second
            for first, second in zip(lines, lines[1:], strict=False)
            for k in range(1, len(wanted))
        ) or any(_wraps_over(wanted, lines[i:]) for i in range(len(lines)))
    shown = {ch for ch in flat(text) if unicodedata.category(ch) != "Cf"}
    return shown <= set(_nfc(pdf))


def _wraps_over(wanted: str, lines: list[str], most: int = 6) -> bool:
    """Whether ``wanted`` is cut into pieces on consecutive ``lines``, each piece the
    longest prefix of what is left that the line holds (at most ``most`` lines)."""
    for line in lines[:most]:
        k = len(wanted)
        while k and wanted[:k] not in line:
            k -= 1
        if k == 0:
            return False
        wanted = wanted[k:]
        if not wanted:
            return True
    return False


# ---------------------------------------------------------------- setup


def _demo_keys(manifest: dict, obj: str) -> set[int]:
    keys = set()
    for kind in ("missing_at_state", "missing_at_district", "mismatched"):
        keys.update(manifest[obj][kind])
    for kind in manifest["will_fail"].get(obj, {}).values():
        keys.update(kind)
    return keys


def choose_records(district_url: str, state_url: str, manifest: dict):
    """Persons (and one enrollment) that are in sync before the test touches them."""
    busy = _demo_keys(manifest, "PersonIdentity")
    district, state = create_engine(district_url), create_engine(state_url)
    try:
        with district.connect() as d, state.connect() as s:
            at_district = {r[0] for r in d.execute(select(district_table("person").c.person_id))}
            sp = state_table("person")
            at_state = {
                r[0]
                for r in s.execute(select(sp.c.person_id).where(sp.c.district_number == DISTRICT))
            }
            persons = sorted((at_district & at_state) - busy)
            enrollment = district_table("enrollment")
            clean_enrollments = [
                r.enrollment_id
                for r in d.execute(
                    select(enrollment.c.enrollment_id, enrollment.c.person_id).order_by(
                        enrollment.c.enrollment_id
                    )
                )
                if r.enrollment_id not in _demo_keys(manifest, "Enrollment")
                and r.person_id in persons[10:]
            ]
    finally:
        district.dispose()
        state.dispose()
    assert len(persons) >= 12 and clean_enrollments
    return persons[:9], persons[9], clean_enrollments[0]


def plant(district_url: str, state_url: str, persons: list[int], failing: int, enrollment: int):
    """Write the hostile values; returns {(person, column): district value} of current rows."""
    planted: dict[tuple[int, str], str] = {}
    district, state = create_engine(district_url), create_engine(state_url)
    identity, person = district_table("identity"), district_table("person")
    try:
        with district.begin() as conn:
            rows = conn.execute(
                select(identity.c.identity_id, identity.c.person_id, person.c.current_identity_id)
                .join(person, person.c.person_id == identity.c.person_id)
                .where(identity.c.person_id.in_(persons))
                .order_by(identity.c.identity_id)
            ).all()
            # Current identities first, so each hostile name lands in one that is compared
            # (and reported); identity history rows get them too, in turn.
            rows.sort(key=lambda r: (r.identity_id != r.current_identity_id, r.identity_id))
            names = iter(NAMES * 4)
            for n, row in enumerate(rows):
                values = {column: next(names) for column in NAME_COLUMNS}
                values["suffix"] = SUFFIXES[n % len(SUFFIXES)]
                conn.execute(
                    update(identity)
                    .where(identity.c.identity_id == row.identity_id)
                    .values(**values)
                )
                if row.identity_id == row.current_identity_id:
                    planted.update({(row.person_id, c): v for c, v in values.items()})
            for n, pid in enumerate(persons):
                state_id = STATE_IDS[n % len(STATE_IDS)]
                conn.execute(
                    update(person).where(person.c.person_id == pid).values(state_id=state_id)
                )
                planted[(pid, "state_id")] = state_id
            conn.execute(
                update(identity).where(identity.c.person_id == failing).values(gender=BAD_GENDER)
            )
            enr = district_table("enrollment")
            conn.execute(
                update(enr).where(enr.c.enrollment_id == enrollment).values(grade=BAD_GRADE)
            )
        # One hostile value on the state side too: the report shows it as the state value.
        sid, sp = state_table("identity"), state_table("person")
        with state.begin() as conn:
            current = conn.scalar(
                select(sp.c.current_identity_id).where(
                    sp.c.district_number == DISTRICT, sp.c.person_id == persons[0]
                )
            )
            conn.execute(
                update(sid)
                .where(sid.c.district_number == DISTRICT, sid.c.identity_id == current)
                .values(middle_name=STATE_SIDE)
            )
    finally:
        district.dispose()
        state.dispose()
    assert set(NAMES) <= set(planted.values()), "every hostile name is in a current identity"
    return planted


def read_rows(url: str, side: str, persons: list[int]) -> dict:
    """{(table, id): {column: value}} of the persons' person and identity rows on one side."""
    out = {}
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            for name, id_column in (("person", "person_id"), ("identity", "identity_id")):
                table = district_table(name) if side == "district" else state_table(name)
                query = select(table).where(table.c.person_id.in_(persons))
                if side == "state":
                    query = query.where(table.c.district_number == DISTRICT)
                for row in conn.execute(query).mappings():
                    values = {k: v for k, v in row.items() if k != "district_number"}
                    out[(name, values[id_column])] = values
    finally:
        engine.dispose()
    return out


def as_bytes(rows: dict) -> dict:
    return {
        key: {c: (v.encode("utf-8") if isinstance(v, str) else v) for c, v in row.items()}
        for key, row in rows.items()
    }


# ---------------------------------------------------------------- the scenario


def hostile_round_trip(monkeypatch, data_dir: Path, district_url, state_url, manifest, admin):
    from flows.sync_request import selective_sync
    from flows.verification_summary import verification_summary
    from selective_sync.db import make_engine
    from selective_sync.registry import get_object
    from selective_sync.verification import engine as verify_module

    persons, failing, enrollment = choose_records(district_url, state_url, manifest)
    planted = plant(district_url, state_url, persons, failing, enrollment)
    state_before = read_rows(state_url, "state", persons)

    # The mismatches' differences come from the full rows, read for those keys only.
    typed_reads = []
    original = verify_module._settle_from_rows

    def spy(*args, **kwargs):
        typed_reads.append(args[2].name)
        return original(*args, **kwargs)

    monkeypatch.setattr(verify_module, "_settle_from_rows", spy)

    # ---- Verification Summary: exact values in the result and all three reports
    run_id, state, summary = run_flow(
        verification_summary, objects=["PersonIdentity"], requested_by=admin
    )
    assert state.is_completed(), state
    assert "PersonIdentity" in typed_reads
    issues = {i.key: i for i in summary.objects[0].issues}
    expected_lines = []
    for pid in persons:
        assert issues[pid].issue == "mismatched"
        diffs = {d.column: (d.district, d.state) for d in issues[pid].diffs}
        current = next(
            r
            for (t, _), r in state_before.items()
            if t == "identity"
            and r["person_id"] == pid
            and r["identity_id"] == state_before[("person", pid)]["current_identity_id"]
        )
        for column in (*NAME_COLUMNS, "suffix", "state_id"):
            # Both values as compared: trim strips space, TAB, CR and LF at either end.
            d_value = planted[(pid, column)].strip(" \t\r\n")
            s_value = (
                state_before[("person", pid)][column] if column == "state_id" else current[column]
            )
            s_value = s_value.strip(" \t\r\n") if isinstance(s_value, str) else s_value
            assert diffs[column] == (d_value, s_value), (pid, column, diffs.get(column))
            expected_lines.append((pid, column, d_value, s_value))

    report_dir = data_dir / "reports" / "verification" / str(DISTRICT)
    docx_rows = set(docx_cells(report_dir / f"{run_id}.docx"))
    pdf = pdf_text(report_dir / f"{run_id}.pdf")
    with open(report_dir / f"{run_id}.csv", newline="", encoding="utf-8") as fh:
        csv_rows = {tuple(r) for r in csv.reader(fh)}
    for pid, column, d_value, s_value in expected_lines:
        s_text = "NULL" if s_value is None else s_value
        assert (str(pid), "Mismatched", column, printable(d_value), printable(s_text)) in docx_rows
        assert (
            "PersonIdentity",
            str(pid),
            "Mismatched",
            column,
            neutralise(d_value),
            neutralise(s_text),
        ) in csv_rows, (pid, column, d_value)
        for value in (d_value, s_text):
            assert in_pdf(value, pdf), (pid, column, value)
        assert re.search(rf"^{pid}\s+Mismatched\s+{column}\b", pdf, re.M), (pid, column)
    assert STATE_SIDE in pdf and "<script>alert(1)</script>" in pdf
    assert "&lt;" not in pdf.replace("&lt;b&gt;", "")  # no HTML escapes shown as text

    # The workbook: every value a text cell holding it exactly (one line, as everywhere);
    # a formula-looking one flagged as typed-in text, never stored as a formula.
    sheet = openpyxl.load_workbook(report_dir / f"{run_id}.xlsx")["PersonIdentity"]
    xlsx_cells = {(r[0].value, r[2].value): r for r in sheet.iter_rows(min_row=2)}
    for pid, column, d_value, s_value in expected_lines:
        row = xlsx_cells[(pid, column)]
        assert row[1].value == "Mismatched"
        for cell, value in ((row[3], d_value), (row[4], "NULL" if s_value is None else s_value)):
            assert cell.value == (printable(value) or None), (pid, column, value)
            if cell.value is not None:
                assert cell.data_type == "s", (pid, column, value)
                assert cell.quotePrefix == cell.value.startswith(FORMULA_STARTS), (pid, value)

    # ---- Selective Sync: byte-for-byte copies, clean verification, literal reasons
    sync_runs = []
    run_id, state, result = run_flow(
        selective_sync, object="PersonIdentity", ids=[*persons, failing], requested_by=admin
    )
    assert state.is_completed(), state
    sync_runs.append(run_id)
    by_key = {k.key: k for k in result.keys}
    for pid in persons:
        assert by_key[pid].outcome is Outcome.SYNCED, by_key[pid]
    gender_reason = by_key[failing].reason
    assert by_key[failing].outcome is Outcome.FAILED
    assert gender_reason == f"gender code {BAD_GENDER!r} has no state mapping", gender_reason

    run_id, state, result = run_flow(
        selective_sync, object="Enrollment", ids=str(enrollment), requested_by=admin
    )
    sync_runs.append(run_id)
    grade_reason = result.keys[0].reason
    assert result.keys[0].outcome is Outcome.FAILED
    assert grade_reason == "grade code '<b>' has no state mapping", grade_reason

    district_rows = read_rows(district_url, "district", persons)
    state_rows = read_rows(state_url, "state", persons)
    assert as_bytes(state_rows) == as_bytes(district_rows)
    assert state_rows == district_rows

    district, state_engine = make_engine(district_url), make_engine(state_url)
    try:
        from selective_sync.verification.engine import verify_object

        after = verify_object(
            district, state_engine, get_object("PersonIdentity"), DISTRICT, persons
        )
    finally:
        district.dispose()
        state_engine.dispose()
    assert after.errors == 0, after.issues
    # Each (record, column) value above: in all three verification reports, then synced.
    tally.add("hostile_values_checked", len(expected_lines))

    from selective_sync.reports.on_demand import SyncReports
    from selective_sync.reports.storage import StoredReport

    for run_id, key, reason in zip(
        sync_runs, (failing, enrollment), (gender_reason, grade_reason), strict=True
    ):
        # The reports are made when first opened, from the ledger: open them.
        for fmt in ("pdf", "docx"):
            SyncReports.from_settings().path(StoredReport.sync(run_id, fmt))
        sync_dir = data_dir / "reports" / "sync"
        rows = docx_cells(sync_dir / f"{run_id}.docx")
        assert (str(key), reason) in rows, rows[:5]
        assert reason in pdf_text(sync_dir / f"{run_id}.pdf")
        tally.add("hostile_values_checked")
    return persons


def test_hostile_values_sqlite(demo, admin, monkeypatch):
    hostile_round_trip(
        monkeypatch, demo.dir, demo.district_url, demo.state_url, demo.manifest, admin
    )


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_hostile_values_on_servers(kind, demo, monkeypatch, tmp_path):
    """The same on a real server for both sides: charsets (utf8mb4), collations and padding."""
    from selective_sync.demo import generate_demo
    from selective_sync.rights import RightsStore

    with server_database(kind) as district_url, server_database(kind) as state_url:
        folder = tmp_path / "server-demo"
        folder.mkdir()
        generate_demo(folder, persons=80, seed=5, district_url=district_url, state_url=state_url)
        manifest = json.loads((folder / "manifest.json").read_text())
        monkeypatch.setenv("SELECTIVE_SYNC_DISTRICT_URL", district_url)
        monkeypatch.setenv("SELECTIVE_SYNC_STATE_URL", state_url)
        with RightsStore.from_settings() as store:  # rights live in the state database
            store.bootstrap_admin("server-admin")
        try:
            hostile_round_trip(
                monkeypatch, demo.dir, district_url, state_url, manifest, "server-admin"
            )
        finally:
            release_engines(district_url, state_url)
    shutil.rmtree(folder, ignore_errors=True)


def test_renderers_escape_markup_in_every_field(tmp_path):
    """A direct renderer check: markup in the district name, user, reasons and values is
    text in the PDF (never bold, never a script) and in the DOCX."""
    import datetime as dt

    from selective_sync.models import (
        ColumnDiff,
        DistrictVerification,
        KeyOutcome,
        ObjectVerification,
        RecordIssue,
        SyncResult,
    )
    from selective_sync.reports import (
        render_docx,
        render_pdf,
        sync_report_from_result,
        verification_report_from_result,
    )

    now = dt.datetime(2026, 11, 28, 20, 0, tzinfo=dt.UTC)
    markup = "<b>bold</b> <img src=x onerror=alert(1)> &amp; </td></tr>"
    result = SyncResult(
        object="Enrollment",
        district_number=275,
        district_name="<b>Valley</b>",
        requested_by="<i>mallory</i>",
        requested_at=now,
        completed_at=now,
        check_dependencies=True,
        dry_run=False,
        keys=[
            KeyOutcome(1, Outcome.FAILED, reason=markup),
            KeyOutcome(2, Outcome.SYNCED, parents_synced=["<u>PersonIdentity 9</u>"]),
        ],
    )
    ov = ObjectVerification(
        "PersonIdentity",
        275,
        now,
        10,
        10,
        mismatched=[3],
        issues=[RecordIssue(3, "mismatched", (ColumnDiff("first_name", markup, "<b>x</b>"),))],
    )
    reports = [
        sync_report_from_result(result, now),
        verification_report_from_result(DistrictVerification(275, "<b>Valley</b>", [ov]), now),
    ]
    for n, report in enumerate(reports):
        pdf, docx = tmp_path / f"{n}.pdf", tmp_path / f"{n}.docx"
        render_pdf(report, pdf)
        render_docx(report, docx)
        text = pdf_text(pdf)
        cells = {c for row in docx_cells(docx) for c in row}
        assert markup in text and markup in cells
        assert "275 <B>VALLEY</B> District" in text
        body = "\n".join(p.text for p in Document(str(docx)).paragraphs)
        if n == 0:
            assert "by <i>mallory</i> included" in text and "<i>mallory</i>" in body
            assert "<u>PersonIdentity 9</u>" in text
        else:
            assert "<b>x</b>" in text and "<b>x</b>" in cells


def test_csv_export_neutralises_formulas(tmp_path):
    """OWASP CSV injection: a value starting with = + - @ tab or CR gets a leading quote."""
    import datetime as dt

    from selective_sync.models import ColumnDiff, DistrictVerification, ObjectVerification
    from selective_sync.models import RecordIssue as Issue
    from selective_sync.reports import verification_csv, verification_report_from_result

    now = dt.datetime(2026, 11, 28, 20, 0, tzinfo=dt.UTC)
    dangerous = [
        '=HYPERLINK("http://evil.example","x")',
        "+1+1",
        "-2+3",
        "@SUM(A1:A9)",
        "\t=1+1",
        "\r=1+1",
        "=cmd|' /C calc'!A0",
    ]
    harmless = ["plain", " =leading space", "a=b", "", "O'Brien", "1-2"]
    diffs = tuple(
        ColumnDiff("first_name", value, harmless[i % len(harmless)])
        for i, value in enumerate(dangerous)
    ) + tuple(ColumnDiff("last_name", value, "x") for value in harmless)
    ov = ObjectVerification(
        "PersonIdentity", 275, now, 1, 1, mismatched=[7], issues=[Issue(7, "mismatched", diffs)]
    )
    report = verification_report_from_result(DistrictVerification(275, "Maple", [ov]), now)
    rows = list(csv.reader(io.StringIO(verification_csv(report))))[1:]
    district_values = [r[4] for r in rows]
    assert district_values == ["'" + v for v in dangerous] + harmless
    for row in rows:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), row


def test_hostile_text_is_not_normalised_away():
    """The hostile names keep their exact code points (NFD stays NFD): nothing on the way may
    normalise them, or the byte-for-byte comparison above would be comparing less."""
    combining = next(n for n in NAMES if "\u0308" in n)
    assert unicodedata.normalize("NFC", combining) != combining
    assert all(len(n) <= 60 for n in NAMES)
    assert all(len(s) <= 10 for s in SUFFIXES) and all(len(s) <= 12 for s in STATE_IDS)
