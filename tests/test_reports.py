"""Reports read back with real readers: pypdf for PDF, python-docx for DOCX, csv for CSV."""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
import re
import subprocess
import time
from pathlib import Path

import pytest
from docx import Document
from docx.oxml.ns import qn
from pypdf import PdfReader

from selective_sync.errors import BadInput
from selective_sync.models import (
    ColumnDiff,
    DistrictVerification,
    KeyOutcome,
    ObjectVerification,
    Outcome,
    RecordIssue,
    SyncResult,
)
from selective_sync.reports import (
    format_accuracy,
    format_timestamp,
    render_docx,
    render_pdf,
    render_report,
    sync_report_from_result,
    verification_csv,
    verification_report_from_result,
    write_verification_csv,
)
from selective_sync.reports.model import (
    DRY_RUN_NOTICE,
    FAILED_HEADING,
    NOT_FOUND_HEADING,
    PARENTS_HEADING,
    SUCCESSFUL_HEADING,
)

NOW = dt.datetime(2026, 11, 28, 20, 15, tzinfo=dt.UTC)
REQUESTED = dt.datetime(2026, 11, 28, 20, 10, tzinfo=dt.UTC)
GENERATED_LINE = "Generated on 11/28/2026 08:15 PM UTC"

# Printed literally by both formats, and extractable from the PDF with the fonts every
# machine here has (DejaVu): markup, entities, quotes, accents.
LITERALS = [
    "<script>alert(1)</script>",
    'Tom &amp; "Jerry" O\'Brien & co',
    "Zoë Müller-Łukasz façade",
]
# Need fonts the machine may lack (CJK, emoji): checked in DOCX; in the PDF only that
# they render (see test_pdf_wide_and_rtl_text_renders).
WIDE = ["学生 名前", "🎓 graduate", "שלום עולם"]

SECTIONS = {
    FAILED_HEADING: "failed",
    SUCCESSFUL_HEADING: "successful",
    NOT_FOUND_HEADING: "not_found",
    PARENTS_HEADING: "parents",
}
SECTION_RE = re.compile(r"^\s*(" + "|".join(re.escape(h) for h in SECTIONS) + r") \([\d,]+\)\s*$")
ENTRY_RE = re.compile(r"(?:^|\s{2,})(\d+) {2}(\S.*?)(?=\s{2,}\d+ {2}\S|\s*$)")


def make_result(
    n: int, *, dry_run: bool = False, reasons: list[str] | None = None, every: int = 10
):
    """``n`` Enrollment keys: a quarter failed, the rest synced, unchanged or not found.

    Every ``every``-th failure has one of ``reasons`` (in turn), the others a missing parent.
    """
    reasons = reasons or LITERALS
    keys = []
    for i in range(n):
        key = 10_000 + i
        if i % 4 == 0:
            nth = i // 4
            if nth % every == 0:
                reason = reasons[(nth // every) % len(reasons)]
            else:
                reason = f"parent PersonIdentity {900 + i} is not at the state"
            keys.append(KeyOutcome(key, Outcome.FAILED, reason=reason))
        elif i % 4 == 1:
            parents = [f"PersonIdentity {900 + i}"] if i % 20 == 1 else []
            keys.append(KeyOutcome(key, Outcome.SYNCED, parents_synced=parents))
        elif i % 4 == 2:
            keys.append(KeyOutcome(key, Outcome.UNCHANGED))
        else:
            outcome = Outcome.NOT_FOUND if i % 8 == 3 else Outcome.SYNCED
            keys.append(KeyOutcome(key, outcome))
    return SyncResult(
        object="Enrollment",
        district_number=275,
        district_name="Maple Valley",
        requested_by="jdoe",
        requested_at=REQUESTED,
        completed_at=NOW,
        check_dependencies=True,
        dry_run=dry_run,
        keys=keys,
    )


def expected_sections(result: SyncResult) -> dict[str, dict[int, str | None]]:
    out: dict[str, dict[int, str | None]] = {v: {} for v in SECTIONS.values()}
    for k in result.keys:
        if k.outcome is Outcome.FAILED:
            out["failed"][k.key] = k.reason
        elif k.outcome is Outcome.NOT_FOUND:
            out["not_found"][k.key] = None
        else:
            out["successful"][k.key] = "*" if k.outcome is Outcome.UNCHANGED else ""
        if k.parents_synced:
            out["parents"][k.key] = ", ".join(k.parents_synced)
    return out


# --- readers ----------------------------------------------------------------------------


@functools.cache
def _page_texts(path: str, mtime_ns: int) -> tuple[str, ...]:
    return tuple(page.extract_text() for page in PdfReader(path).pages)


def pdf_page_texts(path: Path) -> list[str]:
    """Text of each page (cached: pypdf takes seconds on a long report)."""
    return list(_page_texts(str(path), Path(path).stat().st_mtime_ns))


def pdf_body_lines(pages: list[str], district_line: str) -> list[str]:
    """Every page's text without its running header, pages joined."""
    lines = []
    for text in pages:
        for line in text.splitlines():
            line = re.sub(r"\s*Page \d+ of \d+\s*$", "", line)
            line = line.replace(GENERATED_LINE, "")
            if line.strip() and line.strip() != district_line:
                lines.append(line)
    return lines


def parse_sections(lines: list[str]) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current = None
    for line in lines:
        m = SECTION_RE.match(line)
        if m:
            current = SECTIONS[m.group(1)]
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    return sections


def pdf_sections(path: Path, district_line: str) -> dict[str, dict[int, str | None]]:
    """IDs (and reasons / marks) per section, as printed in the PDF."""
    raw = parse_sections(pdf_body_lines(pdf_page_texts(path), district_line))
    out: dict[str, dict[int, str | None]] = {}
    for name, lines in raw.items():
        found: dict[int, str | None] = {}
        for line in lines:
            if line.strip().startswith(("ID ", "None.", "*")):
                continue  # column header, empty section, legend
            if name in ("failed", "parents"):
                for m in ENTRY_RE.finditer(line):
                    assert int(m.group(1)) not in found, f"{m.group(1)} twice in {name}"
                    found[int(m.group(1))] = m.group(2).strip()
            else:
                for token in line.split():
                    key = int(token.rstrip("*"))
                    assert key not in found, f"{key} twice in {name}"
                    found[key] = (
                        ("*" if token.endswith("*") else "") if name != "not_found" else None
                    )
        out[name] = found
    return out


def docx_blocks(path: Path) -> list[tuple[str, object]]:
    """The body in order: ("p", (style, text)) and ("table", rows of cell texts)."""
    doc = Document(str(path))
    styles = {s.style_id: s.name for s in doc.styles}
    blocks: list[tuple[str, object]] = []
    for el in doc.element.body.iterchildren():
        if el.tag == qn("w:p"):
            style = el.find(f"{qn('w:pPr')}/{qn('w:pStyle')}")
            name = styles.get(style.get(qn("w:val"))) if style is not None else "Normal"
            blocks.append(("p", (name, "".join(t.text or "" for t in el.iter(qn("w:t"))))))
        elif el.tag == qn("w:tbl"):
            rows = [
                ["".join(t.text or "" for t in tc.iter(qn("w:t"))) for tc in tr.iter(qn("w:tc"))]
                for tr in el.iter(qn("w:tr"))
            ]
            blocks.append(("table", rows))
    return blocks


def docx_sections(path: Path) -> dict[str, dict[int, str | None]]:
    out: dict[str, dict[int, str | None]] = {}
    current = None
    for kind, value in docx_blocks(path):
        if kind == "p":
            style, text = value
            m = SECTION_RE.match(text)
            if m and style == "Heading 2":
                current = SECTIONS[m.group(1)]
                out[current] = {}
            continue
        if current is None:
            continue
        rows = value
        found = out[current]
        if current in ("failed", "parents"):
            assert rows[0] in (["ID", "Reason"], ["ID", "Parents synced"])
            for key, text in rows[1:]:
                assert int(key) not in found
                found[int(key)] = text
        else:
            for row in rows:
                for cell in row:
                    if cell:
                        key = int(cell.rstrip("*"))
                        assert key not in found
                        found[key] = (
                            ("*" if cell.endswith("*") else "") if current != "not_found" else None
                        )
    return out


def docx_text(path: Path) -> str:
    lines = []
    for kind, value in docx_blocks(path):
        if kind == "p":
            lines.append(value[1])
        else:
            lines.extend(" | ".join(r) for r in value)
    return "\n".join(lines)


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sync_files(tmp_path_factory):
    """A 3,000-ID report (many pages) rendered once in both formats."""
    result = make_result(3000)
    report = sync_report_from_result(result, NOW)
    out = tmp_path_factory.mktemp("sync")
    pdf, docx = out / "sync.pdf", out / "sync.docx"
    assert render_pdf(report, pdf) == pdf
    assert render_docx(report, docx) == docx
    return result, report, pdf, docx


def make_verification() -> DistrictVerification:
    person = ObjectVerification(
        object="PersonIdentity",
        district_number=275,
        verified_at=NOW,
        at_district=1000,
        at_state=999,
        missing_at_state=[11, 12],
        missing_at_district=[13],
        mismatched=[14, 15, 16],
        issues=[
            RecordIssue(11, "missing_at_state"),
            RecordIssue(12, "missing_at_state"),
            RecordIssue(13, "missing_at_district"),
            RecordIssue(14, "mismatched", (ColumnDiff("last_name", "Smith", "Smyth"),)),
            RecordIssue(
                15,
                "mismatched",
                (
                    ColumnDiff("first_name", LITERALS[0], LITERALS[1]),
                    ColumnDiff("birth_date", dt.date(2010, 5, 1), None),
                ),
            ),
            RecordIssue(16, "mismatched", (ColumnDiff("middle_name", "", None),)),
        ],
    )
    enrollment = ObjectVerification(
        object="Enrollment",
        district_number=275,
        verified_at=NOW,
        at_district=500,
        at_state=500,
    )
    return DistrictVerification(275, "Maple Valley", [person, enrollment])


# --- Sync Request History ---------------------------------------------------------------


def test_model_sections_and_texts():
    result = make_result(40, dry_run=True)
    report = sync_report_from_result(result, NOW)
    exp = expected_sections(result)
    assert report.district_line == "275 MAPLE VALLEY District"
    assert report.generated_line == GENERATED_LINE
    assert report.title == "Sync Request History"
    assert report.intro == (
        "The Enrollment sync performed on 11/28/2026 08:10 PM UTC by jdoe "
        "included the following IDs:"
    )
    assert report.dry_run_notice == DRY_RUN_NOTICE
    assert {f.key: f.reason for f in report.failed} == exp["failed"]
    assert {s.key for s in report.successful} == set(exp["successful"])
    assert report.not_found == sorted(exp["not_found"])
    assert [s.key for s in report.successful] == sorted(exp["successful"])


def test_pdf_header_and_page_numbers_on_every_page(sync_files):
    _, report, pdf, _ = sync_files
    pages = pdf_page_texts(pdf)
    assert len(pages) >= 3
    for number, text in enumerate(pages, start=1):
        assert "275 MAPLE VALLEY District" in text
        assert GENERATED_LINE in text
        assert re.findall(r"Page (\d+) of (\d+)", text) == [(str(number), str(len(pages)))]


def test_pdf_every_id_in_its_section(sync_files):
    result, report, pdf, _ = sync_files
    assert pdf_sections(pdf, report.district_line) == expected_sections(result)
    body = "\n".join(pdf_body_lines(pdf_page_texts(pdf), report.district_line))
    assert "Sync Request History" in body
    assert report.intro in body
    assert f"Records succeeded: {result.succeeded:,}/3,000." in body


def test_pdf_prints_markup_and_accents_literally(sync_files):
    _, _, pdf, _ = sync_files
    text = "\n".join(pdf_page_texts(pdf))
    for literal in LITERALS:
        assert literal in text
    assert "<script>" in text


def test_docx_header_fields_and_content(sync_files):
    result, report, _, docx = sync_files
    doc = Document(str(docx))
    header = doc.sections[0].header
    texts = [p.text for p in header.paragraphs]
    assert texts[0] == "275 MAPLE VALLEY District"
    assert texts[1] == GENERATED_LINE
    xml = header._element.xml
    instrs = [f.get(qn("w:instr")).strip() for f in header._element.iter(qn("w:fldSimple"))]
    assert instrs == ["PAGE", "NUMPAGES"]
    assert "Page " in xml and " of " in xml
    assert docx_sections(docx) == expected_sections(result)
    body = docx_text(docx)
    assert report.intro in body
    for literal in LITERALS:
        assert literal in body


def test_docx_rows_never_split_and_header_rows_repeat(sync_files):
    *_, docx = sync_files
    doc = Document(str(docx))
    rows = list(doc.element.body.iter(qn("w:tr")))
    assert len(rows) > 3000 // 8
    assert all(r.find(f"{qn('w:trPr')}/{qn('w:cantSplit')}") is not None for r in rows)
    headers = [r for r in rows if r.find(f"{qn('w:trPr')}/{qn('w:tblHeader')}") is not None]
    assert len(headers) == 2  # the failed and the parents tables
    widths = {len(list(t.iter(qn("w:gridCol")))) for t in doc.element.body.iter(qn("w:tbl"))}
    assert 8 in widths  # IDs laid out 8 per row


def test_pdf_and_docx_carry_the_same_content(sync_files):
    _, report, pdf, docx = sync_files
    assert pdf_sections(pdf, report.district_line) == docx_sections(docx)


def test_dry_run_notice_in_both_formats(tmp_path):
    report = sync_report_from_result(make_result(12, dry_run=True), NOW)
    render_pdf(report, tmp_path / "r.pdf")
    render_docx(report, tmp_path / "r.docx")
    pdf_text = " ".join(" ".join(pdf_page_texts(tmp_path / "r.pdf")).split())
    assert DRY_RUN_NOTICE in pdf_text
    assert DRY_RUN_NOTICE in docx_text(tmp_path / "r.docx")


def test_empty_sections_say_none(tmp_path):
    result = make_result(1)  # one failed key, nothing else
    result.check_dependencies = False
    report = sync_report_from_result(result, NOW)
    render_pdf(report, tmp_path / "r.pdf")
    render_docx(report, tmp_path / "r.docx")
    sections = parse_sections(
        pdf_body_lines(pdf_page_texts(tmp_path / "r.pdf"), report.district_line)
    )
    assert sections["successful"] == ["None."]
    assert sections["not_found"] == ["None."]
    assert "parents" not in sections  # no check dependencies, no parents
    assert docx_sections(tmp_path / "r.docx") == {
        "failed": {10_000: LITERALS[0]},
        "successful": {},
        "not_found": {},
    }


def test_long_entries_wrap_and_never_split_across_pages(tmp_path):
    # Long reasons (with a 300-character word) take several lines each; no entry may
    # start on one page and continue on the next.
    long_reason = "state refused the value " + "x" * 300 + " for column last_name"
    keys = [KeyOutcome(1000 + i, Outcome.FAILED, reason=long_reason) for i in range(150)]
    result = make_result(0)
    result.keys = keys
    report = sync_report_from_result(result, NOW)
    render_pdf(report, tmp_path / "r.pdf")
    pages = pdf_page_texts(tmp_path / "r.pdf")
    assert len(pages) > 2
    for text in pages[1:]:
        first = pdf_body_lines([text], report.district_line)[0]
        assert SECTION_RE.match(first) or re.match(r"\d+ {2}state refused", first), first
    joined = "".join(pdf_body_lines(pages, report.district_line))
    assert joined.count("for column last_name") == 150
    assert "x" * 300 not in joined  # wrapped, not overflowing the page


def test_pdf_wide_and_rtl_text_renders(tmp_path):
    """CJK, emoji and Hebrew render without error in both formats (DOCX literally)."""
    result = make_result(80, reasons=WIDE + LITERALS, every=1)
    result.district_name = "Maple Valley 学区 🎓 שלום"
    report = sync_report_from_result(result, NOW)
    render_pdf(report, tmp_path / "r.pdf")
    render_docx(report, tmp_path / "r.docx")
    assert len(PdfReader(tmp_path / "r.pdf").pages) >= 1
    text = docx_text(tmp_path / "r.docx")
    for literal in WIDE:
        assert literal in text
    header = Document(str(tmp_path / "r.docx")).sections[0].header.paragraphs[0].text
    assert header == "275 MAPLE VALLEY 学区 🎓 שלום District"
    if _has_cjk_font():
        # Only with a CJK font does weasyprint embed real glyphs (else .notdef boxes,
        # whose custom encoding pypdf cannot decode).
        assert "学生 名前" in "\n".join(pdf_page_texts(tmp_path / "r.pdf"))


def _has_cjk_font() -> bool:
    try:
        out = subprocess.run(["fc-list", ":lang=zh"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return bool(out.stdout.strip())


def test_control_characters_print_as_placeholders(tmp_path):
    result = make_result(1, reasons=["tab\there\nnew line\x00nul"])
    report = sync_report_from_result(result, NOW)
    render_docx(report, tmp_path / "r.docx")
    render_pdf(report, tmp_path / "r.pdf")
    assert "tab here new line\ufffdnul" in docx_text(tmp_path / "r.docx")
    assert "tab here new line" in "\n".join(pdf_page_texts(tmp_path / "r.pdf"))


# --- writing: atomic, clear errors ------------------------------------------------------


@pytest.mark.parametrize("render", [render_pdf, render_docx], ids=["pdf", "docx"])
def test_unwritable_paths_raise_bad_input_and_leave_nothing(tmp_path, render):
    report = sync_report_from_result(make_result(5), NOW)
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    (tmp_path / "adir").mkdir()
    for target in (blocker / "r.out", tmp_path / "missing" / "r.out", tmp_path / "adir"):
        with pytest.raises(BadInput, match=r"^cannot write report to "):
            render(report, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "file.txt"]
    assert list((tmp_path / "adir").iterdir()) == []


@pytest.mark.parametrize("fmt", ["pdf", "docx"])
def test_failure_while_rendering_keeps_the_old_file(tmp_path, monkeypatch, fmt):
    report = sync_report_from_result(make_result(5), NOW)
    target = tmp_path / f"r.{fmt}"
    target.write_bytes(b"previous report")

    def boom(*args, **kwargs):
        raise RuntimeError("renderer crashed")

    if fmt == "pdf":
        import weasyprint

        monkeypatch.setattr(weasyprint.HTML, "write_pdf", boom)
        render = render_pdf
    else:
        from selective_sync.reports import docx as docx_module

        monkeypatch.setattr(docx_module, "_sync_body", boom)
        render = render_docx
    with pytest.raises(RuntimeError, match="renderer crashed"):
        render(report, target)
    assert target.read_bytes() == b"previous report"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_written_files_get_normal_permissions(tmp_path):
    report = sync_report_from_result(make_result(5), NOW)
    render_docx(report, tmp_path / "r.docx")
    assert (tmp_path / "r.docx").stat().st_mode & 0o044  # readable by others, not 0600


# --- Verification Summary ---------------------------------------------------------------


@pytest.fixture(scope="module")
def verification_files(tmp_path_factory):
    report = verification_report_from_result(make_verification(), NOW)
    out = tmp_path_factory.mktemp("ver")
    render_pdf(report, out / "v.pdf")
    render_docx(report, out / "v.docx")
    write_verification_csv(report, out / "v.csv")
    return report, out


EXPECTED_ISSUES = [
    ("PersonIdentity", "11", "Missing at state", "", "", ""),
    ("PersonIdentity", "12", "Missing at state", "", "", ""),
    ("PersonIdentity", "13", "Missing at district", "", "", ""),
    ("PersonIdentity", "14", "Mismatched", "last_name", "Smith", "Smyth"),
    ("PersonIdentity", "15", "Mismatched", "first_name", LITERALS[0], LITERALS[1]),
    ("PersonIdentity", "15", "Mismatched", "birth_date", "2010-05-01", "NULL"),
    ("PersonIdentity", "16", "Mismatched", "middle_name", "", "NULL"),
]


def test_verification_model():
    report = verification_report_from_result(make_verification(), NOW)
    # PersonIdentity: distinct 1000 + 1 = 1001, errors 6 -> 99.40%; overall 1501, 6.
    assert report.district_cells() == ("275", "Maple Valley", "99.60%")
    assert report.objects[0].cells() == (
        "PersonIdentity",
        "99.40%",
        "11/28/2026 08:15 PM UTC",
        "1,001",
        "1,000",
        "999",
        "6",
        "2",
        "1",
        "3",
    )
    assert report.objects[1].accuracy == "100.00%"
    assert report.issues[0].columns == (
        "personID",
        "Issue",
        "Column",
        "District value",
        "State value",
    )


def test_verification_csv(verification_files):
    report, out = verification_files
    rows = list(csv.reader(io.StringIO(verification_csv(report))))
    assert rows[0] == ["object", "key", "issue", "column", "district_value", "state_value"]
    assert [tuple(r) for r in rows[1:]] == EXPECTED_ISSUES
    assert (out / "v.csv").read_bytes().decode("utf-8") == verification_csv(report)


def test_verification_docx_tables(verification_files):
    _, out = verification_files
    tables = [v for k, v in docx_blocks(out / "v.docx") if k == "table"]
    assert tables[0] == [
        ["District", "Name", "Overall Accuracy"],
        ["275", "Maple Valley", "99.60%"],
    ]
    assert tables[1][0][:3] == ["Object", "Accuracy", "Timestamp"]
    assert tables[1][1][:2] == ["PersonIdentity", "99.40%"]
    assert tables[2][0] == ["personID", "Issue", "Column", "District value", "State value"]
    assert [tuple(r) for r in tables[2][1:]] == [r[1:] for r in EXPECTED_ISSUES]
    paragraphs = [v[1] for k, v in docx_blocks(out / "v.docx") if k == "p"]
    assert "Enrollment: 0 keys with issues" in paragraphs
    assert paragraphs[paragraphs.index("Enrollment: 0 keys with issues") + 1] == "None."


def test_verification_pdf(verification_files):
    report, out = verification_files
    pages = pdf_page_texts(out / "v.pdf")
    assert re.search(r"Page 1 of 1", pages[0])
    lines = [" ".join(line.split()) for line in pdf_body_lines(pages, report.district_line)]
    text = "\n".join(lines)
    assert "Verification Summary" in text
    assert "275 Maple Valley 99.60%" in text
    # Table cells may wrap (the timestamp does): compare with line ends as spaces.
    flat = " ".join(lines)
    assert "PersonIdentity 99.40% 11/28/2026 08:15 PM UTC 1,001 1,000 999 6 2 1 3" in flat
    assert "Enrollment 100.00%" in text
    for _, key, issue, column, district, state in EXPECTED_ISSUES:
        expected = " ".join(f"{key} {issue} {column} {district} {state}".split())
        assert expected in lines, expected


ISSUE_RE = re.compile(
    r"(\d+)\s{2,}(Missing at state|Missing at district|Mismatched)"
    r"(?:\s{2,}([a-z_]+)\s{2,}(\S+)\s{2,}(\S+))?"
)


def test_long_verification_in_both_formats(tmp_path):
    """200 keys with issues: the PDF (two issues a line, landscape) lists each one line per
    differing column, exactly as the DOCX table does."""
    issues, mas, mad, mis = [], [], [], []
    for i in range(200):
        key = 5000 + i
        if i % 3 == 0:
            issues.append(RecordIssue(key, "missing_at_state"))
            mas.append(key)
        elif i % 3 == 1:
            issues.append(RecordIssue(key, "missing_at_district"))
            mad.append(key)
        else:
            diffs = [ColumnDiff("school_id", i, i + 1)]
            if i % 5 == 0:
                diffs.append(ColumnDiff("end_date", dt.date(2026, 6, 1), None))
            issues.append(RecordIssue(key, "mismatched", tuple(diffs)))
            mis.append(key)
    ov = ObjectVerification("Enrollment", 275, NOW, 10_000, 9_990, mas, mad, mis, issues)
    report = verification_report_from_result(DistrictVerification(275, "Maple Valley", [ov]), NOW)
    render_pdf(report, tmp_path / "v.pdf")
    render_docx(report, tmp_path / "v.docx")

    page = PdfReader(tmp_path / "v.pdf").pages[0]
    assert page.mediabox.width > page.mediabox.height  # landscape
    pages = pdf_page_texts(tmp_path / "v.pdf")
    assert len(pages) >= 2
    for number, text in enumerate(pages, start=1):
        assert f"Page {number} of {len(pages)}" in text
    pdf_rows = []
    for line in pdf_body_lines(pages, report.district_line):
        for m in ISSUE_RE.finditer(line):
            pdf_rows.append(tuple(g or "" for g in m.groups()))
    assert max(len(ISSUE_RE.findall(line)) for line in pdf_body_lines(pages, "")) == 2

    tables = [v for k, v in docx_blocks(tmp_path / "v.docx") if k == "table"]
    docx_rows = [tuple(r) for r in tables[2][1:]]
    assert pdf_rows == docx_rows
    assert len(docx_rows) == 200 + len([i for i in range(200) if i % 3 == 2 and i % 5 == 0])
    assert ("5002", "Mismatched", "school_id", "2", "3") in docx_rows
    assert ("5000", "Missing at state", "", "", "") in docx_rows
    assert Document(str(tmp_path / "v.docx")).sections[0].orientation == 1  # landscape


def test_render_report_formats(tmp_path):
    sync = sync_report_from_result(make_result(8), NOW)
    ver = verification_report_from_result(make_verification(), NOW)
    assert render_report(sync, tmp_path / "s.pdf", "PDF").read_bytes()[:5] == b"%PDF-"
    assert render_report(sync, tmp_path / "s.docx", ".docx").read_bytes()[:2] == b"PK"
    assert render_report(ver, tmp_path / "v.csv", "csv").read_bytes().startswith(b"object,")
    with pytest.raises(BadInput, match="unknown report format 'html'"):
        render_report(sync, tmp_path / "s.html", "html")
    with pytest.raises(BadInput, match="Verification Summary only"):
        render_report(sync, tmp_path / "s.csv", "csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.docx", "s.pdf", "v.csv"]


def test_format_accuracy_and_timestamp():
    assert format_accuracy(0, 0) == "100.00%"
    assert format_accuracy(1000, 6) == "99.40%"
    assert format_accuracy(100, 29) == "71.00%"  # no float artefacts
    assert format_accuracy(1_000_000, 1) == "99.99%"  # never a 100.00% that hides an error
    assert format_accuracy(3, 3) == "0.00%"
    est = dt.timezone(dt.timedelta(hours=-5))
    assert format_timestamp(dt.datetime(2026, 11, 28, 15, 15, tzinfo=est)) == (
        "11/28/2026 08:15 PM UTC"
    )
    assert format_timestamp(dt.datetime(2026, 1, 2, 3, 4)) == "01/02/2026 03:04 AM UTC"


def test_docx_of_10000_ids_is_fast(tmp_path):
    report = sync_report_from_result(make_result(10_000), NOW)
    t0 = time.perf_counter()
    render_docx(report, tmp_path / "r.docx")
    # Target 3 s on an idle machine; generous here so a busy CI box does not flake.
    assert time.perf_counter() - t0 < 10
