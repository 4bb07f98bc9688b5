"""Turn what a person pastes (or a list) into the district IDs to sync."""

from __future__ import annotations

import numbers
import re
from collections.abc import Iterable

from ..errors import BadInput

MAX_ID = 2**63 - 1
"""Largest ID accepted: the biggest value a signed 64-bit database column holds."""

SHOWN_BAD_TOKENS = 20
_SEPARATORS = str.maketrans({",": " ", ";": " "})
_DIGITS_AND_SPACE = re.compile(r"[0-9 \t\n\r\f\v]*")


def parse_ids(ids: str | int | Iterable[str | int] | None) -> list[int]:
    """The positive integer IDs in ``ids``, de-duplicated, in the order first given.

    ``ids`` is one integer, a list of integers or strings, or text with the IDs
    separated by commas, semicolons or any white space (spaces, tabs, newlines). A
    string inside a list may itself hold several IDs. Anything that is not a whole
    number from 1 to 2**63-1 in ASCII digits is refused: BadInput lists every bad token
    at once. Nothing given at all is BadInput("no IDs given").
    """
    good: list[int] = []
    bad: list[str] = []
    if ids is None:
        raise BadInput("no IDs given")
    if isinstance(ids, (str, bytes)) or _is_id_number(ids):
        ids = [ids]
    elif not isinstance(ids, Iterable):
        raise BadInput(f"IDs must be text or a list, not {type(ids).__name__}")
    items = list(ids)
    # Fast path: a plain list of ints (the UI's list form) needs only a range check.
    if (
        items
        and all(type(item) is int for item in items)
        and min(items) > 0
        and max(items) <= MAX_ID
    ):
        return list(dict.fromkeys(items))
    for item in items:
        if isinstance(item, str):
            _parse_text(item, good, bad)
        elif _is_id_number(item):
            value = int(item)
            if 0 < value <= MAX_ID:
                good.append(value)
            else:
                bad.append(str(value))
        else:
            # bool, float, None, bytes ...: never silently coerced into an ID.
            bad.append(repr(item))
    if bad:
        raise BadInput(_bad_message(bad))
    if not good:
        raise BadInput("no IDs given")
    return list(dict.fromkeys(good))


def _is_id_number(value: object) -> bool:
    # True is an int to Python but never an ID a person meant.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _parse_text(text: str, good: list[int], bad: list[str]) -> None:
    text = text.translate(_SEPARATORS)
    # Fast path for the usual case (a million IDs in about half a second): only ASCII
    # digits and white space, so int() cannot fail and no token needs looking at alone.
    if _DIGITS_AND_SPACE.fullmatch(text):
        values = list(map(int, text.split()))
        if not values or (min(values) > 0 and max(values) <= MAX_ID):
            good.extend(values)
            return
    for token in text.split():
        # str.isdigit alone accepts non-ASCII digits such as '١٢' or '²', hence isascii.
        if token.isascii() and token.isdigit():
            value = int(token)
            if 0 < value <= MAX_ID:
                good.append(value)
                continue
        bad.append(token)


def _bad_message(bad: list[str]) -> str:
    unique = list(dict.fromkeys(bad))
    shown = [repr(_shorten(t)) for t in unique[:SHOWN_BAD_TOKENS]]
    text = ", ".join(shown)
    if len(unique) > SHOWN_BAD_TOKENS:
        text += f" and {len(unique) - SHOWN_BAD_TOKENS} more"
    noun = "ID is" if len(unique) == 1 else "IDs are"
    return f"{len(unique)} {noun} not valid (a whole number from 1 to {MAX_ID}): {text}"


def _shorten(token: str, limit: int = 30) -> str:
    return token if len(token) <= limit else token[: limit - 1] + "…"
