"""Dispatch through a real (local) SendGrid-speaking server: rate limit, concurrency, retries,
the daily quota, --test-to and outbox retry, end to end through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import RunCli
from tests.fakes.sendgrid_server import FakeSendgrid, Reply
from tests.helpers_notices import MIG, account, build_store, outbox

KEY = "SG.test-key-for-dispatch"


def _config(server: FakeSendgrid, **email: object) -> None:
    extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in email.items())
    Path("migctl.toml").write_text(
        'environment = "production"\n[email]\nprovider = "sendgrid"\n'
        f'from = "notices@platform.example"\n{extra}'
        f'[email.sendgrid]\napi_key_env = "MIGCTL_TEST_SG_KEY"\nhost = "{server.url}"\n'
        "timeout = 5\n",
        encoding="utf-8",
    )


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MIGCTL_TEST_SG_KEY", KEY)
    with FakeSendgrid(KEY) as fake:
        yield fake


def _admins(n: int) -> None:
    build_store([account(f"acc-{i:03d}", f"admin{i:03d}@customer.example") for i in range(n)])


def _notify(runner: RunCli, *args: str, code: int = 0) -> dict[str, object]:
    result = runner("--now", "2016-04-20", "notify", "--json", *args)
    assert result.exit_code == code, result.stderr
    return json.loads(result.stdout)


def _keys(server: FakeSendgrid) -> list[str]:
    return [p["custom_args"]["migctl_notice"] for p in server.requests]


def test_rate_limit_is_never_exceeded_with_concurrent_workers(
    runner: RunCli, server: FakeSendgrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    from migrate_cli.delivery.throttle import TokenBucket

    # The grants the pacer hands the four workers are what migctl controls; the server's arrival
    # times add the network's and a loaded machine's jitter on top, so they are not asserted on.
    grants: list[float] = []
    acquire = TokenBucket.acquire

    def recorded(self: TokenBucket) -> float:
        at = acquire(self)
        grants.append(at)
        return at

    monkeypatch.setattr(TokenBucket, "acquire", recorded)
    _admins(60)
    _config(server, rate_per_second=20, concurrency=4)
    server.latency = 0.05
    doc = _notify(runner)
    assert doc["notices"]["sent"] == 60  # type: ignore[index]
    keys = _keys(server)
    assert len(keys) == len(set(keys)) == 60  # each notice exactly once
    assert len(grants) == 60  # one grant per send, none skipped by a worker
    times = sorted(grants)
    busiest = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    assert busiest <= 20, busiest
    assert times[-1] - times[0] >= 2.5  # 60 sends at 20/s cannot take less than ~3 s
    assert {r["state"] for r in outbox()} == {"sent"}


@pytest.mark.slow
def test_a_high_rate_with_catch_up_pacing_stays_under_the_limit(
    runner: RunCli, server: FakeSendgrid
) -> None:
    # At 100/s the margin under the limit (100 - ceil(96.5) = 3 sends) allows catch-up pacing.
    _admins(450)
    _config(server, rate_per_second=100, concurrency=8)
    server.latency = 0.02
    doc = _notify(runner)
    assert doc["notices"]["sent"] == 450  # type: ignore[index]
    times = sorted(server.arrivals)
    busiest = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    assert busiest <= 100, busiest
    assert times[-1] - times[0] >= 4.0  # 450 sends at <= 100/s take at least ~4.5 s


def test_catch_up_pacing_only_where_the_margin_allows_it() -> None:
    from migrate_cli.delivery.throttle import pacer as limiter

    assert limiter(200).burst == limiter(100).burst == 1.1
    assert limiter(20).burst == limiter(50).burst == limiter(1).burst == 1
    # The one-second cap stays under the provider's limit, by one send at least.
    assert limiter(200).window_limit == 193 and limiter(100).window_limit == 97
    assert limiter(20).window_limit == 19 and limiter(2).window_limit == 1
    assert limiter(1).window_limit == 1


def test_a_throttled_send_is_retried_once_and_never_duplicated(
    runner: RunCli, server: FakeSendgrid
) -> None:
    _admins(3)
    _config(server)
    server.script(Reply(429, headers={"Retry-After": "1"}))
    doc = _notify(runner)
    assert doc["notices"]["sent"] == 3  # type: ignore[index]
    assert server.attempts == 4
    keys = _keys(server)
    assert len(keys) == len(set(keys)) == 3
    assert sorted(r["attempts"] for r in outbox()) == [1, 1, 2]


def test_the_daily_quota_leaves_the_rest_pending(runner: RunCli, server: FakeSendgrid) -> None:
    _admins(5)
    _config(server, daily_quota=2)
    doc = _notify(runner)
    assert (doc["notices"]["sent"], doc["notices"]["quota_reached"]) == (2, True)  # type: ignore[index]
    assert sorted(r["state"] for r in outbox()) == ["pending"] * 3 + ["sent"] * 2
    again = _notify(runner)  # the same rolling 24 hours: nothing more goes out
    assert again["notices"]["sent"] == 0  # type: ignore[index]
    assert len(server.requests) == 2


def test_a_quota_used_up_exactly_holds_nothing_back(runner: RunCli, server: FakeSendgrid) -> None:
    _admins(3)
    _config(server, daily_quota=3)
    doc = _notify(runner)
    assert (doc["notices"]["sent"], doc["notices"]["quota_reached"]) == (3, False)  # type: ignore[index]


def test_test_to_sends_one_sample_and_records_no_notice(
    runner: RunCli, server: FakeSendgrid
) -> None:
    _admins(2)
    _config(server)
    result = runner("--now", "2016-04-20", "notify", "--test-to", "Me@Example.test", MIG)
    assert result.exit_code == 0, result.stderr
    (payload,) = server.requests
    assert payload["personalizations"][0]["to"] == [{"email": "me@example.test"}]
    assert outbox() == []


def test_a_rejected_address_fails_is_suppressed_and_can_be_retried(
    runner: RunCli, server: FakeSendgrid
) -> None:
    _admins(2)
    _config(server)
    server.script(Reply(400, body={"errors": [{"message": "Does not contain a valid address."}]}))
    doc = _notify(runner, code=3)  # one failed: a partial run
    assert (doc["notices"]["sent"], doc["notices"]["failed"]) == (1, 1)  # type: ignore[index]
    (failed,) = outbox("state = 'failed'")
    assert runner("suppress", "list", "--json").stdout.count(failed["email"]) == 1
    assert runner("suppress", "remove", failed["email"]).exit_code == 0
    assert runner("outbox", "retry").exit_code == 0
    doc = _notify(runner)
    assert doc["notices"]["sent"] == 1  # type: ignore[index]
    assert {r["state"] for r in outbox()} == {"sent"}
    assert sorted(set(_keys(server))) == sorted(r["key"] for r in outbox())
