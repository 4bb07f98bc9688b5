"""A whole-object verification brought up to date by a later verification of some keys.

The nightly verifies each object of a district once, whole, syncs the keys that differ and
verifies those keys again; the district's Verification Summary after the syncs is the whole
verification with those keys as they were found the second time (:func:`with_rechecked`),
not a third read of every key.
"""

from __future__ import annotations

from collections.abc import Iterable

from selective_sync.errors import BadInput
from selective_sync.models import ObjectVerification


def with_rechecked(
    whole: ObjectVerification, part: ObjectVerification, keys: Iterable[int]
) -> ObjectVerification:
    """``whole`` (every key of the object) with ``keys`` as ``part``, a later verification of
    those keys only, found them: what verifying the whole object again would find, provided
    nothing but ``keys`` changed in between (the nightly holds the district's lock, so no
    other sync writes the state's rows of the district meanwhile).

    ``verified_at`` is the later one. A key of ``keys`` that ``whole`` found in no set of
    issues was on both sides and equal then (it is counted so before being replaced): a key
    is only ever synced because the district has it.
    """
    if whole.keys_requested is not None:
        raise BadInput("with_rechecked needs a verification of every key as its first argument")
    if (part.object, part.district_number) != (whole.object, whole.district_number):
        raise BadInput(
            f"cannot recheck {whole.object} of district {whole.district_number} with a "
            f"verification of {part.object} of district {part.district_number}"
        )
    checked = {int(k) for k in keys}
    only_state = set(whole.missing_at_district) & checked
    only_district = set(whole.missing_at_state) & checked
    # Before: every checked key was at the district but those only at the state, and at the
    # state but those only at the district.
    at_district = whole.at_district - (len(checked) - len(only_state)) + part.at_district
    at_state = whole.at_state - (len(checked) - len(only_district)) + part.at_state

    def kept(found: list[int], again: list[int]) -> list[int]:
        return sorted([k for k in found if k not in checked] + list(again))

    issues = [i for i in whole.issues if i.key not in checked] + list(part.issues)
    return ObjectVerification(
        object=whole.object,
        district_number=whole.district_number,
        verified_at=max(whole.verified_at, part.verified_at),
        at_district=at_district,
        at_state=at_state,
        missing_at_state=kept(whole.missing_at_state, part.missing_at_state),
        missing_at_district=kept(whole.missing_at_district, part.missing_at_district),
        mismatched=kept(whole.mismatched, part.mismatched),
        issues=sorted(issues, key=lambda i: i.key),
    )
