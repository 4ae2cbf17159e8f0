"""Delivery events shaped like the providers' documented examples, for the feedback tests.

SES: "Examples of event data that Amazon SES publishes to Amazon SNS" (event publishing,
`eventType`) and "Amazon SNS notification examples for Amazon SES" (identity notifications,
`notificationType`), both in the SES Developer Guide; the SNS envelope is SNS's HTTP/SQS
notification JSON. SendGrid: the "Event Webhook Reference" example batch. Only the fields a
test needs to vary are parameters; everything else is as documented.
"""

from __future__ import annotations

import json
from typing import Any

from migrate_cli.delivery.ses import ses_tag_value


def ses_mail(
    to: str,
    *,
    message_id: str = "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000",
    header_message_id: str | None = None,
    notice_key: str | None = None,
    timestamp: str = "2016-04-20T10:00:00.000Z",
) -> dict[str, Any]:
    """The `mail` object of an SES event; ``notice_key``: tagged as delivery/ses.py tags."""
    mail: dict[str, Any] = {
        "timestamp": timestamp,
        "source": "Sender Name <sender@example.com>",
        "sourceArn": "arn:aws:ses:us-east-1:123456789012:identity/sender@example.com",
        "sendingAccountId": "123456789012",
        "messageId": message_id,
        "destination": [to],
        "headersTruncated": False,
        "headers": [
            {"name": "From", "value": "Sender Name <sender@example.com>"},
            {"name": "To", "value": to},
            {"name": "Subject", "value": "Message sent from Amazon SES"},
            {"name": "MIME-Version", "value": "1.0"},
            {"name": "Content-Type", "value": 'multipart/alternative; boundary="----=_Part_7307"'},
        ],
        "commonHeaders": {
            "from": ["Sender Name <sender@example.com>"],
            "to": [to],
            "messageId": message_id,
            "subject": "Message sent from Amazon SES",
        },
    }
    if header_message_id is not None:
        mail["headers"].append({"name": "Message-ID", "value": header_message_id})
        mail["commonHeaders"]["messageId"] = header_message_id
    if notice_key is not None:
        mail["tags"] = {
            "ses:configuration-set": ["ConfigSet"],
            "ses:source-ip": ["192.0.2.0"],
            "ses:from-domain": ["example.com"],
            "ses:caller-identity": ["ses_user"],
            "migctl-notice": [ses_tag_value(notice_key)],
        }
    return mail


def ses_bounce(
    mail: dict[str, Any],
    recipients: list[str],
    *,
    bounce_type: str = "Permanent",
    feedback_id: str = "01000157c44f053b-61b59c11-9236-11e6-8f96-7be8aexample-000000",
    timestamp: str = "2016-04-20T10:01:02.669Z",
    diagnostic: str = "smtp; 550 5.1.1 user unknown",
    notification: bool = False,
) -> dict[str, Any]:
    """An SES Bounce: event publishing (`eventType`) or an identity notification."""
    return {
        ("notificationType" if notification else "eventType"): "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": "General",
            "bouncedRecipients": [
                {
                    "emailAddress": r,
                    "action": "failed",
                    "status": "5.1.1",
                    "diagnosticCode": diagnostic,
                }
                for r in recipients
            ],
            "timestamp": timestamp,
            "feedbackId": feedback_id,
            "reportingMTA": "dsn; mta.example.com",
        },
        "mail": mail,
    }


def ses_complaint(
    mail: dict[str, Any],
    recipient: str,
    *,
    notification: bool = False,
    feedback_id: str = "01000157c44f053b-61b59c11-9236-11e6-8f96-7be8aexample-000001",
    timestamp: str = "2016-04-20T10:05:02.669Z",
) -> dict[str, Any]:
    return {
        ("notificationType" if notification else "eventType"): "Complaint",
        "complaint": {
            "feedbackId": feedback_id,
            "complaintSubType": None,
            "complainedRecipients": [{"emailAddress": recipient}],
            "timestamp": timestamp,
            "userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36",
            "complaintFeedbackType": "abuse",
            "arrivalDate": timestamp,
        },
        "mail": mail,
    }


def ses_delivery(
    mail: dict[str, Any], recipient: str, *, timestamp: str = "2016-04-20T10:00:02.000Z"
) -> dict[str, Any]:
    return {
        "eventType": "Delivery",
        "mail": mail,
        "delivery": {
            "timestamp": timestamp,
            "processingTimeMillis": 546,
            "recipients": [recipient],
            "smtpResponse": "250 2.6.0 Message received",
            "reportingMTA": "mta-70.us-east-1.amazonses.com",
        },
    }


def ses_delay(
    mail: dict[str, Any], recipient: str, *, timestamp: str = "2016-04-20T10:25:40.095Z"
) -> dict[str, Any]:
    return {
        "eventType": "DeliveryDelay",
        "mail": mail,
        "deliveryDelay": {
            "timestamp": timestamp,
            "delayType": "TransientCommunicationFailure",
            "expirationTime": "2016-04-21T10:25:40.914Z",
            "delayedRecipients": [
                {
                    "emailAddress": recipient,
                    "status": "4.4.1",
                    "diagnosticCode": "smtp; 421 4.4.1 Unable to connect to remote host",
                }
            ],
        },
    }


def ses_reject(mail: dict[str, Any]) -> dict[str, Any]:
    return {"eventType": "Reject", "mail": mail, "reject": {"reason": "Bad content"}}


def sns(message: dict[str, Any], *, message_id: str = "a1b2c3d4-0000-5555-9999-0123456789ab"):
    """The SNS envelope SQS receives with raw message delivery off (`Message`: a string)."""
    return {
        "Type": "Notification",
        "MessageId": message_id,
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:ses-events",
        "Subject": "Amazon SES Email Event Notification",
        "Message": json.dumps(message),
        "Timestamp": "2016-04-20T10:01:03.000Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLEpH+..",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000.pem",
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&Subscripti..",
    }


def sendgrid(
    event: str,
    email: str,
    *,
    key: str | None = None,
    sg_message_id: str = "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
    sg_event_id: str = "2FeCcG5VRWpck6mKqRgnDg==",
    timestamp: int = 1461146461,  # 2016-04-20T10:01:01Z
    **extra: Any,
) -> dict[str, Any]:
    """One SendGrid Event Webhook event; ``key``: the custom arg delivery/sendgrid.py sets
    (custom_args arrive as top-level fields)."""
    out: dict[str, Any] = {
        "email": email,
        "timestamp": timestamp,
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "event": event,
        "category": "cat facts",
        "sg_event_id": sg_event_id,
        "sg_message_id": sg_message_id,
    }
    if key is not None:
        out["migctl_notice"] = key
    out.update(extra)
    return out
