"""SQL lives in sql/ and lce/db/: no module under lce/ outside lce/db/ executes SQL written in its own text.

A statement is a string literal (or f-string, or a concatenation or format() starting with one) whose text starts
with a SQL keyword, passed to text(), .execute(), .executemany(), .exec_driver_sql(), .sql(), .query() or
.copy(), directly or through a name bound to it. Queries belong in sql/queries/ (read with
lce.resources.read_sql, parameters bound), table writes in lce/db/. What `lce sql` runs is the user's text, a
variable, and passes.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

LCE = Path(__file__).resolve().parent.parent / "lce"
EXECUTING = {"text", "execute", "executemany", "exec_driver_sql", "sql", "query", "copy"}
KEYWORDS = ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "CREATE", "ALTER", "DROP", "COPY", "TRUNCATE", "MERGE",
            "PIVOT", "UNPIVOT", "INSTALL", "LOAD", "ATTACH", "DETACH", "USE", "SET", "PRAGMA", "CALL", "LOCK",
            "GRANT", "REVOKE", "BEGIN", "COMMIT", "ROLLBACK", "EXPLAIN", "VALUES", "TABLE", "SHOW", "DESCRIBE")
STATEMENT = re.compile(rf"\s*(?:{'|'.join(KEYWORDS)})\b", re.IGNORECASE)
# (module, statement text with "{}" for each f-string field): DuckDB's own set-up of its connection, the lock of a
# read-only one included.
ALLOWED = {
    ("analysis/duck.py", "LOAD '{}'"),
    ("analysis/duck.py", "ATTACH '{}' AS {} (TYPE postgres{})"),
    ("analysis/duck.py", "USE {}"),
    ("analysis/duck.py", "SET enable_external_access = false"),
    ("analysis/duck.py", "SET lock_configuration = true"),
}


def _text(node: ast.AST, bound: dict[str, str]) -> str | None:
    """The statement text an expression starts with ("{}" for f-string fields), or None when it starts with no
    string written in the module."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(part.value if isinstance(part, ast.Constant) else "{}" for part in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mod)):
        return _text(node.left, bound)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        return _text(node.func.value, bound)
    if isinstance(node, ast.Name):
        return bound.get(node.id)
    return None


def _called(node: ast.Call) -> str | None:
    if isinstance(node.func, ast.Name):
        return node.func.id
    return node.func.attr if isinstance(node.func, ast.Attribute) else None


def sql_offences(source: str, module: str) -> list[tuple[int, str]]:
    """(line, text) of each SQL statement `source` executes from its own text, less the ALLOWED ones."""
    tree = ast.parse(source)
    bound: dict[str, str] = {}  # names assigned a string anywhere in the module
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name) and (written := _text(node.value, {})) is not None:
                    bound[target.id] = written
    offences = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or _called(node) not in EXECUTING:
            continue
        arguments = node.args[:1] + [k.value for k in node.keywords if k.arg in ("statement", "query", "sql")]
        for argument in arguments:
            statement = _text(argument, bound)
            if statement is not None and STATEMENT.match(statement) and (module, statement) not in ALLOWED:
                offences.append((node.lineno, " ".join(statement.split())))
    return sorted(offences)


def test_no_module_outside_lce_db_executes_sql_of_its_own():
    offences = []
    for path in sorted(LCE.rglob("*.py")):
        module = path.relative_to(LCE).as_posix()
        if module.startswith("db/"):
            continue
        offences += [f"lce/{module}:{line}: {statement[:100]}"
                     for line, statement in sql_offences(path.read_text(encoding="utf-8"), module)]
    assert not offences, ("SQL executed from a module's own text; move queries to sql/queries/ (read_sql, "
                          "parameters bound) and writes to lce/db/:\n" + "\n".join(offences))


def test_every_allowed_statement_is_still_there():
    """An exemption outlives its reason only until this fails: each one must still match a call."""
    found = set()
    for module, statement in ALLOWED:
        tree = ast.parse((LCE / module).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _called(node) in EXECUTING and node.args \
                    and _text(node.args[0], {}) == statement:
                found.add((module, statement))
    assert found == ALLOWED


def test_the_check_finds_each_way_of_writing_a_statement():
    source = '''
from sqlalchemy import text
QUERY = "SELECT id FROM run"
def f(conn, con, cursor, name, user_text):
    conn.execute(text("select * from probe where name = :n"), {"n": name})
    conn.execute(text(f"SELECT * FROM probe WHERE name = '{name}'"))
    con.execute("CREATE TEMP TABLE t AS " + user_text)
    con.sql("PIVOT t ON concept USING sum(value)")
    cursor.copy("COPY concept FROM STDIN")
    conn.exec_driver_sql("DELETE FROM run WHERE id = %s" % 3)
    conn.execute(text(QUERY))
    conn.execute(text(statement="UPDATE run SET layer = 'x'"))
    conn.execute(text(read_sql("queries/models")))
    con.execute(user_text)
    ax.text(0, 1, "Select a model")
'''
    assert [line for line, _ in sql_offences(source, "analysis/example.py")] == [5, 6, 7, 8, 9, 10, 11, 12]
