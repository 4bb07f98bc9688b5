"""Screenshots of the real UI: every screen the browser test passes is kept in bench/out/ui/
for a person to look at, and the screens the guide shows are written to docs/images/, so
they are retaken whenever the browser test runs against a changed UI."""

from __future__ import annotations

from pathlib import Path

from .harness import REPO

SHOTS = REPO / "bench" / "out" / "ui"
DOCS_IMAGES = REPO / "docs" / "images"

GUIDE = {
    "v2-04-form-filled": "sync-form.png",
    "v2-05-run-artifacts": "sync-run.png",
    "v2-07-history": "sync-history.png",
    "signin-01-form-district-user": "sync-form-signed-in.png",
}
"""Screens of the browser test (by their name in bench/out/ui/) -> the guide's image."""

REPORT_IMAGE = "sync-report.png"
"""The first page of a Sync Request History PDF, as the report link serves it."""


def shot(page, name: str) -> None:
    """Save the page as bench/out/ui/NAME.png (whole page); a guide screen also goes to
    docs/images/ as the browser window shows it."""
    page.wait_for_timeout(500)  # let the last render settle
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    if name in GUIDE:
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS_IMAGES / GUIDE[name]))


def cropped(image, margin: int = 40):
    """The page down to its printed part (a short report leaves most of a page white)."""
    from PIL import ImageChops

    grey = image.convert("L")
    box = ImageChops.invert(grey).point(lambda v: 255 if v > 16 else 0).getbbox()
    if box is None:
        return image
    bottom = min(image.height, box[3] + margin)
    return image.crop((0, 0, image.width, bottom))


def report_page(pdf: bytes, width: int = 1100) -> Path:
    """Render the PDF's first page to docs/images/ (and bench/out/ui/); returns the image."""
    import pypdfium2

    document = pypdfium2.PdfDocument(pdf)
    try:
        first = document[0]
        image = cropped(first.render(scale=width / first.get_width()).to_pil())
    finally:
        document.close()
    SHOTS.mkdir(parents=True, exist_ok=True)
    DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
    image.save(SHOTS / REPORT_IMAGE)
    image.save(DOCS_IMAGES / REPORT_IMAGE)
    return DOCS_IMAGES / REPORT_IMAGE
