"""parse_ids: what a person pastes becomes positive integer IDs, or one clear BadInput."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from selective_sync.errors import BadInput
from selective_sync.sync.keys import MAX_ID, parse_ids


@pytest.mark.parametrize(
    ("given_ids", "expected"),
    [
        ("1,2,3", [1, 2, 3]),
        ("1, 2;3\t4\n5\r\n6", [1, 2, 3, 4, 5, 6]),
        ("  7  ", [7]),
        ("3 1 3 2 1", [3, 1, 2]),
        ("007", [7]),
        (",,1,,;;2;", [1, 2]),
        ("1\u00a02", [1, 2]),  # a no-break space pasted from a web page separates too
        (42, [42]),
        ([5, "6", 5, " 7 "], [5, 6, 7]),
        (["1,2", "3\n4"], [1, 2, 3, 4]),
        ((x for x in (9, 8, 9)), [9, 8]),
        (str(MAX_ID), [MAX_ID]),
    ],
)
def test_accepts_lists_and_pasted_text(given_ids, expected):
    assert parse_ids(given_ids) == expected


@pytest.mark.parametrize("bad", ["12a", "-5", "0", "1.5", "DROP", "١٢", "²", "+5", "1e3"])
def test_refuses_tokens_that_are_not_positive_integers(bad):
    with pytest.raises(BadInput) as info:
        parse_ids(f"1, {bad}, 2")
    assert repr(bad) in str(info.value)


def test_one_message_lists_every_bad_token():
    with pytest.raises(BadInput) as info:
        parse_ids("1 12a -5 0 1.5 DROP 2 ١٢")
    message = str(info.value)
    assert message.startswith("6 IDs are not valid")
    for token in ["12a", "-5", "0", "1.5", "DROP", "١٢"]:
        assert repr(token) in message


def test_long_lists_of_bad_tokens_are_truncated():
    with pytest.raises(BadInput) as info:
        parse_ids(" ".join(f"x{i}" for i in range(50)))
    message = str(info.value)
    assert "'x19'" in message
    assert "'x20'" not in message
    assert message.endswith("and 30 more")


def test_very_long_token_is_shortened_in_the_message():
    with pytest.raises(BadInput) as info:
        parse_ids("a" * 10_000)
    assert len(str(info.value)) < 200


@pytest.mark.parametrize("bad", [True, False, 0, -1, MAX_ID + 1, 1.0, None, b"1"])
def test_refuses_non_id_values_in_lists(bad):
    with pytest.raises(BadInput):
        parse_ids([1, bad])


def test_too_large_in_text():
    with pytest.raises(BadInput) as info:
        parse_ids(f"1 {MAX_ID + 1}")
    assert str(MAX_ID + 1) in str(info.value)


@pytest.mark.parametrize("empty", ["", "   ", " ,; \n", [], (), None, [""]])
def test_empty_input(empty):
    with pytest.raises(BadInput, match="^no IDs given$"):
        parse_ids(empty)


def test_a_million_ids_parse_in_order_without_duplicates():
    """How fast is bench/parse_ids.py's to measure; here, that a million parse right."""
    as_list = list(range(1, 1_000_001))
    text = "\n".join(map(str, as_list)) + "\n1\n"
    for given_ids in (text, as_list + [1]):
        assert parse_ids(given_ids) == as_list


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_text_gives_positive_ids_or_bad_input(text):
    try:
        ids = parse_ids(text)
    except BadInput:
        return
    assert ids
    assert all(isinstance(i, int) and 0 < i <= MAX_ID for i in ids)
    assert len(ids) == len(set(ids))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.integers(), st.text(), st.booleans(), st.floats(), st.none())))
def test_any_list_gives_positive_ids_or_bad_input(items):
    try:
        ids = parse_ids(items)
    except BadInput:
        return
    assert all(isinstance(i, int) and not isinstance(i, bool) and 0 < i <= MAX_ID for i in ids)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=MAX_ID), min_size=1))
def test_valid_ids_round_trip_through_text(values):
    assert parse_ids(", ".join(map(str, values))) == list(dict.fromkeys(values))
