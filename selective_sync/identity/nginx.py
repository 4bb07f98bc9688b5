"""The nginx configuration ``selective-sync ui`` runs in front of its servers.

nginx (Debian's package) asks for a user name and password (``auth_basic``, an htpasswd
file of ``{SSHA}`` hashes, which nginx reads natively) and forwards each request to the
Prefect server (UI and API) or the report server, after replacing the identity headers: the
signed-in user (``$remote_user``) and the proxy's secret. A client's own copies of those
headers, and its ``Authorization`` header, never reach the servers. Everything (pid, logs,
temporary files) lives under the configuration's folder, so nginx runs as the user who
starts it, in the foreground.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from .policy import SECRET_HEADER, USER_HEADER

NGINX = "/usr/sbin/nginx"
REALM = "Selective Sync"


def ssha(password: str) -> str:
    """An htpasswd hash nginx accepts: ``{SSHA}`` base64(SHA-1(password + salt) + salt)."""
    salt = secrets.token_bytes(8)
    digest = hashlib.sha1(password.encode("utf-8") + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode("ascii")


def htpasswd(users: dict[str, str]) -> str:
    """The text of an htpasswd file for ``users`` (name -> password)."""
    for name in users:
        if ":" in name or not name.strip() or any(c.isspace() for c in name):
            raise ValueError(f"user name {name!r} cannot be a sign-in name")
    return "".join(f"{name}:{ssha(password)}\n" for name, password in users.items())


@dataclass(frozen=True)
class Upstream:
    """One listening address of the proxy and the server it forwards to."""

    listen_host: str
    listen_port: int
    backend: str  # http://host:port


def render(
    root: Path,
    upstreams: list[Upstream],
    secret: str,
    htpasswd_file: Path,
) -> str:
    """nginx.conf: each upstream behind ``auth_basic``, identity headers set by nginx."""
    servers = "\n".join(_server(u, secret, htpasswd_file) for u in upstreams)
    # Started by root (a container), nginx's workers would switch to www-data, which may
    # not read the private files here: they stay root's. Otherwise they run as whoever
    # started nginx, and the directive is not needed.
    user = "user root root;\n" if os.geteuid() == 0 else ""
    return f"""# Written by selective-sync ui; rewritten at each start (the secret changes).
{user}worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log {root}/access.log;
    client_body_temp_path {root}/tmp/body;
    proxy_temp_path {root}/tmp/proxy;
    fastcgi_temp_path {root}/tmp/fastcgi;
    uwsgi_temp_path {root}/tmp/uwsgi;
    scgi_temp_path {root}/tmp/scgi;
    client_max_body_size 20m;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
{servers}
}}
"""


def _server(upstream: Upstream, secret: str, htpasswd_file: Path) -> str:
    host = f"[{upstream.listen_host}]" if ":" in upstream.listen_host else upstream.listen_host
    return f"""    server {{
        listen {host}:{upstream.listen_port};
        auth_basic "{REALM}";
        auth_basic_user_file {htpasswd_file};
        location / {{
            proxy_pass {upstream.backend};
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            # Identity: set here, whatever the client sent under these names.
            proxy_set_header {USER_HEADER} $remote_user;
            proxy_set_header {SECRET_HEADER} "{secret}";
            proxy_set_header Authorization "";
            proxy_read_timeout 3600s;
            proxy_buffering off;
        }}
    }}"""


def write_config(root: Path, upstreams: list[Upstream], secret: str, users: dict[str, str]) -> Path:
    """Write htpasswd and nginx.conf under ``root`` (private to this user); the conf path."""
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (root / "tmp" / sub).mkdir(parents=True, exist_ok=True)
    passwords = root / "htpasswd"
    _write_private(passwords, htpasswd(users))
    conf = root / "nginx.conf"
    _write_private(conf, render(root, upstreams, secret, passwords))
    return conf


def nginx_args(conf: Path, root: Path) -> list[str]:
    """The command that runs nginx on ``conf`` in the foreground."""
    return [NGINX, "-p", str(root), "-c", str(conf), "-e", str(root / "error.log")]


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
