"""accounts import: CSV and JSON Lines, all-or-nothing, every bad row located, idempotent re-import."""

from __future__ import annotations

import csv
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrate_cli.accounts.reading import normalise_email
from migrate_cli.accounts.records import import_accounts
from migrate_cli.errors import InputError, Problem
from migrate_cli.store.db import Store

NOW = datetime(2016, 4, 1, tzinfo=UTC)
HEADER = "id,name,plan,tags,created_at,status,admins\n"


def flat(text: str) -> str:
    """stderr with Rich line wrapping undone (see test_cli_core::test_error_lines_are_not_wrapped)."""
    return " ".join(text.split())


def dump(db: Path) -> dict[str, list[tuple]]:
    conn = sqlite3.connect(db)
    out = {
        t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr)
        for t in ("accounts", "account_tags", "account_admins", "enrollments", "audit")
    }
    conn.close()
    return out


def write(text: str | bytes, name: str = "accounts.csv") -> Path:
    path = Path(name)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def run_import(path: Path, db: Path = Path("s.db"), now: datetime = NOW):  # type: ignore[no-untyped-def]
    with Store(db) as store:
        return import_accounts(store, path, now=now, actor="tester")


def bad(
    text: str | bytes,
    name: str = "accounts.csv",
    db: Path = Path("s.db"),
    summary: str = "nothing was imported",
) -> list[Problem]:
    path = write(text, name)
    with pytest.raises(InputError) as info:
        run_import(path, db)
    assert summary in str(info.value)
    return info.value.problems


def row(
    id: str = "a1",
    name: str = "A One",
    plan: str = "free",
    tags: str = "",
    created: str = "2016-01-01",
    status: str = "active",
    admins: str = "ops@a.test",
) -> str:
    return f"{id},{name},{plan},{tags},{created},{status},{admins}\n"


def accounts(db: Path = Path("s.db")) -> dict[str, dict]:
    with Store(db) as store:
        from migrate_cli.accounts.records import list_accounts

        return {a["id"]: a for a in list_accounts(store, limit=10_000)}


# --------------------------------------------------------------------------- good files


def test_example_csv_imports(repo_root: Path) -> None:
    report = run_import(repo_root / "examples" / "accounts.csv")
    with (repo_root / "examples" / "accounts.csv").open() as handle:
        expected = list(csv.DictReader(handle))
    assert report.rows == report.added == len(expected) == 12
    got = accounts()
    assert set(got) == {r["id"] for r in expected}
    for r in expected:
        a = got[r["id"]]
        assert a["plan"] == r["plan"] and a["status"] == r["status"] and a["name"] == r["name"]
        assert a["admins"] == sorted(r["admins"].split(";"))
        assert a["tags"] == sorted(t for t in r["tags"].split(";") if t)
        assert a["created_at"] == r["created_at"] + "T00:00:00.000000Z"


def test_jsonl_imports_with_lists_or_strings() -> None:
    lines = [
        {
            "id": "j1",
            "name": "J One",
            "plan": "free",
            "tags": ["eu", "sso"],
            "created_at": "2016-01-01",
            "status": "active",
            "admins": ["A@J.test", "b@j.test"],
        },
        {
            "id": "j2",
            "plan": "enterprise",
            "tags": "us;x",
            "created_at": "2016-01-02T10:00:00+02:00",
            "admins": "c@j.test",
        },
    ]
    path = write("\n".join(json.dumps(x) for x in lines) + "\n\n", "accounts.jsonl")
    report = run_import(path)
    assert report.added == 2
    got = accounts()
    assert got["j1"]["admins"] == ["a@j.test", "b@j.test"] and got["j1"]["tags"] == ["eu", "sso"]
    assert got["j2"]["name"] == "j2"  # name defaults to the id
    assert got["j2"]["status"] == "active"
    assert got["j2"]["created_at"] == "2016-01-02T08:00:00.000000Z"


def test_optional_columns_may_be_left_out() -> None:
    run_import(write("id,plan,created_at,admins\nx,free,2016-01-01,o@x.test\n"))
    assert accounts()["x"] == {
        "id": "x",
        "name": "x",
        "plan": "free",
        "tags": [],
        "status": "active",
        "created_at": "2016-01-01T00:00:00.000000Z",
        "admins": ["o@x.test"],
    }


def test_column_order_and_case_do_not_matter() -> None:
    run_import(write("Admins,CREATED_AT,plan,ID\no@x.test,2016-01-01,free,x\n"))
    assert accounts()["x"]["admins"] == ["o@x.test"]


def test_crlf_and_bom_are_accepted() -> None:
    text = ("\ufeff" + HEADER + row("c1") + row("c2")).replace("\n", "\r\n")
    assert run_import(write(text)).added == 2


def test_quoted_fields_with_commas_and_newlines() -> None:
    run_import(
        write(
            HEADER + 'q1,"Name, with comma\nand a second line",free,,2016-01-01,active,o@q.test\n'
        )
    )
    assert accounts()["q1"]["name"] == "Name, with comma\nand a second line"


def test_blank_lines_are_ignored() -> None:
    assert run_import(write(HEADER + "\n" + row("b1") + "\n\n" + row("b2"))).added == 2


def test_closed_and_without_admins() -> None:
    report = run_import(
        write(
            HEADER
            + row("x1", admins="")
            + row("x2", status="closed", admins="")
            + row("x3", status="CLOSED")
        )
    )
    assert report.added == 3 and report.without_admins == 1
    assert accounts()["x3"]["status"] == "closed"


# --------------------------------------------------------------------------- emails


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Ops@ACME.test", "ops@acme.test"),
        ("  ops@acme.test  ", "ops@acme.test"),
        ("ops@acme.test.", "ops@acme.test"),
        ("ops@Bücher.example", "ops@xn--bcher-kva.example"),
        ("o.p+s@münchen.de", "o.p+s@xn--mnchen-3ya.de"),
    ],
)
def test_email_normalisation(raw: str, expected: str) -> None:
    assert normalise_email(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "no-at-sign",
        "a@@b.test",
        "a@b@c.test",
        "a b@c.test",
        "a@b",
        "a@-b.test",
        "a@b_c.test",
        ".a@b.test",
        "a..b@c.test",
        "ünïcode@b.test",
        "a@.test",
        "a@b..test",
        "a\t@b.test",
        "a@" + "x" * 64 + ".test",
    ],
)
def test_bad_emails(raw: str) -> None:
    with pytest.raises(ValueError):
        normalise_email(raw)


def test_list_by_admin_uses_the_same_normalisation(runner) -> None:  # type: ignore[no-untyped-def]
    run_import(write(HEADER + row("e1", admins="x@bücher.example") + row("e2", admins="y@b.test")))
    result = runner("--db", "s.db", "accounts", "list", "--admin", " X@Bücher.Example ", "--json")
    assert [a["id"] for a in json.loads(result.stdout)["accounts"]] == ["e1"]


def test_emails_normalised_in_the_store() -> None:
    run_import(write(HEADER + row("e1", admins=" Ops@ACME.test ;ops@acme.test; x@Bücher.example")))
    assert accounts()["e1"]["admins"] == ["ops@acme.test", "x@xn--bcher-kva.example"]


# --------------------------------------------------------------------------- bad rows, located


def test_every_bad_row_is_reported_with_its_line() -> None:
    text = (
        HEADER
        + row("ok1")  # 2
        + row("")  # 3 missing id
        + row("b2", created="2016-02-30")  # 4 bad date
        + row("b3", admins="not-an-email")  # 5 bad email
        + row("b4", status="suspended")  # 6 unknown status
        + 'b5,"two\nlines",free,,2016-01-01,active,x@y.test\n'  # 7-8 fine
        + row("b6", plan="")  # 9 missing plan
        + "b7,x,free,,2016-01-01,active,a@b.test,extra\n"  # 10 extra value
        + "b8,x,free\n"  # 11 too few values
        + row("ok1")  # 12 duplicate of line 2
        + row("b9", created="yesterday", admins="bad")  # 13 two problems
        + row("bad id!")  # 14
        + row("b10", tags="eu;has space")  # 15
    )
    found = bad(text)
    got = [(p.line, p.field) for p in found]
    assert got == [
        (3, "id"),
        (4, "created_at"),
        (5, "admins"),
        (6, "status"),
        (9, "plan"),
        (10, None),
        (11, None),
        (12, "id"),
        (13, "created_at"),
        (13, "admins"),
        (14, "id"),
        (15, "tags"),
    ]
    msgs = {(p.line, p.field): p.message for p in found}
    assert msgs[(3, "id")] == "is missing"
    assert "2016-02-30" in msgs[(4, "created_at")]
    assert "'not-an-email' is not an email address" in msgs[(5, "admins")]
    assert "'suspended' is not one of active, closed" in msgs[(6, "status")]
    assert "8 values but the header has 7 columns" in msgs[(10, None)]
    assert "3 values" in msgs[(11, None)]
    assert msgs[(12, "id")] == "duplicate account id 'ok1' (lines 2, 12)"
    assert all(p.file == "accounts.csv" for p in found)
    assert accounts() == {}


def test_unknown_and_missing_columns() -> None:
    found = bad("id,name,plan,colour\na,b,free,red\n")
    messages = " | ".join(p.message for p in found)
    assert "unknown column(s) colour" in messages
    assert "missing column(s) created_at, admins" in messages
    assert all(p.line == 1 for p in found)


def test_duplicate_column() -> None:
    (p,) = bad("id,plan,plan,created_at,admins\n")
    assert "duplicate column(s) plan" in p.message


def test_quoted_newlines_keep_line_numbers() -> None:
    text = (
        HEADER
        + 'q1,"one\ntwo\nthree",free,,2016-01-01,active,o@q.test\n'
        + 'q2,"x\ny",free,,bad-date,active,o@q.test\n'
        + row("q3", status="nope")
    )
    found = bad(text)
    assert [(p.line, p.field) for p in found] == [(5, "created_at"), (7, "status")]


def test_crlf_line_numbers() -> None:
    found = bad(
        (HEADER + row("c1") + row("c2", created="x") + row("c3", admins="@")).replace("\n", "\r\n")
    )
    assert [p.line for p in found] == [3, 4]


def test_bare_carriage_returns_get_a_plain_message() -> None:
    (p,) = bad((HEADER + row("c1") + row("c2")).replace("\n", "\r"))
    assert "bare carriage return" in p.message and "universal-newline" not in p.message


def test_cp1252_bytes_are_located() -> None:
    data = (HEADER + row("c1") + row("c2", name="Caf\xe9")).encode("cp1252")
    (p,) = bad(data)
    assert p.line == 3 and "UTF-8" in p.message and "0xe9" in p.message


def test_bom_then_bad_row() -> None:
    (p,) = bad("\ufeff" + HEADER + row("x", plan="bad plan"))
    assert p.line == 2 and p.field == "plan"


@pytest.mark.parametrize(
    "tail",
    [
        't1,"unterminated,free,,2016-01-01,active,o@t.test\n',
        't1,"unterminated,free,,2016-01-01,active,o@t.test',
    ],
)
def test_unterminated_quote(tail: str) -> None:
    (p,) = bad(HEADER + row("ok") + tail)
    assert p.line == 3 and "invalid CSV" in p.message


def test_truncated_last_line() -> None:
    (p,) = bad(HEADER + row("ok") + "t1,Name,free,,2016-01")
    assert p.line == 3


def test_nul_byte() -> None:
    found = bad(HEADER + row("n1", name="N\x00ul"))
    assert [(p.line, p.field) for p in found] == [(2, "name")]
    assert "NUL" in found[0].message


@pytest.mark.parametrize(
    ("text", "message", "summary"),
    [
        ("", "empty", "nothing was imported"),
        (HEADER, "no accounts", "nothing to import"),  # a header alone is not a mistake
        ("\n\n", "missing column", "nothing was imported"),
    ],
)
def test_empty_files(text: str, message: str, summary: str) -> None:
    found = bad(text, summary=summary)
    assert message in " ".join(p.message for p in found)


def test_jsonl_problems_are_located() -> None:
    lines = [
        json.dumps({"id": "j1", "plan": "free", "created_at": "2016-01-01", "admins": "a@j.test"}),
        "{not json",
        "[1, 2]",
        json.dumps({"id": "j3", "plan": "free", "created_at": "2016-01-01"}),
        json.dumps(
            {
                "id": "j4",
                "plan": "free",
                "created_at": "2016-01-01",
                "admins": "a@j.test",
                "colour": 1,
            }
        ),
        json.dumps(
            {
                "id": "j5",
                "plan": "free",
                "created_at": "2016-01-01",
                "admins": "a@j.test",
                "status": True,
            }
        ),
        '{"id": "j6", "id": "j7", "plan": "free", "created_at": "2016-01-01", "admins": "a@j.test"}',
        json.dumps({"id": "j1", "plan": "free", "created_at": "2016-01-01", "admins": "a@j.test"}),
        "[" * 50_000,
    ]
    found = bad("\n".join(lines) + "\n", "accounts.jsonl")
    got: dict[tuple, str] = {}
    for p in found:
        got[(p.line, p.field)] = got.get((p.line, p.field), "") + p.message + " | "
    assert "invalid JSON" in got[(2, None)]
    assert "expected a JSON object" in got[(3, None)]
    assert "missing field(s) admins" in got[(4, "admins")]
    assert "unknown field(s) colour" in got[(5, "colour")]
    assert "expected text" in got[(6, "status")]
    assert "duplicate field 'id'" in got[(7, "id")]
    assert got[(8, "id")] == "duplicate account id 'j1' (lines 1, 8) | "
    assert "nested too deeply" in got[(9, None)]


def test_format_option_overrides_the_suffix() -> None:
    path = write(
        json.dumps({"id": "j1", "plan": "free", "created_at": "2016-01-01", "admins": "a@j.test"})
        + "\n",
        "accounts.txt",
    )
    with Store(Path("s.db")) as store:
        import_accounts(store, path, now=NOW, actor="t", fmt="jsonl")
    assert "j1" in accounts()


def test_missing_file() -> None:
    with pytest.raises(InputError) as info, Store(Path("s.db")) as store:
        import_accounts(store, Path("absent.csv"), now=NOW, actor="t")
    assert "absent.csv" in str(info.value)


# --------------------------------------------------------------------------- all-or-nothing


def test_one_bad_row_in_a_thousand_writes_nothing() -> None:
    db = Path("s.db")
    run_import(write(HEADER + row("existing")), db)
    before = dump(db)
    rows = [row(f"acc-{i:04d}", admins=f"admin{i % 37}@x.test") for i in range(1000)]
    rows[736] = row("acc-0736", created="2016-02-30")
    found = bad(HEADER + "".join(rows), db=db)
    assert [(p.line, p.field) for p in found] == [(738, "created_at")]
    assert dump(db) == before


def test_errors_are_capped_but_counted() -> None:
    found = bad(HEADER + "".join(row(f"x{i}", created="bad") for i in range(250)))
    assert len(found) == 200
    with pytest.raises(InputError) as info:
        run_import(Path("accounts.csv"))
    assert "250 problem(s)" in str(info.value) and "first 200 listed" in str(info.value)


# --------------------------------------------------------------------------- re-import


def test_reimport_is_idempotent(repo_root: Path) -> None:
    db = Path("s.db")
    run_import(repo_root / "examples" / "accounts.csv", db)
    before = dump(db)
    report = run_import(
        repo_root / "examples" / "accounts.csv", db, now=datetime(2016, 4, 2, tzinfo=UTC)
    )
    assert (report.added, report.updated, report.unchanged) == (0, 0, 12)
    after = dump(db)
    for table in ("accounts", "account_tags", "account_admins"):
        assert after[table] == before[table]


def test_reimport_updates_in_place_and_replaces_the_admin_set() -> None:
    db = Path("s.db")
    run_import(write(HEADER + row("u1", admins="a@u.test;b@u.test", tags="eu") + row("u2")), db)
    report = run_import(
        write(
            HEADER
            + row(
                "u1", name="Renamed", plan="enterprise", admins="B@u.test;c@u.test", tags="us;sso"
            )
        ),
        db,
    )
    assert (report.added, report.updated, report.unchanged) == (0, 1, 0)
    got = accounts(db)
    assert got["u1"]["name"] == "Renamed" and got["u1"]["plan"] == "enterprise"
    assert got["u1"]["admins"] == ["b@u.test", "c@u.test"]
    assert got["u1"]["tags"] == ["sso", "us"]
    assert "u2" in got  # missing from the file: never removed
    again = run_import(Path("accounts.csv"), db)
    assert (again.added, again.updated, again.unchanged) == (0, 0, 1)


def test_closing_an_account_is_audited_and_it_counts_nowhere(synced_store: Path, runner) -> None:  # type: ignore[no-untyped-def]
    def total() -> int:
        doc = json.loads(
            runner("--db", synced_store, "--now", "2016-04-20", "status", "--json").stdout
        )
        return {m["id"]: m["accounts"]["total"] for m in doc["migrations"]}[
            "email-delivery-changes"
        ]

    before = total()
    write(
        "id,plan,created_at,status,admins\nglobex,enterprise,2014-11-20,closed,it@globex.test\n",
        "close.csv",
    )
    result = runner(
        "--db",
        synced_store,
        "--now",
        "2016-04-20",
        "accounts",
        "import",
        "close.csv",
        "--actor",
        "ops",
    )
    assert result.exit_code == 0, result.output
    assert "1 closed" in result.stdout
    assert total() == before - 1
    audit = json.loads(
        runner("--db", synced_store, "audit", "--account", "globex", "--json").stdout
    )["events"]
    (ev,) = [e for e in audit if e["action"] == "account.closed"]
    assert (
        ev["actor"] == "ops" and ev["detail"]["from"] == "active" and ev["detail"]["to"] == "closed"
    )
    refused = runner(
        "--db",
        synced_store,
        "--now",
        "2016-04-20",
        "opt-in",
        "email-delivery-changes",
        "-a",
        "globex",
    )
    assert refused.exit_code == 1 and "closed" in flat(refused.stderr)


# --------------------------------------------------------------------------- the CLI


def test_cli_import_reports_lines_on_stderr(runner) -> None:  # type: ignore[no-untyped-def]
    write(HEADER + row("ok") + row("bad", created="2016-13-01") + row("bad2", admins="x@"))
    result = runner("--db", "s.db", "accounts", "import", "accounts.csv")
    assert result.exit_code == 1
    assert "accounts.csv:3: created_at" in flat(result.stderr)
    assert "accounts.csv:4: admins" in flat(result.stderr)
    assert "nothing was imported" in flat(result.stderr)
    assert "Traceback" not in result.output and result.stdout == ""


def test_cli_import_json_and_bad_format(runner) -> None:  # type: ignore[no-untyped-def]
    write(HEADER + row("ok"))
    result = runner("--db", "s.db", "accounts", "import", "accounts.csv", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["added"] == 1
    assert (
        runner("--db", "s.db", "accounts", "import", "accounts.csv", "--format", "xml").exit_code
        == 2  # a usage error
    )
    missing = runner("--db", "s.db", "accounts", "import", "nope.csv")
    assert missing.exit_code == 1 and "nope.csv" in flat(missing.stderr)


def test_cli_accounts_list_and_show(synced_store: Path, runner) -> None:  # type: ignore[no-untyped-def]
    listing = json.loads(
        runner(
            "--db", synced_store, "accounts", "list", "--admin", "OPS@acme.test", "--json"
        ).stdout
    )
    assert {a["id"] for a in listing["accounts"]} == {
        "acme-prod",
        "acme-staging",
        "acme-dev",
        "piedpiper",
    }
    assert listing["counts"] == {"active": 11, "closed": 1}
    show = json.loads(
        runner(
            "--db", synced_store, "--now", "2016-04-20", "accounts", "show", "acme-dev", "--json"
        ).stdout
    )
    assert show["admins"] == ["dev@acme.test", "ops@acme.test"]
    states = {e["migration"]: e["state"] for e in show["enrollments"]}
    assert states == {
        "vulnerable-password-flow": "auto_enrolled",
        "email-delivery-changes": "auto_enrolled",
    }
    missing = runner("--db", synced_store, "accounts", "show", "nobody")
    assert missing.exit_code == 1 and "nobody" in flat(missing.stderr)


# --------------------------------------------------------------------------- fuzz


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_either_import_or_fail_cleanly(data: bytes) -> None:
    db = Path("fuzz.db")
    with Store(db) as store:
        before = dump(db)
        path = write(HEADER.encode() + data, "fuzz.csv")
        try:
            import_accounts(store, path, now=NOW, actor="t")
        except InputError as exc:
            assert exc.problems
            assert dump(db) == before


_CELLS = st.sampled_from(
    [
        "a1",
        "A",
        "free",
        "eu;us",
        "2016-01-01",
        "2016-02-30",
        "active",
        "closed",
        "x@y.test",
        "bad",
        "",
        '"',
        '"q,\n"',
        "\x00",
        "\r",
        "é",
        ";",
        ",",
    ]
)


@settings(max_examples=120, deadline=None)
@given(st.lists(st.lists(_CELLS, min_size=0, max_size=9), max_size=6))
def test_arbitrary_csv_shaped_rows(rows: list[list[str]]) -> None:
    db = Path("fuzz2.db")  # shared by the examples: earlier successful imports are fine
    text = HEADER + "".join(",".join(r) + "\n" for r in rows)
    with Store(db) as store:
        before = dump(db)
        try:
            import_accounts(store, write(text, "fuzz2.csv"), now=NOW, actor="t")
        except InputError as exc:
            assert exc.problems
            assert dump(db) == before


def test_accounts_add_on_an_existing_account_keeps_what_is_not_given(
    synced_store: Path, runner
) -> None:  # type: ignore[no-untyped-def]
    result = runner(
        "--db",
        synced_store,
        "--now",
        "2016-04-20",
        "accounts",
        "add",
        "wayne",
        "--plan",
        "enterprise",
        "--admin",
        "lucius@wayne.test",
        "--admin",
        "new@wayne.test",
    )
    assert result.exit_code == 0, result.output
    show = json.loads(
        runner(
            "--db", synced_store, "--now", "2016-04-20", "accounts", "show", "wayne", "--json"
        ).stdout
    )
    assert show["admins"] == ["lucius@wayne.test", "new@wayne.test"]
    assert show["created_at"].startswith("2013-01-15")
    assert show["name"] == "Wayne Enterprises" and show["tags"] == ["sso", "us"]
    assert {e["state"] for e in show["enrollments"]} == {"pending"}


def test_accounts_add_new_account(synced_store: Path, runner) -> None:  # type: ignore[no-untyped-def]
    result = runner(
        "--db",
        synced_store,
        "--now",
        "2016-04-20T12:00:00Z",
        "accounts",
        "add",
        "newco",
        "--plan",
        "free",
        "--admin",
        " Boss@NewCo.test ",
        "--tag",
        "eu",
        "--name",
        "New Co",
    )
    assert result.exit_code == 0, result.output
    assert "added newco" in result.stdout
    show = json.loads(
        runner(
            "--db", synced_store, "--now", "2016-04-20", "accounts", "show", "newco", "--json"
        ).stdout
    )
    assert (
        show["admins"] == ["boss@newco.test"]
        and show["created_at"] == "2016-04-20T12:00:00.000000Z"
    )
    assert {e["state"] for e in show["enrollments"]} == {
        "auto_enrolled"
    }  # created after both grace starts


def test_the_documented_examples_import(repo_root: Path) -> None:
    text = (repo_root / "docs" / "accounts.md").read_text()
    csv_blocks = [b.split("```", 1)[0] for b in text.split("```csv\n")[1:]]
    json_blocks = [b.split("```", 1)[0] for b in text.split("```json\n")[1:]]
    assert csv_blocks and json_blocks
    for i, block in enumerate(csv_blocks):
        run_import(write(block, f"doc{i}.csv"))
    run_import(write(json_blocks[0], "doc.jsonl"))
    assert accounts()["acme-prod"]["tags"] == ["eu", "sso"]


def test_columns_absent_from_a_file_keep_the_stored_values(synced_store: Path) -> None:
    """A file with only the required columns must not rename, reopen or untag accounts."""
    with Store(synced_store) as store:
        before = {r["id"]: dict(r) for r in store.query("SELECT * FROM accounts")}
        tags_before = store.query("SELECT * FROM account_tags ORDER BY account_id, tag")
        path = Path("minimal.csv")
        path.write_text(
            "id,plan,created_at,admins\n"
            "oldco,free,2014-01-01,owner@oldco.test\n"
            "acme-prod,enterprise,2015-06-01,ops@acme.test;cto@acme.test\n"
            "brand-new,free,2016-01-01,new@x.test\n"
        )
        report = import_accounts(store, path, now=NOW, actor="t")
        after = {r["id"]: dict(r) for r in store.query("SELECT * FROM accounts")}
        assert report.added == 1 and report.updated == 0
        for acc in ("oldco", "acme-prod"):
            assert {k: after[acc][k] for k in ("name", "status", "tags")} == {
                k: before[acc][k] for k in ("name", "status", "tags")
            }
        assert after["oldco"]["status"] == "closed"
        assert store.query("SELECT * FROM account_tags ORDER BY account_id, tag") == tags_before
        new = after["brand-new"]
        assert (new["name"], new["status"], new["tags"]) == ("brand-new", "active", "")
