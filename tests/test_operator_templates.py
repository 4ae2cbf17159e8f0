"""Every notice is rendered in full: an operator's template that branches on values is exact.

An operator's override template may branch on names, plans and counts. A renderer that reused
one notice's output for the next (the old shape cache) got such templates wrong. Here 200
administrators in the operator's own folder get their announcement through `migctl notify` and
the `file` provider; each .eml is compared with a full render of that administrator's notice.
"""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime
from pathlib import Path

from migrate_cli.config import load_config
from migrate_cli.definitions.model import load_definitions
from migrate_cli.notices.render import AccountRef, NoticeContext, Renderer
from migrate_cli.timeutil import days_until
from tests.conftest import REPO_ROOT
from tests.helpers_notices import account, emls, parse_eml, parts, write_csv

YAML = """\
defaults:
  timezone: UTC
migrations:
  - id: token-rotation
    title: Token Rotation
    severity: high
    grace_period_start: 2016-04-04
    mandatory_opt_in: 2016-05-11
    summary: Tokens rotate every 90 days.
    description: "Rotate your **tokens**."
"""

CONFIG = """\
environment = "development"
templates_dir = "my_templates"

[email]
provider = "file"
from = "Platform <notices@platform.example>"

[email.file]
directory = "sent"
"""

SUBJECT = (
    "{% if accounts_total > 2 %}[{{ accounts_total }} accounts] {% endif %}{{ migration.title }}"
    '{% if accounts and accounts[0].name.startswith("B") %} for {{ accounts[0].name }}{% endif %}\n'
)
TEXT = """\
{% extends "layout.txt" %}
{% block intro %}
{% for a in accounts %}{% if a.name.startswith("B") %}* {{ a.name|upper }} ({{ a.plan }})
{% elif a.plan == "enterprise" %}- {{ a.name }}: your account manager will call
{% else %}- {{ a.name|lower }} on {{ a.plan|title }}
{% endif %}{% endfor %}{{ "several accounts" if accounts_total > 1 else "one account" }}
{% endblock %}
"""
HTML = """\
{% extends "layout.html" %}
{% block intro %}<ul>{% for a in accounts %}<li>{% if a.plan == "free" %}<b>{{ a.name }}</b>
{% else %}<i>{{ a.name }}</i> ({{ loop.index }} of {{ accounts|length }}){% endif %}</li>
{% endfor %}</ul>{% endblock %}
"""

NAMES = ["Bravo", "alpha", "Beta Co", "Zulu & Sons", "Échelle", "B", "<b>tag</b>", "Ops"]
PLANS = ["free", "developer", "enterprise"]


def test_200_notices_through_a_branching_operator_template_equal_full_renders(
    runner,  # type: ignore[no-untyped-def]
) -> None:
    templates = Path("my_templates")
    shutil.copytree(REPO_ROOT / "email_templates", templates)
    override = templates / "token-rotation"
    override.mkdir()
    (override / "announcement.subject.txt").write_text(SUBJECT)
    (override / "announcement.txt").write_text(TEXT)
    (override / "announcement.html").write_text(HTML)
    Path("migrations.yaml").write_text(YAML)
    Path("migctl.toml").write_text(CONFIG)
    rows = []
    for i in range(300):  # admin k has account k, maybe k + 200, and some of k - 1's: 1 to 4
        admins = [f"admin{i % 200:03d}@x.test"]
        if i % 3 == 0:
            admins.append(f"admin{(i + 1) % 200:03d}@x.test")
        name = f"{NAMES[i % len(NAMES)]} {i}" if i % 3 else NAMES[i % len(NAMES)]
        rows.append(account(f"acc-{i:03d}", admins, plan=PLANS[i % 3], name=name))
    write_csv(Path("accounts.csv"), rows)

    checked = runner("validate")
    assert checked.exit_code == 0, checked.output
    assert runner("sync").exit_code == 0
    assert runner("accounts", "import", "accounts.csv").exit_code == 0
    result = runner("--now", "2016-04-05", "notify", "--json")
    assert result.exit_code == 0, result.output

    sent = emls(Path("sent"))
    assert len(sent) == 200
    by_id = {r["id"]: r for r in rows}
    migration = load_definitions(Path("migrations.yaml")).migrations[0]
    config = load_config(Path("migctl.toml"), explicit=True)
    renderer = Renderer(templates, config.dashboard.url, product_name=config.dashboard.product_name)
    now = datetime(2016, 4, 5, tzinfo=UTC)
    branches = set()
    for path in sent:
        msg = parse_eml(path)
        admin = str(msg["To"])
        mine = sorted(i for i, r in by_id.items() if admin in r["admins"].split(";"))
        context = NoticeContext(
            migration=migration,
            kind="announcement",
            admin_email=admin,
            deadline=date(2016, 5, 11),
            days_left=days_until(date(2016, 5, 11), now, UTC),
            accounts=[AccountRef(i, by_id[i]["name"], by_id[i]["plan"]) for i in mine],
            accounts_total=len(mine),
            today=date(2016, 4, 5),
        )
        expected = renderer.render("announcement", context)
        body = parts(msg)
        assert str(msg["Subject"]) == expected.subject
        assert body["plain"].rstrip("\n") == expected.text.rstrip("\n")
        assert body["html"].rstrip("\n") == expected.html.rstrip("\n")
        branches.add((expected.subject.startswith("["), " for B" in expected.subject))
    # The sample really exercises the branches (else the comparison would prove little).
    assert branches == {(True, True), (True, False), (False, True), (False, False)}
