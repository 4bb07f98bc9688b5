"""Find IDs: accent and case folding of names, and the SQL that narrows a name prefix.

No portable SQL folds accents, so the SQL built here only narrows (a superset, exact for
ASCII names); :func:`fold` decides in Python while the rows stream."""

from __future__ import annotations

import unicodedata

from sqlalchemy import Boolean, and_, func, or_
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

# Letters that Unicode does not decompose into a base letter plus an accent.
_FOLD_EXTRA = str.maketrans(
    {"ø": "o", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "æ": "ae", "œ": "oe", "ı": "i", "ħ": "h"}
)


def fold(text: str) -> str:
    """``text`` in lower case without accents or surrounding spaces: ``José`` -> ``jose``,
    ``Øster`` -> ``oster``."""
    if text.isascii():  # nearly every stored name: skip the Unicode work
        return text.strip(" ").lower()
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return bare.translate(_FOLD_EXTRA).strip(" ")


class _NonAscii(FunctionElement):
    """SQL: the text value holds a character beyond ASCII (its bytes outnumber its chars)."""

    type = Boolean()
    name = "non_ascii"
    inherit_cache = True


@compiles(_NonAscii)
def _non_ascii(element, compiler, **kw) -> str:
    (arg,) = element.clauses
    text = compiler.process(arg, **kw)
    return f"octet_length({text}) <> char_length({text})"


@compiles(_NonAscii, "sqlite")
def _non_ascii_sqlite(element, compiler, **kw) -> str:
    (arg,) = element.clauses
    text = compiler.process(arg, **kw)
    return f"length(CAST({text} AS BLOB)) <> length({text})"


@compiles(_NonAscii, "mysql")
@compiles(_NonAscii, "mariadb")
def _non_ascii_mysql(element, compiler, **kw) -> str:
    (arg,) = element.clauses
    text = compiler.process(arg, **kw)
    return f"length({text}) <> char_length({text})"  # LENGTH counts bytes here


def _like_prefix(column, prefix: str, dialect: str):
    """``column`` starts with ``prefix``, ignoring the case of ASCII letters."""
    pattern = prefix.replace("/", "//").replace("%", "/%").replace("_", "/_") + "%"
    if dialect == "sqlite":  # SQLite's LIKE already ignores ASCII case; lower() costs
        return column.like(pattern, escape="/")
    if dialect == "postgresql":
        return column.ilike(pattern, escape="/")
    return func.lower(column).like(pattern, escape="/")  # whatever the column's collation


def _may_start_with(column, prefix: str, dialect: str):
    """SQL that keeps every name whose :func:`fold` may start with ``prefix``: a superset,
    exact for ASCII names; a name with an accent is kept when its first letter could fold
    to the prefix's, for :func:`fold` to decide."""
    first_letter = func.substr(column, 1, 1)
    return or_(
        _like_prefix(column, prefix, dialect),
        column.like(" %"),  # leading spaces are trimmed before matching
        and_(
            _NonAscii(column),
            or_(_like_prefix(column, prefix[0], dialect), _NonAscii(first_letter)),
        ),
    )
