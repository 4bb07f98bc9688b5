"""Sphinx configuration of the selective-sync guide.

Build: ``.venv/bin/python -m sphinx -W --keep-going -n -b html docs build/docs``
(``tests/test_docs.py`` builds it the same way). The reference pages are generated from the
code by ``docs/_ext/generated.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(DOCS.parent))

project = "selective-sync"
author = "selective-sync contributors"
copyright = "2026, selective-sync contributors"

extensions = ["myst_parser", "generated"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_generated", "Thumbs.db", ".DS_Store"]

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

html_theme = "pydata_sphinx_theme"
html_title = "selective-sync"
html_static_path: list[str] = []
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "navbar_align": "left",
    "footer_start": ["copyright"],
    "footer_end": [],
}
html_sidebars = {"index": [], "getting-started": [], "performance": [], "reliability": []}
html_show_sourcelink = False

nitpicky = True
suppress_warnings: list[str] = []
smartquotes = False
