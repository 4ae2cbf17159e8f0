"""`dashboard export` (per account, the migrations it must act on) and `preview` (a notice as it
would be sent, from the store or from sample data)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import RunCli
from tests.helpers_notices import files_digest, flat, parse_eml, parts, write_config

EDC = "email-delivery-changes"
VPF = "vulnerable-password-flow"
DASH = "https://dashboard.platform.example/migrations"
NOTICE_KEYS = {"id", "title", "severity", "deadline", "days_left", "message", "link"}


@pytest.fixture
def shipped(synced_store: Path) -> Path:
    """The shipped migrations + examples/accounts.csv, with a config giving the dashboard URL."""
    write_config()
    return synced_store


def export(runner: RunCli, now: str, *args: str) -> dict:
    result = runner("--now", now, "dashboard", "export", *args)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def by_account(doc: dict) -> dict[str, dict[str, dict]]:
    return {a["account_id"]: {n["id"]: n for n in a["notices"]} for a in doc["accounts"]}


# --------------------------------------------------------------------------- dashboard export


def test_export_lists_each_pending_account_with_its_active_migrations(
    runner: RunCli, shipped: Path
) -> None:
    doc = export(runner, "2016-04-20")
    accounts = by_account(doc)
    assert doc["count"] == len(doc["accounts"]) == len(accounts)
    # Closed (oldco) and auto-enrolled (acme-dev, umbrella: created after both grace starts)
    # accounts have nothing to do; hooli was created after VPF's grace start only.
    assert "oldco" not in accounts and "acme-dev" not in accounts and "umbrella" not in accounts
    assert set(accounts["hooli"]) == {EDC}
    assert set(accounts["acme-prod"]) == {EDC, VPF}
    edc = accounts["acme-prod"][EDC]
    assert set(edc) >= NOTICE_KEYS
    assert (edc["id"], edc["title"], edc["severity"]) == (EDC, "Email Delivery Changes", "medium")
    assert (edc["deadline"], edc["days_left"]) == ("2016-05-11", 21)
    assert "21 day(s)" in edc["message"] and "2016-05-11" in edc["message"]
    assert edc["link"] == f"{DASH}/{EDC}?account=acme-prod"
    vpf = accounts["acme-prod"][VPF]
    assert (vpf["deadline"], vpf["days_left"]) == (None, None)
    assert "not set" in vpf["message"]
    names = {a["account_id"]: a["name"] for a in doc["accounts"]}
    assert names["acme-prod"] == "ACME Production"


def test_export_has_nothing_before_any_grace_period(runner: RunCli, shipped: Path) -> None:
    doc = export(runner, "2016-03-21T23:59:59")
    assert doc["accounts"] == [] and doc["count"] == 0


def test_migrated_accounts_drop_out_of_the_export(runner: RunCli, shipped: Path) -> None:
    assert runner("--now", "2016-04-20", "opt-in", EDC, "--account", "acme-prod").exit_code == 0
    assert runner("--now", "2016-04-20", "opt-in", EDC, "--account", "hooli").exit_code == 0
    accounts = by_account(export(runner, "2016-04-21"))
    assert set(accounts["acme-prod"]) == {VPF}
    assert "hooli" not in accounts  # its only pending migration is done


def test_enforced_migrations_drop_out_of_the_export(runner: RunCli, shipped: Path) -> None:
    assert runner("--now", "2016-05-11", "enforce", "--yes").exit_code == 0
    accounts = by_account(export(runner, "2016-05-11T01:00:00"))
    assert all(EDC not in notices for notices in accounts.values())
    assert set(accounts["acme-prod"]) == {VPF}


def test_days_left_count_down_to_the_day(runner: RunCli, shipped: Path) -> None:
    day_before = by_account(export(runner, "2016-05-10T23:00:00"))["globex"][EDC]
    assert day_before["days_left"] == 1


def test_export_out_writes_the_file_atomically(runner: RunCli, shipped: Path) -> None:
    result = runner("--now", "2016-04-20", "dashboard", "export", "--out", "pub/dashboard.json")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    doc = json.loads(Path("pub/dashboard.json").read_text())
    assert f"wrote {doc['count']} account(s)" in flat(result.stderr)
    assert [p.name for p in Path("pub").iterdir()] == ["dashboard.json"]


def test_a_failed_export_leaves_the_previous_file_untouched(
    runner: RunCli, shipped: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import migrate_cli.lifecycle.dashboard as dashboard

    Path("pub").mkdir()
    Path("pub/dashboard.json").write_text('{"previous": true}\n')
    real = dashboard.iter_notices

    def broken(*args: object, **kwargs: object) -> Iterator[object]:
        it = real(*args, **kwargs)  # type: ignore[arg-type]
        try:
            yield next(it)
            raise OSError(28, "No space left on device")
        finally:
            it.close()

    monkeypatch.setattr(dashboard, "iter_notices", broken)
    result = runner("--now", "2016-04-20", "dashboard", "export", "--out", "pub/dashboard.json")
    assert result.exit_code == 1
    assert Path("pub/dashboard.json").read_text() == '{"previous": true}\n'
    assert [p.name for p in Path("pub").iterdir()] == ["dashboard.json"]  # no temp file left


def test_export_writes_nothing_to_the_store(runner: RunCli, shipped: Path) -> None:
    before = files_digest(shipped)
    export(runner, "2016-04-20")
    assert files_digest(shipped) == before


def test_export_keeps_hostile_names_as_data(runner: RunCli, shipped: Path) -> None:
    from tests.helpers_notices import account, write_csv

    name = '<script>alert(1)</script> {{ 7*7 }}\n"quoted"'
    write_csv(Path("evil.csv"), [account("evil", "e@x.test", name=name)])
    assert runner("accounts", "import", "evil.csv").exit_code == 0
    doc = export(runner, "2016-04-20")
    (evil,) = [a for a in doc["accounts"] if a["account_id"] == "evil"]
    assert evil["name"] == name


# --------------------------------------------------------------------------- preview


def test_preview_prints_the_text_part_for_the_first_administrator(
    runner: RunCli, shipped: Path
) -> None:
    result = runner("--now", "2016-04-20", "preview", EDC, "--kind", "announcement")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert (
        lines[0] == "To: bill@initech.test (from the store)"
    )  # alphabetically first with a pending account
    assert lines[1].startswith("Subject: [Platform] Action needed: Email Delivery Changes")
    assert "- Initech (initech)" in result.stdout
    assert "21 days left" in result.stdout


def test_preview_for_one_administrator_lists_their_pending_accounts(
    runner: RunCli, shipped: Path
) -> None:
    result = runner("--now", "2016-04-20", "preview", EDC, "--admin", "OPS@acme.test")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("To: ops@acme.test (from the store)\n")
    for line in (
        "- ACME Production (acme-prod)",
        "- ACME Staging (acme-staging)",
        "- Pied Piper (piedpiper)",
    ):
        assert line in result.stdout
    assert "ACME Sandbox" not in result.stdout  # acme-dev is auto-enrolled


def test_preview_for_an_administrator_without_pending_accounts_fails(
    runner: RunCli, shipped: Path
) -> None:
    result = runner("--now", "2016-04-20", "preview", EDC, "--admin", "admin@umbrella.test")
    assert result.exit_code == 1
    assert "admin@umbrella.test" in flat(result.stderr) and "no pending account" in flat(
        result.stderr
    )


@pytest.mark.parametrize("kind", ["announcement", "reminder", "schedule_change", "enforced"])
def test_preview_out_writes_html_and_eml(runner: RunCli, shipped: Path, kind: str) -> None:
    before = files_digest(shipped)
    result = runner(
        "--now",
        "2016-04-20",
        "preview",
        EDC,
        "--kind",
        kind,
        "--admin",
        "ops@acme.test",
        "--out",
        "previews",
    )
    assert result.exit_code == 0, result.stderr
    html = Path("previews") / f"{EDC}.{kind}.html"
    eml = Path("previews") / f"{EDC}.{kind}.eml"
    assert sorted(Path("previews").iterdir()) == sorted([html, eml])
    assert f"wrote {html}" in result.stdout and f"wrote {eml}" in result.stdout
    msg = parse_eml(eml)
    assert str(msg["To"]) == "ops@acme.test"
    assert str(msg["X-Migctl-Kind"]) == kind
    assert str(msg["X-Migctl-Notice"]) == f"{EDC}|ops@acme.test|{kind}|preview"
    body = parts(msg)
    assert body["html"].rstrip("\n") == html.read_text(encoding="utf-8").rstrip("\n")
    assert "ACME Production" in body["plain"]
    assert files_digest(shipped) == before  # a preview is not a notice: nothing recorded
    assert not Path("outbox").exists()


def test_preview_uses_sample_data_on_a_store_without_accounts(
    runner: RunCli, repo_root: Path
) -> None:
    write_config()
    assert runner("sync", "--file", repo_root / "migrations.yaml").exit_code == 0
    result = runner("--now", "2016-04-20", "preview", EDC)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(
        "To: admin@example.com (sample data: no account in the store; "
        "the administrator and accounts are made up)\n"
    )
    assert "- Acme Production (acc-1001)" in result.stdout
    out = runner("--now", "2016-04-20", "preview", EDC, "--out", "p")
    assert out.exit_code == 0, out.stderr
    assert str(parse_eml(Path("p") / f"{EDC}.reminder.eml")["To"]) == "admin@example.com"


def test_preview_rejects_an_unknown_kind(runner: RunCli, shipped: Path) -> None:
    result = runner("--now", "2016-04-20", "preview", EDC, "--kind", "nagging")
    assert result.exit_code == 2  # a usage mistake (SPEC §4)
    err = flat(result.stderr)
    assert "nagging" in err and "announcement" in err and "enforced" in err
    assert not Path("previews").exists()


def test_preview_of_an_unknown_migration_fails(runner: RunCli, shipped: Path) -> None:
    result = runner("preview", "no-such-migration")
    assert result.exit_code == 1
    assert "no-such-migration" in flat(result.stderr)
