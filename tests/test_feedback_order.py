"""Recording delivery events in any order, with repeats, leaves the store as recording each once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrate_cli.config import FeedbackConfig
from migrate_cli.feedback.record import record_batch
from migrate_cli.store.db import Store
from tests import fuzz_settings  # noqa: F401 - the ci / fuzz profiles
from tests.feedback_events import sendgrid, ses_bounce, ses_complaint, ses_delivery, ses_mail, sns
from tests.helpers_enforce import MAIL, in_process, setup_store

NOW = datetime(2016, 5, 1, tzinfo=UTC)
CONFIG = FeedbackConfig(soft_bounce_limit=2, soft_bounce_window="3d")
ADMINS = ["a@x.test", "b@x.test", "c@x.test", "shared@x.test"]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Store:
    folder = tmp_path_factory.mktemp("order")
    setup_store(folder, MAIL)
    in_process(folder, "--now", "2016-04-20", "notify")
    return Store(folder / "migctl.db")


# One event: (kind, administrator index or an orphan, day, provider).
EVENT = st.tuples(
    st.sampled_from(["hard", "soft", "complaint", "delivered"]),
    st.integers(0, len(ADMINS)),  # len(ADMINS): an address without a notice
    st.integers(0, 9),
    st.sampled_from(["ses", "sendgrid"]),
)


def build(spec: tuple[str, int, int, str], n: int, keys: dict[str, str]) -> Any:
    kind, who, day, provider = spec
    email = ADMINS[who] if who < len(ADMINS) else "nobody@x.test"
    key = keys.get(email, "mail|nobody@x.test|announcement|x")
    at = f"2016-04-{20 + day:02d}T10:00:00.000Z"
    if provider == "sendgrid":
        event = {"hard": "bounce", "soft": "bounce", "complaint": "spamreport"}.get(
            kind, "delivered"
        )
        extra = {"type": "blocked" if kind == "soft" else "bounce"} if event == "bounce" else {}
        stamp = int(datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp())
        return sendgrid(
            event, email, key=key, sg_event_id=f"e{n}", timestamp=stamp, reason=f"r{n}", **extra
        )
    mail = ses_mail(email, notice_key=key)
    if kind == "complaint":
        return sns(ses_complaint(mail, email, feedback_id=f"f{n}", timestamp=at))
    if kind == "delivered":
        return ses_delivery(mail, email, timestamp=at) | {"n": n}  # distinct events hash apart
    return sns(
        ses_bounce(
            mail,
            [email],
            bounce_type="Permanent" if kind == "hard" else "Transient",
            feedback_id=f"f{n}",
            timestamp=at,
        )
    )


def state(store: Store) -> tuple[list[Any], list[Any], list[Any]]:
    return (
        [
            tuple(r)
            for r in store.query(
                "SELECT event_key, provider, notice_key, email, outcome, bounce_type, detail, "
                "event_at, recorded_at FROM delivery_events ORDER BY event_key"
            )
        ],
        [tuple(r) for r in store.query("SELECT * FROM suppressions ORDER BY email")],
        [
            tuple(r)
            for r in store.query(
                "SELECT at, actor, action, detail FROM audit WHERE action = 'suppression.added' "
                "ORDER BY detail"
            )
        ],
    )


def record(base: Store, batches: list[list[Any]]) -> Store:
    store = Store.in_memory_copy(base)
    for batch in batches:
        record_batch(store, batch, config=CONFIG, now=NOW, actor="test")
    return store


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(specs=st.lists(EVENT, min_size=1, max_size=12), data=st.data())
def test_any_order_and_repeats_record_the_same_store(
    base: Store, specs: list[tuple[str, int, int, str]], data: st.DataObject
) -> None:
    keys = {r["email"]: r["key"] for r in base.query("SELECT email, key FROM outbox")}
    distinct = [build(spec, n, keys) for n, spec in enumerate(specs)]
    expected = state(record(base, [distinct]))

    repeated = data.draw(st.permutations(distinct + data.draw(st.lists(st.sampled_from(distinct)))))
    assert state(record(base, [repeated])) == expected

    # Split into batches: events and suppressed addresses are the same (a suppression's
    # reason is the first that reached the limit, which depends on how the events came).
    cuts = sorted(data.draw(st.lists(st.integers(0, len(repeated)), max_size=3)))
    batches = [repeated[i:j] for i, j in zip([0, *cuts], [*cuts, len(repeated)], strict=True)]
    events, suppressed, _ = state(record(base, batches))
    assert events == expected[0]
    assert [s[0] for s in suppressed] == [s[0] for s in expected[1]]
