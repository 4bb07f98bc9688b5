"""The demo's two sign-in users, their passwords and their rights.

``state-admin`` (RWD on all districts: state staff) and ``district275`` (RW on district 275
only). Their passwords are random, made once per data folder and kept in
``DATA_DIR/sign-in/demo-users.json`` (readable by its owner only), so a restart keeps them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import RightsError
from ..rights import ALL_DISTRICTS, RightsStore
from .policy import new_secret

STATE_ADMIN = "state-admin"
DISTRICT_USER = "district275"
DISTRICT_USER_DISTRICT = 275
ENTRY_POINT = "selective-sync ui (demo users)"


@dataclass(frozen=True)
class DemoUser:
    name: str
    password: str
    rights: str
    district: int  # ALL_DISTRICTS for all

    @property
    def scope(self) -> str:
        return "all districts" if self.district == ALL_DISTRICTS else f"district {self.district}"


def demo_users(folder: Path) -> list[DemoUser]:
    """The two demo users, with the passwords kept in ``folder`` (made on first call)."""
    path = folder / "demo-users.json"
    try:
        passwords = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        passwords = {}
    changed = False
    for name in (STATE_ADMIN, DISTRICT_USER):
        if not isinstance(passwords.get(name), str) or not passwords[name]:
            passwords[name] = new_secret()[:16]
            changed = True
    if changed:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(passwords, handle, indent=2)
    return [
        DemoUser(STATE_ADMIN, passwords[STATE_ADMIN], "RWD", ALL_DISTRICTS),
        DemoUser(DISTRICT_USER, passwords[DISTRICT_USER], "RW", DISTRICT_USER_DISTRICT),
    ]


def grant_demo_rights(store: RightsStore, users: list[DemoUser]) -> None:
    """Give the demo users their rights (audited): the state administrator is made the
    first administrator when there is none, else granted by an existing one."""
    admin = users[0]
    try:
        store.bootstrap_admin(admin.name)
        granter = admin.name
    except RightsError:
        granter = _an_administrator(store)
    for user in users:
        store.grant(
            granter, user.name, user.rights, district=user.district, entry_point=ENTRY_POINT
        )


def _an_administrator(store: RightsStore) -> str:
    """A user holding D on all districts (the demo's administrator when it is one)."""
    admins = store.administrators()
    if STATE_ADMIN in admins:
        return STATE_ADMIN
    if not admins:
        raise RightsError("no administrator can grant the demo users their rights")
    return admins[0]
