"""Deterministic reference data for the benchmark (seeded; the same scale gives the same files).

    python -m bench.generate --scale 0.01 --out /tmp/bench-data

Writes into the folder:

* ``accounts.csv`` — 1,000,000 x scale accounts over four plans, ~1.5 administrator links per
  account over ~0.8 x accounts distinct administrators (most administer one account, some a few
  dozen, one several hundred), 0.5% closed, ~12% created after the first grace period started;
* ``migrations.yaml`` — three migrations in grace at ``NOW``: one TBD (startup and enterprise
  plans only), one dated (every plan), one with per-plan dates (enterprise TBD);
* ``optin_20pct.txt`` — 20% of the accounts (active, created before its grace period): the
  early adopters of the dated migration, applied with ``migctl opt-in --from-file``;
* ``optin.txt`` — 100,000 x scale accounts for the TBD migration (the timed opt-in step);
* ``migctl.toml`` — ``null`` provider, development environment;
* ``meta.json`` — what was generated (counts, ids, the instants the benchmark uses).
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import shutil
from datetime import date, timedelta
from pathlib import Path
from typing import Any

TEMPLATES = Path(__file__).resolve().parent.parent / "email_templates"
SEED = 20240601
BASE_ACCOUNTS = 1_000_000
BASE_OPTIN = 100_000

PLANS = (("free", 0.55), ("developer", 0.25), ("startup", 0.15), ("enterprise", 0.05))
TAGS = ("eu", "us", "sso", "beta", "hipaa")

# The instants the benchmark runs at (midnight UTC).
NOW = "2024-06-01"  # every migration is in grace: status, opt-in, notify, dashboard
ENFORCE_NOW = "2024-07-16"  # the day after the dated migration's mandatory date

M_TBD = "bench-password-flow"
M_DATED = "bench-email-delivery"
M_PER_PLAN = "bench-api-v1-retirement"

FIRST_GRACE_START = date(2024, 3, 1)
CREATED_FROM = date(2015, 1, 1)
CREATED_UNTIL = date(2024, 5, 31)
LATE_SHARE = 0.12  # accounts created after the first grace period started (auto-enrolled)
CLOSED_SHARE = 0.005

MIGRATIONS_YAML = f"""\
# Benchmark definitions (bench/generate.py). Every migration is in grace at {NOW}.
defaults:
  timezone: UTC
  notices:
    reminder_every: 14d
    escalate_before: [30d, 14d, 7d, 3d, 1d]
    min_gap: 2d
  severity:
    high:
      notices: {{reminder_every: 7d}}

migrations:
  - id: {M_TBD}
    title: Password Flow Hardening
    severity: medium
    grace_period_start: {FIRST_GRACE_START.isoformat()}
    mandatory_opt_in: TBD
    applies_to:
      plans: [startup, enterprise]
    summary: >-
      Password resets move to a flow where the new password is chosen only after following
      the emailed link.
    description: |
      **What changes.** A reset request no longer carries the new password.

      **What you need to do.**

      - Upgrade the login widget to version 9 or later.
      - Move direct calls of the password-change endpoint to the new flow.
    docs_url: https://docs.platform.example/migrations/password-flow

  - id: {M_DATED}
    title: Email Delivery Changes
    severity: high
    grace_period_start: 2024-04-15
    mandatory_opt_in: 2024-07-15
    summary: >-
      The built-in email provider becomes a testing-only service.
    description: |
      **What changes.** Messages sent through the built-in provider only use the standard
      templates.

      **What you need to do.** Configure a supported provider or your own SMTP server.
    docs_url: https://docs.platform.example/migrations/email-delivery

  - id: {M_PER_PLAN}
    title: API v1 Retirement
    severity: medium
    grace_period_start: 2024-05-01
    mandatory_opt_in:
      free: 2024-08-01
      developer: 2024-09-01
      startup: 2024-10-01
      enterprise: TBD
    summary: >-
      API v1 endpoints are retired; v2 replaces them.
    description: |
      **What changes.** Requests to /api/v1 stop working on your plan's date.

      **What you need to do.** Move every client to /api/v2 and opt in to test it.
    docs_url: https://docs.platform.example/migrations/api-v1
"""

CONFIG_TOML = """\
# Benchmark configuration (bench/generate.py): the null provider delivers nothing.
environment = "development"
migrations_file = "migrations.yaml"
templates_dir = "email_templates"

[email]
provider = "null"
from = "Platform Notices <notices@platform.example>"
reply_to = "support@platform.example"

[dashboard]
url = "https://dashboard.platform.example/migrations"
"""


def _admin_email(k: int) -> str:
    if k == 0:
        return "platform-ops@reseller.example"  # the one administering hundreds
    return f"admin{k}@c{k % 4999}.example"


def _admin_link_counts(rng: random.Random, n_accounts: int, links: int, admins: int) -> list[int]:
    """How many links each administrator has: one with hundreds, some dozens, most one."""
    heavy = max(20, min(600, n_accounts // 20))
    n_dozens = max(2, admins // 2000)
    counts = [heavy] + [rng.randint(12, 60) for _ in range(n_dozens)]
    rest_admins = max(1, admins - len(counts))
    rest_links = max(rest_admins, links - sum(counts))
    base = [1] * rest_admins
    # The extra links go to a quarter of the remaining administrators (2-6 accounts each),
    # so that three quarters administer exactly one account.
    extra = rest_links - rest_admins
    few = list(range(rest_admins))
    rng.shuffle(few)
    few = few[: max(1, rest_admins // 4)]
    i = 0
    while extra > 0:
        base[few[i % len(few)]] += 1
        extra -= 1
        i += 1
    return counts + base


def generate(scale: float, out: Path, seed: int = SEED) -> dict[str, Any]:
    """Write the reference files for ``scale`` into ``out``; return the meta document."""
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    n = max(100, round(BASE_ACCOUNTS * scale))
    links_target = round(n * 1.5)
    admins_target = round(n * 0.8)

    # Plans and creation dates.
    plan_names = [p for p, _ in PLANS]
    plan_weights = [w for _, w in PLANS]
    plans = rng.choices(plan_names, weights=plan_weights, k=n)
    early_days = (FIRST_GRACE_START - CREATED_FROM).days
    late_days = (CREATED_UNTIL - FIRST_GRACE_START).days + 1
    created: list[date] = []
    for _ in range(n):
        if rng.random() < LATE_SHARE:
            created.append(FIRST_GRACE_START + timedelta(days=rng.randrange(late_days)))
        else:
            created.append(CREATED_FROM + timedelta(days=rng.randrange(early_days)))
    closed = [rng.random() < CLOSED_SHARE for _ in range(n)]

    # Administrator links: every account gets one, the rest go to random accounts.
    per_admin = _admin_link_counts(rng, n, links_target, admins_target)
    slots = [k for k, c in enumerate(per_admin) for _ in range(c)]
    rng.shuffle(slots)
    account_slots = list(range(n)) + [rng.randrange(n) for _ in range(len(slots) - n)]
    admins_of: list[list[int]] = [[] for _ in range(n)]
    for acc, adm in zip(account_slots, slots, strict=False):
        if adm not in admins_of[acc]:
            admins_of[acc].append(adm)

    ids = [f"acct-{i:07d}" for i in range(n)]
    with (out / "accounts.csv").open("w", newline="", encoding="utf-8") as handle:
        w = csv.writer(handle)
        w.writerow(["id", "name", "plan", "tags", "created_at", "status", "admins"])
        for i in range(n):
            k = rng.randrange(8)
            tags = ";".join(TAGS[j] for j in range(len(TAGS)) if k >> j & 1 and j < 3)
            w.writerow(
                [
                    ids[i],
                    f"Customer {i} & Co <{plans[i]}>",  # escaped in HTML, never a template
                    plans[i],
                    tags,
                    created[i].isoformat(),
                    "closed" if closed[i] else "active",
                    ";".join(_admin_email(a) for a in admins_of[i]),
                ]
            )

    # Opt-in files: active accounts created before the migration's grace start, in its audience.
    dated_start = date(2024, 4, 15)
    eligible_dated = [i for i in range(n) if not closed[i] and created[i] < dated_start]
    n20 = min(len(eligible_dated), round(0.20 * n))
    optin20 = sorted(rng.sample(eligible_dated, n20))
    eligible_tbd = [
        i
        for i in range(n)
        if not closed[i]
        and created[i] < FIRST_GRACE_START
        and plans[i] in ("startup", "enterprise")
    ]
    n100k = min(len(eligible_tbd), max(10, round(BASE_OPTIN * scale)))
    optin_tbd = sorted(rng.sample(eligible_tbd, n100k))
    (out / "optin_20pct.txt").write_text("".join(ids[i] + "\n" for i in optin20), encoding="utf-8")
    (out / "optin.txt").write_text("".join(ids[i] + "\n" for i in optin_tbd), encoding="utf-8")

    (out / "migrations.yaml").write_text(MIGRATIONS_YAML, encoding="utf-8")
    (out / "migctl.toml").write_text(CONFIG_TOML, encoding="utf-8")
    copy_templates(out / "email_templates")

    links = sum(len(a) for a in admins_of)
    used_admins = len({a for lst in admins_of for a in lst})
    per_admin_actual: dict[int, int] = {}
    for lst in admins_of:
        for a in lst:
            per_admin_actual[a] = per_admin_actual.get(a, 0) + 1
    meta: dict[str, Any] = {
        "seed": seed,
        "scale": scale,
        "accounts": n,
        "closed": sum(closed),
        "created_after_first_grace_start": sum(1 for d in created if d >= FIRST_GRACE_START),
        "plans": {p: plans.count(p) for p in plan_names},
        "links": links,
        "admins": used_admins,
        "admins_with_one_account": sum(1 for c in per_admin_actual.values() if c == 1),
        "max_accounts_per_admin": max(per_admin_actual.values()),
        "optin_20pct": {"migration": M_DATED, "accounts": len(optin20)},
        "optin": {"migration": M_TBD, "accounts": len(optin_tbd)},
        "now": NOW,
        "enforce_now": ENFORCE_NOW,
        "migrations": {"tbd": M_TBD, "dated": M_DATED, "per_plan": M_PER_PLAN},
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta


def copy_templates(dest: Path) -> None:
    """The shipped default templates, without the per-migration override folders (the shipped
    ones are for the example migrations, which the benchmark's definitions do not have)."""
    dest.mkdir(parents=True, exist_ok=True)
    for src in TEMPLATES.iterdir():
        if src.is_file():
            shutil.copyfile(src, dest / src.name)


def existing_meta(scale: float, out: Path, seed: int = SEED) -> dict[str, Any] | None:
    """The meta of data already in ``out`` for this scale and seed (it is deterministic)."""
    meta_file = out / "meta.json"
    if meta_file.exists():
        meta: dict[str, Any] = json.loads(meta_file.read_text(encoding="utf-8"))
        if meta.get("scale") == scale and meta.get("seed") == seed:
            return meta
    return None


DISPATCH_YAML = """\
defaults:
  timezone: UTC
migrations:
  - id: bench-dispatch
    title: Dispatch Benchmark
    severity: medium
    grace_period_start: 2024-05-01
    mandatory_opt_in: 2024-07-15
    summary: One announcement per administrator.
    description: Nothing to do; this migration exists to measure sending.
"""


def write_dispatch_data(out: Path, n: int) -> None:
    """``n`` accounts with one distinct administrator each: exactly ``n`` announcements due."""
    with (out / "accounts.csv").open("w", newline="", encoding="utf-8") as handle:
        w = csv.writer(handle)
        w.writerow(["id", "name", "plan", "tags", "created_at", "status", "admins"])
        for i in range(n):
            w.writerow(
                [
                    f"d-{i:06d}",
                    f"Dispatch {i}",
                    "startup",
                    "",
                    "2020-01-01",
                    "active",
                    f"owner{i}@d{i % 97}.example",
                ]
            )
    (out / "migrations.yaml").write_text(DISPATCH_YAML, encoding="utf-8")
    copy_templates(out / "email_templates")
    (out / "migctl.toml").write_text(dispatch_config("null", 200, 16), encoding="utf-8")


def dispatch_config(provider: str, rate: float, concurrency: int) -> str:
    return (
        'environment = "development"\nmigrations_file = "migrations.yaml"\n'
        'templates_dir = "email_templates"\n\n'
        f'[email]\nprovider = "{provider}"\nfrom = "Platform Notices <notices@platform.example>"\n'
        f"rate_per_second = {rate}\nconcurrency = {concurrency}\n\n"
        '[dashboard]\nurl = "https://dashboard.platform.example/migrations"\n\n'
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=0.01)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    meta = generate(args.scale, args.out, args.seed)
    print(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()
