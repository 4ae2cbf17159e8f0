"""The import's fast paths give exactly what the full rules give (bench/RESULTS.md, issue 6).

- ``normalise_email``: the plain-ASCII regex path against the full IDNA path, for any text;
- ``plain_csv_row``: the per-record CSV check against ``validate_row``, for any record;
- the first import into an empty store (rows written straight into the tables, indexes built
  once at the end) against the staged import the store uses otherwise: same tables, same report,
  same problems.
"""

from __future__ import annotations

import csv
import io
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrate_cli.accounts import records as accounts_mod
from migrate_cli.accounts.reading import (
    COLUMNS,
    REQUIRED_COLUMNS,
    _normalise_email_full,
    normalise_email,
    plain_csv_row,
    validate_row,
)
from migrate_cli.accounts.records import ImportReport, import_accounts
from migrate_cli.errors import InputError
from migrate_cli.store.db import Store

NOW = datetime(2024, 6, 1, tzinfo=UTC)
SETTINGS = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Characters that sit on the edges of the rules: case, dots, hyphens, IDN letters, the Kelvin
# sign (lower-cases to "k"), whitespace of several kinds, separators, controls.
EDGY = "aZ09.-_+@;é\u212a\u0130ß \t\n\r\x00\u00a0\u3000\u2028\x7f,\"'"
edgy_text = st.text(alphabet=EDGY, max_size=30)
emailish = st.builds(
    lambda local, domain, pre, post: f"{pre}{local}@{domain}{post}",
    st.text(alphabet="aB3.+-_é\u212a", min_size=0, max_size=70),
    st.text(alphabet="aB3.-é\u212aß", min_size=0, max_size=80),
    st.sampled_from(["", " ", "\t", "\u3000"]),
    st.sampled_from(["", " ", ".", "\n"]),
)


def _outcome(fn, raw):  # type: ignore[no-untyped-def]
    try:
        return ("ok", fn(raw))
    except ValueError as exc:
        return ("error", str(exc))


@SETTINGS
@given(st.one_of(st.text(max_size=80), edgy_text, emailish))
def test_fast_email_path_equals_the_full_rules(raw: str) -> None:
    assert _outcome(normalise_email, raw) == _outcome(_normalise_email_full, raw)


@pytest.mark.parametrize(
    "raw",
    [
        "Ops@ACME.test",
        "a@" + "x" * 63 + ".test",
        "a@" + "x" * 64 + ".test",
        "x" * 64 + "@a.test",
        "x" * 65 + "@a.test",
        "a@b.test.",
        "a@-b.test",
        "a@b-.test",
        "a.b@c.test",
        ".a@b.test",
        "a.@b.test",
        "a@\u212a.test",
        "\u212a@b.test",
        "a@b",
    ],
)
def test_fast_email_path_edges(raw: str) -> None:
    assert _outcome(normalise_email, raw) == _outcome(_normalise_email_full, raw)


cell = st.one_of(
    edgy_text,
    st.sampled_from(
        [
            "",
            "acct-1",
            " acct-1 ",
            "free",
            " Free",
            "eu;us",
            "eu; ;us;eu",
            "b@d;",
            "2016-01-01",
            " 2016-01-01 ",
            "2016-02-30",
            "2016-01-01T10:00:00+02:00",
            "2016-01-01T10:00:00",
            "9999-12-31T23:59:59-23:00",
            "active",
            "closed",
            "Closed ",
            "ops@a.test",
            "Ops@A.test; x@b.test ;ops@a.test",
            "ops@bücher.example",
            "ops@a.test.",
            "x" * 1001,
        ]
    ),
)


@st.composite
def csv_records(draw):  # type: ignore[no-untyped-def]
    optional = [c for c in COLUMNS if c not in REQUIRED_COLUMNS]
    header = list(REQUIRED_COLUMNS) + draw(st.lists(st.sampled_from(optional), unique=True))
    header = draw(st.permutations(header))
    values = draw(st.lists(cell, min_size=len(header), max_size=len(header)))
    return header, values


@SETTINGS
@given(csv_records(), st.sampled_from([UTC, ZoneInfo("Europe/Paris")]))
def test_fast_csv_row_equals_validate_row(record, tz) -> None:  # type: ignore[no-untyped-def]
    header, values = record
    fast = plain_csv_row(header, tz)(values, 7)
    full, problems = validate_row(dict(zip(header, values, strict=True)), 7, "f.csv", tz)
    if fast is not None:
        assert (fast, []) == (full, problems)


def test_fast_csv_row_takes_the_common_row() -> None:
    header = list(COLUMNS)
    values = ["acct-1", "Acme", "free", "us;eu", "2016-01-01", "active", "Ops@A.test;b@c.test"]
    fast = plain_csv_row(header, UTC)(values, 2)
    assert fast is not None
    assert (fast, []) == validate_row(dict(zip(header, values, strict=True)), 2, "f.csv", UTC)


# --------------------------------------------------------------------------- whole imports


def _dump(db: Path) -> dict[str, list[tuple[object, ...]]]:
    conn = sqlite3.connect(db)
    try:
        out = {
            t: conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall()
            for t in ("accounts", "account_admins", "account_tags")
        }
        out["audit"] = conn.execute(
            "SELECT at, actor, action, account_id, detail FROM audit"
        ).fetchall()
        out["indexes"] = conn.execute(
            "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'index' ORDER BY name"
        ).fetchall()
    finally:
        conn.close()
    return out


def _import_both(
    tmp: Path, text: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[tuple[object, ...], tuple[object, ...]]:
    """Import ``text`` into two empty stores: the empty-store path and the staged path."""
    path = tmp / "accounts.csv"
    path.write_text(text, encoding="utf-8")
    results = []
    for name, staged in (("fast.db", False), ("staged.db", True)):
        db = tmp / name
        for leftover in tmp.glob(name + "*"):
            leftover.unlink()
        with monkeypatch.context() as mp:
            if staged:
                mp.setattr(accounts_mod, "_has_accounts", lambda conn: True)
            with Store(db) as store:
                try:
                    report: ImportReport | tuple[str, object] = import_accounts(
                        store, path, now=NOW, actor="tester"
                    )
                except InputError as exc:
                    report = (str(exc), exc.problems)
        results.append((report, _dump(db)))
    return results[0], results[1]


account_rows = st.lists(
    st.tuples(
        st.sampled_from(["a1", "a2", "a3", "B-4", "a1 "]),
        st.sampled_from(["", "Name", " Spaced ", "x" * 1001]),
        st.sampled_from(["free", "pro", "", "bad plan"]),
        st.sampled_from(["", "eu", "us;eu;us", "bad tag"]),
        st.sampled_from(["2016-01-01", "2016-01-01T09:30:00+02:00", "", "soon"]),
        st.sampled_from(["", "active", "closed", "CLOSED", "gone"]),
        st.sampled_from(["", "ops@a.test", "Ops@A.test;x@b.test", "ops@bücher.example", "bad"]),
    ),
    max_size=6,
)


@SETTINGS
@given(account_rows, st.lists(st.sampled_from(COLUMNS[1:]), unique=True, max_size=3))
def test_first_import_equals_the_staged_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rows, drop
) -> None:  # type: ignore[no-untyped-def]
    header = [c for c in COLUMNS if c not in drop or c in REQUIRED_COLUMNS]
    keep = [i for i, c in enumerate(COLUMNS) if c in header]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for r in rows:
        writer.writerow([r[i] for i in keep])
    fast, staged = _import_both(tmp_path, out.getvalue(), monkeypatch)
    assert fast == staged


def test_first_import_with_a_duplicate_reports_every_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (
        "id,plan,created_at,admins\n"
        "a1,free,2016-01-01,ops@a.test\n"
        "a2,free,2016-01-01,ops@a.test\n"
        "a1,pro,2016-01-01,ops@a.test\n"
    )
    fast, staged = _import_both(tmp_path, text, monkeypatch)
    assert fast == staged
    message, problems = fast[0]  # type: ignore[misc]
    assert "nothing was imported" in message
    assert [(p.line, p.field) for p in problems] == [(4, "id")]
    assert fast[1]["accounts"] == [] and fast[1]["audit"] == []
    assert len(fast[1]["indexes"]) >= 4  # the dropped indexes came back with the rollback
