"""The naive baseline: what an operator would write in an afternoon, run on a copy of the store.

    python -m bench.baseline --db COPY.db --migrations migrations.yaml --templates email_templates \\
        --now 2024-06-01 --enforce-now 2024-07-16 --sample 20000 --json-out baseline.json

Three phases, each timed on its own and reported per item:

* ``planning`` (compare: ``notify --dry-run``) — loop over the first ``--sample`` accounts in
  Python; per account and migration one query for its enrollment and one for its
  administrators; digests built in dicts; per administrator one query for the last notice and
  one for the suppression list. Item = account scanned.
* ``notify`` (compare: ``notify`` with the null provider) — the planning above, then for each
  of the first ``--notify-sample`` digests: a fresh ``Template`` compiled from the template text
  for subject, text and HTML (``Environment.from_string``; the shared layouts are compiled
  once by the loader), a "send" that does nothing, and one INSERT into the outbox with its own
  commit. Item = notice; the planning time is charged per notice in the same proportion.
* ``enforce`` (compare: ``enforce``) — loop over the sample accounts; per account one query for
  its enrollment and, if it is still pending in a due migration, one INSERT into enrollments,
  one INSERT into the audit log and a commit, and one query for its administrators; then one
  `enforced` notice per administrator (a suppression lookup, one INSERT into the outbox and a
  commit each), as migctl's `enforce` queues them in the same step. Item = account switched.

It reads the store's tables directly (the schema is migctl's) and knows nothing of migctl's code.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sqlite3
import time
from collections import defaultdict
from datetime import date
from pathlib import Path
from typing import Any

import jinja2
import yaml


def load_migrations(path: Path) -> list[dict[str, Any]]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    out = []
    for m in doc["migrations"]:
        mand = m.get("mandatory_opt_in")
        if isinstance(mand, dict):
            mand = {k: (None if str(v) == "TBD" else str(v)) for k, v in mand.items()}
        elif mand is not None and str(mand) != "TBD":
            mand = str(mand)
        else:
            mand = None
        out.append(
            {
                "id": m["id"],
                "title": m["title"],
                "severity": m["severity"],
                "summary": m.get("summary", ""),
                "description": m.get("description", ""),
                "docs_url": m.get("docs_url"),
                "grace_start": str(m["grace_period_start"]),
                "mandatory": mand,
                "plans": (m.get("applies_to") or {}).get("plans"),
            }
        )
    return out


def deadline_for(m: dict[str, Any], plan: str) -> str | None:
    if isinstance(m["mandatory"], dict):
        return m["mandatory"].get(plan)
    return m["mandatory"]


def plan(
    conn: sqlite3.Connection, migrations: list[dict[str, Any]], now: str, sample: int
) -> tuple[dict[tuple[str, str], list[dict[str, Any]]], int]:
    """Digests (migration, admin) -> pending accounts, built with one query per account."""
    digests: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    accounts = conn.execute(
        "SELECT id, name, plan, created_at, status FROM accounts ORDER BY id LIMIT ?", (sample,)
    ).fetchall()
    for acc_id, name, acc_plan, created_at, status in accounts:
        if status != "active":
            continue
        for m in migrations:
            if now < m["grace_start"]:
                continue
            if m["plans"] and acc_plan not in m["plans"]:
                continue
            if created_at[:10] >= m["grace_start"]:
                continue  # created after the grace period started: auto-enrolled
            deadline = deadline_for(m, acc_plan)
            if deadline and now >= deadline:
                continue  # past the date: enforcement's business
            row = conn.execute(
                "SELECT state FROM enrollments WHERE migration_id = ? AND account_id = ?",
                (m["id"], acc_id),
            ).fetchone()
            if row is not None:
                continue  # opted in or enforced
            for (email,) in conn.execute(
                "SELECT email FROM account_admins WHERE account_id = ?", (acc_id,)
            ).fetchall():
                digests[(m["id"], email)].append(
                    {"id": acc_id, "name": name, "plan": acc_plan, "deadline": deadline}
                )
    due: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for (mid, email), accs in digests.items():
        last = conn.execute(
            "SELECT max(created_at) FROM outbox WHERE migration_id = ? AND email = ?", (mid, email)
        ).fetchone()[0]
        suppressed = conn.execute("SELECT 1 FROM suppressions WHERE email = ?", (email,)).fetchone()
        if last is None and suppressed is None:
            due[(mid, email)] = accs  # announcement
    return due, len(accounts)


def notify(
    conn: sqlite3.Connection,
    migrations: list[dict[str, Any]],
    due: dict[tuple[str, str], list[dict[str, Any]]],
    templates: Path,
    now: str,
    limit: int,
) -> int:
    by_id = {m["id"]: m for m in migrations}
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates)), autoescape=False)
    env.filters["plural"] = lambda n, w: f"{n} {w}{'' if n == 1 else 's'}"
    html_env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates)), autoescape=True)
    html_env.filters["plural"] = env.filters["plural"]
    texts = {
        part: (templates / f"announcement{suffix}").read_text(encoding="utf-8")
        for part, suffix in (("subject", ".subject.txt"), ("text", ".txt"), ("html", ".html"))
    }
    done = 0
    for (mid, email), accs in due.items():
        if done >= limit:
            break
        m = by_id[mid]
        deadlines = sorted(a["deadline"] for a in accs if a["deadline"])
        context = {
            "product_name": "Platform",
            "dashboard_url": "https://dashboard.platform.example/migrations",
            "migration": {
                "id": m["id"],
                "title": m["title"],
                "severity": m["severity"],
                "severity_label": m["severity"].capitalize(),
                "summary": m["summary"],
                "docs_url": m["docs_url"],
                "grace_period_start": m["grace_start"],
            },
            "severity_color": "#9a5b00",
            "description_html": m["description"],
            "description_text": m["description"],
            "kind": "announcement",
            "admin_email": email,
            "deadline": deadlines[0] if deadlines else None,
            "days_left": (date.fromisoformat(deadlines[0]) - date.fromisoformat(now)).days
            if deadlines
            else None,
            "days_left_text": None,
            "accounts": accs[:100],
            "accounts_total": len(accs),
            "accounts_more": max(0, len(accs) - 100),
            "emergency": False,
            "reason": None,
            "today": now,
            "previous_deadline": None,
        }
        subject = env.from_string(texts["subject"]).render(context)
        text = env.from_string(texts["text"]).render(context)
        html = html_env.from_string(texts["html"]).render(context)
        _ = (subject, text, html)  # the null provider: sending costs nothing
        key = f"{mid}|{email}|announcement|announcement"
        conn.execute("BEGIN")
        conn.execute(
            "INSERT INTO outbox(key, migration_id, email, kind, slot, state, accounts, "
            "accounts_count, deadline, why, message_id, created_at, updated_at, sent_at, provider) "
            "VALUES (?, ?, ?, 'announcement', 'announcement', 'sent', ?, ?, ?, ?, ?, ?, ?, ?, 'null')",
            (
                key,
                mid,
                email,
                json.dumps([a["id"] for a in accs]),
                len(accs),
                deadlines[0] if deadlines else None,
                "grace period started",
                f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@platform.example>",
                now,
                now,
                now,
            ),
        )
        conn.execute("COMMIT")
        done += 1
    return done


def enforce(
    conn: sqlite3.Connection, migrations: list[dict[str, Any]], now: str, sample: int
) -> tuple[int, int, int]:
    """Switch the due accounts one by one, then queue one `enforced` notice per administrator
    (migctl's `enforce` queues them in the same step, so the baseline does the same work)."""
    switched = 0
    digests: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    accounts = conn.execute(
        "SELECT id, plan, created_at, status FROM accounts ORDER BY id LIMIT ?", (sample,)
    ).fetchall()
    for acc_id, acc_plan, created_at, status in accounts:
        if status != "active":
            continue
        for m in migrations:
            deadline = deadline_for(m, acc_plan)
            if deadline is None or now < deadline:
                continue
            if m["plans"] and acc_plan not in m["plans"]:
                continue
            if created_at[:10] >= m["grace_start"]:
                continue
            row = conn.execute(
                "SELECT state FROM enrollments WHERE migration_id = ? AND account_id = ?",
                (m["id"], acc_id),
            ).fetchone()
            if row is not None:
                continue
            conn.execute("BEGIN")
            conn.execute(
                "INSERT INTO enrollments(migration_id, account_id, state, changed_at, actor, batch) "
                "VALUES (?, ?, 'enforced', ?, 'baseline', ?)",
                (m["id"], acc_id, now, f"enforced-*-{deadline}"),
            )
            conn.execute(
                "INSERT INTO audit(at, actor, action, migration_id, account_id) "
                "VALUES (?, 'baseline', 'enrollment.enforced', ?, ?)",
                (now, m["id"], acc_id),
            )
            conn.execute("COMMIT")
            for (email,) in conn.execute(
                "SELECT email FROM account_admins WHERE account_id = ?", (acc_id,)
            ).fetchall():
                digests[(m["id"], email, deadline)].append(acc_id)
            switched += 1
    queued = 0
    for (mid, email, deadline), ids in digests.items():
        suppressed = conn.execute("SELECT 1 FROM suppressions WHERE email = ?", (email,)).fetchone()
        key = f"{mid}|{email}|enforced|enforced-*-{deadline}"
        conn.execute("BEGIN")
        conn.execute(
            "INSERT INTO outbox(key, migration_id, email, kind, slot, state, accounts, "
            "accounts_count, deadline, why, message_id, created_at, updated_at) "
            "VALUES (?, ?, ?, 'enforced', ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO NOTHING",
            (
                key,
                mid,
                email,
                f"enforced-*-{deadline}",
                "suppressed" if suppressed else "pending",
                json.dumps(sorted(ids)),
                len(ids),
                deadline,
                f"the mandatory date passed; {len(ids)} account(s) switched",
                f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@platform.example>",
                now,
                now,
            ),
        )
        conn.execute("COMMIT")
        queued += 1
    return switched, len(accounts), queued


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Naive baseline for the migctl benchmark.")
    p.add_argument("--db", type=Path, required=True, help="a copy of the store (it is written)")
    p.add_argument("--migrations", type=Path, required=True)
    p.add_argument("--templates", type=Path, required=True)
    p.add_argument("--now", required=True)
    p.add_argument("--enforce-now", required=True)
    p.add_argument("--sample", type=int, default=20_000)
    p.add_argument("--notify-sample", type=int, default=2_000)
    p.add_argument("--json-out", type=Path, required=True)
    args = p.parse_args(argv)

    conn = sqlite3.connect(str(args.db), isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    migrations = load_migrations(args.migrations)

    t0, c0 = time.perf_counter(), time.process_time()
    due, scanned = plan(conn, migrations, args.now, args.sample)
    t_plan, c_plan = time.perf_counter() - t0, time.process_time() - c0

    t0, c0 = time.perf_counter(), time.process_time()
    sent = notify(conn, migrations, due, args.templates, args.now, args.notify_sample)
    t_send, c_send = time.perf_counter() - t0, time.process_time() - c0
    # Per notice: this phase's time plus the planning time's share of the notices sent.
    share = (sent / len(due)) if due else 0.0

    t0, c0 = time.perf_counter(), time.process_time()
    switched, enf_scanned, enf_queued = enforce(conn, migrations, args.enforce_now, args.sample)
    t_enf, c_enf = time.perf_counter() - t0, time.process_time() - c0

    doc = {
        "planning": {
            "seconds": t_plan,
            "cpu_s": c_plan,
            "items": scanned,
            "note": f"{scanned:,} accounts -> {len(due):,} notices",
        },
        "notify": {
            "seconds": t_send + t_plan * share,
            "cpu_s": c_send + c_plan * share,
            "items": sent,
            "note": f"{sent:,} notices rendered + recorded ({t_send:.2f} s) + planning share",
        },
        "enforce": {
            "seconds": t_enf,
            "cpu_s": c_enf,
            "items": switched,
            "note": (
                f"{enf_scanned:,} accounts scanned, {switched:,} switched, "
                f"{enf_queued:,} enforced notices written (pending or suppressed)"
            ),
        },
    }
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
