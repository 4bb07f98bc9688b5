"""No SQL is built from input: an AST scan of selective_sync/, flows/ and tasks/.

Every call that hands SQL text to a database (``text()``, ``literal_column()``,
``exec_driver_sql()``, ``execute()``/``executemany()``/``executescript()`` on a connection or
a DBAPI cursor) is found, and its SQL argument must be a plain string literal, a SQLAlchemy
construct, or a variable that is neither. SQL made by an f-string, ``%``, ``+``,
``.format()`` or ``.join()`` (directly, or through a variable assigned so in the same
function) is allowed only in the places listed below, each of which puts in identifiers from
the schema/registry or constants of the code, never anything a user gave. A new site, or a
listed one that is gone, fails the test: the list is reviewed with the code.

Behaviourally, hostile IDs, user names and values never reach SQL text: see
test_bad_input.py (refused before any query) and test_hostile_data.py (stored and read back
exactly through bound parameters).
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCANNED = ("selective_sync", "flows", "tasks")
SQL_FUNCTIONS = {"text", "literal_column"}
SQL_METHODS = {"execute", "executemany", "executescript", "exec_driver_sql"}

# (file, function): how many dynamic-SQL sites it has, and why each is safe.
ALLOWED: dict[tuple[str, str], tuple[int, str]] = {
    ("selective_sync/demo/generator.py", "_store_dates_as_datetime_text"): (
        1,
        "demo generator: table and column names from its own noise list (schema names); "
        "the district number and row id are bound parameters",
    ),
    ("selective_sync/demo/generator.py", "insert"): (
        1,
        "demo generator's multi-row INSERT for servers: the statement head is built from "
        "the schema's table and column names, the values are the generator's own data "
        "rendered by _literal (ints, NULL, text with quotes doubled; backslash and NUL "
        "refused)",
    ),
    ("selective_sync/demo/generator.py", "analyze"): (
        2,
        "ANALYZE of the schema's own table names just loaded by the demo generator",
    ),
    ("selective_sync/demo/generator.py", "copy_from_district"): (
        1,
        "demo generator: INSERT ... SELECT between ATTACHed SQLite files; table, column and "
        "key names from district_metadata, the district number is a bound parameter",
    ),
}


def _is_dynamic_string(node: ast.AST) -> bool:
    """An expression that builds a string at run time from parts."""
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(v, ast.FormattedValue) for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod | ast.Add):
        return True
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return node.func.attr in ("format", "join", "format_map")
    return False


def _sql_argument(call: ast.Call) -> ast.AST | None:
    func = call.func
    name = func.id if isinstance(func, ast.Name) else None
    attr = func.attr if isinstance(func, ast.Attribute) else None
    if name in SQL_FUNCTIONS or attr in SQL_FUNCTIONS or attr in SQL_METHODS:
        if call.args:
            return call.args[0]
        for kw in call.keywords:
            if kw.arg in ("statement", "text", "sql", "query"):
                return kw.value
    return None


class _Scanner(ast.NodeVisitor):
    def __init__(self, path: str) -> None:
        self.path = path
        self.scope: list[ast.AST] = []
        self.found: list[tuple[str, str, int]] = []
        self.calls = 0

    def _function(self) -> str:
        for node in reversed(self.scope):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                return node.name
        return "<module>"

    def visit_FunctionDef(self, node):  # noqa: N802
        self.scope.append(node)
        self.generic_visit(node)
        self.scope.pop()

    visit_AsyncFunctionDef = visit_FunctionDef  # noqa: N815

    def _assigned_dynamic(self, name: str) -> bool:
        scope = self.scope[-1] if self.scope else None
        if scope is None:
            return False
        for node in ast.walk(scope):
            targets = []
            if isinstance(node, ast.Assign):
                targets, value = node.targets, node.value
            elif isinstance(node, ast.AnnAssign | ast.AugAssign):
                targets, value = [node.target], node.value
            for target in targets:
                named = isinstance(target, ast.Name) and target.id == name
                if named and (isinstance(node, ast.AugAssign) or _is_dynamic_string(value)):
                    return True
        return False

    def visit_Call(self, node):  # noqa: N802
        arg = _sql_argument(node)
        if arg is not None:
            self.calls += 1
            dynamic = _is_dynamic_string(arg) or (
                isinstance(arg, ast.Name) and self._assigned_dynamic(arg.id)
            )
            if dynamic:
                self.found.append((self.path, self._function(), node.lineno))
        self.generic_visit(node)


def scan() -> tuple[list[tuple[str, str, int]], int]:
    found, calls = [], 0
    for top in SCANNED:
        for path in sorted((REPO / top).rglob("*.py")):
            relative = path.relative_to(REPO).as_posix()
            scanner = _Scanner(relative)
            scanner.visit(ast.parse(path.read_text(encoding="utf-8"), filename=relative))
            found.extend(scanner.found)
            calls += scanner.calls
    return found, calls


def test_no_sql_is_built_from_strings_outside_the_allow_list():
    found, calls = scan()
    assert calls > 20, "the scan found too few SQL calls: is it still looking at the code?"
    per_function = Counter((path, function) for path, function, _ in found)
    unexpected = {
        site: n for site, n in per_function.items() if site not in ALLOWED or ALLOWED[site][0] != n
    }
    lines = {(p, f): sorted(ln for pp, ff, ln in found if (pp, ff) == (p, f)) for p, f, _ in found}
    assert not unexpected, (
        "SQL built from strings (use bound parameters or SQLAlchemy constructs, or justify "
        f"it in ALLOWED): { {site: lines[site] for site in unexpected} }"
    )
    stale = sorted(set(ALLOWED) - set(per_function))
    assert not stale, f"allow-list entries with no such code any more: {stale}"


def test_scanner_catches_every_way_of_building_sql(tmp_path):
    """The scanner itself: each pattern is flagged, the safe forms are not."""
    source = """
def bad(conn, cursor, user, ids):
    conn.execute(text(f"SELECT * FROM t WHERE name = '{user}'"))
    conn.exec_driver_sql("DELETE FROM t WHERE id = %s" % ids)
    cursor.execute("SELECT " + user)
    conn.execute(text("SELECT {}".format(user)))
    sql = f"SELECT {user}"
    cursor.execute(sql)
    sql2 = "SELECT 1"
    sql2 += user
    cursor.executemany(sql2, [])
    literal_column(",".join(ids))

def good(conn, cursor, user, stmt):
    conn.execute(text("SELECT * FROM t WHERE name = :name"), {"name": user})
    conn.execute(select(t).where(t.c.name == user))
    cursor.execute("SELECT ?", (user,))
    conn.execute(stmt)
"""
    scanner = _Scanner("example.py")
    scanner.visit(ast.parse(source))
    flagged = Counter(function for _, function, _ in scanner.found)
    assert flagged == {"bad": 7}
