"""accounts export: JSON Lines round-trips through import; CSV neutralises formula cells."""

from __future__ import annotations

import csv
import hashlib
import json
import sqlite3
from pathlib import Path

from tests.conftest import RunCli

HOSTILE = '=HYPERLINK("http://evil.test","click")'


def _dump(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        rows = []
        for table in ("accounts", "account_admins", "account_tags"):
            cols = "*" if table != "accounts" else "id, name, plan, tags, created_at, status"
            rows += [repr(r) for r in conn.execute(f"SELECT {cols} FROM {table} ORDER BY 1, 2")]
        return hashlib.sha256("\n".join(rows).encode()).hexdigest()
    finally:
        conn.close()


def _import(runner: RunCli, db: Path, text: str, name: str) -> None:
    Path(name).write_text(text, encoding="utf-8")
    result = runner("--db", db, "accounts", "import", name)
    assert result.exit_code == 0, result.stderr


SOURCE = (
    "id,name,plan,tags,created_at,status,admins\n"
    f'evil,"{HOSTILE.replace(chr(34), chr(34) * 2)}",free,a;b,2015-01-01,active,X@Example.test; y@example.test\n'
    "plain,Plain Co,enterprise,,2016-04-10T12:30:00Z,closed,ops@example.test\n"
    "plus,+1 (555) 0100,free,,2015-01-01,active,p@example.test\n"
)


def test_jsonl_export_round_trips_through_import(runner: RunCli, tmp_path: Path) -> None:
    first, second = tmp_path / "a.db", tmp_path / "b.db"
    _import(runner, first, SOURCE, "src.csv")
    result = runner("--db", first, "accounts", "export", "--format", "jsonl", "--out", "out.jsonl")
    assert result.exit_code == 0, result.stderr
    lines = Path("out.jsonl").read_text(encoding="utf-8").splitlines()
    assert {json.loads(line)["name"] for line in lines} >= {HOSTILE, "+1 (555) 0100"}
    _import(runner, second, Path("out.jsonl").read_text(encoding="utf-8"), "again.jsonl")
    assert _dump(first) == _dump(second)
    # Importing the export into the same store changes nothing.
    before = _dump(first)
    result = runner("--db", first, "accounts", "import", "out.jsonl", "--json")
    assert json.loads(result.stdout)["unchanged"] == 3
    assert _dump(first) == before


def test_csv_export_never_writes_a_formula_cell(runner: RunCli, tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    _import(runner, db, SOURCE, "src.csv")
    result = runner("--db", db, "accounts", "export", "--format", "csv")
    assert result.exit_code == 0, result.stderr
    rows = list(csv.reader(result.stdout.splitlines()))
    assert rows[0] == ["id", "name", "plan", "tags", "created_at", "status", "admins"]
    cells = [cell for row in rows[1:] for cell in row]
    assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in cells)
    assert "'" + HOSTILE in cells and "'+1 (555) 0100" in cells
    assert "x@example.test;y@example.test" in cells


def test_export_file_is_owner_only(runner: RunCli, tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    _import(runner, db, SOURCE, "src.csv")
    assert runner("--db", db, "accounts", "export", "--out", "x/out.jsonl").exit_code == 0
    assert (Path("x/out.jsonl").stat().st_mode & 0o777) == 0o600
