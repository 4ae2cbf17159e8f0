"""The benchmark harness runs end to end at a tiny scale (a smoke test: no timing assertions)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

MAIN_STEPS = [
    "sync",
    "accounts import",
    "opt-in --from-file (20% of accounts)",
    "opt-in --from-file (100k x scale)",
    "status --json",
    "notify --dry-run",
    "notify (null provider)",
    "dashboard export",
    "enforce",
    "flags export",
    "store size on disk",
]
BASELINE_STEPS = ["baseline: planning", "baseline: notify", "baseline: enforce"]


@pytest.mark.slow
def test_bench_runs_at_tiny_scale(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIGCTL_")}
    env["PYTHONPATH"] = str(REPO)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.run",
            "--scale",
            "0.001",
            "--out",
            str(out),
            "--baseline-notify-sample",
            "50",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    doc = json.loads((out / "bench.json").read_text(encoding="utf-8"))
    assert result.returncode == 0, (doc.get("failure"), result.stderr[-2000:])
    assert doc["failure"] is None
    steps = {s["step"]: s for s in doc["steps"]}
    for name in [*MAIN_STEPS, *BASELINE_STEPS]:
        assert name in steps, f"missing step {name!r}"
    dispatch = [s for s in steps if s.startswith("dispatch ")]
    assert any("sendgrid" in s for s in dispatch) and any("ses" in s for s in dispatch)
    for name in MAIN_STEPS[:-1]:
        step = steps[name]
        assert step["exit_code"] == 0, step
        assert step["seconds"] is not None and step["peak_rss_mb"] is not None
    # Every figure needed to compare two runs is there.
    for key in ("step", "seconds", "peak_rss_mb", "items", "items_per_s", "target", "met"):
        assert key in steps["notify --dry-run"]
    assert steps["accounts import"]["items"] == doc["data"]["accounts"]
    assert steps["notify (null provider)"]["items"] == steps["notify --dry-run"]["items"] > 0
    assert steps["enforce"]["items"] > 0
    assert steps["flags export"]["items"] >= doc["data"]["accounts"] // 2  # every audience row
    assert steps["store size on disk"]["extra"]["bytes"] > 0
    # migctl's store has 16 KiB pages; the baseline's copy SQLite's default (see _copy_store).
    with sqlite3.connect(out / "data" / "migctl.db") as store:
        assert store.execute("PRAGMA page_size").fetchone()[0] == 16384
    with sqlite3.connect(out / "baseline" / "migctl.db") as copy:
        assert copy.execute("PRAGMA page_size").fetchone()[0] == 4096
        assert copy.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    for s in dispatch:  # the test extra has moto: neither provider is skipped here
        assert "skipped" not in (steps[s]["note"] or ""), steps[s]
        assert steps[s]["items"] == steps[s]["extra"]["notices"] > 0
