"""A non-editable install carries the templates: the wheel holds every shipped template."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PREFIX = "migctl-0.1.0.data/data/share/migctl/email_templates/"


def test_wheel_ships_every_template(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = tmp_path.glob("migctl-*.whl")
    with zipfile.ZipFile(wheel) as z:
        shipped = {n[len(PREFIX) :] for n in z.namelist() if n.startswith(PREFIX)}
        assert "migrate_cli/cli/app.py" in z.namelist()
        metadata = z.read("migctl-0.1.0.dist-info/METADATA").decode()
    # An SPDX string (PEP 639), not the deprecated table setuptools warns about on every install.
    assert "License-Expression: Apache-2.0" in metadata
    on_disk = {
        str(p.relative_to(REPO / "email_templates"))
        for p in (REPO / "email_templates").rglob("*")
        if p.is_file()
    }
    assert shipped == on_disk


def test_templates_are_found_under_the_install_prefix(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import migrate_cli.notices.templates as templating

    share = tmp_path / "share" / "migctl" / "email_templates"
    share.mkdir(parents=True)
    (share / "layout.html").write_text("x")
    monkeypatch.setattr(templating, "_CANDIDATES", (tmp_path / "nowhere", share))
    assert templating.bundled_templates() == share
