"""The report server: stored reports over HTTP, for the links in the runs' artifacts.

``GET /reports/<run-id>.<pdf|docx>`` and ``GET /verification/<district>/<run-id>.<fmt>``
(HEAD too). A sync report nobody asked for before is rendered then, from the ledger, and
kept (``on_demand``): the runs link their reports without making them.

A request must carry the link's ``user`` and ``sig``; the signature must match
(the link was made by this installation for that user and that file), and that user must
hold R on the report's district in the rights store *now*: the district in the path for a
Verification Summary (0, the state's view, needs R on all districts), the district the
ledger records for a sync run's report (a run the ledger does not know needs R on all
districts). A refusal is recorded in the refusal audit. Any other path is 404 before
anything is read.

Trust model, sign-in off (the default): the server cannot know who clicked (the Prefect UI
passes on no identity), so a link is a capability of the user it was issued to: whoever
holds the URL may fetch that one file for as long as that user holds R on its district.
Plain HTTP, loopback by default.

With sign-in through the proxy (``SELECTIVE_SYNC_SIGN_IN=proxy``) the server answers the
sign-in proxy only: a request must carry the proxy's secret with the signed-in user's name
(``selective_sync.identity``), else 401 (400 for a malformed name), and the *signed-in*
user (not the link's) must hold R on the report's district.
"""

from __future__ import annotations

import logging
import shutil
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from ..db import make_engine
from ..errors import (
    BadInput,
    DatabaseUnavailable,
    IdentityError,
    ReportFailed,
    ReportNotReady,
    SelectiveSyncError,
)
from ..identity import signed_in_user
from ..ledger import read_request
from ..rights import ALL_DISTRICTS, Right, RightsStore
from ..settings import Settings, get_settings
from ..text import first_line
from .on_demand import SyncReports
from .storage import LinkSigner, ReportStorage, StoredReport, parse_url_path

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
REALM = "selective-sync reports"
ENTRY_POINT = "report-server"


class ReportServer(ThreadingHTTPServer):
    """A threading HTTP server holding the storage, the link signer, the rights store and
    the state database (whose ledger says which district a sync run's report belongs to)."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        storage: ReportStorage,
        signer: LinkSigner,
        rights: RightsStore,
        state_url: str | None = None,
        sync_reports: SyncReports | None = None,
        proxy_secret: str | None = None,
    ) -> None:
        self.storage, self.signer, self.rights = storage, signer, rights
        self.proxy_secret = proxy_secret
        self.state_url = state_url
        self._state: Engine | None = None
        self._state_lock = threading.Lock()
        self.sync_reports = sync_reports
        super().__init__(address, ReportRequestHandler)

    def district_of(self, ref: StoredReport) -> int:
        """The district whose R a report needs (``ALL_DISTRICTS``: the state's view, or a
        sync run the ledger does not know)."""
        if ref.kind == "verification":
            return ref.district or ALL_DISTRICTS
        if self.state_url is None:
            return ALL_DISTRICTS
        with self._state_lock:
            if self._state is None:
                self._state = make_engine(self.state_url)
        try:
            request = read_request(self._state, ref.run_id)
        except SQLAlchemyError as exc:
            raise DatabaseUnavailable(f"the ledger could not be read: {first_line(exc)}") from exc
        return request.district_number if request is not None else ALL_DISTRICTS

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def server_close(self) -> None:
        super().server_close()
        self.rights.close()
        if self._state is not None:
            self._state.dispose()


def make_server(
    host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, settings: Settings | None = None
) -> ReportServer:
    """A report server bound to ``host:port`` (port 0: any free port), not yet serving."""
    settings = settings or get_settings()
    storage = ReportStorage.from_settings(settings)
    signer = LinkSigner.from_settings(settings)
    rights = RightsStore.from_settings(settings)
    sync_reports = SyncReports(storage, settings)
    secret = None
    if settings.sign_in == "proxy":
        if settings.proxy_secret is None:
            rights.close()
            raise BadInput("SELECTIVE_SYNC_SIGN_IN=proxy needs SELECTIVE_SYNC_PROXY_SECRET")
        secret = settings.proxy_secret.get_secret_value()
    try:
        server = ReportServer(
            (host, port),
            storage,
            signer,
            rights,
            settings.resolved_state_url,
            sync_reports,
            proxy_secret=secret,
        )
    except OSError as exc:
        rights.close()
        raise BadInput(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    if not is_loopback(host):
        log.warning(
            "serving reports on %s, beyond this machine, over plain HTTP: anyone who holds a "
            "link can fetch its report; put TLS and authentication in front",
            host,
        )
    return server


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


class ReportRequestHandler(BaseHTTPRequestHandler):
    """Answers GET and HEAD for stored reports; everything else is refused."""

    server: ReportServer
    server_version = "selective-sync-reports"

    def version_string(self) -> str:
        return self.server_version

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._serve(with_body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve(with_body=False)

    # ---- the one route

    def _serve(self, with_body: bool) -> None:
        split = urlsplit(self.path)
        ref = parse_url_path(split.path)
        if ref is None:
            return self._refuse(HTTPStatus.NOT_FOUND, "no such report", with_body)
        if self.server.proxy_secret is not None:
            return self._serve_signed_in(ref, with_body)
        query = parse_qs(split.query, keep_blank_values=True)
        users, sigs = query.get("user", []), query.get("sig", [])
        if not users and not sigs:
            return self._refuse(
                HTTPStatus.UNAUTHORIZED,
                "this report needs a signed link: open it from the run's artifacts in the "
                "Prefect UI, or build it with: selective-sync report RUN",
                with_body,
            )
        if len(users) != 1 or len(sigs) != 1:
            return self._refuse(HTTPStatus.FORBIDDEN, "malformed report link", with_body)
        user, sig = users[0], sigs[0]
        if not self.server.signer.verify(ref.url_path, user, sig):
            return self._refuse(HTTPStatus.FORBIDDEN, "invalid report link signature", with_body)
        self._serve_to(ref, user, with_body)

    def _serve_signed_in(self, ref: StoredReport, with_body: bool) -> None:
        """Behind the sign-in proxy: the user it vouches for (with its secret), or 401."""
        headers = [(k.lower().encode(), v.encode("latin-1")) for k, v in self.headers.items()]
        try:
            user = signed_in_user(headers, self.server.proxy_secret)
        except IdentityError as exc:
            return self._refuse(HTTPStatus(exc.status), str(exc), with_body)
        if user is None:
            return self._refuse(
                HTTPStatus.UNAUTHORIZED,
                "sign in first: open the report through the sign-in address",
                with_body,
            )
        self._serve_to(ref, user, with_body)

    def _serve_to(self, ref: StoredReport, user: str, with_body: bool) -> None:
        """The report to ``user`` if they hold R on its district now (refusal audited)."""
        try:
            actor = self.server.rights.actor(user, ENTRY_POINT)
            district = self.server.district_of(ref)
            if not actor.holds(Right.R, district):
                refusal = actor.refuse(Right.R, district, asked=f"{self.command} {ref.url_path}")
                return self._refuse(HTTPStatus.FORBIDDEN, str(refusal), with_body)
        except BadInput as exc:
            return self._refuse(HTTPStatus.FORBIDDEN, str(exc), with_body)
        except SelectiveSyncError as exc:
            log.error("rights check failed: %s", exc)
            return self._refuse(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "the rights store or the ledger is unavailable",
                with_body,
            )
        self._send_file(ref, user, with_body)

    def _send_file(self, ref: StoredReport, user: str, with_body: bool) -> None:
        path = self.server.storage.path(ref)
        if ref.kind == "sync" and self.server.sync_reports is not None:
            try:
                path = self.server.sync_reports.path(ref)
            except ReportNotReady as exc:
                return self._refuse(HTTPStatus.NOT_FOUND, str(exc), with_body)
            except (ReportFailed, SelectiveSyncError) as exc:
                return self._refuse(HTTPStatus.INTERNAL_SERVER_ERROR, str(exc), with_body)
        try:
            fh = path.open("rb")
        except (FileNotFoundError, NotADirectoryError):
            return self._refuse(
                HTTPStatus.NOT_FOUND,
                "this report is not in the report storage (removed, or never made); "
                "build it again with: selective-sync report RUN",
                with_body,
            )
        with fh:
            size = _size(fh)
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", ref.media_type)
            self.send_header("Content-Length", str(size))
            # PDFs open in the browser's viewer; DOCX, CSV and XLSX download.
            disposition = "inline" if ref.fmt == "pdf" else "attachment"
            self.send_header(
                "Content-Disposition", f'{disposition}; filename="{ref.download_name}"'
            )
            self._common_headers()
            self.end_headers()
            if with_body:
                shutil.copyfileobj(fh, self.wfile)
        log.debug("served %s of run %s to a link of %r", ref.title, ref.run_id, user)

    def _refuse(self, status: HTTPStatus, message: str, with_body: bool) -> None:
        body = f"{status.value} {status.phrase}: {message}\n".encode()
        self.send_response(status)
        if status is HTTPStatus.UNAUTHORIZED:
            # No browser prompt: the credential is in the link, not a password.
            self.send_header("WWW-Authenticate", f'SelectiveSync-Link realm="{REALM}"')
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self._common_headers()
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def _common_headers(self) -> None:
        # Rights can be revoked: nothing may be cached. The link's signature must not leak
        # to other sites through the Referer header.
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")

    # ---- logging: never the query string (it holds the signature)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = urlsplit(self.path).path if hasattr(self, "path") else "-"
        log.info("%s %s %s %s", self.client_address[0], self.command, path[:200], code)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server's signature)
        log.debug("%s %s", self.client_address[0], format % args)


def _size(fh) -> int:
    fh.seek(0, 2)
    size = fh.tell()
    fh.seek(0)
    return size
