"""feedback pull: Amazon SES events from the SQS queue their SNS topic feeds, recorded, then deleted."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    PartialCredentialsError,
)

from migrate_cli.config import Config

# Importing the SES provider also redacts botocore's debug log (credentials never reach a log).
from migrate_cli.delivery.ses import CREDENTIAL_CODES
from migrate_cli.errors import ConfigError, MigctlError

# One reading of "is this JSON" for a file's lines and a queue's bodies (same wording).
from migrate_cli.feedback.importing import NotJson, decode_json
from migrate_cli.feedback.record import FeedbackSummary, record_batch
from migrate_cli.progress import NO_PROGRESS, Progress
from migrate_cli.store.db import Store

BATCH = 10  # SQS's own maximum per ReceiveMessage and per DeleteMessageBatch

# What the operator has to do, per error code (the query-compatible name and the JSON one).
MISSING_QUEUE_CODES = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}
BAD_URL_CODES = {"InvalidAddress", "AWS.SimpleQueueService.InvalidAddress"}
# An encrypted queue whose KMS key these credentials may not use (or that is disabled).
KMS_CODES = {
    "KmsAccessDenied",
    "KmsDisabled",
    "KmsNotFound",
    "KmsInvalidState",
    "KmsInvalidKeyUsage",
}


class QueueUnavailableError(MigctlError):
    """The queue could not be read or acknowledged just now (throttling, 5xx, the network).

    Nothing is lost: an event is deleted from the queue only after its batch was recorded, and
    a batch recorded twice changes nothing."""


@dataclass
class PullSummary(FeedbackSummary):
    """A `feedback pull`: the events' summary plus what happened to the SQS messages."""

    queue_url: str = ""
    messages: int = 0  # SQS messages received
    deleted: int = 0  # recorded and deleted from the queue
    not_deleted: int = 0  # recorded, but SQS refused the delete: they come back as duplicates
    delete_errors: list[str] = field(default_factory=list)  # one line per refused delete
    stopped_by: str = ""  # "empty", "max_seconds" or "stop" (Ctrl-C, SIGTERM)

    def to_json(self) -> dict[str, object]:
        return {
            "queue_url": self.queue_url,
            "messages": self.messages,
            "deleted": self.deleted,
            "not_deleted": self.not_deleted,
            "delete_errors": self.delete_errors,
            "stopped_by": self.stopped_by,
            **super().to_json(),
        }


def queue_url(config: Config) -> str:
    """The configured queue, or a configuration error saying which key to set."""
    url = config.feedback.sqs_queue_url
    if not url:
        raise ConfigError(
            "no SQS queue to pull from: set [feedback] sqs_queue_url in migctl.toml to the URL "
            "of the queue your SES configuration set's SNS topic feeds (docs/providers.md, "
            '"Amazon SES events")'
        )
    return url


def region(config: Config) -> str:
    return config.feedback.sqs_region or config.email.ses.region


def sqs_client(config: Config) -> Any:
    """A boto3 SQS client: the standard credential chain, no SDK retries.

    A pull is safe to repeat, so a failed request ends it and the next pull (the next cron
    run) is the retry; SDK back-off would only spend the pull's time budget.
    """
    timeout = config.email.ses.timeout
    boto_config = BotoConfig(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=timeout,
        # A long poll holds the request open for up to wait_seconds before SQS answers.
        read_timeout=config.feedback.wait_seconds + timeout,
    )
    session = boto3.session.Session()  # private: the default session is shared process-wide
    return session.client(
        "sqs",
        region_name=region(config),
        endpoint_url=config.feedback.endpoint_url,
        config=boto_config,
    )


def pull(
    store: Store,
    config: Config,
    *,
    now: datetime,
    clock: Callable[[], float],
    max_seconds: float | None = None,
    actor: str,
    progress: Progress = NO_PROGRESS,
    stop: threading.Event | None = None,
) -> PullSummary:
    """Receive SES events from ``[feedback] sqs_queue_url`` in batches of ten, record each batch
    (one transaction), and only then delete its messages.

    A kill between the commit and the delete leaves the messages in the queue; they come back
    after the queue's visibility timeout and the next pull counts them as duplicates. Stops when
    a receive comes back empty, after ``max_seconds`` by ``clock`` (default ``[feedback]
    max_seconds``), or when ``stop`` is set. Raises ConfigError for a queue these credentials
    cannot use, QueueUnavailableError for a failure that a later pull may not meet.
    """
    url = queue_url(config)
    settings = config.feedback
    budget = settings.max_seconds if max_seconds is None else max_seconds
    deadline = clock() + budget
    summary = PullSummary(queue_url=url)
    progress.phase("pulling delivery events", None)
    client = sqs_client(config)
    try:
        while True:
            if stop is not None and stop.is_set():
                summary.stopped_by = "stop"
                break
            left = deadline - clock()
            if left <= 0:
                summary.stopped_by = "max_seconds"
                break
            # Never poll past the budget: a long poll of 20 s at 3 s left would overrun it.
            wait = min(settings.wait_seconds, int(left))
            response = _call(
                config,
                "receive_message",
                client.receive_message,
                QueueUrl=url,
                MaxNumberOfMessages=BATCH,
                WaitTimeSeconds=wait,
            )
            messages = response.get("Messages") or []
            if not messages:
                # A poll the budget shortened proves less than a full long poll.
                summary.stopped_by = "empty" if wait == settings.wait_seconds else "max_seconds"
                break
            summary.messages += len(messages)
            payloads, labels = _decode(messages, summary)
            summary.add(
                record_batch(store, payloads, config=settings, now=now, actor=actor, labels=labels)
            )
            _delete(config, client, url, messages, summary)
            progress.advance(len(messages))
    finally:
        client.close()
    return summary


def _decode(messages: list[dict[str, Any]], summary: PullSummary) -> tuple[list[object], list[str]]:
    """Each body as JSON (an SNS envelope) with the label its problems carry; a body that is
    not JSON is counted here, as `feedback import` counts a line that is not (and deleted: it
    would never read better)."""
    payloads: list[object] = []
    labels: list[str] = []
    for message in messages:
        label = f"SQS message {message.get('MessageId')}"
        value = decode_json(message.get("Body") or "")
        if isinstance(value, NotJson):
            summary.received += 1
            summary.malformed += 1
            summary.problems.append(f"{label}: {value.reason}")
        else:
            payloads.append(value)
            labels.append(label)
    return payloads, labels


def _delete(
    config: Config, client: Any, url: str, messages: list[dict[str, Any]], summary: PullSummary
) -> None:
    """Acknowledge a recorded batch; a message SQS refuses to delete is reported, not fatal."""
    entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
    response = _call(
        config, "delete_message_batch", client.delete_message_batch, QueueUrl=url, Entries=entries
    )
    summary.deleted += len(response.get("Successful") or [])
    for failure in response.get("Failed") or []:
        summary.not_deleted += 1
        message_id = messages[int(failure["Id"])].get("MessageId")
        summary.delete_errors.append(
            f"SQS message {message_id} was recorded but not deleted "
            f"({failure.get('Code')}: {failure.get('Message', '')}); it comes back after the "
            "queue's visibility timeout and then counts as a duplicate"
        )


def _call(config: Config, action: str, method: Callable[..., Any], **params: Any) -> Any:
    """One SQS request; its failures as errors that say what to fix (never the credentials)."""
    url = params["QueueUrl"]
    try:
        return method(**params)
    except ClientError as exc:
        raise _client_error(config, url, action, exc) from None
    except (NoCredentialsError, PartialCredentialsError):
        raise ConfigError(
            f"no usable AWS credentials to read the SQS queue {url}; provide them the usual "
            "boto3 way (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or an instance role)"
        ) from None
    except BotoCoreError as exc:  # connection refused or reset, timeouts, TLS
        raise QueueUnavailableError(
            f"the SQS queue {url} could not be reached ({action}: {exc}); nothing was lost, the "
            "next pull reads the queue again"
        ) from None


def _client_error(config: Config, url: str, action: str, exc: ClientError) -> MigctlError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code") or "Unknown")
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    if code in MISSING_QUEUE_CODES:
        return ConfigError(
            f"the SQS queue {url} does not exist in region {region(config)}; check [feedback] "
            "sqs_queue_url and sqs_region"
        )
    if code.startswith("AccessDenied") or code == "AWS.SimpleQueueService.AccessDenied":
        return ConfigError(
            f"these AWS credentials may not use the SQS queue {url} ({code} on {action}); grant "
            "sqs:ReceiveMessage and sqs:DeleteMessage on it "
            '(docs/providers.md, "Amazon SES events")'
        )
    if code in KMS_CODES:
        return ConfigError(
            f"the SQS queue {url} is encrypted with a KMS key migctl cannot use ({code}); grant "
            "kms:Decrypt on that key, or check that the key is enabled"
        )
    if code in BAD_URL_CODES:
        return ConfigError(f"[feedback] sqs_queue_url {url} is not a queue URL SQS accepts")
    if code in CREDENTIAL_CODES:
        # The message of a signature error can quote the request it signed: only the code.
        return ConfigError(
            f"AWS rejected the credentials used for the SQS queue {url} ({code}); check the "
            "access key, secret and clock of this machine (boto3's usual credential chain)"
        )
    message = str(error.get("Message") or "")
    kind = "throttled" if "thrott" in code.lower() or status == 429 else f"HTTP {status}"
    return QueueUnavailableError(
        f"the SQS queue {url} refused {action} ({kind}, {code}: {message}); nothing was lost, "
        "the next pull reads the queue again"
    )
