"""Districts from a file (SELECTIVE_SYNC_DISTRICTS_FILE): YAML or TOML, ${ENV} in URLs,
enabled flags, refusals that name the line; init-db registers every district."""

from __future__ import annotations

import json
import os

import pytest

from selective_sync.errors import DistrictNotConfigured, DistrictsFileError
from selective_sync.settings import configured_districts, get_settings, resolve_district

YAML = """\
# the state's districts
districts:
  - number: 276
    name: OAK RIDGE
    url: postgresql+psycopg://sync:${OAK_PASSWORD}@db/oak
  - number: 277
    name: PINE HILL
    url: sqlite:///pine.db
    enabled: false
  - number: 278
    name: ELM
    url: sqlite:///elm.db
"""

TOML = """\
[[districts]]
number = 276
name = "OAK RIDGE"
url = "postgresql+psycopg://sync:${OAK_PASSWORD}@db/oak"

[[districts]]
number = 277
name = "PINE HILL"
url = "sqlite:///pine.db"
enabled = false

[[districts]]
number = 278
name = "ELM"
url = "sqlite:///elm.db"
"""


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith("SELECTIVE_SYNC_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SELECTIVE_SYNC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("OAK_PASSWORD", "s3cret")
    return monkeypatch


def use(monkeypatch, path, text: str):
    path.write_text(text)
    monkeypatch.setenv("SELECTIVE_SYNC_DISTRICTS_FILE", str(path))


@pytest.mark.parametrize(("name", "text"), [("d.yaml", YAML), ("d.toml", TOML)])
def test_the_file_lists_the_enabled_districts_with_passwords_from_the_environment(
    clean_env, tmp_path, name, text
):
    use(clean_env, tmp_path / name, text)
    districts = configured_districts(get_settings())
    assert [(d.number, d.name) for d in districts] == [(276, "OAK RIDGE"), (278, "ELM")]
    assert districts[0].url == "postgresql+psycopg://sync:s3cret@db/oak"
    # The first enabled district is the default; a disabled one is not served.
    assert resolve_district(get_settings()).number == 276
    with pytest.raises(DistrictNotConfigured, match="277"):
        resolve_district(get_settings(), 277)


def test_the_default_district_can_be_chosen_and_the_single_district_settings_add_one(
    clean_env, tmp_path
):
    use(clean_env, tmp_path / "d.yaml", YAML)
    clean_env.setenv("SELECTIVE_SYNC_DISTRICT_NUMBER", "278")
    assert [d.number for d in configured_districts(get_settings())] == [278, 276]
    clean_env.setenv("SELECTIVE_SYNC_DISTRICT_URL", "sqlite:///own.db")
    clean_env.setenv("SELECTIVE_SYNC_DISTRICT_NUMBER", "500")
    clean_env.setenv("SELECTIVE_SYNC_DISTRICT_NAME", "OWN")
    assert [d.number for d in configured_districts(get_settings())] == [500, 276, 278]


def test_without_a_file_nothing_changes(clean_env):
    clean_env.setenv(
        "SELECTIVE_SYNC_DISTRICTS", json.dumps([{"number": 9, "name": "N", "url": "sqlite://"}])
    )
    assert [d.number for d in configured_districts(get_settings())] == [275, 9]


BAD = [
    ("d.yaml", "districts:\n  - number: 1\n    name: A\n    url: x\n  - [oops\n", "line 5"),
    (
        "d.yaml",
        "districts:\n  - number: 1\n    name: A\n    url: x\n  - number: 0\n    name: B\n"
        "    url: y\n",
        "line 5: number: Input should be greater than 0",
    ),
    (
        "d.yaml",
        "districts:\n  - number: 1\n    name: A\n    url: x\n  - number: 1\n    name: B\n"
        "    url: y\n",
        "line 5: district 1 is listed twice (first on line 2)",
    ),
    (
        "d.yaml",
        "districts:\n  - number: 1\n    name: A\n    url: x\n    colour: red\n",
        "line 2: unknown field colour",
    ),
    (
        "d.yaml",
        "districts:\n  - number: 1\n    name: A\n    url: postgresql://u:${NOPE_NOT_SET}@h/d\n",
        "line 2: url: the variable NOPE_NOT_SET is not set",
    ),
    ("d.yaml", "districts:\n  - number: '7'\n    name: A\n    url: x\n", "line 2: number:"),
    ("d.yaml", "hello: world\n", "no 'districts' list"),
    ("d.toml", '[[districts]]\nnumber = 1\nname = "A"\nurl = \n', "at line 4"),
    (
        "d.toml",
        '[[districts]]\nnumber = 1\nname = "A"\nurl = "x"\n\n[[districts]]\nnumber = 2\n'
        'url = "y"\n',
        "line 6: name: Field required",
    ),
    ("d.json", "[]", "must end in .yaml, .yml or .toml"),
]


@pytest.mark.parametrize(("name", "text", "problem"), BAD)
def test_a_bad_file_is_refused_with_the_line_and_the_problem(
    clean_env, tmp_path, name, text, problem
):
    use(clean_env, tmp_path / name, text)
    with pytest.raises(DistrictsFileError) as refused:
        configured_districts(get_settings())
    assert problem in str(refused.value)
    assert str(tmp_path / name) in str(refused.value)


def test_a_missing_file_is_named(clean_env, tmp_path):
    clean_env.setenv("SELECTIVE_SYNC_DISTRICTS_FILE", str(tmp_path / "nowhere.yaml"))
    with pytest.raises(DistrictsFileError, match="nowhere.yaml"):
        configured_districts(get_settings())


def test_a_district_in_both_the_json_and_the_file_is_refused(clean_env, tmp_path):
    use(clean_env, tmp_path / "d.yaml", YAML)
    clean_env.setenv(
        "SELECTIVE_SYNC_DISTRICTS", json.dumps([{"number": 278, "name": "E", "url": "sqlite://"}])
    )
    with pytest.raises(DistrictsFileError, match="district 278 is also in"):
        configured_districts(get_settings())


def test_init_db_registers_every_district_of_the_file(clean_env, tmp_path):
    """The real command on real SQLite files: every enabled district's schema, every
    district (enabled or not) registered at the state."""
    from sqlalchemy import select
    from typer.testing import CliRunner

    from selective_sync.cli import app, register
    from selective_sync.db import make_engine
    from selective_sync.schema import state_metadata

    text = "districts:\n" + "".join(
        f"  - number: {n}\n    name: D{n}\n    url: sqlite:///{tmp_path}/d{n}.db\n"
        f"    enabled: {'false' if n == 103 else 'true'}\n"
        for n in (101, 102, 103)
    )
    use(clean_env, tmp_path / "districts.yaml", text)
    clean_env.setenv("SELECTIVE_SYNC_STATE_URL", f"sqlite:///{tmp_path}/state.db")
    register()
    done = CliRunner().invoke(app, ["init-db"])
    assert done.exit_code == 0, done.output
    assert (tmp_path / "d101.db").exists() and (tmp_path / "d102.db").exists()
    assert not (tmp_path / "d103.db").exists()
    engine = make_engine(f"sqlite:///{tmp_path}/state.db")
    table = state_metadata.tables["state_district"]
    with engine.connect() as conn:
        rows = dict(conn.execute(select(table.c.district_number, table.c.name)).all())
    engine.dispose()
    assert rows == {101: "D101", 102: "D102", 103: "D103"}
