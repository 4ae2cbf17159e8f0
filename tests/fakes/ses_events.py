"""SES event records as SES event publishing sends them to SNS (shaped like AWS's documented
examples: "Examples of event data that Amazon SES publishes to Amazon SNS")."""

from __future__ import annotations

from typing import Any

from migrate_cli.delivery.ses import TAG_NAME, ses_tag_value

CONFIGURATION_SET = "migctl-notices"
SENDER = "notices@platform.example"


def mail(*, message_id: str, to: str, key: str | None, sent: str) -> dict[str, Any]:
    """The ``mail`` object every event record carries (tags only through a configuration set)."""
    tags: dict[str, list[str]] = {
        "ses:configuration-set": [CONFIGURATION_SET],
        "ses:source-ip": ["192.0.2.0"],
        "ses:from-domain": ["platform.example"],
        "ses:caller-identity": ["migctl"],
    }
    if key is not None:
        tags[TAG_NAME] = [ses_tag_value(key)]
    return {
        "timestamp": sent,
        "source": f"Platform Notices <{SENDER}>",
        "sourceArn": f"arn:aws:ses:us-east-1:123456789012:identity/{SENDER}",
        "sendingAccountId": "123456789012",
        "messageId": message_id,
        "destination": [to],
        "headersTruncated": False,
        "headers": [
            {"name": "From", "value": f"Platform Notices <{SENDER}>"},
            {"name": "To", "value": to},
            {"name": "Subject", "value": "Action required"},
            {"name": "MIME-Version", "value": "1.0"},
        ],
        "commonHeaders": {
            "from": [f"Platform Notices <{SENDER}>"],
            "to": [to],
            "messageId": message_id,
            "subject": "Action required",
        },
        "tags": tags,
    }


def bounce(
    *, message_id: str, to: str, key: str | None, at: str = "2016-04-04T12:01:02.669Z"
) -> dict[str, Any]:
    """A hard bounce (``bounceType: Permanent``)."""
    return {
        "eventType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [
                {
                    "emailAddress": to,
                    "action": "failed",
                    "status": "5.1.1",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                }
            ],
            "timestamp": at,
            "feedbackId": f"0100015bounce-{message_id}-000000",
            "reportingMTA": "dsn; mta.example.com",
        },
        "mail": mail(message_id=message_id, to=to, key=key, sent="2016-04-04T12:00:02.012Z"),
    }


def complaint(
    *, message_id: str, to: str, key: str | None, at: str = "2016-04-04T12:05:00.000Z"
) -> dict[str, Any]:
    return {
        "eventType": "Complaint",
        "complaint": {
            "feedbackId": f"0100015complaint-{message_id}-000000",
            "complaintSubType": None,
            "complainedRecipients": [{"emailAddress": to}],
            "timestamp": at,
            "userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
            "complaintFeedbackType": "abuse",
            "arrivalDate": at,
        },
        "mail": mail(message_id=message_id, to=to, key=key, sent="2016-04-04T12:00:02.012Z"),
    }


def delivery(
    *, message_id: str, to: str, key: str | None, at: str = "2016-04-04T12:00:03.000Z"
) -> dict[str, Any]:
    return {
        "eventType": "Delivery",
        "mail": mail(message_id=message_id, to=to, key=key, sent="2016-04-04T12:00:02.012Z"),
        "delivery": {
            "timestamp": at,
            "processingTimeMillis": 1003,
            "recipients": [to],
            "smtpResponse": "250 2.6.0 Message received",
            "reportingMTA": "mta-out.example.com",
        },
    }


def identity_notification(event: dict[str, Any]) -> dict[str, Any]:
    """The same event as an identity's feedback notification sends it (no configuration set):
    ``notificationType`` instead of ``eventType``, and no tags."""
    notification = {k: v for k, v in event.items() if k != "eventType"}
    notification = {"notificationType": event["eventType"], **notification}
    notification["mail"] = {k: v for k, v in event["mail"].items() if k != "tags"}
    return notification
