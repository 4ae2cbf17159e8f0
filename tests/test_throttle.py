"""Rate limiting and backoff, driven by a fake clock."""

from __future__ import annotations

import itertools
import math
import threading
import time
from bisect import bisect_left

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from migrate_cli.delivery.base import SendResult, SendStatus
from migrate_cli.delivery.throttle import TokenBucket, backoff_delay, retry_delay


class FakeClock:
    """A clock that only moves when someone sleeps (or the test advances it)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds


def max_in_window(times: list[float], width: float = 1.0) -> int:
    """Largest number of times inside any half-open window [t, t + width)."""
    times = sorted(times)
    best = 0
    for i, start in enumerate(times):
        best = max(best, bisect_left(times, start + width - 1e-9) - i)
    return best


def grants(bucket: TokenBucket, clock: FakeClock, gaps: list[float]) -> list[float]:
    out = []
    for gap in gaps:
        clock.now += gap
        out.append(bucket.acquire())
    return out


def test_strict_spacing_by_default() -> None:
    clock = FakeClock()
    bucket = TokenBucket(4, clock=clock, sleep=clock.sleep)
    times = grants(bucket, clock, [0.0] * 9)
    assert times == pytest.approx([1000 + i * 0.25 for i in range(9)])
    assert max_in_window(times) == 4


def test_naive_full_bucket_would_allow_twice_the_rate() -> None:
    # The failure mode the design avoids: burst == rate lets a full bucket drain at once and
    # then refill within the same second. Our bucket caps every 1 s window at ceil(rate).
    clock = FakeClock()
    bucket = TokenBucket(5, burst=5, clock=clock, sleep=clock.sleep)
    clock.now += 10  # idle long enough for any bucket to be full
    times = grants(bucket, clock, [0.0] * 10 + [0.99] + [0.0] * 5)
    assert times[:5] == [1010.0] * 5  # the burst is honoured
    assert max_in_window(times) == 5


def test_fractional_rates_stay_below_ceiling_and_average() -> None:
    clock = FakeClock()
    bucket = TokenBucket(0.5, clock=clock, sleep=clock.sleep)
    times = grants(bucket, clock, [0.0] * 4)
    assert times == pytest.approx([1000, 1002, 1004, 1006])


def test_try_acquire_says_how_long_to_wait() -> None:
    clock = FakeClock()
    bucket = TokenBucket(2, clock=clock, sleep=clock.sleep)
    assert bucket.try_acquire() == 0.0
    assert bucket.try_acquire() == pytest.approx(0.5)
    clock.now += 0.5
    assert bucket.try_acquire() == 0.0


@pytest.mark.parametrize(("rate", "burst"), [(0, None), (-1, None), (2, 3), (2, 0), (math.inf, 1)])
def test_bad_parameters(rate: float, burst: int | None) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst=burst)


@settings(max_examples=300, deadline=None)
@given(
    rate=st.floats(min_value=0.2, max_value=50, allow_nan=False),
    burst_fraction=st.floats(min_value=0, max_value=1),
    gaps=st.lists(st.floats(min_value=0, max_value=2.0), min_size=1, max_size=120),
)
def test_no_one_second_window_exceeds_the_rate(
    rate: float, burst_fraction: float, gaps: list[float]
) -> None:
    burst = max(1, int(max(1.0, rate) * burst_fraction))
    clock = FakeClock()
    bucket = TokenBucket(rate, burst=burst, clock=clock, sleep=clock.sleep)
    times = grants(bucket, clock, gaps)
    assert times == sorted(times)
    assert max_in_window(times) <= math.ceil(rate)
    # Over any span the average never exceeds the rate by more than the allowed burst.
    span = times[-1] - times[0]
    assert len(times) <= rate * span + burst + 1e-6


def test_threads_share_the_limit() -> None:
    # Real clock, real threads: 30 grants at 100/s must take at least 0.29 s. Only lower bounds
    # on time are asserted here: a slow or busy machine can stretch them, never break them.
    bucket = TokenBucket(100)
    stamps: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(6):
            t = bucket.acquire()
            with lock:
                stamps.append(t)

    threads = [threading.Thread(target=worker) for _ in range(5)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(stamps) == 30
    assert time.monotonic() - start >= 0.28
    assert max_in_window(stamps) <= 100
    ordered = sorted(stamps)
    assert min(b - a for a, b in itertools.pairwise(ordered)) >= 0.0099


def test_backoff_full_jitter_bounds() -> None:
    assert backoff_delay(0, rng=lambda: 0.999) == pytest.approx(0.999)
    assert backoff_delay(3, rng=lambda: 0.5) == 4.0
    assert backoff_delay(20, rng=lambda: 1.0) == 300.0  # capped
    assert backoff_delay(10_000, rng=lambda: 0.5) == 150.0  # no overflow
    assert backoff_delay(2, rng=lambda: 0.0) == 0.0
    with pytest.raises(ValueError):
        backoff_delay(-1)


@given(
    st.integers(min_value=0, max_value=2000), st.floats(min_value=0, max_value=1, exclude_max=True)
)
def test_backoff_is_within_the_capped_envelope(attempt: int, u: float) -> None:
    delay = backoff_delay(attempt, base=0.5, cap=60.0, rng=lambda: u)
    ceiling = min(60.0, 0.5 * 2.0 ** min(attempt, 100))
    assert 0.0 <= delay <= ceiling
    assert delay == pytest.approx(u * ceiling)  # the jitter spreads over the whole envelope


def test_retry_delay_honours_retry_after() -> None:
    throttled = SendResult(SendStatus.TRANSIENT, retry_after=42.0)
    plain = SendResult(SendStatus.TRANSIENT)
    assert retry_delay(throttled, 0, rng=lambda: 0.5) == 42.0
    assert retry_delay(plain, 0, rng=lambda: 0.5) == 0.5
    assert retry_delay(SendResult(SendStatus.TRANSIENT, retry_after=0.1), 4, rng=lambda: 0.5) == 8.0
    assert retry_delay(SendResult(SendStatus.TRANSIENT, retry_after=9999.0), 0) == 300.0


def test_a_window_limit_under_the_rate_caps_every_second() -> None:
    clock = FakeClock()
    bucket = TokenBucket(19.3, clock=clock, sleep=clock.sleep, window_limit=19)
    grants = [bucket.acquire() for _ in range(200)]
    assert max_in_window(grants) == 19
    with pytest.raises(ValueError):
        TokenBucket(19.3, window_limit=21)
    with pytest.raises(ValueError):
        TokenBucket(19.3, window_limit=0)
