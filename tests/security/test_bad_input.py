"""Hostile IDs and flow parameters: a clear error naming the bad token, or a correct parse.

The parser is checked against an oracle written here from the documented contract (not
from the parser's code): separators are commas, semicolons and any character Python calls
white space; a token is an ID when it is only ASCII digits with a value from 1 to 2**63-1;
IDs come back de-duplicated in the order first given. Then the real flow and the real CLI
get hostile values and must refuse them without writing anything.
"""

from __future__ import annotations

import random
import time

import pytest
import tally
from helpers import refusals_of, whole_database_checksum
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from selective_sync.errors import BadInput
from selective_sync.sync.keys import MAX_ID, parse_ids

from .conftest import cli_process, run_flow

SQL = [
    "1; DROP TABLE state_person",
    "1 OR 1=1",
    "' OR ''='",
    '" OR ""="',
    "1' --",
    "1/**/UNION/**/SELECT/**/password",
    "1); DELETE FROM state_identity; --",
    "0x41",
    "1e3",
    "\\x31",
    "%27",
    "1\\",
]
ODD = [
    "١٢",  # Arabic-Indic digits: isdigit() but not ASCII
    "²",
    "１２",  # full-width digits
    "12\u200b3",  # zero-width space inside a number (not white space to Python)
    "🎓",
    "👩\u200d👩\u200d👧",
    "e\u0301",
    "NaN",
    "inf",
    "-0",
    "+7",
    "1.0",
    "1_000",
    "<script>alert(1)</script>",
]
SEPARATORS = [",", ";", " ", "\n", "\t", "\r\n", "\u00a0", "\u3000", "\u2028", ", ", " ;\n", "\x1f"]


# ---------------------------------------------------------------- the oracle


def _is_separator(ch: str) -> bool:
    return ch in ",;" or ch.isspace()


def oracle_tokens(text: str) -> list[str]:
    tokens, current = [], []
    for ch in text:
        if _is_separator(ch):
            if current:
                tokens.append("".join(current))
                current = []
        else:
            current.append(ch)
    if current:
        tokens.append("".join(current))
    return tokens


def oracle(value) -> tuple[list[int] | None, list[str]]:
    """(expected IDs, []) for a valid input; (None, bad tokens in order) otherwise;
    (None, []) when nothing was given."""
    items = value if isinstance(value, list) else [value]
    good: list[int] = []
    bad: list[str] = []
    for item in items:
        if isinstance(item, bool) or item is None or isinstance(item, float | bytes):
            bad.append(repr(item))
        elif isinstance(item, int):
            if 1 <= item <= MAX_ID:
                good.append(item)
            else:
                bad.append(str(item))
        else:
            for token in oracle_tokens(item):
                if all(c in "0123456789" for c in token) and 1 <= int(token) <= MAX_ID:
                    good.append(int(token))
                else:
                    bad.append(token)
    if bad or not good:
        return None, bad
    seen: dict[int, None] = {}
    for i in good:
        seen.setdefault(i, None)
    return list(seen), []


def shown(token: str) -> str:
    """How the error message quotes a bad token (long ones are cut to 30 characters)."""
    return repr(token if len(token) <= 30 else token[:29] + "…")


def check(value) -> None:
    """parse_ids(value) agrees with the oracle; an error is BadInput naming the bad tokens."""
    tally.add("bad_inputs_tried")
    expected, bad = oracle(value)
    try:
        got = parse_ids(value)
    except BadInput as exc:
        message = str(exc)
        assert expected is None, f"refused a valid input {value!r}: {message}"
        if not bad:
            assert message == "no IDs given"
            return
        unique = list(dict.fromkeys(bad))
        for token in unique[:20]:
            assert shown(token) in message, (token, message)
        assert message.startswith(f"{len(unique)} ID")
        if len(unique) > 20:
            assert message.endswith(f"and {len(unique) - 20} more")
        assert "\n" not in message  # one line, whatever the tokens held
        return
    assert expected is not None, f"accepted {value!r} as {got!r}; expected BadInput for {bad}"
    assert got == expected
    assert all(type(i) is int for i in got)


# ---------------------------------------------------------------- strategies

valid_id = st.integers(min_value=1, max_value=MAX_ID)
edge_number = st.sampled_from([0, -1, -(2**63), MAX_ID, MAX_ID + 1, 2**64, 10**30, -(10**30)])
token = st.one_of(
    valid_id.map(str),
    edge_number.map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(SQL + ODD),
    st.text(min_size=1, max_size=12),
    st.text(alphabet="0123456789", min_size=1, max_size=25),  # leading zeros, > MAX_ID
)
pasted = st.lists(st.tuples(token, st.sampled_from(SEPARATORS)), max_size=25).map(
    lambda pairs: "".join(t + s for t, s in pairs)
)
soup = st.text(alphabet=",; \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\u00a0\u2028\u3000", max_size=40)
list_item = st.one_of(
    valid_id,
    edge_number,
    st.booleans(),
    st.floats(),
    st.none(),
    st.binary(max_size=4),
    token,
    pasted,
)

FAST = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(pasted)
@example("")
@example("1; DROP TABLE state_person")
@example("1 OR 1=1")
@example("' OR ''='")
@example("x" * 100)
@example(" ".join(f"bad{i}" for i in range(30)))
@example(f"{MAX_ID} {MAX_ID + 1}")
def test_pasted_text_is_parsed_or_refused_by_name(text):
    check(text)


@FAST
@given(st.text())
def test_any_unicode_text(text):
    check(text)


@settings(max_examples=150, deadline=None)
@given(soup)
def test_whitespace_and_separator_soup_is_no_ids(text):
    check(text)
    with pytest.raises(BadInput, match="^no IDs given$"):
        parse_ids(text)


@FAST
@given(st.lists(list_item, max_size=20))
@example([])
@example([True])
@example([1.0])
@example([1, None])
@example([b"1"])
@example([-5, 0, MAX_ID + 1])
def test_lists_of_anything(items):
    check(items)


@settings(max_examples=200, deadline=None)
@given(st.lists(valid_id, min_size=1, max_size=50), st.sampled_from(SEPARATORS))
def test_valid_ids_with_any_separator_round_trip(values, sep):
    check(sep.join(map(str, values)))
    assert parse_ids(sep.join(map(str, values))) == list(dict.fromkeys(values))


def test_a_million_ids_with_duplicates_and_one_hostile_token():
    """One fixed example: 1,000,000 IDs (shuffled, with duplicates, mixed separators)
    parse correctly in reasonable time, and one SQL token among them is named."""
    rng = random.Random(8)
    values = [rng.randint(1, 400_000) for _ in range(1_000_000)]
    seps = [",", " ", "\n", ";", ", ", "\t"]
    text = "".join(f"{v}{seps[i % len(seps)]}" for i, v in enumerate(values))
    started = time.perf_counter()
    ids = parse_ids(text)
    elapsed = time.perf_counter() - started
    assert ids == list(dict.fromkeys(values))
    # About 0.5 s on an idle machine; generous for a busy CI box, still far from a hang.
    assert elapsed < 5, elapsed
    tally.add("bad_inputs_tried")

    hostile = text + "1; DROP TABLE state_person"
    started = time.perf_counter()
    with pytest.raises(BadInput) as info:
        parse_ids(hostile)
    assert time.perf_counter() - started < 10
    assert str(info.value) == (
        f"3 IDs are not valid (a whole number from 1 to {MAX_ID}): 'DROP', 'TABLE', 'state_person'"
    )
    tally.add("bad_inputs_tried")


# ---------------------------------------------------------------- the flow's parameters


@settings(max_examples=200, deadline=None)
@given(st.one_of(pasted, st.lists(list_item, max_size=10), list_item))
@example([True])
@example([1.0])
@example(["7"])
@example(b"12")
def test_flow_parameter_validation_never_turns_bad_ids_into_good(ids):
    """What the flow does before touching anything: Prefect validates the parameters against
    the signature, then ``parse_ids`` parses. Together they refuse (a validation error or
    BadInput) or give exactly the oracle's IDs; validation must never make a bad value
    good (as lenient coercion did with ``[True]`` -> ``[1]``), nor refuse text or a plain
    list of whole numbers."""
    from prefect.exceptions import ParameterTypeError

    from flows.sync_request import selective_sync

    tally.add("bad_inputs_tried")
    parameters = {"object": "PersonIdentity", "ids": ids, "requested_by": "someone"}
    try:
        validated = selective_sync.validate_parameters(parameters)
    except ParameterTypeError as exc:
        assert "ids" in str(exc)
        plain = isinstance(ids, str) or (isinstance(ids, list) and all(type(i) is int for i in ids))
        assert not plain, f"the flow refused {ids!r}: {exc}"
        return
    # Bytes are text to pydantic: the caller sent that text.
    expected, _ = oracle(ids.decode() if isinstance(ids, bytes) else ids)
    try:
        got = parse_ids(validated["ids"])
    except BadInput:
        assert expected is None, f"{ids!r} became {validated['ids']!r} and was refused"
        return
    assert got == expected, (ids, validated["ids"])


# ---------------------------------------------------------------- the real flow


HOSTILE_FLOW_PARAMETERS = [
    pytest.param({"ids": "1; DROP TABLE state_person"}, BadInput, ["'DROP'", "'state_person'"]),
    pytest.param({"ids": "10001 OR 1=1"}, BadInput, ["'OR'", "'1=1'"]),
    pytest.param({"ids": "' OR ''='"}, BadInput, ['"\'"', "\"''='\""]),
    pytest.param({"ids": "١٢ 🎓 <b>1</b>"}, BadInput, ["'١٢'", "'🎓'", "'<b>1</b>'"]),
    pytest.param({"ids": " \n\t,;\u3000"}, BadInput, ["no IDs given"]),
    pytest.param({"ids": [-1, 0, 2**64]}, BadInput, ["'-1'", "'0'", f"'{2**64}'"]),
    # Prefect's own parameter validation names the parameter and the item refused (a list
    # of IDs becomes the form's one text, whole numbers only).
    pytest.param(
        {"ids": [True]}, "ParameterTypeError", ["ids:", "whole numbers only, not True"], id="bool"
    ),
    pytest.param(
        {"ids": [5, 1.0]}, "ParameterTypeError", ["ids:", "whole numbers only, not 1.0"], id="float"
    ),
    pytest.param({"ids": 1.5}, "ParameterTypeError", ["ids:", "valid string"]),
    pytest.param(
        {"object": "PersonIdentity'; DROP TABLE x"},
        "ParameterTypeError",
        ["object: Input should be 'PersonIdentity', 'Enrollment' or 'Graduation'"],
    ),
    pytest.param({"requested_by": "admin' OR '1'='1"}, "RightsError", ["admin' OR '1'='1"]),
    pytest.param({"requested_by": "  "}, BadInput, ["empty"]),
    pytest.param({"district": -1}, BadInput, ["district -1 is not configured"]),
]


@pytest.mark.usefixtures("prefect_api")
@pytest.mark.parametrize(("override", "error", "named"), HOSTILE_FLOW_PARAMETERS)
def test_flow_refuses_hostile_parameters_and_writes_nothing(demo, admin, override, error, named):
    from flows.sync_request import selective_sync

    parameters = {"object": "PersonIdentity", "ids": "10001", "requested_by": admin}
    parameters.update(override)
    state_before = whole_database_checksum(demo.state_url)
    district_before = whole_database_checksum(demo.district_url)
    rights_url = f"sqlite:///{demo.dir / 'rights.db'}"
    rights_before = whole_database_checksum(rights_url, refusals=False)
    refusals_before = refusals_of(rights_url)
    _, state, raised = run_flow(selective_sync, **parameters)
    tally.add("bad_inputs_tried")
    assert state.is_failed(), state
    assert isinstance(raised, BaseException), raised
    if isinstance(error, str):
        assert type(raised).__name__ == error, repr(raised)
    else:
        assert isinstance(raised, error), repr(raised)
    for text in named:
        assert text in str(raised), (text, str(raised))
    assert whole_database_checksum(demo.state_url) == state_before
    assert whole_database_checksum(demo.district_url) == district_before
    assert whole_database_checksum(rights_url, refusals=False) == rights_before
    # A refusal is recorded in the refusal audit (and nothing else is).
    new = refusals_of(rights_url)[len(refusals_before) :]
    if error == "RightsError":
        assert [(r["user_name"], r["right_letter"], r["district"]) for r in new] == [
            (parameters["requested_by"], "W", 275)
        ]
    else:
        assert new == []
    # Nothing reached the reports either.
    assert not list((demo.dir / "reports").glob("**/*.pdf"))


# ---------------------------------------------------------------- the real CLI


@pytest.mark.usefixtures("prefect_api")
@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["1; DROP TABLE state_person"], ["'DROP'", "'TABLE'", "'state_person'"]),
        (["10001", "1 OR 1=1", "[red]x[/red]"], ["'OR'", "'1=1'", "'[red]x[/red]'"]),
        (['١٢,🎓\n"quoted"'], ["'١٢'", "'🎓'", "'\"quoted\"'"]),
        ([" \n ;, "], ["no IDs given"]),
    ],
)
def test_cli_sync_hostile_ids_one_error_line(demo, admin, args, named):
    before = whole_database_checksum(demo.state_url)
    result = cli_process("sync", "PersonIdentity", *args, "--user", admin)
    tally.add("bad_inputs_tried")
    line = result.error_line()
    assert result.returncode == 1
    for text in named:
        assert text in line, (text, line)
    assert whole_database_checksum(demo.state_url) == before
