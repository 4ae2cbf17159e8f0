"""Strange text and huge headers are located errors, never tracebacks (issue 14 items 3-5)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from migrate_cli.delivery.base import OutgoingEmail
from migrate_cli.delivery.registry import REGISTRY
from tests.conftest import RunCli
from tests.helpers_notices import (
    ONE_MIGRATION,
    RecordingProvider,
    account,
    build_store,
    flat,
    outbox,
    write_csv,
)

LINE = (
    '{{"id": "acc-1", "name": {name}, "plan": "pro", "created_at": "2015-01-01", '
    '"admins": "a@customer.example"}}\n'
)


def _no_traceback(result: object) -> None:
    text = getattr(result, "stderr", "") + getattr(result, "stdout", "")
    assert "Traceback" not in text
    assert getattr(result, "exception", None) is None or isinstance(
        result.exception,  # type: ignore[attr-defined]
        SystemExit,
    )


@pytest.mark.parametrize(
    "name", ['"\\ud800"', '"x \\udc80 y"', "NaN", "-Infinity", "1e400", "42", "true"]
)
def test_jsonl_names_that_are_not_text_are_located_errors(runner: RunCli, name: str) -> None:
    build_store([account("acc-0", "zero@customer.example")])
    before = Path("migctl.db").read_bytes()
    Path("accounts.jsonl").write_text(LINE.format(name=name), encoding="utf-8")
    result = runner("accounts", "import", "accounts.jsonl")
    assert result.exit_code == 1, (result.stdout, result.stderr)
    _no_traceback(result)
    assert "accounts.jsonl:1: name:" in flat(result.stderr)
    assert Path("migctl.db").read_bytes() == before  # all-or-nothing


@pytest.mark.parametrize(
    ("field", "text"),
    [
        ("title", '    title: "Alpha \\ud800"\n'),
        ("description", '    description: "x \\udc80 y"\n'),
    ],
)
def test_yaml_text_that_cannot_be_encoded_is_refused_by_validate_and_sync(
    runner: RunCli, field: str, text: str
) -> None:
    lines = ONE_MIGRATION.replace("{mandatory}", "2016-05-11").splitlines(keepends=True)
    index = next(i for i, t in enumerate(lines) if t.lstrip().startswith(f"{field}:"))
    lines[index] = text
    Path("migrations.yaml").write_text("".join(lines), encoding="utf-8")
    for command in ("validate", "sync"):
        result = runner(command)
        assert result.exit_code == 1, (command, result.stdout, result.stderr)
        _no_traceback(result)
        assert f"migrations.yaml:{index + 1}: migrations[0].{field}" in flat(result.stderr)
        assert "not valid Unicode" in flat(result.stderr)
    assert not Path("migctl.db").exists() or Path("migctl.db").stat().st_size > 0


def test_a_csv_header_of_a_hundred_thousand_columns_is_refused_at_once(runner: RunCli) -> None:
    build_store([account("acc-0", "zero@customer.example")])
    header = ",".join(f"c{i}" for i in range(100_000))
    Path("wide.csv").write_text(header + "\n", encoding="utf-8")
    started = time.monotonic()
    result = runner("accounts", "import", "wide.csv")
    elapsed = time.monotonic() - started
    assert result.exit_code == 1
    assert "wide.csv:1: the header has 100000 columns, more than 64" in flat(result.stderr)
    assert elapsed < 10  # the quadratic check took minutes at this size


def test_repeated_columns_are_found_without_counting_each_one(runner: RunCli) -> None:
    build_store([account("acc-0", "zero@customer.example")])
    rows = [account("acc-1", "a@customer.example")]
    write_csv(Path("dupes.csv"), rows)
    text = Path("dupes.csv").read_text(encoding="utf-8").splitlines()
    text[0] += ",plan,plan"
    text[1] += ",pro,pro"
    Path("dupes.csv").write_text("\n".join(text) + "\n", encoding="utf-8")
    result = runner("accounts", "import", "dupes.csv")
    assert result.exit_code == 1
    assert "duplicate column(s) plan" in flat(result.stderr)


@pytest.mark.parametrize("folder", ["a-file/outbox", "/sys"], ids=["under-a-file", "read-only"])
def test_an_unwritable_file_provider_folder_stops_the_run_and_puts_nothing_in_doubt(
    runner: RunCli, folder: str
) -> None:
    build_store([account(f"acc-{i}", f"admin{i}@customer.example") for i in range(3)])
    Path("a-file").write_text("not a folder\n", encoding="utf-8")
    config = Path("migctl.toml").read_text(encoding="utf-8")
    Path("migctl.toml").write_text(
        config.replace('directory = "outbox"', f'directory = "{folder}"'), encoding="utf-8"
    )
    result = runner("--now", "2016-04-20", "notify", "--json")
    assert result.exit_code == 1, (result.stdout, result.stderr)
    _no_traceback(result)
    assert "file: cannot" in flat(result.stderr) and "[email.file] directory" in flat(result.stderr)
    listed = runner("outbox", "list", "--json").stdout
    assert '"in_doubt": 0' in listed and '"pending": 3' in listed


class UnbuildableProvider(RecordingProvider):
    """Fails to build the message for one administrator, as text that cannot be encoded would."""

    def build(self, email: OutgoingEmail) -> OutgoingEmail:
        if email.to == "admin1@customer.example":
            "x \udc80 y".encode()
        return email


def test_a_message_that_cannot_be_built_fails_with_its_cause_and_is_never_in_doubt(
    runner: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    RecordingProvider.reset()
    monkeypatch.setitem(REGISTRY, "console", "tests.test_strange_input:UnbuildableProvider")
    build_store([account(f"acc-{i}", f"admin{i}@customer.example") for i in range(3)])
    Path("migctl.toml").write_text(
        Path("migctl.toml").read_text(encoding="utf-8").replace('"file"', '"console"'),
        encoding="utf-8",
    )
    result = runner("--now", "2016-04-20", "notify", "--json")
    assert result.exit_code == 3, (result.stdout, result.stderr)
    rows = {r["email"]: r for r in outbox()}
    bad = rows["admin1@customer.example"]
    assert bad["state"] == "failed" and bad["error_code"] == "migctl:unsendable"
    assert "UnicodeEncodeError" in bad["last_error"]
    assert sorted(r["state"] for r in rows.values()) == ["failed", "sent", "sent"]
    assert '"suppressions": []' in runner("suppress", "list", "--json").stdout
    RecordingProvider.reset()
