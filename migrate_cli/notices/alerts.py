"""Alerts for operators: one webhook POST (Slack / Mattermost incoming-webhook JSON) after a run."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from migrate_cli.config import Config
from migrate_cli.vocabulary import AlertEvent


def run_events(doc: dict[str, Any]) -> list[AlertEvent]:
    """The alertable events of one run, from its `run --json` document."""
    notices = doc.get("notices") or {}
    found = {
        AlertEvent.ENFORCED: any((doc.get("enforced") or {}).values()),
        AlertEvent.HELD: bool(doc.get("held")),  # present once a run reports held dates
        AlertEvent.FAILED: bool(notices.get("failed")),
        AlertEvent.IN_DOUBT: bool(notices.get("in_doubt")),
        AlertEvent.PROVIDER_STOPPED: bool(doc.get("error")),
        AlertEvent.FEEDBACK_FAILED: bool((doc.get("feedback") or {}).get("error")),
    }
    return [event for event, happened in found.items() if happened]


def payload(doc: dict[str, Any], events: list[AlertEvent], product: str) -> dict[str, Any]:
    """`text` for every client, plus one attachment of fields: what Slack and Mattermost
    incoming webhooks both accept."""
    notices = doc.get("notices") or {}
    enforced = doc.get("enforced") or {}
    fields = [
        {"title": "events", "value": ", ".join(events), "short": False},
        {
            "title": "enforced",
            "value": ", ".join(f"{m}: {n} account(s)" for m, n in enforced.items() if n) or "-",
            "short": False,
        },
    ]
    for key in ("planned", "sent", "failed", "in_doubt", "suppressed"):
        fields.append(
            {"title": key.replace("_", " "), "value": str(notices.get(key, 0)), "short": True}
        )
    if doc.get("error"):
        fields.append({"title": "stopped", "value": str(doc["error"]), "short": False})
    if (doc.get("feedback") or {}).get("error"):
        fields.append({"title": "feedback", "value": str(doc["feedback"]["error"]), "short": False})
    colour = (
        "danger" if {AlertEvent.FAILED, AlertEvent.PROVIDER_STOPPED} & set(events) else "warning"
    )
    return {
        "text": f"migctl run at {doc.get('now')} ({product}): {', '.join(events)}",
        "attachments": [{"fallback": ", ".join(events), "color": colour, "fields": fields}],
    }


def alert_after_run(config: Config, doc: dict[str, Any]) -> str | None:
    """POST one alert when the run had an event `[alerts] on` lists. Returns a warning to show
    when it could not be sent (the run's outcome never depends on it), else None. The URL is a
    secret: no message names it."""
    alerts = config.alerts
    if not alerts.webhook_url_env or doc.get("dry_run"):
        return None
    events = [e for e in run_events(doc) if e in alerts.on]
    if not events:
        return None
    url = config.secret(alerts.webhook_url_env)
    if not url:
        return f"alert not sent: {alerts.webhook_url_env} is not set"
    body = json.dumps(payload(doc, events, config.dashboard.product_name)).encode("utf-8")
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=alerts.timeout) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        return f"alert not sent: the webhook answered HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or type(exc).__name__
        return f"alert not sent: the webhook could not be reached ({_without(str(reason), url)})"
    return None


def _without(text: str, secret: str) -> str:
    return text.replace(secret, "<webhook>")
