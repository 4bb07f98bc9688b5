"""Parameter types and titles that make the flows' run forms read in plain words.

Prefect builds a deployment's form from the flow's signature: each field is labelled with
its schema ``title``, which Prefect 3.9.1 sets to the parameter's name. ``title("IDs")`` in
the annotation (``Annotated[str, title("IDs")]``) overrides it through ``json_schema_extra``
(``Field(title=...)`` there is ignored). It must not be the parameter's default: Prefect's
parameter validation then hands the ``FieldInfo`` itself to the flow for a parameter the
run did not send (3.9.1: a deployment run without ``dry_run`` would get a truthy object).
A union (``str | list[int]``, ``int | None``) renders as a type toggle, and
``None`` as "Property is type None": so every parameter here has one plain type and a real
default, and what a caller may still send otherwise (a list of IDs, ``None`` for "the
configured district") is turned into that type by a ``BeforeValidator`` when the flow
validates its parameters.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from selective_sync.errors import BadInput


def title(text: str) -> Any:
    """Annotation metadata that labels a parameter's form field ``text``."""
    return Field(json_schema_extra={"title": text})


def _ids_as_text(value: Any) -> Any:
    """A list of IDs (API, subflows) as the text the form sends; text stays as it is."""
    if not isinstance(value, list | tuple):
        return value
    for item in value:
        # Strict: [true] or [1.0] must not become ID 1.
        if isinstance(item, bool) or not isinstance(item, int):
            raise ValueError(f"IDs: a list must hold whole numbers only, not {item!r}")
    return ", ".join(str(item) for item in value)


def _none_as(empty: Any):
    def convert(value: Any) -> Any:
        return empty if value is None else value

    return convert


def _none_as_list(value: Any) -> Any:
    return [] if value is None else value


def _date_as_text(value: Any) -> Any:
    if value is None:
        return ""
    return value.isoformat() if isinstance(value, date) else value


# Pasted text: IDs separated by commas, spaces, semicolons or new lines (one text box in the
# form). A list of whole numbers is accepted too and becomes that text.
IdsText = Annotated[str, BeforeValidator(_ids_as_text)]
# 0 (or None from a Python caller) means the district this deployment serves; any other
# number not configured here is refused by the flow, naming the configured districts.
DistrictNumber = Annotated[int, BeforeValidator(_none_as(0))]
# "" (or None from a Python caller) means not given.
OptionalText = Annotated[str, BeforeValidator(_none_as(""))]
OptionalNumber = Annotated[int, Field(ge=0), BeforeValidator(_none_as(0))]
# A list, empty meaning "all" (None from a Python caller too): ``Annotated[list[T], NoneAsEmpty]``.
NoneAsEmpty = BeforeValidator(_none_as_list)
# A date as text (YYYY-MM-DD); "" means not given (a ``date`` from Python callers is accepted).
OptionalDate = Annotated[str, BeforeValidator(_date_as_text)]


def district_or_default(number: int | None) -> int | None:
    """The district number a flow resolves: 0 (the form's default) means the configured one."""
    return number or None


def parse_date(field: str, value: str) -> date | None:
    """``value`` (``YYYY-MM-DD``) as a date, None when empty; a clear error naming ``field``."""
    if not value.strip():
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise BadInput(f"{field}: {value!r} is not a date (YYYY-MM-DD)") from None
