"""Providers by name: other packages register through migctl.providers; memory shows a run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from email import policy
from email.parser import BytesParser
from pathlib import Path

from migrate_cli.delivery import memory
from tests.conftest import RunCli
from tests.helpers_notices import account, write_config, write_csv, write_yaml

# A provider package as its authors would ship it: hooks only, the template is migctl's.
PIGEON = '''\
"""Pigeon post for migctl: every notice is left in the loft as an .eml file."""

from pathlib import Path

from migrate_cli.delivery.base import OutgoingEmail, Provider
from migrate_cli.delivery.mime import as_bytes, build_message


class PigeonProvider(Provider[bytes]):
    name = "pigeon"
    development_only = True

    def build(self, email: OutgoingEmail) -> bytes:
        return as_bytes(build_message(email))

    def deliver(self, message: bytes, email: OutgoingEmail) -> str:
        loft = Path("pigeon-loft")
        loft.mkdir(exist_ok=True)
        (loft / f"{email.to}.eml").write_bytes(message)
        return f"pigeon:{email.to}"
'''


def install(site: Path, dist: str, version: str, module: str, entry_points: str) -> None:
    """A distribution as pip would leave it: the package and its .dist-info next to it."""
    site.mkdir(exist_ok=True)
    (site / f"{module}.py").write_text(PIGEON, encoding="utf-8")
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(
        f"[migctl.providers]\n{entry_points}\n", encoding="utf-8"
    )


def migctl(*args: str, site: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if site is not None:
        env["PYTHONPATH"] = str(site)
    return subprocess.run(
        [sys.executable, "-m", "migrate_cli", "--now", "2016-04-20", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def operator_folder(provider: str, site: Path | None = None) -> None:
    """The operator's folder; with ``site``, also their store, synced and with two accounts."""
    write_yaml()
    write_config(provider=provider)
    write_csv(
        Path("accounts.csv"),
        [account("acme-prod", "ops@acme.test"), account("globex", "it@globex.test")],
    )
    if site is not None:
        for step in (("sync",), ("accounts", "import", "accounts.csv")):
            done = migctl(*step, site=site)
            assert done.returncode == 0, done.stderr


def test_a_provider_from_another_package_sends_the_notices(tmp_path: Path) -> None:
    site = tmp_path / "site"
    install(site, "migctl-pigeon", "0.1", "migctl_pigeon", "pigeon = migctl_pigeon:PigeonProvider")
    operator_folder("pigeon", site)
    done = migctl("notify", "--json", site=site)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["notices"]["sent"] == 2
    loft = sorted(p.name for p in Path("pigeon-loft").iterdir())
    assert loft == ["it@globex.test.eml", "ops@acme.test.eml"]
    raw = Path("pigeon-loft/ops@acme.test.eml").read_bytes()
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    assert msg["To"] == "ops@acme.test"
    assert "Email Delivery Changes" in msg["Subject"]
    assert (
        msg["X-Migctl-Notice"] == "email-delivery-changes|ops@acme.test|announcement|announcement"
    )
    assert not Path("outbox").exists()  # nothing went through the built-in file provider


def test_an_unknown_provider_lists_the_available_ones(tmp_path: Path) -> None:
    operator_folder("pigeon")  # the package is not installed
    done = migctl("sync")
    assert done.returncode == 1
    assert "migctl.toml:" in done.stderr and "'pigeon' is not a provider" in done.stderr
    for name in ("console", "file", "memory", "null", "sendgrid", "ses", "smtp"):
        assert name in done.stderr
    assert not Path("migctl.db").exists()


def test_two_distributions_claiming_one_name_is_an_error_naming_both(tmp_path: Path) -> None:
    site = tmp_path / "site"
    install(site, "migctl-pigeon", "0.1", "migctl_pigeon", "pigeon = migctl_pigeon:PigeonProvider")
    install(site, "carrier-pigeon", "2.3", "carrier", "pigeon = carrier:PigeonProvider")
    operator_folder("pigeon", site)
    done = migctl("notify", site=site)
    assert done.returncode == 1, done.stdout
    assert "registered twice" in done.stderr
    assert "migctl-pigeon 0.1 (migctl_pigeon:PigeonProvider)" in done.stderr
    assert "carrier-pigeon 2.3 (carrier:PigeonProvider)" in done.stderr
    assert not Path("pigeon-loft").exists()


def test_a_broken_registration_names_its_distribution(tmp_path: Path) -> None:
    site = tmp_path / "site"
    install(site, "migctl-pigeon", "0.1", "migctl_pigeon", "pigeon = migctl_pigeon:Missing")
    operator_folder("pigeon", site)
    done = migctl("notify", site=site)
    assert done.returncode == 1, done.stdout
    assert "cannot load the provider from migctl-pigeon 0.1 (migctl_pigeon:Missing)" in done.stderr
    assert "Traceback" not in done.stderr


def test_built_in_providers_import_their_sdk_only_when_used() -> None:
    probe = (
        "import sys\n"
        "from migrate_cli.delivery.registry import provider_class\n"
        "assert provider_class('smtp').name == 'smtp'\n"
        "print(sorted(m for m in ('boto3', 'sendgrid') if m in sys.modules))\n"
        "provider_class('ses')\n"
        "print(sorted(m for m in ('boto3', 'sendgrid') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split("\n")[:2] == ["[]", "['boto3']"]


def test_the_memory_provider_shows_what_a_run_sent(runner: RunCli) -> None:
    operator_folder("memory")
    memory.clear()
    assert runner("sync").exit_code == 0
    assert runner("accounts", "import", "accounts.csv").exit_code == 0
    done = runner("--now", "2016-04-20", "notify", "--json")
    assert done.exit_code == 0, done.stderr
    sent = {s.message["To"]: s for s in memory.sent()}
    memory.clear()
    assert sorted(sent) == ["it@globex.test", "ops@acme.test"]
    ops = sent["ops@acme.test"]
    assert ops.email.key == "email-delivery-changes|ops@acme.test|announcement|announcement"
    assert "Email Delivery Changes" in ops.message["Subject"]
    assert ops.message["From"] == "Platform Notices <notices@platform.example>"
    assert "ACME-PROD" in ops.email.text
