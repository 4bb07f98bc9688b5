"""Who is signed in: the trust policy between the sign-in proxy and the tool's servers, the
nginx configuration ``selective-sync ui`` runs, and the demo's two users.

The tool never checks a password itself. An authenticating proxy (nginx with per-user
credentials for the demo; oauth2-proxy with the district's identity provider in
production) signs the person in and forwards each request with two headers it sets after
dropping any copy the client sent: the user's name (``USER_HEADER``) and a secret only the
proxy and the servers behind it know (``SECRET_HEADER``). The servers believe the name only
beside the secret (:func:`signed_in_user`). Programs (served deployments, workers, the CLI)
present the service token instead (:func:`is_service`). Pure Python: no Prefect here.
"""

from .policy import (
    SECRET_HEADER,
    STAMP_PREFIX,
    USER_HEADER,
    Identity,
    IdentityError,
    identify,
    is_service,
    new_secret,
    signed_in_user,
    stamp_of,
    stamp_tag,
)

__all__ = [
    "SECRET_HEADER",
    "STAMP_PREFIX",
    "USER_HEADER",
    "Identity",
    "IdentityError",
    "identify",
    "is_service",
    "new_secret",
    "signed_in_user",
    "stamp_of",
    "stamp_tag",
]
