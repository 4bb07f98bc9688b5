"""The trust policy of a request behind the sign-in proxy (see the package's docstring).

A request is one of three kinds: a signed-in person (the proxy's secret and a user name), a
program holding the service token (``Authorization: Bearer <token>``, or ``Basic`` of the
token as Prefect's ``PREFECT_API_AUTH_STRING`` sends it), or nobody (refused 401). A user
header without the right secret is a forgery from outside the proxy: 401 too. A user header
that cannot be a name (empty, control characters, sent twice) is 400 with the reason.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import IdentityError, SelectiveSyncError
from ..rights import normalize_user

USER_HEADER = "x-selective-sync-user"
SECRET_HEADER = "x-selective-sync-proxy-secret"
# The tag a run created through the sign-in entry carries: ``acting-user:<name>``.
STAMP_PREFIX = "acting-user:"


@dataclass(frozen=True)
class Identity:
    """Who sent a request: a signed-in ``user``, or the service (``user`` None)."""

    user: str | None

    @property
    def service(self) -> bool:
        return self.user is None


def new_secret() -> str:
    """A fresh random secret or token (URL- and header-safe)."""
    return secrets.token_urlsafe(32)


def _values(headers: Iterable[tuple[bytes, bytes]], name: str) -> list[str]:
    wanted = name.encode()
    return [v.decode("latin-1") for k, v in headers if k.lower() == wanted]


def signed_in_user(headers: Iterable[tuple[bytes, bytes]], proxy_secret: str | None) -> str | None:
    """The signed-in user the proxy vouches for, or None when the request has neither
    header. IdentityError: a user header without the proxy's secret (401), a secret
    without a user or a malformed user (400)."""
    headers = list(headers)
    users, given = _values(headers, USER_HEADER), _values(headers, SECRET_HEADER)
    if not users and not given:
        return None
    if (
        not proxy_secret
        or len(given) != 1
        or not hmac.compare_digest(given[0].encode(), proxy_secret.encode())
    ):
        raise IdentityError(
            401, "the user header did not come from the sign-in proxy: sign in through it"
        )
    if len(users) != 1:
        raise IdentityError(400, f"malformed {USER_HEADER} header: expected exactly one")
    try:
        return normalize_user(users[0], f"{USER_HEADER} header")
    except SelectiveSyncError as exc:
        raise IdentityError(400, f"malformed {exc}") from None


def is_service(headers: Iterable[tuple[bytes, bytes]], token: str | None) -> bool:
    """Whether the request presents the service token (Bearer, or Basic of the token)."""
    if not token:
        return False
    for value in _values(headers, "authorization"):
        scheme, _, creds = value.strip().partition(" ")
        creds = creds.strip()
        if scheme.lower() == "basic":
            try:
                creds = base64.b64decode(creds, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                continue
        elif scheme.lower() != "bearer":
            continue
        if hmac.compare_digest(creds.encode(), token.encode()):
            return True
    return False


def identify(
    headers: Iterable[tuple[bytes, bytes]], proxy_secret: str | None, token: str | None
) -> Identity:
    """The identity of a request, or IdentityError (401: nobody, or forged; 400: malformed)."""
    headers = list(headers)
    user = signed_in_user(headers, proxy_secret)
    if user is not None:
        return Identity(user)
    if is_service(headers, token):
        return Identity(None)
    raise IdentityError(
        401,
        "sign in first: this server answers the sign-in proxy and the service token only",
    )


def stamp_tag(user: str) -> str:
    """The tag that names the signed-in user a run acts as."""
    return f"{STAMP_PREFIX}{user}"


def stamp_of(tags: Iterable[str] | None) -> list[str]:
    """The user names the ``acting-user:`` tags of a run carry (normally one)."""
    return [t[len(STAMP_PREFIX) :] for t in tags or () if t.startswith(STAMP_PREFIX)]
