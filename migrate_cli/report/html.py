"""The adoption report as one self-contained HTML file: pygal charts inlined as SVG, no network."""

from __future__ import annotations

from typing import Any

import pygal
from jinja2 import Environment
from markupsafe import Markup
from pygal.style import Style

STATE_COLOURS = {
    "pending": "#d9822b",
    "opted_in": "#2b8a3e",
    "auto_enrolled": "#74b816",
    "enforced": "#5f3dc4",
}
NOTICE_COLOURS = ("#868e96", "#339af0", "#2b8a3e", "#e03131", "#f08c00", "#495057")


def _chart_config(colours: tuple[str, ...]) -> dict[str, Any]:
    return {
        # No script: pygal's tooltips load from the network, and the report must work offline.
        "js": [],
        "disable_xml_declaration": True,
        "explicit_size": True,
        "width": 900,
        "height": 360,
        "style": Style(colors=colours, background="white", plot_background="white"),
        "legend_at_bottom": True,
        "print_values": False,
    }


def _svg(chart: Any) -> Markup:
    return Markup(chart.render(is_unicode=True))


def adoption_chart(m: dict[str, Any]) -> Markup | None:
    a = m["adoption"]
    if not a["days"]:
        return None
    chart = pygal.StackedLine(
        fill=True,
        show_dots=False,
        include_x_axis=True,  # stacked counts read from zero
        x_label_rotation=30,
        show_minor_x_labels=False,
        title="Accounts per state, by day since the grace start",
        **_chart_config(tuple(STATE_COLOURS.values())),
    )
    chart.x_labels = a["days"]
    # The milestones are the labelled days of the time axis (each with its guide line).
    marked = sorted({x["date"] for x in m["milestones"]} & set(a["days"]) | {a["days"][-1]})
    chart.x_labels_major = marked
    for state in STATE_COLOURS:
        chart.add(state, a[state])
    return _svg(chart)


def plans_chart(m: dict[str, Any]) -> Markup | None:
    if not m["by_plan"]:
        return None
    chart = pygal.HorizontalBar(
        title="Migrated share per plan (%)",
        range=(0, 100),
        **_chart_config(("#2b8a3e",)),
    )
    chart.x_labels = [p["plan"] for p in m["by_plan"]]
    chart.add(
        "migrated %",
        [round(100 * (p["migrated_share"] or 0), 1) for p in m["by_plan"]],
    )
    return _svg(chart)


def notices_chart(m: dict[str, Any]) -> Markup | None:
    kinds = list(m["notices"])
    states = list(next(iter(m["notices"].values()), {}))
    if not kinds or not any(sum(v.values()) for v in m["notices"].values()):
        return None
    chart = pygal.StackedBar(title="Notices per kind and state", **_chart_config(NOTICE_COLOURS))
    chart.x_labels = kinds
    for state in states:
        chart.add(state, [m["notices"][k][state] for k in kinds])
    return _svg(chart)


DELIVERY_COLOURS = ("#2b8a3e", "#f08c00", "#e03131", "#c2255c", "#868e96")
DELIVERY_BARS = ("delivered", "deferred", "bounced", "complained", "rejected")


def delivery_chart(m: dict[str, Any]) -> Markup | None:
    d = m["delivery"]
    if not any(d[key] for key in DELIVERY_BARS):
        return None  # no feedback yet (or none wired): the table says so
    chart = pygal.Bar(
        title=f"Provider feedback on the {d['sent']} notices sent",
        **{**_chart_config(DELIVERY_COLOURS), "height": 260},
    )
    chart.x_labels = ["notices"]
    for key in DELIVERY_BARS:
        chart.add(key, [d[key]])
    return _svg(chart)


TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>migctl adoption report — {{ doc.now }}</title>
<style>
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 960px; color: #212529; }
h1 { font-size: 1.6em; } h2 { margin-top: 2.2em; border-bottom: 2px solid #dee2e6; }
table { border-collapse: collapse; margin: .6em 0 1.2em; }
th, td { border: 1px solid #dee2e6; padding: .25em .6em; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
figure.chart { margin: 1em 0; } figure.chart svg { max-width: 100%; height: auto; }
.phase, .severity { font-weight: bold; } .muted { color: #868e96; }
</style></head><body>
<h1>Adoption report</h1>
<p class="muted">As of {{ doc.now }} ({{ doc.timezone }}). Outbox:
{% for state, n in doc.outbox.items() %}{{ state }} {{ n }}{% if not loop.last %}, {% endif %}{% endfor %}.</p>
{% if doc.accounts_all_admins_suppressed %}<p class="unreachable"><strong>{{ doc.accounts_all_admins_suppressed }} active account(s) have every administrator suppressed</strong> (bounced, complained or removed by hand): nobody is told about them. {{ doc.unreachable_accounts|join(", ") }}{% if doc.accounts_all_admins_suppressed > doc.unreachable_accounts|length %}, …{% endif %}</p>{% endif %}
{% for m in doc.migrations %}
<section class="migration" id="{{ m.id }}">
<h2>{{ m.title }} <span class="muted">({{ m.id }})</span></h2>
<table>
<tr><th>Severity</th><td class="severity">{{ m.severity }}</td></tr>
<tr><th>Phase</th><td class="phase">{{ m.phase }}</td></tr>
<tr><th>Grace period start</th><td>{{ m.grace_period_start }}</td></tr>
<tr><th>Mandatory date</th><td>{% if m.mandatory_opt_in is mapping %}{% for plan, d in m.mandatory_opt_in.items() %}{{ plan }}: {{ d }}{% if not loop.last %}; {% endif %}{% endfor %}{% else %}{{ m.mandatory_opt_in or "TBD" }}{% endif %}</td></tr>
<tr><th>Days left</th><td>{{ m.days_left if m.days_left is not none else "-" }}</td></tr>
{% if m.holds %}<tr><th>Holds</th><td>{{ m.holds }}</td></tr>{% endif %}
<tr><th>Accounts</th><td>{% for s, n in m.accounts.items() %}{{ s }} {{ n }}{% if not loop.last %}, {% endif %}{% endfor %}; administrators with pending accounts: {{ m.admins_pending }}</td></tr>
</table>
<h3>Adoption over time</h3>
{% if charts[m.id].adoption %}<figure class="chart">{{ charts[m.id].adoption }}</figure>{% else %}<p>The grace period has not started.</p>{% endif %}
<table><tr><th>Milestone</th><th>Date</th></tr>
{% for x in m.milestones %}<tr><td>{{ x.what }}</td><td>{{ x.date }}</td></tr>{% endfor %}</table>
<h3>Per plan</h3>
{% if charts[m.id].plans %}<figure class="chart">{{ charts[m.id].plans }}</figure>{% endif %}
<table><tr><th>Plan</th><th>Accounts</th><th>Pending</th><th>Opted in</th><th>Auto-enrolled</th><th>Enforced</th><th>Migrated</th></tr>
{% for p in m.by_plan %}<tr><td>{{ p.plan }}</td><td class="n">{{ p.total }}</td><td class="n">{{ p.pending }}</td><td class="n">{{ p.opted_in }}</td><td class="n">{{ p.auto_enrolled }}</td><td class="n">{{ p.enforced }}</td><td class="n">{{ "%.1f" % (100 * (p.migrated_share or 0)) }}%</td></tr>{% endfor %}</table>
<h3>Notices</h3>
{% if charts[m.id].notices %}<figure class="chart">{{ charts[m.id].notices }}</figure>{% else %}<p>No notices yet.</p>{% endif %}
<table><tr><th>Kind</th>{% for s in states %}<th>{{ s }}</th>{% endfor %}</tr>
{% for kind, by_state in m.notices.items() %}<tr><td>{{ kind }}</td>{% for s in states %}<td class="n">{{ by_state[s] }}</td>{% endfor %}</tr>{% endfor %}</table>
<h3>Delivery</h3>
{% if m.delivery.sent %}{% if charts[m.id].delivery %}<figure class="chart">{{ charts[m.id].delivery }}</figure>{% endif %}
<table class="delivery"><tr><th>Sent</th><th>Delivered</th><th>Bounced (hard / soft)</th><th>Complained</th><th>Rejected</th></tr>
{% set d = m.delivery %}<tr><td class="n">{{ d.sent }}</td>{% for k in ("delivered", "bounced", "complained", "rejected") %}<td class="n">{{ d[k] }}{% if k == "bounced" %} ({{ d.bounced_hard }} / {{ d.bounced_soft }}){% endif %} — {{ "%.1f" % (100 * d.rates[k]) }}%</td>{% endfor %}</tr></table>
{% else %}<p>No notices sent yet.</p>{% endif %}
<h3>The {{ m.top_admins|length }} administrators with the most pending accounts</h3>
<table><tr><th>Administrator</th><th>Pending accounts</th></tr>
{% for a in m.top_admins %}<tr><td>{{ a.email }}</td><td class="n">{{ a.pending }}</td></tr>{% endfor %}</table>
<h3>What cron will do in the next 14 days</h3>
<table><tr><th>Day</th><th>Notices</th><th>Enforced accounts</th></tr>
{% for d in m.next_days %}<tr><td>{{ d.date }}</td><td>{% for k, n in d.notices.items() %}{{ k }} {{ n }}{% if not loop.last %}, {% endif %}{% else %}-{% endfor %}</td><td class="n">{{ d.enforced or "-" }}</td></tr>{% endfor %}</table>
</section>
{% else %}<p>No active migrations in the store.</p>{% endfor %}
</body></html>
"""


def render_html(doc: dict[str, Any]) -> str:
    """The report's HTML: every chart an inline SVG, every text escaped."""
    charts = {
        m["id"]: {
            "adoption": adoption_chart(m),
            "plans": plans_chart(m),
            "notices": notices_chart(m),
            "delivery": delivery_chart(m),
        }
        for m in doc["migrations"]
    }
    states = list(next(iter(doc["migrations"][0]["notices"].values()))) if doc["migrations"] else []
    env = Environment(autoescape=True, keep_trailing_newline=True)
    return env.from_string(TEMPLATE).render(doc=doc, charts=charts, states=states)
