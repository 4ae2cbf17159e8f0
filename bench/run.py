"""The migctl benchmark: reference data, one `migctl` process per step, dispatch, naive baseline.

    python -m bench.run --scale 0.01 --out /tmp/bench          # smoke size (seconds)
    python -m bench.run --scale 1 --out /tmp/bench-full        # the reference load

Every step runs as its own ``python -m migrate_cli`` process; wall time is measured around it and
its peak RSS comes from ``os.wait4`` (the rusage of that one child, not a max over all children;
for `notify` it is the larger of the run and the helper process it waited for).
Figures go to the terminal and to ``OUT/bench.json``; see bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from bench import generate as gen

REPO = Path(__file__).resolve().parent.parent
RSS_LIMIT_MB = 500.0
REHEARSAL_DAYS = 90  # plan --until: now + 90 days, across the bench migrations' dates

# Targets at scale 1 on a 2-core machine (SPEC §7). The null-provider notify row is information.
TARGETS: dict[str, tuple[str, float]] = {
    "report (HTML)": ("max_s", 60),
    "accounts import": ("max_s", 30.0),
    "status --json": ("max_s", 1.0),
    "opt-in --from-file (100k x scale)": ("max_s", 5.0),
    "notify --dry-run": ("max_s", 30.0),
    "enforce": ("max_s", 15.0),
    "plan --until (90 days)": ("max_s", 120.0),
    "flags export": ("max_s", 30.0),
}


@dataclass
class Step:
    step: str
    seconds: float | None = None
    cpu_s: float | None = None  # user + system CPU of the process: less sensitive to machine load
    peak_rss_mb: float | None = None
    items: int | None = None
    unit: str = ""
    items_per_s: float | None = None
    target: str | None = None
    met: bool | None = None  # None: not evaluated (time targets apply at scale 1 only)
    exit_code: int | None = None
    load_1m: float | None = None  # the machine's 1-minute load average when the step started
    command: list[str] = field(default_factory=list)
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class StepFailed(RuntimeError):
    pass


def _child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIGCTL_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    env.update(extra or {})
    return env


# Peak RSS: ru_maxrss survives exec, so a child spawned straight from this process would report
# at least this process's own peak (vfork/fork share or copy its memory map before exec). Each
# step is therefore spawned by a tiny wrapper (python -I -S, a few MB) that reports the wait4
# rusage of its one child; the wrapper's own peak is recorded as the floor of the figure.
WRAPPER = """
import os, sys, time, resource
out, argv = sys.argv[1], sys.argv[2:]
start = time.perf_counter()
pid = os.posix_spawn(argv[0], argv, os.environ)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - start
try:  # this process's own peak since exec (ru_maxrss would include its parent's)
    floor = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
except (OSError, IndexError):
    floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with open(out, "w") as f:
    f.write("%d %r %d %d %r" % (os.waitstatus_to_exitcode(status), seconds, usage.ru_maxrss, floor,
                                usage.ru_utime + usage.ru_stime))
"""


def run_child(
    argv: list[str], *, cwd: Path, log: Path, env: dict[str, str] | None = None
) -> tuple[int, float, float, str, str]:
    """Run one process; return (exit code, seconds, peak RSS MB of that child, stdout, stderr)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    out_path, err_path, res_path = (log.with_suffix(s) for s in (".out", ".err", ".rusage"))
    res_path.unlink(missing_ok=True)
    with out_path.open("wb") as out, err_path.open("wb") as err:
        subprocess.run(
            [sys.executable, "-I", "-S", "-c", WRAPPER, str(res_path), *argv],
            cwd=cwd,
            stdout=out,
            stderr=err,
            env=env or _child_env(),
            check=False,
        )
    try:
        code_s, seconds_s, rss_s, floor_s, cpu_s = res_path.read_text().split()
    except (OSError, ValueError):
        raise StepFailed(f"{log.name}: the wrapper reported nothing") from None
    kib = 2**20 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    _floor_mb.append(int(floor_s) / kib)
    _last_cpu[:] = [float(cpu_s)]
    return (
        int(code_s),
        float(seconds_s),
        int(rss_s) / kib,
        out_path.read_text(encoding="utf-8", errors="replace"),
        err_path.read_text(encoding="utf-8", errors="replace"),
    )


_floor_mb: list[float] = []
_last_cpu: list[float] = [0.0]  # CPU seconds (user + system) of the last child


class Bench:
    def __init__(self, scale: float, out: Path) -> None:
        self.scale = scale
        self.out = out
        self.data = out / "data"
        self.db = self.data / "migctl.db"
        self.logs = out / "logs"
        self.steps: list[Step] = []
        self.failures: list[str] = []

    # ------------------------------------------------------------------ helpers

    def migctl(
        self,
        name: str,
        args: list[str],
        *,
        now: str,
        unit: str = "",
        ok_codes: tuple[int, ...] = (0,),
        db: Path | None = None,
        config: Path | None = None,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> tuple[Step, str, str]:
        argv = [
            sys.executable,
            "-m",
            "migrate_cli",
            "--db",
            str(db or self.db),
            "--config",
            str(config or self.data / "migctl.toml"),
            "--now",
            now,
            *args,
        ]
        slug = "".join(c if c.isalnum() else "-" for c in name).strip("-")
        load = os.getloadavg()[0]
        code, seconds, rss, stdout, stderr = run_child(
            argv, cwd=cwd or self.data, log=self.logs / slug, env=env
        )
        step = Step(
            name,
            round(seconds, 3),
            cpu_s=round(_last_cpu[0], 3),
            peak_rss_mb=round(rss, 1),
            unit=unit,
            exit_code=code,
            load_1m=round(load, 2),
        )
        step.command = ["migctl", *argv[3:]]
        if code not in ok_codes:
            tail = (stderr or stdout).strip().splitlines()[-5:]
            raise StepFailed(f"{name}: exit {code}: " + " | ".join(tail))
        return step, stdout, stderr

    def record(self, step: Step, items: int | None = None) -> Step:
        if items is not None:
            step.items = items
            if step.seconds:
                step.items_per_s = round(items / step.seconds, 1)
        target = TARGETS.get(step.step)
        if target:
            kind, value = target
            if kind == "max_s":
                step.target = f"<= {value:g} s at scale 1"
                step.met = (
                    (step.seconds is not None and step.seconds <= value)
                    if self.scale >= 1
                    else None
                )
            else:
                step.target = f">= {value:,.0f} {step.unit}/s"
                step.met = step.items_per_s is not None and step.items_per_s >= value
        self.steps.append(step)
        _print_step(step)
        return step

    # ------------------------------------------------------------------ the steps

    def attempt(self, name: str, fn: Any) -> None:
        """Run one step; a failure is recorded (exit code, stderr tail) and the run goes on."""
        try:
            fn()
        except StepFailed as exc:
            step = Step(name, note=f"FAILED: {exc}", met=False)
            self.failures.append(str(exc))
            self.steps.append(step)
            _print_step(step)

    def run_main(self) -> dict[str, Any]:
        meta = gen.existing_meta(self.scale, self.data)
        if meta is None:  # generated in a child process: this one stays small (see WRAPPER)
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench.generate",
                    "--scale",
                    str(self.scale),
                    "--out",
                    str(self.data),
                ],
                cwd=REPO,
                env=_child_env(),
                check=True,
                stdout=subprocess.DEVNULL,
            )
            meta = gen.existing_meta(self.scale, self.data)
            assert meta is not None
        ids = meta["migrations"]
        now, later = meta["now"], meta["enforce_now"]
        for name in ("migctl.db", "migctl.db-wal", "migctl.db-shm", "dashboard.json"):
            (self.data / name).unlink(missing_ok=True)

        def sync() -> None:
            step, _, _ = self.migctl("sync", ["sync"], now=now)
            self.record(step)

        def accounts_import() -> None:
            step, out, _ = self.migctl(
                "accounts import",
                ["accounts", "import", "accounts.csv", "--json"],
                now=now,
                unit="accounts",
            )
            step.extra = {
                "report": json.loads(out),
                "links": meta["links"],
                "admins": meta["admins"],
            }
            step.note = f"{meta['links']:,} administrator links, {meta['admins']:,} administrators"
            self.record(step, meta["accounts"])

        def optin20() -> None:
            step, out, _ = self.migctl(
                "opt-in --from-file (20% of accounts)",
                [
                    "opt-in",
                    ids["dated"],
                    "--from-file",
                    "optin_20pct.txt",
                    "--reason",
                    "bench",
                    "--json",
                ],
                now=now,
                unit="accounts",
            )
            step.note = f"{ids['dated']}: the 20% early adopters (timed apart from the 100k step)"
            self.record(step, json.loads(out)["changed_count"])

        def optin() -> None:
            step, out, _ = self.migctl(
                "opt-in --from-file (100k x scale)",
                ["opt-in", ids["tbd"], "--from-file", "optin.txt", "--reason", "bench", "--json"],
                now=now,
                unit="accounts",
            )
            step.note = ids["tbd"]
            self.record(step, json.loads(out)["changed_count"])

        def status() -> None:
            step, out, _ = self.migctl(
                "status --json", ["status", "--json"], now=now, unit="migrations"
            )
            doc = json.loads(out)
            step.extra = {
                m["id"]: {
                    "phase": m["phase"],
                    **m["accounts"],
                    "admins_pending": m["admins_pending"],
                }
                for m in doc["migrations"]
            }
            self.record(step, len(doc["migrations"]))

        def dry_run() -> None:
            step, out, _ = self.migctl(
                "notify --dry-run", ["notify", "--dry-run", "--json"], now=now, unit="notices"
            )
            doc = json.loads(out)
            step.extra = {"notices": doc["notices"]}
            if step.seconds:
                step.note = f"{meta['accounts'] / step.seconds:,.0f} accounts/s planned"
            self.record(step, doc["notices"]["planned"])

        def notify() -> None:
            step, out, _ = self.migctl(
                "notify (null provider)", ["notify", "--json"], now=now, unit="notices"
            )
            doc = json.loads(out)
            step.extra = {"notices": doc["notices"]}
            step.note = "plan + enqueue + render + record, one process"
            self.record(step, doc["notices"]["sent"])

        def rehearsal() -> None:
            until = (date.fromisoformat(now) + timedelta(days=REHEARSAL_DAYS)).isoformat()
            step, out, _ = self.migctl(
                "plan --until (90 days)",
                ["plan", "--until", until, "--all-days", "--json"],
                now=now,
                unit="days",
            )
            days = json.loads(out)["days"]
            notices = sum(
                n for d in days for kinds in d["notices"].values() for n in kinds.values()
            )
            enforced = sum(n for d in days for n in d["enforced"].values())
            step.extra = {"until": until, "notices": notices, "enforced": enforced}
            step.note = (
                f"to {until}, after the notices of {now} were sent: {notices:,} notices and "
                f"{enforced:,} accounts enforced rehearsed"
            )
            self.record(step, len(days))

        def dashboard() -> None:
            step, _, err = self.migctl(
                "dashboard export",
                ["dashboard", "export", "--out", "dashboard.json"],
                now=now,
                unit="accounts",
            )
            mb = (self.data / "dashboard.json").stat().st_size / 2**20
            step.extra = {"file_mb": round(mb, 1)}
            step.note = f"{mb:,.1f} MB of JSON"
            self.record(step, _first_int(err))

        def report() -> None:
            step, _, _ = self.migctl(
                "report (HTML)", ["report", "--out", "report.html"], now=now, unit="migrations"
            )
            kb = (self.data / "report.html").stat().st_size / 2**10
            step.extra = {"file_kb": round(kb)}
            step.note = f"{kb:,.0f} KB of HTML: figures, 14-day rehearsal, charts"
            self.record(step, 3)

        def enforce() -> None:
            step, out, _ = self.migctl(
                "enforce", ["enforce", "--yes", "--json"], now=later, unit="accounts"
            )
            doc = json.loads(out)
            step.extra = {"enforced": doc["enforced"], "notices_queued": doc.get("notices_queued")}
            step.note = (
                f"at {later}: {ids['dated']} is due; {doc.get('notices_queued') or 0:,} enforced "
                "notices queued in the same run"
            )
            self.record(step, sum(doc["enforced"].values()))

        def flags_export() -> None:
            # After enforce: every account's state and the sequence of its events (streamed).
            step, _, err = self.migctl(
                "flags export",
                ["flags", "export", "--out", "flags.jsonl"],
                now=later,
                unit="rows",
            )
            mb = (self.data / "flags.jsonl").stat().st_size / 2**20
            step.extra = {"file_mb": round(mb, 1)}
            step.note = f"{mb:,.1f} MB of JSON Lines, every account per active migration"
            self.record(step, _first_int(err))

        self.attempt("sync", sync)
        self.attempt("accounts import", accounts_import)
        self.attempt("opt-in --from-file (20% of accounts)", optin20)
        self.attempt("opt-in --from-file (100k x scale)", optin)
        self.attempt("status --json", status)
        self.attempt("notify --dry-run", dry_run)
        # The naive baseline works on a copy of the store as it is now (before notices exist).
        self.baseline_db = self.out / "baseline" / "migctl.db"
        _copy_store(self.db, self.baseline_db)
        self.attempt("notify (null provider)", notify)
        self.attempt("plan --until (90 days)", rehearsal)
        self.attempt("dashboard export", dashboard)
        self.attempt("report (HTML)", report)
        self.attempt("enforce", enforce)
        self.attempt("flags export", flags_export)

        size = sum(p.stat().st_size for p in self.data.glob("migctl.db*") if p.is_file())
        self.record(
            Step(
                "store size on disk",
                note=f"{size / 2**20:,.1f} MB (db + wal)",
                extra={"bytes": size, "mb": round(size / 2**20, 1)},
            )
        )
        return meta

    def run_dispatch(self, provider: str) -> None:
        n = max(500, round(5000 * self.scale))

        def run() -> None:
            step = dispatch_bench(provider, n, self.out / f"dispatch-{provider}", self.logs)
            self.steps.append(step)
            _print_step(step)

        self.attempt(f"dispatch {provider}", run)

    def run_baseline(self, meta: dict[str, Any], sample: int, notify_sample: int) -> None:
        result = self.out / "baseline" / "baseline.json"
        argv = [
            sys.executable,
            "-m",
            "bench.baseline",
            "--db",
            str(self.baseline_db),
            "--migrations",
            str(self.data / "migrations.yaml"),
            "--templates",
            str(self.data / "email_templates"),
            "--now",
            meta["now"],
            "--enforce-now",
            meta["enforce_now"],
            "--sample",
            str(sample),
            "--notify-sample",
            str(notify_sample),
            "--json-out",
            str(result),
        ]
        code, _, rss, _, stderr = run_child(argv, cwd=REPO, log=self.logs / "baseline")
        if code != 0:
            raise StepFailed("baseline: " + " | ".join(stderr.strip().splitlines()[-5:]))
        doc = json.loads(result.read_text())
        by = {s.step: s for s in self.steps}
        pairs = [
            ("planning", "notify --dry-run", "accounts", meta["accounts"]),
            ("notify", "notify (null provider)", "notices", None),
            ("enforce", "enforce", "accounts", None),
        ]
        for phase, mig_step, unit, mig_items in pairs:
            b = doc[phase]
            m = by.get(mig_step)
            step = Step(
                f"baseline: {phase}",
                round(b["seconds"], 3),
                round(b["cpu_s"], 3),
                round(rss, 1),
                b["items"],
                unit,
            )
            step.items_per_s = round(b["items"] / b["seconds"], 1) if b["seconds"] else None
            step.note = b.get("note", "")
            if m is not None and m.seconds and b["items"] and b["seconds"]:
                items = mig_items if mig_items is not None else m.items
                if items:
                    ratio = (b["seconds"] / b["items"]) / (m.seconds / items)
                    cpu_ratio = (b["cpu_s"] / b["items"]) / (m.cpu_s / items) if m.cpu_s else None
                    step.extra = {
                        "ratio": round(ratio, 1),
                        "migctl_step": mig_step,
                        "ratio_cpu": round(cpu_ratio, 1) if cpu_ratio else None,
                        "migctl_items": items,
                        "migctl_seconds": m.seconds,
                        "migctl_cpu_s": m.cpu_s,
                    }
                    # SPEC §7's ">= 10x the naive baseline" is a bar for dispatch (plan, render,
                    # send, record per notice); the planning and enforce ratios are information.
                    if phase == "notify":
                        step.target = ">= 10x (wall time per item, baseline / migctl)"
                        step.met = ratio >= 10
                    step.note = (
                        f"ratio {ratio:,.1f}x wall, {_fmt(step.extra['ratio_cpu'])}x CPU; "
                        + step.note
                    )
            self.steps.append(step)
            _print_step(step)

    def peak_rss_row(self) -> None:
        rss = [
            (s.peak_rss_mb, s.step)
            for s in self.steps
            if s.peak_rss_mb is not None and not s.step.startswith(("baseline", "dispatch"))
        ]
        if rss:
            worst, name = max(rss)
            step = Step("peak RSS of any migctl step", peak_rss_mb=worst, note=name)
            step.target = f"<= {RSS_LIMIT_MB:g} MB"
            step.met = worst <= RSS_LIMIT_MB
            self.steps.append(step)
            _print_step(step)


# ---------------------------------------------------------------------- dispatch


def _window_max(stamps: list[float], width: float = 1.0) -> int:
    """The largest number of requests that arrived within any ``width``-second window."""
    stamps = sorted(stamps)
    best = j = 0
    for i, t in enumerate(stamps):
        while j < len(stamps) and stamps[j] < t + width:
            j += 1
        best = max(best, j - i)
    return best


def _timestamped_sendgrid(api_key: str, latency: float) -> Any:
    from tests.fakes.sendgrid_server import FakeSendgrid

    class Timed(FakeSendgrid):
        def __init__(self, *a: Any, **k: Any) -> None:
            super().__init__(*a, **k)
            self.stamps: list[float] = []

        def _respond(self, auth: str, body: bytes) -> Any:
            self.stamps.append(time.monotonic())  # arrival, before the injected latency
            return super()._respond(auth, body)

    return Timed(api_key=api_key, latency=latency)


def _timestamped_ses(latency: float) -> Any:
    from tests.fakes.ses_server import FakeSes

    class Timed(FakeSes):
        def __init__(self, *a: Any, **k: Any) -> None:
            super().__init__(*a, **k)
            self.stamps: list[float] = []

        def _next(self, request: Any) -> Any:
            self.stamps.append(time.monotonic())
            return super()._next(request)

    return Timed(latency=latency)


DISPATCH_RATE = 200
DISPATCH_CONCURRENCY = 16
DISPATCH_LATENCY = 0.050


def dispatch_bench(provider: str, n: int, folder: Path, logs: Path) -> Step:
    """`migctl notify` of exactly ``n`` pending notices against a local fake with 50 ms latency."""
    name = f"dispatch {provider} ({DISPATCH_RATE}/s, c={DISPATCH_CONCURRENCY}, 50 ms)"
    step = Step(
        name,
        unit="sends",
        target=f">= 95% of {DISPATCH_RATE}/s, no 1-s window above {DISPATCH_RATE}",
    )
    try:
        server = (
            _timestamped_sendgrid("SG.bench-key", DISPATCH_LATENCY)
            if provider == "sendgrid"
            else _timestamped_ses(DISPATCH_LATENCY)
        )
    except ImportError as exc:  # the SES fake needs moto (the test extra)
        step.note = f"skipped: {exc}"
        return step
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    gen.write_dispatch_data(folder, n)
    env_extra = {"BENCH_SENDGRID_KEY": "SG.bench-key"}
    if provider == "ses":
        env_extra.update(
            {
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1",
            }
        )
    env = _child_env(env_extra)
    db = folder / "migctl.db"
    for args in (["sync"], ["accounts", "import", "accounts.csv"]):
        argv = [
            sys.executable,
            "-m",
            "migrate_cli",
            "--db",
            str(db),
            "--config",
            "migctl.toml",
            "--now",
            gen.NOW,
            *args,
        ]
        code, _, _, _, err = run_child(
            argv, cwd=folder, log=logs / f"dispatch-{provider}-setup", env=env
        )
        if code:
            raise StepFailed(f"{name}: setup {args[0]}: {err.strip()[-300:]}")
    with server:
        section = (
            f'[email.sendgrid]\napi_key_env = "BENCH_SENDGRID_KEY"\nhost = "{server.url}"\n'
            if provider == "sendgrid"
            else f'[email.ses]\nregion = "us-east-1"\nendpoint_url = "{server.url}"\n'
        )
        (folder / "migctl.toml").write_text(
            gen.dispatch_config(provider, DISPATCH_RATE, DISPATCH_CONCURRENCY) + section,
            encoding="utf-8",
        )
        argv = [
            sys.executable,
            "-m",
            "migrate_cli",
            "--db",
            str(db),
            "--config",
            "migctl.toml",
            "--now",
            gen.NOW,
            "notify",
            "--json",
        ]
        code, seconds, rss, out, err = run_child(
            argv, cwd=folder, log=logs / f"dispatch-{provider}", env=env
        )
        stamps = list(server.stamps)
    step.seconds, step.peak_rss_mb, step.exit_code = round(seconds, 3), round(rss, 1), code
    step.cpu_s = round(_last_cpu[0], 3)
    step.command = ["migctl", *argv[3:]]
    if code not in (0, 3):
        raise StepFailed(f"{name}: exit {code}: {err.strip()[-300:]}")
    doc = json.loads(out)
    sent = doc["notices"]["sent"]
    span = (max(stamps) - min(stamps)) if len(stamps) > 1 else 0.0
    rate = (len(stamps) - 1) / span if span else 0.0
    peak = _window_max(stamps)
    share = rate / DISPATCH_RATE
    step.items = sent
    step.items_per_s = round(rate, 1)
    step.met = share >= 0.95 and peak <= DISPATCH_RATE and sent == n
    step.note = f"{share:.1%} of the limit; busiest 1-s window {peak}; {sent}/{n} sent"
    step.extra = {
        "notices": n,
        "requests_at_server": len(stamps),
        "sent": sent,
        "failed": doc["notices"]["failed"],
        "server_span_s": round(span, 3),
        "achieved_per_s": round(rate, 2),
        "share_of_limit": round(share, 4),
        "max_in_1s_window": peak,
        "wall_per_s": round(sent / seconds, 1) if seconds else None,
    }
    return step


# ---------------------------------------------------------------------- output


BASELINE_PAGE_SIZE = 4096  # SQLite's default


def _copy_store(src: Path, dst: Path) -> None:
    """A copy of the store for the baseline, rewritten with SQLite's default page size.

    migctl creates stores with 16 KiB pages; the baseline's one-row commits write whole pages
    and run about twice as slow on them. An afternoon script would not tune the page size, and
    the slower baseline would flatter migctl's ratios.
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    for p in dst.parent.glob(dst.name + "*"):
        p.unlink()
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)
    a.close()
    b.close()
    conn = sqlite3.connect(dst, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = DELETE")  # a page size changes only outside WAL
        conn.execute(f"PRAGMA page_size = {BASELINE_PAGE_SIZE}")
        conn.execute("VACUUM")
        conn.execute("PRAGMA journal_mode = WAL")  # as migctl's store
    finally:
        conn.close()


def _first_int(text: str) -> int | None:
    for word in text.split():
        if word.isdigit():
            return int(word)
    return None


def _fmt(v: Any, spec: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    return format(v, spec) if spec else str(v)


def _print_step(s: Step) -> None:
    print(
        f"  {s.step:<44} {_fmt(s.seconds, ',.2f'):>8} s {_fmt(s.cpu_s, ',.2f'):>8} cpu-s {_fmt(s.peak_rss_mb, ',.0f'):>5} MB  "
        f"{_fmt(s.items, ','):>10} {s.unit:<9} {_fmt(s.items_per_s, ',.0f'):>9}/s  met={_fmt(s.met)}  {s.note}",
        flush=True,
    )


def print_table(doc: dict[str, Any]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # plain lines were printed as the steps ran
        return
    table = Table(title=f"migctl benchmark, scale {doc['scale']} ({doc['machine']['nproc']} cores)")
    for col, just in (
        ("step", "left"),
        ("seconds", "right"),
        ("CPU s", "right"),
        ("peak RSS MB", "right"),
        ("items", "right"),
        ("items/s", "right"),
        ("target", "left"),
        ("met", "center"),
        ("note", "left"),
    ):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for s in doc["steps"]:
        table.add_row(
            s["step"],
            _fmt(s["seconds"], ",.2f"),
            _fmt(s["cpu_s"], ",.2f"),
            _fmt(s["peak_rss_mb"], ",.0f"),
            f"{_fmt(s['items'], ',')} {s['unit']}".strip(),
            _fmt(s["items_per_s"], ",.0f"),
            s["target"] or "",
            _fmt(s["met"]),
            s["note"],
        )
    Console(width=220).print(table)


def code_version() -> dict[str, Any]:
    """The commit measured, and whether migrate_cli/ had uncommitted changes (read-only git)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "migrate_cli"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "migrate_cli_dirty": None}
    return {"commit": commit, "migrate_cli_dirty": bool(dirty)}


def machine() -> dict[str, Any]:
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "memory": mem,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark migctl at a reference load (bench/README.md)."
    )
    parser.add_argument(
        "--scale", type=float, default=0.01, help="1 = 1,000,000 accounts (default 0.01)"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="folder for data, logs and bench.json"
    )
    parser.add_argument(
        "--skip-dispatch", action="store_true", help="skip the SendGrid/SES throughput runs"
    )
    parser.add_argument("--skip-baseline", action="store_true", help="skip the naive baseline")
    parser.add_argument(
        "--baseline-sample",
        type=int,
        default=20_000,
        help="accounts the naive baseline plans and enforces (default 20,000)",
    )
    parser.add_argument(
        "--baseline-notify-sample",
        type=int,
        default=2_000,
        help="notices the naive baseline renders and records (default 2,000)",
    )
    args = parser.parse_args(argv)

    args.out.mkdir(parents=True, exist_ok=True)
    bench = Bench(args.scale, args.out.resolve())
    started = time.time()
    code_at_start = code_version()
    print(f"migctl benchmark: scale {args.scale}, output in {bench.out}", flush=True)
    meta = bench.run_main()
    if not args.skip_dispatch:
        for provider in ("sendgrid", "ses"):
            bench.run_dispatch(provider)
    if not args.skip_baseline:
        bench.attempt(
            "baseline",
            lambda: bench.run_baseline(meta, args.baseline_sample, args.baseline_notify_sample),
        )
    bench.peak_rss_row()
    failure = "; ".join(bench.failures) or None
    doc = {
        "scale": args.scale,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "total_seconds": round(time.time() - started, 1),
        "machine": machine(),
        "code": code_at_start,
        "data": meta,
        "rss_floor_mb": round(max(_floor_mb), 1) if _floor_mb else None,
        "failure": failure,
        "steps": [asdict(s) for s in bench.steps],
    }
    (bench.out / "bench.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print_table(doc)
    print(f"wrote {bench.out / 'bench.json'}")
    return 1 if failure else 0


if __name__ == "__main__":
    sys.exit(main())
