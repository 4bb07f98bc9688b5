"""Report storage: where rendered reports are kept, and the signed links that fetch them.

Layout under the report folder (``settings.resolved_report_dir``, DATA_DIR/reports by
default), one file per run and format, each written atomically by the renderers::

    sync/<run-id>.<pdf|docx>                        Sync Request History of one sync run
    verification/<district>/<run-id>.<pdf|docx|csv|xlsx>  Verification Summary of one run

The report server maps ``/reports/<run-id>.<fmt>`` and ``/verification/<district>/<run-id>
.<fmt>`` onto these files; :func:`parse_url_path` accepts nothing else, so no request can
name a file outside them.

A link carries the user it was issued to and an HMAC-SHA256 signature over the path and
that user (``?user=...&sig=...``). The key is ``settings.reports_secret`` or, by default,
a random key made once in ``<report folder>/.link-key`` (mode 0600, never served).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import tempfile
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import quote, urlencode
from uuid import UUID

from ..errors import BadInput, DataDirError
from ..rights import normalize_user
from ..settings import Settings, get_settings
from .model import SyncReport, VerificationReport
from .render import MEDIA_TYPES, render_report, report_format

log = logging.getLogger(__name__)

SYNC_FORMATS = ("pdf", "docx")
VERIFICATION_FORMATS = ("pdf", "docx", "csv", "xlsx")
KEY_FILE = ".link-key"
_SIGNATURE_VERSION = "v1"

_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_SYNC_PATH = re.compile(rf"^/reports/(?P<run>{_UUID})\.(?P<fmt>pdf|docx)$")
_VERIFICATION_PATH = re.compile(
    rf"^/verification/(?P<district>0|[1-9][0-9]{{0,8}})/(?P<run>{_UUID})\.(?P<fmt>pdf|docx|csv|xlsx)$"
)

Kind = Literal["sync", "verification"]


def _run_id(run_id: object) -> str:
    try:
        return str(UUID(str(run_id)))
    except ValueError:
        raise BadInput(f"not a run id: {run_id!r}") from None


@dataclass(frozen=True)
class StoredReport:
    """One stored report file: which report, of which run, in which format."""

    kind: Kind
    run_id: str
    fmt: str
    district: int | None = None

    @classmethod
    def sync(cls, run_id: object, fmt: str) -> StoredReport:
        name = report_format(fmt)
        if name not in SYNC_FORMATS:
            raise BadInput(f"the Sync Request History is made as pdf or docx, not {name}")
        return cls("sync", _run_id(run_id), name)

    @classmethod
    def verification(cls, district: int, run_id: object, fmt: str) -> StoredReport:
        if int(district) <= 0:
            raise BadInput(f"not a district number: {district!r}")
        return cls("verification", _run_id(run_id), report_format(fmt), int(district))

    @classmethod
    def state(cls, run_id: object, fmt: str) -> StoredReport:
        """The state's Verification Summary (every district) of one run: district 0."""
        return cls("verification", _run_id(run_id), report_format(fmt), 0)

    @property
    def relative(self) -> Path:
        """The file's place under the report folder."""
        name = f"{self.run_id}.{self.fmt}"
        if self.kind == "sync":
            return Path("sync", name)
        return Path("verification", str(self.district), name)

    @property
    def url_path(self) -> str:
        """The path the report server answers for this file."""
        if self.kind == "sync":
            return f"/reports/{self.run_id}.{self.fmt}"
        return f"/verification/{self.district}/{self.run_id}.{self.fmt}"

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.fmt]

    @property
    def download_name(self) -> str:
        """The file name a browser saves it under (ASCII only)."""
        if self.kind == "sync":
            return f"sync-request-history-{self.run_id}.{self.fmt}"
        return f"verification-summary-{self.district}-{self.run_id}.{self.fmt}"

    @property
    def title(self) -> str:
        report = "Sync Request History" if self.kind == "sync" else "Verification Summary"
        what = {"csv": "record issues, CSV", "xlsx": "workbook, XLSX"}.get(
            self.fmt, self.fmt.upper()
        )
        return f"{report} ({what})"


def parse_url_path(path: str) -> StoredReport | None:
    """The report a request path names, or None for any other path (traversal included).

    Matched on the raw path: the valid paths need no percent-encoding, so anything encoded
    (``%2e%2e%2f``) or relative (``..``) simply does not match.
    """
    if match := _SYNC_PATH.match(path):
        return StoredReport("sync", match["run"], match["fmt"])
    if match := _VERIFICATION_PATH.match(path):
        return StoredReport("verification", match["run"], match["fmt"], int(match["district"]))
    return None


class ReportStorage:
    """The report folder: save a rendered report, find a stored one."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser()

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> ReportStorage:
        return cls((settings or get_settings()).resolved_report_dir)

    def path(self, ref: StoredReport) -> Path:
        return self.root / ref.relative

    def save(self, ref: StoredReport, report: SyncReport | VerificationReport) -> Path:
        """Render ``report`` into its place (atomically: a reader never sees half a file)."""
        target = self.path(ref)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BadInput(
                f"cannot create the report folder {target.parent}: {exc.strerror or exc}"
            ) from exc
        render_report(report, target, ref.fmt)
        log.info("stored %s at %s", ref.title, target)
        return target

    def delete_run(self, run_id: object) -> list[Path]:
        """Remove every stored report of one run (e.g. when its history entry is deleted)."""
        run = _run_id(run_id)
        found = list(self.root.glob(f"sync/{run}.*")) + list(
            self.root.glob(f"verification/*/{run}.*")
        )
        for path in found:
            with suppress(FileNotFoundError):
                path.unlink()
        return found


class LinkSigner:
    """Signs and checks report links: HMAC-SHA256 over the path and the user named."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise BadInput("the report link key must be at least 16 bytes")
        self._key = key

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> LinkSigner:
        settings = settings or get_settings()
        if settings.reports_secret is not None:
            return cls(settings.reports_secret.get_secret_value().encode("utf-8"))
        return cls(_key_file(settings.resolved_report_dir))

    def signature(self, url_path: str, user: str) -> str:
        message = f"{_SIGNATURE_VERSION}\n{url_path}\n{user}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def verify(self, url_path: str, user: str, signature: str) -> bool:
        return hmac.compare_digest(self.signature(url_path, user), signature)

    def link(self, base_url: str, ref: StoredReport, user: str) -> str:
        """The full URL of ``ref`` for ``user`` (who must hold R when it is fetched)."""
        name = normalize_user(user)
        query = urlencode(
            {"user": name, "sig": self.signature(ref.url_path, name)}, quote_via=quote
        )
        return f"{base_url.rstrip('/')}{ref.url_path}?{query}"


def _key_file(folder: Path) -> bytes:
    """The link key kept in ``folder``, made (0600, atomically) on first use."""
    path = folder / KEY_FILE
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f"{KEY_FILE}.", suffix=".part")
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
            # link() never replaces: when two processes race, the first key made wins.
            with suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
        return _read_key(path)
    except OSError as exc:
        raise DataDirError(
            f"cannot make the report link key {path}: {exc.strerror or exc}; "
            "set SELECTIVE_SYNC_REPORTS_SECRET or a writable SELECTIVE_SYNC_REPORT_DIR"
        ) from exc


def _read_key(path: Path) -> bytes:
    key = path.read_text().strip().encode()
    if len(key) < 16:
        raise DataDirError(f"the report link key {path} is damaged: delete it to make a new one")
    return key


@dataclass(frozen=True)
class ReportLink:
    """A stored report and the signed URL that fetches it."""

    ref: StoredReport
    path: Path
    url: str


def report_links(
    refs: list[StoredReport], user: str, settings: Settings | None = None
) -> list[ReportLink]:
    """The signed links of ``refs`` for ``user``, whether their files exist yet or not (a
    sync report is made when its link is first opened: ``on_demand``)."""
    settings = settings or get_settings()
    storage = ReportStorage.from_settings(settings)
    signer = LinkSigner.from_settings(settings)
    return [
        ReportLink(ref, storage.path(ref), signer.link(settings.reports_base_url, ref, user))
        for ref in refs
    ]


def store_reports(
    report: SyncReport | VerificationReport,
    refs: list[StoredReport],
    user: str,
    settings: Settings | None = None,
) -> list[ReportLink]:
    """Render ``report`` once per ref into the storage; the links are issued to ``user``.

    Every file is written before any link is made, so a link never points at a report that
    failed to render.
    """
    settings = settings or get_settings()
    storage = ReportStorage.from_settings(settings)
    signer = LinkSigner.from_settings(settings)
    paths = [storage.save(ref, report) for ref in refs]
    return [
        ReportLink(ref, path, signer.link(settings.reports_base_url, ref, user))
        for ref, path in zip(refs, paths, strict=True)
    ]
