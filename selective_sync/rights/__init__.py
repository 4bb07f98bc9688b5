"""The tool's R/W/D rights, scoped to districts: the grants, the one check every entry point
makes (``authorise``), and the audit of every change and every refusal.

R: see the tool, the Sync History, summaries and reports. W: run syncs (and, for reading,
counts as R). D: delete history entries, clear the history and administer rights. A grant
is some of these letters on one district, or on all districts (``ALL_DISTRICTS``: state
staff); on a district a user holds the letters of both. D on a district administers that
district's grants only; grants on all districts need D on all districts, and someone always
keeps it. The state's view across districts needs R on all districts.

The store is three tables in an ordinary SQLAlchemy database (by default the state database,
which every worker of every deployment already reaches; ``DATA_DIR/rights.db`` for the
demo), not in Prefect: it behaves the same with Prefect's ephemeral API and with a server.
Nobody ever gets a right implicitly: an unknown user has none, and the first administrator
is made only by an explicit :meth:`RightsStore.bootstrap_admin`.

Who is acting is decided by each entry point before it calls ``authorise``: the CLI acts as
the OS user (``--user`` overrides), the flows take it from ``flows.acting.acting_user``, the
report server from the signed link. Every refusal is recorded (user, entry point, right,
district, what was asked, when, the message) in a transaction of its own, and nothing else
of the refused request is written.
"""

from ..errors import RightsError
from .model import (
    ALL_DISTRICTS,
    MAX_USER_LEN,
    RIGHT_MEANING,
    Actor,
    Grants,
    Refusal,
    Right,
    Scope,
    district_option,
    district_text,
    format_rights,
    held_text,
    normalize_user,
    parse_rights,
)
from .schema import audit_table, grants_table, legacy_rights_table, refusals_table
from .store import (
    AuditEntry,
    GrantEntry,
    RefusalEntry,
    RightsStore,
    authorise,
    known_districts,
)

__all__ = [
    "ALL_DISTRICTS",
    "MAX_USER_LEN",
    "RIGHT_MEANING",
    "Actor",
    "AuditEntry",
    "GrantEntry",
    "Grants",
    "Refusal",
    "RefusalEntry",
    "Right",
    "RightsError",
    "RightsStore",
    "Scope",
    "audit_table",
    "authorise",
    "district_option",
    "district_text",
    "format_rights",
    "grants_table",
    "held_text",
    "known_districts",
    "legacy_rights_table",
    "normalize_user",
    "parse_rights",
    "refusals_table",
]
