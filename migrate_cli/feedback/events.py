"""Read the providers' delivery events (SES via SNS or raw, SendGrid) into one normalised shape."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from migrate_cli.accounts.reading import normalise_email
from migrate_cli.delivery.sendgrid import CUSTOM_ARG
from migrate_cli.delivery.ses import TAG_NAME
from migrate_cli.vocabulary import BounceType, DeliveryOutcome

SES = "ses"
SENDGRID = "sendgrid"

MAX_DETAIL = 500  # characters of the provider's diagnostic kept in the store
MAX_ID = 256  # an event id, tag value or message id longer than this is not a real one
MAX_EMAIL = 320  # RFC 5321's limit on an address
MAX_MESSAGE = 1_000_000  # an SNS `Message` larger than this is not an SES event (SES: < 256 KB)
MAX_RECIPIENTS = 100  # SES accepts at most 50 per message


class Malformed(Exception):
    """An item that cannot be read: which field and why (one line, no payload echoed)."""

    def __init__(self, field: str | None, message: str) -> None:
        self.field = field
        super().__init__(f"field {field!r}: {message}" if field else message)


@dataclass(frozen=True)
class DeliveryEvent:
    """One provider event about one recipient, with what can match it to a notice."""

    provider: str
    event_id: str  # the provider's id, or a hash of the event when it has none
    email: str  # the recipient, normalised like administrators' addresses
    outcome: DeliveryOutcome
    bounce_type: BounceType | None
    detail: str | None
    event_at: datetime
    notice_key: str | None = None  # SendGrid: our key, from custom_args
    tag_value: str | None = None  # SES: the `migctl-notice` tag's value
    provider_message_ids: tuple[str, ...] = ()  # candidates for outbox.provider_message_id
    message_id: str | None = None  # our Message-ID header, with angle brackets
    # The provider refused the message because it already knows the address cannot be reached
    # (SendGrid drops mail to addresses on its own bounce or spam-report lists): suppressed.
    known_bad: bool = False

    @property
    def key(self) -> str:
        """The idempotency key: one row per event and recipient, ever."""
        return f"{self.provider}:{self.event_id}:{self.email}"


@dataclass
class Item:
    """What one payload (or one element of a SendGrid list) held."""

    where: str  # "" or "[3]": the element of a list payload (1-based)
    events: list[DeliveryEvent]
    ignored: bool = False  # well-formed, of a kind migctl does not act on
    problem: str | None = None


def read_payload(payload: object) -> Iterator[Item]:
    """The items of one decoded JSON value: an SNS envelope, a raw SES event, a SendGrid event,
    or a list of SendGrid events. Never raises on bad input: a bad item carries a problem."""
    if isinstance(payload, list):
        for i, element in enumerate(payload, 1):
            yield _item(element, f"[{i}]")
    else:
        yield _item(payload, "")


def _item(value: object, where: str) -> Item:
    try:
        events = _parse(value)
    except Malformed as exc:
        return Item(where, [], problem=str(exc))
    except RecursionError:
        return Item(where, [], problem="nested too deeply")
    if events is None:
        return Item(where, [], ignored=True)
    return Item(where, events)


def _parse(value: object) -> list[DeliveryEvent] | None:
    if not isinstance(value, dict):
        raise Malformed(None, f"expected an event or an SNS envelope, got {_kind(value)}")
    obj: dict[str, Any] = value
    if "Type" in obj:
        return _sns(obj)
    if "eventType" in obj or "notificationType" in obj:
        return _ses(obj)
    if "event" in obj:
        return _sendgrid(obj)
    raise Malformed(None, "not an SNS envelope, an SES event nor a SendGrid event")


# --------------------------------------------------------------------------- Amazon SES

# SES event publishing (`eventType`) and identity notifications (`notificationType`) alike.
_SES_IGNORED = {"Send", "Open", "Click", "Rendering Failure", "Subscription", "Received"}
_SES_KINDS = {"Bounce", "Complaint", "Delivery", "DeliveryDelay", "Reject"}


def _sns(obj: dict[str, Any]) -> list[DeliveryEvent] | None:
    kind = _text(obj, "Type")
    if kind in ("SubscriptionConfirmation", "UnsubscribeConfirmation"):
        return None  # SNS's own messages: confirmed by the operator, not by migctl
    if kind != "Notification":
        raise Malformed("Type", f"unknown SNS message type {kind[:40]!r}")
    message = _text(obj, "Message", limit=MAX_MESSAGE)
    try:
        inner = json.loads(message)
    except ValueError:
        raise Malformed("Message", "not JSON (raw message delivery must be off)") from None
    try:
        return _ses(_object(inner, "Message"))
    except Malformed as exc:
        raise Malformed(f"Message.{exc.field}" if exc.field else "Message", _reason(exc)) from None


def _reason(exc: Malformed) -> str:
    text = str(exc)
    return text.split(": ", 1)[1] if exc.field else text


def _ses(event: dict[str, Any]) -> list[DeliveryEvent] | None:
    field = "eventType" if "eventType" in event else "notificationType"
    kind = _text(event, field)
    if kind in _SES_IGNORED:
        return None
    if kind not in _SES_KINDS:
        raise Malformed(field, f"unknown SES event type {kind[:40]!r}")
    mail = _object(event.get("mail"), "mail")
    body_name = {"DeliveryDelay": "deliveryDelay"}.get(kind, kind.lower())
    body = _object(event.get(body_name), body_name)
    bounce_type: BounceType | None = None
    recipients: list[tuple[str, str | None]]  # (address, its own detail)
    if kind == "Bounce":
        outcome = DeliveryOutcome.BOUNCED
        ses_type = _text(body, "bounceType", prefix="bounce")
        # Permanent: the address is bad. Transient and Undetermined may pass: soft.
        bounce_type = BounceType.HARD if ses_type == "Permanent" else BounceType.SOFT
        recipients = _ses_recipients(body, "bouncedRecipients", "bounce")
        general = _opt_text(body, "bounceSubType", "bounce")
        recipients = [(a, d or general) for a, d in recipients]
    elif kind == "Complaint":
        outcome = DeliveryOutcome.COMPLAINED
        recipients = _ses_recipients(body, "complainedRecipients", "complaint")
        what = _opt_text(body, "complaintFeedbackType", "complaint") or "complaint"
        recipients = [(a, what) for a, _ in recipients]
    elif kind == "Delivery":
        outcome = DeliveryOutcome.DELIVERED
        addresses = _list(body.get("recipients"), "delivery.recipients")
        detail = _opt_text(body, "smtpResponse", "delivery")
        recipients = [(_address(a, f"delivery.recipients[{i}]"), detail) for i, a in addresses]
    elif kind == "DeliveryDelay":
        outcome = DeliveryOutcome.DEFERRED
        recipients = _ses_recipients(body, "delayedRecipients", "deliveryDelay")
        delay = _opt_text(body, "delayType", "deliveryDelay")
        recipients = [(a, d or delay) for a, d in recipients]
    else:  # Reject: SES refused the whole message (e.g. a virus); no recipient-level detail
        outcome = DeliveryOutcome.REJECTED
        addresses = _list(mail.get("destination"), "mail.destination")
        detail = _opt_text(body, "reason", "reject")
        recipients = [(_address(a, f"mail.destination[{i}]"), detail) for i, a in addresses]
    stamp = body.get("timestamp", mail.get("timestamp"))
    event_at = _iso_time(stamp, f"{body_name}.timestamp")
    feedback_id = _opt_text(body, "feedbackId", body_name, limit=MAX_ID)
    event_id = feedback_id or _digest(event)
    tag = _tag(mail)
    provider_id = _opt_text(mail, "messageId", "mail", limit=MAX_ID)
    return [
        DeliveryEvent(
            provider=SES,
            event_id=event_id,
            email=address,
            outcome=outcome,
            bounce_type=bounce_type,
            detail=_detail(detail),
            event_at=event_at,
            tag_value=tag,
            provider_message_ids=(provider_id,) if provider_id else (),
            message_id=_header_message_id(mail),
        )
        for address, detail in _unique(recipients)
    ]


def _ses_recipients(body: dict[str, Any], name: str, prefix: str) -> list[tuple[str, str | None]]:
    out = []
    for i, entry in _list(body.get(name), f"{prefix}.{name}"):
        where = f"{prefix}.{name}[{i}]"
        obj = _object(entry, where)
        detail = _opt_text(obj, "diagnosticCode", where) or _opt_text(obj, "status", where)
        out.append((_address(obj.get("emailAddress"), f"{where}.emailAddress"), detail))
    if not out:
        raise Malformed(f"{prefix}.{name}", "no recipient")
    return out


def _tag(mail: dict[str, Any]) -> str | None:
    tags = mail.get("tags")
    if tags is None:
        return None  # identity notifications carry no tags
    tags = _object(tags, "mail.tags")
    values = tags.get(TAG_NAME)
    if values is None:
        return None
    items = _list(values, f"mail.tags.{TAG_NAME}")
    if not items or not isinstance(items[0][1], str) or len(items[0][1]) > MAX_ID:
        raise Malformed(f"mail.tags.{TAG_NAME}", "expected a list with one tag value")
    return str(items[0][1])


def _header_message_id(mail: dict[str, Any]) -> str | None:
    common = mail.get("commonHeaders")
    if isinstance(common, dict) and isinstance(common.get("messageId"), str):
        return _bracketed(common["messageId"])
    headers = mail.get("headers")
    if isinstance(headers, list):
        for h in headers[:200]:
            if (
                isinstance(h, dict)
                and isinstance(h.get("name"), str)
                and h["name"].lower() == "message-id"
                and isinstance(h.get("value"), str)
            ):
                return _bracketed(h["value"])
    return None


def _bracketed(value: str) -> str | None:
    inner = value.strip().strip("<>").strip()
    return f"<{inner}>" if inner and len(inner) <= MAX_ID else None


# --------------------------------------------------------------------------- SendGrid

_SENDGRID_IGNORED = {
    "processed",
    "open",
    "click",
    "unsubscribe",
    "group_unsubscribe",
    "group_resubscribe",
}


# The `reason` of a `dropped` event when SendGrid already knows the address is unreachable: a
# bounce or a spam report before (its own suppression lists), or an address it cannot send to.
# Others ("Unsubscribed Address", "Spam Content", ...) say nothing about the address for good.
_SENDGRID_DROPPED_FOR_GOOD = {"Bounced Address", "Spam Reporting Address", "Invalid"}


def _sendgrid(event: dict[str, Any]) -> list[DeliveryEvent] | None:
    kind = _text(event, "event")
    if kind in _SENDGRID_IGNORED or kind.startswith("group_"):
        return None
    bounce_type: BounceType | None = None
    detail = _opt_text(event, "reason", None) or _opt_text(event, "response", None)
    if kind == "delivered":
        outcome = DeliveryOutcome.DELIVERED
    elif kind == "deferred":
        outcome = DeliveryOutcome.DEFERRED
    elif kind == "bounce":
        outcome = DeliveryOutcome.BOUNCED
        # `type`: "bounce" is the receiving server's permanent refusal, "blocked" a temporary one.
        sg_type = _opt_text(event, "type", None) or "bounce"
        if sg_type not in ("bounce", "blocked"):
            raise Malformed("type", f"expected 'bounce' or 'blocked', got {sg_type[:40]!r}")
        bounce_type = BounceType.HARD if sg_type == "bounce" else BounceType.SOFT
        status = _opt_text(event, "status", None)
        if status and detail and status not in detail:
            detail = f"{status} {detail}"
    elif kind == "dropped":
        outcome = DeliveryOutcome.REJECTED
    elif kind == "spamreport":
        outcome = DeliveryOutcome.COMPLAINED
        detail = "spam report"
    else:
        raise Malformed("event", f"unknown SendGrid event {kind[:40]!r}")
    stamp = event.get("timestamp")
    if isinstance(stamp, bool) or not isinstance(stamp, int | float):
        raise Malformed("timestamp", "expected a Unix time in seconds")
    try:
        event_at = datetime.fromtimestamp(stamp, UTC)
    except (ValueError, OverflowError, OSError):
        raise Malformed("timestamp", "out of range") from None
    sg_message_id = _opt_text(event, "sg_message_id", None, limit=MAX_ID)
    return [
        DeliveryEvent(
            provider=SENDGRID,
            event_id=_opt_text(event, "sg_event_id", None, limit=MAX_ID) or _digest(event),
            email=_address(event.get("email"), "email"),
            outcome=outcome,
            bounce_type=bounce_type,
            detail=_detail(detail),
            event_at=event_at,
            notice_key=_opt_text(event, CUSTOM_ARG, None, limit=MAX_ID * 4),
            provider_message_ids=_prefixes(sg_message_id) if sg_message_id else (),
            known_bad=kind == "dropped" and detail in _SENDGRID_DROPPED_FOR_GOOD,
        )
    ]


def _prefixes(sg_message_id: str) -> tuple[str, ...]:
    """`sg_message_id` is the X-Message-Id the API returned plus `.filter…` parts: the
    candidates, longest first, are its prefixes at each dot."""
    parts = sg_message_id.split(".")[:20]
    return tuple(".".join(parts[:n]) for n in range(len(parts), 0, -1))


# --------------------------------------------------------------------------- checked access


def _object(value: object, field: str | None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Malformed(field, f"expected a JSON object, got {_kind(value)}")
    return value


def _list(value: object, field: str) -> list[tuple[int, Any]]:
    if not isinstance(value, list):
        raise Malformed(field, f"expected a list, got {_kind(value)}")
    if len(value) > MAX_RECIPIENTS:
        raise Malformed(field, f"more than {MAX_RECIPIENTS} entries")
    return list(enumerate(value))


def _text(obj: dict[str, Any], name: str, *, prefix: str | None = None, limit: int = 100) -> str:
    field = f"{prefix}.{name}" if prefix else name
    value = obj.get(name)
    if not isinstance(value, str) or not value:
        raise Malformed(field, f"expected a string, got {_kind(value)}")
    if len(value) > limit:
        raise Malformed(field, f"longer than {limit} characters")
    return value


def _opt_text(obj: dict[str, Any], name: str, prefix: str | None, limit: int = 0) -> str | None:
    value = obj.get(name)
    if value is None or value == "":
        return None
    field = f"{prefix}.{name}" if prefix else name
    if not isinstance(value, str):
        raise Malformed(field, f"expected a string, got {_kind(value)}")
    if limit and len(value) > limit:
        raise Malformed(field, f"longer than {limit} characters")
    return value


def _address(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise Malformed(field, f"expected an email address, got {_kind(value)}")
    if len(value) > MAX_EMAIL:
        raise Malformed(field, f"longer than {MAX_EMAIL} characters")
    try:
        return normalise_email(value)
    except ValueError as exc:
        raise Malformed(field, str(exc)) from None


def _iso_time(value: object, field: str) -> datetime:
    if not isinstance(value, str) or len(value) > 40:
        raise Malformed(field, f"expected an ISO 8601 instant, got {_kind(value)}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Malformed(field, f"not an ISO 8601 instant: {value!r}") from None
    if parsed.tzinfo is None:
        raise Malformed(field, "an instant without a timezone")
    return parsed.astimezone(UTC)


def _detail(text: str | None) -> str | None:
    """The provider's diagnostic as migctl keeps it: one line, `smtp; ` dropped, truncated."""
    if not text:
        return None
    line = " ".join(text.split())
    if line.lower().startswith("smtp;"):
        line = line[5:].strip()
    return line[:MAX_DETAIL] or None


def _digest(event: dict[str, Any]) -> str:
    """A stable id for an event the provider gave none: the same event hashes the same,
    whether it came in an SNS envelope or raw."""
    try:
        canonical = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError):
        raise Malformed(None, "cannot be hashed") from None
    return "sha256-" + hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _unique(recipients: list[tuple[str, str | None]]) -> list[tuple[str, str | None]]:
    seen: dict[str, str | None] = {}
    for address, detail in recipients:
        seen.setdefault(address, detail)
    return list(seen.items())


def _kind(value: object) -> str:
    if value is None:
        return "nothing"
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }.get(type(value), type(value).__name__)
