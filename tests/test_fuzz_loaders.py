"""Property-based attacks on every loader: any input gives success or a located error, exit 1.

Loaders: migrations.yaml, accounts CSV and JSON Lines, migctl.toml, ``--now`` and the opt-in
``--from-file`` list. For every generated input:

- the outcome is success or an ``InputError``/``MigctlError`` whose problems name the file (and a
  line when the input has lines) — never another exception (a traceback);
- on error the store is unchanged (a full SQL dump of every table, compared by sha256);
- importing or syncing the same input twice changes nothing the second time;
- accounts round-trip: import -> ``accounts list --json`` as JSON Lines -> import elsewhere.

Dates outside 1970–2999 are refused by the definitions (tests at the bottom of this file); the
structured generator stays inside that range so most examples reach the deeper checks.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import sqlite3
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from migrate_cli.accounts.records import import_accounts
from migrate_cli.cli.context import Env
from migrate_cli.config import load_config
from migrate_cli.definitions.model import SLUG, load_definitions
from migrate_cli.errors import InputError, MigctlError
from migrate_cli.store.db import Store
from migrate_cli.store.sync import sync
from tests import fuzz_settings
from tests.fuzz_settings import count, examples

REPO = Path(__file__).resolve().parent.parent
AT = datetime(2016, 3, 1, tzinfo=UTC)
DATE_RANGE = (date(1970, 1, 1), date(2999, 12, 1))
assert fuzz_settings.PROFILE in ("ci", "fuzz")


# --------------------------------------------------------------------------- helpers


def store_dump(db: Path) -> str:
    """sha256 of a full SQL dump (schema and every row) of the store, read after closing."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        text = "\n".join(conn.iterdump())
    finally:
        conn.close()
    return hashlib.sha256(text.encode()).hexdigest()


def data_dump(db: Path, skip: tuple[str, ...] = ("audit",)) -> str:
    """Like store_dump but over the data tables only (the audit log records every run)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = [
            r[0]
            for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")
            if r[0] not in skip and not r[0].startswith("sqlite_")
        ]
        out = []
        for t in tables:
            cols = [c[1] for c in conn.execute(f"PRAGMA table_info({t})")]
            keep = [c for c in cols if c not in ("updated_at",)]
            rows = (
                conn.execute(f"SELECT {', '.join(keep)} FROM {t} ORDER BY 1, 2").fetchall()
                if keep
                else []
            )
            out.append(f"{t}:{rows!r}")
    finally:
        conn.close()
    return hashlib.sha256("\n".join(out).encode()).hexdigest()


_TEMPLATE: dict[str, bytes] = {}


def make_store(tmp: Path, name: str = "migctl.db") -> Path:
    """A store with the shipped definitions synced and the example accounts imported (built
    once per process, then copied: most attack tests need a fresh one)."""
    db = tmp / name
    if "db" not in _TEMPLATE:
        with Store(db) as store:
            sync(store, load_definitions(REPO / "migrations.yaml"), now=AT, actor="fuzz")
            import_accounts(store, REPO / "examples" / "accounts.csv", now=AT, actor="fuzz")
        _TEMPLATE["db"] = db.read_bytes()
        return db
    fd = os.open(db, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(_TEMPLATE["db"])
    return db


def assert_located(exc: InputError, file: Path | str, *, lines: bool = True) -> None:
    assert exc.problems or exc.summary, exc
    for p in exc.problems:
        assert p.file == str(file), p
        if lines and p.line is not None:
            assert p.line >= 1, p
    text = str(exc)
    assert "Traceback" not in text


def expect_clean(call: Callable[[], Any]) -> tuple[Any, MigctlError | None]:
    """Run ``call``; a MigctlError is a clean outcome, anything else fails the property."""
    try:
        return call(), None
    except MigctlError as exc:
        return None, exc


# --------------------------------------------------------------------------- migrations.yaml

YAML_ATOMS = st.sampled_from(
    [
        "NO",
        "on",
        "yes",
        "0755",
        "1:20",
        "2016-13-01",
        "2016-02-30",
        "2016-05-11T10:00:00",
        "~",
        "null",
        "TBD",
        "tbd",
        "",
        " ",
        "!!python/object/apply:os.system ['true']",
        "&a [*a]",
        "*nope",
        "{",
        "[",
        "- - -",
        "\t",
        "\ufeff",
        "\x00",
        "30d",
        "0d",
        "-1d",
        "99999d",
        "12h",
        "90m",
        "1e3",
        ".inf",
        "0x10",
        "'",
        '"',
        "\\",
        "%YAML 1.1",
        "---",
        "...",
    ]
)


def _date_text() -> st.SearchStrategy[str]:
    return st.dates(*DATE_RANGE).map(date.isoformat)


def _value(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        inner, YAML_ATOMS, st.none(), st.integers(-5, 10**6), st.booleans(), st.text(max_size=30)
    )


MIGRATION = st.fixed_dictionaries(
    {},
    optional={
        "id": _value(
            st.sampled_from(["a", "email-changes", "A", "a--b", "../x", "/etc", "x" * 65, "a b"])
        ),
        "title": _value(st.text(min_size=1, max_size=60)),
        "severity": _value(st.sampled_from(["low", "medium", "high", "critical", "urgent", "Low"])),
        "grace_period_start": _value(_date_text()),
        "mandatory_opt_in": st.one_of(
            _value(_date_text()),
            st.dictionaries(
                st.sampled_from(["free", "enterprise", "bad plan", "../p"]),
                _value(_date_text()),
                max_size=3,
            ),
        ),
        "grace_period": _value(st.sampled_from(["30d", "90d", "0d", "12h", "1d"])),
        "summary": _value(st.text(max_size=60)),
        "description": _value(st.text(max_size=200)),
        "docs_url": _value(
            st.sampled_from(["https://x.test/a", "javascript:alert(1)", "http://a b"])
        ),
        "applies_to": _value(
            st.fixed_dictionaries(
                {},
                optional={
                    "plans": _value(st.lists(st.text(max_size=8), max_size=3)),
                    "tags": _value(st.lists(st.text(max_size=8), max_size=3)),
                },
            )
        ),
        "notices": _value(
            st.fixed_dictionaries(
                {},
                optional={
                    "reminder_every": _value(st.sampled_from(["14d", "never", "0d"])),
                    "escalate_before": _value(
                        st.lists(st.sampled_from(["30d", "7d", "x"]), max_size=4)
                    ),
                    "min_gap": _value(st.sampled_from(["2d", "0d"])),
                    "remind_every": st.just("14d"),
                },
            )
        ),
        "mandatory_optin": st.just("2016-05-11"),  # misspelled key
    },
)
DOCUMENT = st.fixed_dictionaries(
    {"migrations": st.one_of(st.lists(MIGRATION, max_size=4), _value(st.just([])))},
    optional={
        "defaults": _value(
            st.fixed_dictionaries(
                {},
                optional={
                    "timezone": _value(
                        st.sampled_from(
                            [
                                "UTC",
                                "Europe/Paris",
                                "America",
                                "../../etc/passwd",
                                "Nowhere/City",
                                "zone.tab",
                            ]
                        )
                    ),
                    "severity": _value(
                        st.dictionaries(
                            st.sampled_from(["low", "urgent"]),
                            st.just({"notices": {"min_gap": "1d"}}),
                            max_size=2,
                        )
                    ),
                },
            )
        ),
        "migration": st.just([]),
    },
)


# A valid document and a broken one, run as explicit examples by every YAML property: both
# outcomes are always exercised, and the valid one must load (a loader refusing everything
# would otherwise pass as "a located error" on every input).
VALID_DOC: dict[str, Any] = {
    "migrations": [
        {
            "id": "a",
            "title": "A",
            "severity": "low",
            "grace_period_start": "2016-03-22",
            "mandatory_opt_in": "2016-05-11",
            "summary": "s",
        }
    ]
}
BROKEN_SPLICE = "{"


def _yaml_text(doc: dict[str, Any], splice: str | None, where: int) -> str:
    text = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    if splice is not None:
        cut = where % (len(text) + 1)
        text = text[:cut] + splice + text[cut:]
    return text


def _check_definitions(path: Path, must_load: bool = False) -> None:
    defs, err = expect_clean(lambda: load_definitions(path))
    assert not (must_load and err is not None), err
    if err is not None:
        assert isinstance(err, InputError), err
        assert_located(err, path)
        return
    for m in defs.migrations:
        assert SLUG.match(m.id)
        for d in m.deadlines():
            assert d >= m.grace_period_start
    assert len(set(defs.ids)) == len(defs.ids)


@examples(60)
@given(
    doc=DOCUMENT,
    splice=st.one_of(st.none(), YAML_ATOMS, st.text(max_size=5)),
    where=st.integers(0, 10**6),
)
@example(doc=VALID_DOC, splice=None, where=0)
@example(doc=VALID_DOC, splice=BROKEN_SPLICE, where=0)
def test_yaml_structured_documents_load_or_fail_located(
    tmp_path_factory: pytest.TempPathFactory, doc: dict[str, Any], splice: str | None, where: int
) -> None:
    tmp = tmp_path_factory.mktemp("yaml")
    path = tmp / "migrations.yaml"
    path.write_text(_yaml_text(doc, splice, where), encoding="utf-8")
    count("migrations.yaml")
    _check_definitions(path, must_load=doc == VALID_DOC and splice is None)


@examples(60)
@given(
    raw=st.one_of(
        st.binary(max_size=400),
        st.text(max_size=400).map(lambda s: s.encode("utf-8", "surrogatepass")),
    )
)
def test_yaml_arbitrary_bytes_load_or_fail_located(
    tmp_path_factory: pytest.TempPathFactory, raw: bytes
) -> None:
    path = tmp_path_factory.mktemp("yamlb") / "migrations.yaml"
    path.write_bytes(raw)
    count("migrations.yaml")
    _check_definitions(path)


def test_yaml_sync_through_cli_never_changes_store_on_error(tmp_path: Path, runner: Any) -> None:
    """Through the CLI: exit 0 or 1 (never a traceback); the store is unchanged on exit 1;
    a second sync of the same file changes nothing."""
    db = make_store(tmp_path)
    outcomes: Counter[int] = Counter()

    @examples(15, fuzz=300)
    @given(doc=DOCUMENT, splice=st.one_of(st.none(), YAML_ATOMS), where=st.integers(0, 10**6))
    @example(doc=VALID_DOC, splice=None, where=0)
    @example(doc=VALID_DOC, splice=BROKEN_SPLICE, where=0)
    def prop(doc: dict[str, Any], splice: str | None, where: int) -> None:
        path = tmp_path / "m.yaml"
        path.write_text(_yaml_text(doc, splice, where), encoding="utf-8")
        before = store_dump(db)
        result = runner("--db", db, "--now", "2016-03-01", "sync", "--file", path)
        outcomes[result.exit_code] += 1
        if doc == VALID_DOC:
            assert result.exit_code == (0 if splice is None else 1), result.output
        assert result.exit_code in (0, 1), (result.exit_code, result.output, result.exception)
        assert not isinstance(result.exception, Exception) or isinstance(
            result.exception, SystemExit
        ), result.exception
        assert "Traceback" not in result.output
        if result.exit_code == 1:
            assert str(path) in result.stderr, result.stderr
            assert store_dump(db) == before
        else:
            once = data_dump(db)
            again = runner("--db", db, "--now", "2016-03-01", "sync", "--file", path)
            assert again.exit_code == 0, again.output
            assert data_dump(db) == once
            # restore the reference definitions for the next example
            assert (
                runner(
                    "--db", db, "--now", "2016-03-01", "sync", "--file", REPO / "migrations.yaml"
                ).exit_code
                == 0
            )

    prop()
    count("migrations.yaml (CLI sync)", outcomes.total())
    assert outcomes[0] >= 1 and outcomes[1] >= 1, outcomes


# --------------------------------------------------------------------------- accounts CSV / JSONL

CELL = st.one_of(
    st.text(max_size=20),
    st.sampled_from(
        [
            "acme",
            "ACME",
            "free",
            "enterprise",
            "2016-04-10",
            "2016-13-01",
            "2016-04-10T25:00",
            "active",
            "closed",
            "Closed",
            "ops@acme.test",
            "OPS@ACME.TEST",
            "a@b",
            "x@münchen.de",
            "a@b.test\r\nBcc: x@evil.test",
            '=HYPERLINK("http://evil.test","x")',
            "eu;sso",
            "a@x.test;b@x.test",
            "",
            " ",
            '"',
            "\n",
            "\x00",
            "\ufeff",
            "é",
            "9999-12-31T23:59:59-12:00",
        ]
    ),
)
COLUMNS = ["id", "name", "plan", "tags", "created_at", "status", "admins"]


@st.composite
def csv_files(draw: st.DrawFn) -> bytes:
    header = draw(
        st.one_of(
            st.just(COLUMNS),
            st.permutations(COLUMNS),
            st.lists(st.sampled_from([*COLUMNS, "extra", "ID", " plan "]), max_size=8),
        )
    )
    rows = draw(
        st.lists(
            st.lists(CELL, min_size=max(0, len(header) - 1), max_size=len(header) + 1), max_size=6
        )
    )
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=draw(st.sampled_from(["\n", "\r\n"])))
    writer.writerow(header)
    for row in rows:
        writer.writerow(row)
    raw = out.getvalue().encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        raw = b"\xef\xbb\xbf" + raw
    cut = draw(st.one_of(st.none(), st.integers(0, len(raw))))
    return raw if cut is None else raw[:cut]


JSON_VALUE = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(-(10**20), 10**20), st.floats(allow_nan=False), CELL
    ),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def jsonl_files(draw: st.DrawFn) -> bytes:
    lines = []
    for _ in range(draw(st.integers(0, 5))):
        obj = draw(
            st.one_of(
                st.dictionaries(st.sampled_from([*COLUMNS, "extra"]), JSON_VALUE, max_size=8),
                JSON_VALUE,
            )
        )
        text = json.dumps(obj, ensure_ascii=draw(st.booleans()))
        if draw(st.integers(0, 9)) == 0:
            text = text[: draw(st.integers(0, len(text)))]
        lines.append(text)
    return ("\n".join(lines)).encode("utf-8", "surrogatepass")


def _check_import(db: Path, path: Path, fmt: str | None) -> bool:
    """True when the file was imported, False when it was refused (located, store unchanged)."""
    before = store_dump(db)
    with Store(db) as store:
        _, err = expect_clean(lambda: import_accounts(store, path, now=AT, actor="fuzz", fmt=fmt))
    if err is not None:
        assert isinstance(err, InputError), err
        assert_located(err, path)
        assert store_dump(db) == before, "the store changed although the import failed"
        return False
    once = data_dump(db)
    with Store(db) as store:
        again = import_accounts(store, path, now=AT, actor="fuzz", fmt=fmt)
    assert again.added == again.updated == again.closed == 0, again
    assert data_dump(db) == once, "importing the same file twice changed the store"
    return True


# One valid and one refused file per format, run as explicit examples: both outcomes always run.
VALID_ACCOUNTS = {
    "csv": b"id,name,plan,tags,created_at,status,admins\nnew-1,New,free,eu,2016-01-01,active,n@x.test\n",
    "jsonl": b'{"id": "new-1", "name": "New", "plan": "free", "tags": ["eu"], '
    b'"created_at": "2016-01-01", "status": "active", "admins": ["n@x.test"]}\n',
}
REFUSED_ACCOUNTS = {
    "csv": b"id,name,plan,tags,created_at,status,admins\nnew-2,New,free,,2016-02-30,active,n@x.test\n",
    "jsonl": b'{"id": "new-2", "name": "New", "plan": "free", "created_at": "2016-02-30"}\n',
}


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_accounts_files_import_or_fail_with_store_unchanged(tmp_path: Path, fmt: str) -> None:
    db = make_store(tmp_path)
    strategy = csv_files() if fmt == "csv" else jsonl_files()
    imported: Counter[bool] = Counter()

    @examples(40)
    @given(raw=st.one_of(strategy, st.binary(max_size=300)))
    @example(raw=VALID_ACCOUNTS[fmt])
    @example(raw=REFUSED_ACCOUNTS[fmt])
    def prop(raw: bytes) -> None:
        path = tmp_path / f"accounts.{fmt}"
        path.write_bytes(raw)
        count(f"accounts {fmt}")
        ok = _check_import(db, path, fmt)
        imported[ok] += 1
        if raw in (VALID_ACCOUNTS[fmt], REFUSED_ACCOUNTS[fmt]):
            assert ok == (raw == VALID_ACCOUNTS[fmt])

    prop()
    assert imported[True] >= 1 and imported[False] >= 1, imported


@st.composite
def valid_accounts(draw: st.DrawFn) -> list[dict[str, Any]]:
    ids = draw(
        st.lists(
            st.from_regex(r"[a-z0-9][a-z0-9._-]{0,12}", fullmatch=True),
            min_size=1,
            max_size=6,
            unique=True,
        )
    )
    out = []
    for acc in ids:
        out.append(
            {
                "id": acc,
                "name": draw(
                    st.text(st.characters(blacklist_categories=["Cs", "Cc"]), max_size=40)
                ),
                "plan": draw(st.sampled_from(["free", "developer", "enterprise"])),
                "tags": draw(
                    st.lists(st.sampled_from(["eu", "us", "sso", "beta"]), unique=True, max_size=3)
                ),
                "created_at": draw(
                    st.datetimes(datetime(2000, 1, 1), datetime(2030, 1, 1), timezones=st.just(UTC))
                ).isoformat(),
                "status": draw(st.sampled_from(["active", "closed"])),
                "admins": draw(
                    st.lists(
                        st.sampled_from(
                            ["ops@acme.test", "Ops@Acme.Test", "it@globex.test", "x@bücher.example"]
                        ),
                        max_size=3,
                    )
                ),
            }
        )
    return out


def _table(db: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


ACCOUNT_SQL = "SELECT id, name, plan, tags, created_at, status FROM accounts ORDER BY id"
ADMIN_SQL = "SELECT account_id, email FROM account_admins ORDER BY 1, 2"


def test_accounts_round_trip_through_list_json(tmp_path: Path, runner: Any) -> None:
    """import -> `accounts list --json` (written back as JSON Lines) -> import into a new store."""

    @examples(6, fuzz=150)
    @given(accounts=valid_accounts())
    def prop(accounts: list[dict[str, Any]]) -> None:
        for f in tmp_path.glob("rt*"):
            f.unlink()
        src = tmp_path / "rt-src.jsonl"
        src.write_text("\n".join(json.dumps(a) for a in accounts), encoding="utf-8")
        first, second = tmp_path / "rt1.db", tmp_path / "rt2.db"
        r = runner("--db", first, "accounts", "import", src)
        count("accounts round trip")
        assert r.exit_code == 0, r.output
        listed = runner("--db", first, "accounts", "list", "--json", "--limit", "1000")
        assert listed.exit_code == 0, listed.output
        exported = json.loads(listed.stdout)["accounts"]
        dst = tmp_path / "rt-dst.jsonl"
        dst.write_text(
            "\n".join(json.dumps({k: a[k] for k in COLUMNS}) for a in exported), encoding="utf-8"
        )
        r2 = runner("--db", second, "accounts", "import", dst)
        assert r2.exit_code == 0, r2.output
        assert _table(first, ACCOUNT_SQL) == _table(second, ACCOUNT_SQL)
        assert _table(first, ADMIN_SQL) == _table(second, ADMIN_SQL)

    prop()


# --------------------------------------------------------------------------- migctl.toml

TOML_VALUES = st.sampled_from(
    [
        '"x"',
        '""',
        "1",
        "0",
        "-1",
        "1.5",
        "nan",
        "inf",
        "-inf",
        "true",
        "[1, 2]",
        "{a = 1}",
        "1979-05-27",
        '"a\\nb"',
        '"smtp"',
        '"ses"',
        '"sendgrid"',
        '"file"',
        '"console"',
        '"production"',
        '"ops@x.test"',
        '"a@b\\r\\nBcc: x@evil.test"',
        '"starttls"',
        '"ssl"',
        '"none"',
        "99999999999",
        '"../../etc"',
        '"javascript:alert(1)"',
        '"https://dash.test"',
    ]
)
TOML_TABLES = st.sampled_from(
    [
        "",
        "email",
        "email.smtp",
        "email.ses",
        "email.sendgrid",
        "email.file",
        "dashboard",
        "enforcement",
        "nope",
    ]
)
TOML_KEYS = st.sampled_from(
    [
        "environment",
        "migrations_file",
        "templates_dir",
        "provider",
        "from",
        "reply_to",
        "rate_per_second",
        "daily_quota",
        "concurrency",
        "max_attempts",
        "host",
        "port",
        "security",
        "username",
        "password_env",
        "timeout",
        "region",
        "endpoint_url",
        "api_key_env",
        "directory",
        "url",
        "product_name",
        "max_accounts_without_confirm",
        "unknown",
        "password",
    ]
)


@st.composite
def toml_texts(draw: st.DrawFn) -> str:
    parts = []
    for _ in range(draw(st.integers(0, 4))):
        table = draw(TOML_TABLES)
        if table:
            parts.append(f"[{table}]")
        for _ in range(draw(st.integers(0, 4))):
            parts.append(f"{draw(TOML_KEYS)} = {draw(TOML_VALUES)}")
    return "\n".join(parts) + "\n"


VALID_TOML = '[email]\nprovider = "file"\n[email.file]\ndirectory = "outbox"\n'


@examples(80)
@given(text=st.one_of(toml_texts(), st.text(max_size=200)))
@example(text=VALID_TOML)
@example(text="[email]\nprovidr = 1\n")
def test_config_loads_or_fails_located(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    path = tmp_path_factory.mktemp("toml") / "migctl.toml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    count("migctl.toml")
    config, err = expect_clean(lambda: load_config(path, explicit=True))
    assert not (text == VALID_TOML and err is not None), err
    if err is not None:
        assert isinstance(err, InputError), err
        assert_located(err, path)
        return
    assert config.email.provider in ("console", "file", "smtp", "ses", "sendgrid", "null")


# --------------------------------------------------------------------------- --now

NOW_TEXT = st.one_of(
    st.text(max_size=40),
    st.datetimes(timezones=st.one_of(st.none(), st.timezones())).map(lambda d: d.isoformat()),
    st.dates().map(date.isoformat),
    st.sampled_from(
        [
            "2016-05-11Z",
            "2016-05-11T25:00",
            "2016-02-30",
            "9999-12-31T23:59:59-12:00",
            "0001-01-01T00:00+14:00",
            "now",
            "",
            " ",
        ]
    ),
)


@examples(100)
@given(
    text=NOW_TEXT, tz=st.sampled_from(["UTC", "Europe/Paris", "Pacific/Kiritimati", "America/Adak"])
)
@example(text="2016-04-20T10:00:00+02:00", tz="UTC")
@example(text="2016-02-30", tz="UTC")
def test_now_parses_or_fails_cleanly(text: str, tz: str) -> None:
    from migrate_cli.timeutil import get_timezone

    count("--now")
    env = Env(db_path=Path("unused.db"), config_path=None, config_explicit=False, now_raw=text)
    value, err = expect_clean(lambda: env.now_in(get_timezone(tz)))
    if err is not None:
        assert isinstance(err, InputError)
        assert err.problems[0].file == "--now"
    elif text.strip():
        assert value.tzinfo is not None
    if text == "2016-04-20T10:00:00+02:00":
        assert value == datetime(2016, 4, 20, 8, tzinfo=UTC)
    if text == "2016-02-30":
        assert err is not None


def test_now_through_cli_commands(tmp_path: Path, runner: Any) -> None:
    db = make_store(tmp_path)
    outcomes: Counter[int] = Counter()

    @examples(15, fuzz=300)
    @given(
        text=NOW_TEXT.filter(lambda t: not t.startswith("-") and "\x00" not in t),
        cmd=st.sampled_from(
            [
                ["status", "--json"],
                ["notify", "--dry-run", "--json"],
                ["enforce", "--dry-run"],
                ["dashboard", "export"],
            ]
        ),
    )
    @example(text="2016-04-20", cmd=["status", "--json"])
    @example(text="2016-02-30", cmd=["status", "--json"])
    def prop(text: str, cmd: list[str]) -> None:
        before = store_dump(db)
        r = runner("--db", db, "--now", text, *cmd)
        count("--now (CLI)")
        outcomes[r.exit_code] += 1
        if text in ("2016-04-20", "2016-02-30"):
            assert r.exit_code == (0 if text == "2016-04-20" else 2), r.output
        # a malformed --now is a usage mistake (exit 2)
        assert r.exit_code in (0, 2), (text, cmd, r.output, r.exception)
        assert not isinstance(r.exception, Exception) or isinstance(r.exception, SystemExit), (
            r.exception
        )
        if r.exit_code == 2:
            assert store_dump(db) == before
            assert "--now" in r.stderr, r.stderr

    prop()
    assert outcomes[0] >= 1 and outcomes[2] >= 1, outcomes


# --------------------------------------------------------------------------- opt-in --from-file


def test_opt_in_from_file_any_bytes(tmp_path: Path, runner: Any) -> None:
    db = make_store(tmp_path)
    ids = [
        "acme-prod",
        "acme-staging",
        "globex",
        "id",
        "# comment",
        "",
        "acme-prod,extra",
        "ACME-PROD",
        "../x",
        "\x00",
    ]

    outcomes: Counter[int] = Counter()

    @examples(15, fuzz=300)
    @given(
        raw=st.one_of(
            st.binary(max_size=200),
            st.lists(st.sampled_from(ids), max_size=5).map(lambda xs: "\n".join(xs).encode()),
        )
    )
    @example(raw=b"acme-prod\n")
    @example(raw=b"no-such-account\n")
    def prop(raw: bytes) -> None:
        path = tmp_path / "ids.txt"
        path.write_bytes(raw)
        before = store_dump(db)
        r = runner(
            "--db",
            db,
            "--now",
            "2016-04-20",
            "opt-in",
            "email-delivery-changes",
            "--from-file",
            path,
        )
        count("opt-in --from-file")
        outcomes[r.exit_code] += 1
        if raw in (b"acme-prod\n", b"no-such-account\n"):
            assert r.exit_code == (0 if raw == b"acme-prod\n" else 1), r.output
        assert r.exit_code in (0, 1), (raw, r.output, r.exception)
        assert not isinstance(r.exception, Exception) or isinstance(r.exception, SystemExit), (
            r.exception
        )
        if r.exit_code == 1:
            assert store_dump(db) == before, "store changed on a failed opt-in"
        else:
            once = data_dump(db)
            again = runner(
                "--db",
                db,
                "--now",
                "2016-04-20",
                "opt-in",
                "email-delivery-changes",
                "--from-file",
                path,
            )
            assert again.exit_code == 0
            assert data_dump(db) == once

    prop()
    assert outcomes[0] >= 1 and outcomes[1] >= 1, outcomes


# --------------------------------------------------------------------------- known bugs found by fuzzing


def test_jsonl_huge_integer_is_a_located_error(tmp_path: Path, runner: Any) -> None:
    path = tmp_path / "big.jsonl"
    path.write_text('{"id": ' + "1" * 5000 + "}\n")
    r = runner("--db", tmp_path / "s.db", "accounts", "import", path)
    assert r.exit_code == 1
    assert isinstance(r.exception, SystemExit), r.exception
    assert f"{path}:1" in r.stderr


def test_toml_deep_nesting_is_a_located_error(tmp_path: Path, runner: Any) -> None:
    path = tmp_path / "migctl.toml"
    path.write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    r = runner("--config", path, "validate")
    assert r.exit_code == 1
    assert isinstance(r.exception, SystemExit), r.exception
    assert str(path) in r.stderr


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_config_rejects_non_finite_rate(tmp_path: Path, value: str) -> None:
    path = tmp_path / "migctl.toml"
    path.write_text(f'[email]\nprovider = "null"\nrate_per_second = {value}\n')
    with pytest.raises(InputError) as info:
        load_config(path, explicit=True)
    assert info.value.problems[0].field == "email.rate_per_second"
    assert info.value.problems[0].line == 3


@pytest.mark.parametrize("table", ["smtp", "ses", "sendgrid"])
@pytest.mark.parametrize("value", ["nan", "0", "-1", "inf"])
def test_config_rejects_bad_timeouts(tmp_path: Path, table: str, value: str) -> None:
    path = tmp_path / "migctl.toml"
    path.write_text(f"[email.{table}]\ntimeout = {value}\n")
    with pytest.raises(InputError) as info:
        load_config(path, explicit=True)
    assert info.value.problems[0].field == f"email.{table}.timeout"


def test_smtp_nan_timeout_is_refused_before_anything_is_queued(tmp_path: Path, runner: Any) -> None:
    """A NaN timeout once reached socket.settimeout mid-send and left notices in doubt; the
    config now refuses it, so notify stops before planning and the store is untouched."""
    db = make_store(tmp_path)
    cfg = tmp_path / "migctl.toml"
    cfg.write_text(
        '[email]\nprovider = "smtp"\n[email.smtp]\nhost = "127.0.0.1"\nport = 1\nsecurity = "none"\ntimeout = nan\n'
    )
    before = store_dump(db)
    r = runner("--db", db, "--config", cfg, "--now", "2016-04-20", "notify", "--json")
    assert r.exit_code == 1, r.output
    assert f"{cfg}:7: email.smtp.timeout" in " ".join(r.stderr.split())
    assert store_dump(db) == before
    assert _table(db, "SELECT count(*) FROM outbox") == [(0,)]


def test_yaml_huge_grace_period_is_a_located_error(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        "migrations:\n  - id: a\n    title: A\n    severity: low\n    grace_period_start: 9999-12-01\n    grace_period: 99999d\n    summary: s\n"
    )
    with pytest.raises(InputError) as info:
        load_definitions(path)
    # The start date is out of the supported range (line 5); the grace period is not added to
    # it, so no overflow reaches a traceback and no second problem is invented for line 6.
    (p,) = info.value.problems
    assert (p.line, p.field) == (5, "migrations[0].grace_period_start")
    assert p.message == "9999-12-01 is outside 1970–2999"


@pytest.mark.parametrize(
    "grace,message",
    [
        ("99999d", "ends after 2999-12-31"),
        ("999999d", "expected a duration like 30d, 12h or 90m, got '999999d'"),
    ],
)
def test_yaml_grace_period_past_the_range_is_located(
    tmp_path: Path, grace: str, message: str
) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        "migrations:\n  - id: a\n    title: A\n    severity: low\n    grace_period_start: 2990-12-01\n"
        f"    grace_period: {grace}\n    summary: s\n"
    )
    with pytest.raises(InputError) as info:
        load_definitions(path)
    (p,) = info.value.problems
    assert (p.line, p.field, p.message) == (6, "migrations[0].grace_period", message)


@pytest.mark.parametrize(
    "start,mandatory,problems",
    [
        ("9999-12-20", "TBD", ["m.yaml:5: migrations[0].grace_period_start: 9999-12-20"]),
        (
            "0001-01-01",
            "0001-01-02",
            [
                "m.yaml:5: migrations[0].grace_period_start: 0001-01-01",
                "m.yaml:6: migrations[0].mandatory_opt_in: 0001-01-02",
            ],
        ),
    ],
)
def test_yaml_extreme_dates_are_located_errors(
    tmp_path: Path, runner: Any, start: str, mandatory: str, problems: list[str]
) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        f"migrations:\n  - id: a\n    title: A\n    severity: low\n    grace_period_start: {start}\n    mandatory_opt_in: {mandatory}\n    summary: s\n"
    )
    r = runner("validate", "--file", path)
    assert r.exit_code == 1, r.output
    assert isinstance(r.exception, SystemExit), repr(r.exception)
    err = " ".join(r.stderr.split())
    assert f"{len(problems)} problem(s) found" in err
    for problem in problems:
        assert f"{tmp_path}/{problem} is outside 1970–2999" in err, err
