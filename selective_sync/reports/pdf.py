"""PDF rendering with weasyprint, from HTML/CSS made by a Jinja2 template (autoescape on).

Bulk listings (thousands of IDs, reasons, record issues) are laid out here as monospaced
lines. Measured with weasyprint 70: about 1 ms per box (10,000 table cells take 10-20 s),
about 0.5 ms per line and 5 us per glyph; so IDs go 8 to a preformatted line, and long
tables print two rows per line when they fit half of it.
"""

from __future__ import annotations

import os
import re
import threading
import unicodedata
from dataclasses import dataclass
from functools import cache
from html import escape
from pathlib import Path

import jinja2
from markupsafe import Markup

from ._output import atomic_output, printable
from .model import (
    DISTRICT_COLUMNS,
    ID_COLUMNS,
    OBJECT_COLUMNS,
    Listing,
    SyncReport,
    TrendChart,
    VerificationReport,
    sync_listings,
    verification_listings,
)

TEMPLATES = Path(__file__).parent / "templates"

# Characters per monospaced line: DejaVu Sans Mono advances 0.602 em; at 7.5 pt on a
# Letter page with 14 mm side margins that is 117.9 characters (157.8 in landscape, used
# by the Verification Summary for its wide tables). Keep some slack.
LINE_CHARS = 116
LANDSCAPE_LINE_CHARS = 155
GAP = "  "
CHUNK_LINES = 32
PAIR_MIN_ROWS = 60  # about a page

# weasyprint (Pango, fontconfig through cffi) is not documented as thread-safe, and flows
# may render from worker threads: one PDF at a time per process.
_WEASYPRINT_LOCK = threading.Lock()


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # every value is text to print literally, never markup
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


# --- monospaced layout ------------------------------------------------------------------


def _char_width(ch: str) -> int:
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0
    # Wide characters (CJK, most emoji) come from a fallback font about 1 em wide,
    # i.e. 1.66 monospaced cells: count 2 so a line never overflows.
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def text_width(text: str) -> int:
    """Width of ``text`` in monospaced cells."""
    if text.isascii():
        return len(text)
    return sum(_char_width(ch) for ch in text)


def _split_at(word: str, width: int) -> tuple[str, str]:
    used = 0
    for i, ch in enumerate(word):
        w = _char_width(ch)
        if used + w > width and i > 0:
            return word[:i], word[i:]
        used += w
    return word, ""


def wrap(text: str, width: int) -> list[str]:
    """``text`` cut into lines of at most ``width`` cells: at spaces, else anywhere."""
    text = printable(text)
    if text_width(text) <= width:
        return [text]
    lines: list[str] = []
    line, used = "", 0
    for token in re.split(r"( +)", text):
        if not token:
            continue
        tw = text_width(token)
        if used + tw <= width:
            line, used = line + token, used + tw
            continue
        if token.startswith(" "):
            # Break at this run of spaces; it does not start the next line.
            lines.append(line)
            line, used = "", 0
            continue
        if line:
            lines.append(line)
        while text_width(token) > width:
            head, token = _split_at(token, width)
            lines.append(head)
        line, used = token, text_width(token)
    lines.append(line)
    return lines


def _has_rtl(text: str) -> bool:
    return not text.isascii() and any(unicodedata.bidirectional(ch) in ("R", "AL") for ch in text)


def _cell(text: str, width: int, right: bool = False) -> str:
    """``text`` padded to ``width`` cells; right-to-left text is isolated (FSI..PDI) so the
    bidi algorithm cannot reorder it across neighbouring columns."""
    pad = " " * max(width - text_width(text), 0)
    if _has_rtl(text):
        text = f"\u2068{text}\u2069"
    return pad + text if right else text + pad


def _row_lines(cells: tuple[str, ...], widths: tuple[int, ...]) -> list[str]:
    """One table row as monospaced lines; each cell wraps within its own column."""
    wrapped = [wrap(c, w) for c, w in zip(cells, widths, strict=True)]
    height = max(len(w) for w in wrapped)
    out = []
    for i in range(height):
        parts = [
            _cell(w[i] if i < len(w) else "", width)
            for w, width in zip(wrapped, widths, strict=True)
        ]
        out.append(GAP.join(parts).rstrip())
    return out


@dataclass(frozen=True)
class Block:
    """A run of monospaced lines: ``lines`` may break between pages, a ``row`` may not."""

    kind: str
    text: str


@dataclass(frozen=True)
class PdfListing:
    heading: str
    legend: str | None
    header: str | None
    blocks: list[Block]
    none_text: str


def _blocks(rows: list[list[str]]) -> list[Block]:
    """Consecutive one-line rows share a block of up to ``CHUNK_LINES`` lines; a row of
    several lines is its own block, kept on one page.

    Measured: one block of thousands of lines is slower than blocks of a few dozen
    (weasyprint handles the rest of a long block again at each line and page break), and a
    block per line is slower still (about 1 ms per box).
    """
    blocks: list[Block] = []
    run: list[str] = []

    def flush() -> None:
        for n in range(0, len(run), CHUNK_LINES):
            blocks.append(Block("lines", "\n".join(run[n : n + CHUNK_LINES])))
        run.clear()

    for lines in rows:
        if len(lines) == 1:
            run.append(lines[0])
        else:
            flush()
            blocks.append(Block("row", "\n".join(lines)))
    flush()
    return blocks


def _grid(ids: tuple[str, ...], line: int) -> list[list[str]]:
    """IDs ``ID_COLUMNS`` per line, each in a fixed-width cell, left to right."""
    cell = max(line // ID_COLUMNS, max(len(i) for i in ids) + 2)
    per_row = max(1, min(ID_COLUMNS, line // cell))
    return [
        ["".join(i.ljust(cell) for i in ids[n : n + per_row]).rstrip()]
        for n in range(0, len(ids), per_row)
    ]


def _fill(natural: list[int], room: int) -> list[int]:
    """Share ``room`` cells between columns wanting ``natural`` cells: a column that needs
    less than an equal share gives the rest to the others; the widest gets what is left."""
    order = sorted(range(len(natural)), key=lambda i: natural[i])
    out = [0] * len(natural)
    for done, i in enumerate(order):
        out[i] = min(natural[i], room // (len(order) - done))
        room -= out[i]
    out[order[-1]] += max(room, 0)
    return out


@dataclass(frozen=True)
class TableLayout:
    """How a table prints: rows that fit half a line go two per line (``half`` widths),
    the others alone on full lines (``full`` widths). Leading key-like columns have the
    same width in both, so they line up."""

    full: tuple[int, ...]
    half: tuple[int, ...] | None


def _table_layout(listing: Listing, line: int) -> TableLayout:
    n = len(listing.columns)
    gaps = len(GAP) * (n - 1)
    natural = [text_width(c) for c in listing.columns]
    for row in listing.rows:
        for i, c in enumerate(row):
            natural[i] = max(natural[i], text_width(c))
    # Free-text columns at the end (reason; district and state values) take what is left
    # after the key-like ones (key, issue, column name), which are capped.
    free = 1 if n <= 3 else 2
    fixed = [min(w, 24) for w in natural[: n - free]]
    room = max(line - gaps - sum(fixed), 10 * free)
    full = (*fixed, *_fill(natural[n - free :], room))
    half_line = (line - len(GAP)) // 2
    half_room = half_line - gaps - sum(fixed)
    if half_room < 8 * free:
        return TableLayout(full, None)
    return TableLayout(full, (*fixed, *_fill(natural[n - free :], half_room)))


def _fits(row: tuple[str, ...], widths: tuple[int, ...]) -> bool:
    return all(text_width(c) <= w for c, w in zip(row, widths, strict=True))


def _table(listing: Listing, line: int) -> tuple[str, list[list[str]]]:
    """The column header line and each row's lines.

    Rows that fit half a line print two per line, which halves the lines of long lists:
    weasyprint's time is mostly per line, so this halves the time too. Order stays
    row-major (left, right, next line); a row that does not fit gets full lines of its own.
    """
    layout = _table_layout(listing, line)
    half = layout.half
    fits = [half is not None and _fits(r, half) for r in listing.rows]
    # A short list reads better one row per line, and is fast anyway.
    if half is None or sum(fits) < PAIR_MIN_ROWS:
        header = _row_lines(listing.columns, layout.full)[0]
        return header, [_row_lines(r, layout.full) for r in listing.rows]
    half_line = (line - len(GAP)) // 2
    out: list[list[str]] = []
    pending: str | None = None
    for row, ok in zip(listing.rows, fits, strict=True):
        if not ok:
            if pending is not None:
                out.append([pending.rstrip()])
                pending = None
            out.append(_row_lines(row, layout.full))
            continue
        entry = _row_lines(row, half)[0]
        if pending is None:
            pending = _cell(entry, half_line)
        else:
            out.append([pending + GAP + entry])
            pending = None
    if pending is not None:
        out.append([pending.rstrip()])
    head = _cell(_row_lines(listing.columns, half)[0], half_line)
    return (head + GAP + head).rstrip(), out


def pdf_listing(listing: Listing, line: int = LINE_CHARS) -> PdfListing:
    """A listing as monospaced blocks, ``line`` cells wide."""
    if listing.empty:
        return PdfListing(listing.heading, listing.legend, None, [], listing.none_text)
    if listing.is_grid:
        header, rows = None, _grid(listing.ids, line)
    else:
        header, rows = _table(listing, line)
    return PdfListing(listing.heading, listing.legend, header, _blocks(rows), listing.none_text)


# --- the accuracy-over-time chart ---------------------------------------------------------

# One colour per object, in order (distinct in print and for colour-blind readers).
CHART_COLOURS = ("#1f5fa8", "#d9730d", "#2e8b57", "#8e44ad", "#b22222", "#6b6b6b")
CHART_W, CHART_H = 720, 190  # SVG user units; drawn 190 mm wide
PLOT_LEFT, PLOT_RIGHT, PLOT_TOP, PLOT_BOTTOM = 60, 560, 12, 150


def trend_svg(chart: TrendChart) -> Markup:
    """The chart as inline SVG (weasyprint draws it; its text stays text in the PDF).

    Plain lines and labels, every coordinate computed from the model: the same chart
    gives the same bytes. Every string is escaped here, the template inserts it as is.
    """
    runs = len(chart.run_dates)
    span = (chart.y_max - chart.y_min) or 1.0

    def x(i: int) -> float:
        return PLOT_LEFT + (PLOT_RIGHT - PLOT_LEFT) * i / max(runs - 1, 1)

    def y(value: float) -> float:
        return PLOT_BOTTOM - (PLOT_BOTTOM - PLOT_TOP) * (value - chart.y_min) / span

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {CHART_W} {CHART_H}" '
        f'width="190mm" height="{190 * CHART_H / CHART_W:.1f}mm" class="chart" '
        'font-family="DejaVu Sans" font-size="9">',
        f'<rect x="{PLOT_LEFT}" y="{PLOT_TOP}" width="{PLOT_RIGHT - PLOT_LEFT}" '
        f'height="{PLOT_BOTTOM - PLOT_TOP}" fill="none" stroke="#999" stroke-width="0.6"/>',
    ]
    for value, label in chart.y_labels:
        yy = y(value)
        parts.append(
            f'<line x1="{PLOT_LEFT}" y1="{yy:.1f}" x2="{PLOT_RIGHT}" y2="{yy:.1f}" '
            'stroke="#ddd" stroke-width="0.5"/>'
            f'<text x="{PLOT_LEFT - 4}" y="{yy + 3:.1f}" text-anchor="end">{escape(label)}</text>'
        )
    for i, (day, time) in enumerate(zip(chart.run_dates, chart.run_times, strict=True)):
        xx = x(i)
        parts.append(
            f'<text x="{xx:.1f}" y="{PLOT_BOTTOM + 13}" text-anchor="middle" font-size="7.5">'
            f"{escape(day)}</text>"
            f'<text x="{xx:.1f}" y="{PLOT_BOTTOM + 23}" text-anchor="middle" font-size="7.5">'
            f"{escape(time)}</text>"
        )
    for n, series in enumerate(chart.series):
        colour = CHART_COLOURS[n % len(CHART_COLOURS)]
        points = [(x(i), y(v)) for i, v in enumerate(series.values) if v is not None]
        if len(points) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
            parts.append(
                f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.6"/>'
            )
        parts.extend(
            f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.4" fill="{colour}"/>' for px, py in points
        )
        ly = PLOT_TOP + 8 + 16 * n
        parts.append(
            f'<line x1="{PLOT_RIGHT + 14}" y1="{ly - 3}" x2="{PLOT_RIGHT + 32}" y2="{ly - 3}" '
            f'stroke="{colour}" stroke-width="2"/>'
            f'<text x="{PLOT_RIGHT + 38}" y="{ly}">{escape(series.object)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


# --- rendering --------------------------------------------------------------------------


def report_html(report: SyncReport | VerificationReport) -> str:
    """The report as one HTML document (what weasyprint renders)."""
    env = _environment()
    if isinstance(report, SyncReport):
        sections = [pdf_listing(s) for s in sync_listings(report)]
        return env.get_template("sync_report.html.j2").render(r=report, sections=sections)
    if isinstance(report, VerificationReport):
        sections = [pdf_listing(s, LANDSCAPE_LINE_CHARS) for s in verification_listings(report)]
        return env.get_template("verification_report.html.j2").render(
            r=report,
            sections=sections,
            district_columns=DISTRICT_COLUMNS,
            object_columns=OBJECT_COLUMNS,
            issues_heading=report.issues_heading,
            chart=trend_svg(report.trend) if report.trend else None,
        )
    raise TypeError(f"not a report: {type(report).__name__}")


def render_pdf(report: SyncReport | VerificationReport, path: str | os.PathLike[str]) -> Path:
    """Write ``report`` as a PDF to ``path`` atomically; BadInput if it cannot be written."""
    with atomic_output(path) as fh:
        html = report_html(report)
        # Imported here: weasyprint loads Pango and fonts, which the CLI and flows that never
        # render a PDF should not pay for.
        from weasyprint import HTML

        with _WEASYPRINT_LOCK:
            HTML(string=html, base_url=str(TEMPLATES)).write_pdf(fh)
    return Path(path)
