"""Send pacing and retry delays: a thread-safe rate limiter and capped, jittered backoff."""

from __future__ import annotations

import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable

from migrate_cli.delivery.base import SendResult


class TokenBucket:
    """Let at most ``ceil(rate)`` acquisitions through in any sliding 1-second window.

    Two rules are enforced together, because a classic token bucket alone does not give the
    guarantee (a full bucket of ``rate`` tokens plus ``rate`` refilled ones lets ``2 * rate``
    through within one second):

    * a cell-rate rule (GCRA): on average one grant every ``1 / rate`` seconds, with at most
      ``burst`` grants ahead of that schedule; ``burst = 1`` (the default) is strict spacing,
      and a fraction above 1 lets a late grant be followed by one that early (a fraction of an
      interval), which recovers lateness without letting two grants through at once;
    * a sliding-window log: a grant needs the ``ceil(rate)``-th previous grant to be at least one
      second old, which is what providers' "N per second" limits mean.
    """

    def __init__(
        self,
        rate_per_second: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        *,
        window_limit: int | None = None,
    ) -> None:
        """``window_limit``: grants allowed in any sliding second (default ``ceil(rate)``; a
        caller may ask for fewer, to keep a margin under a provider's own count)."""
        if not rate_per_second > 0 or math.isinf(rate_per_second):
            raise ValueError(f"rate_per_second must be a positive number, got {rate_per_second!r}")
        burst = 1 if burst is None else burst
        if burst < 1 or burst > max(1.0, rate_per_second):
            raise ValueError(f"burst must be between 1 and the rate, got {burst!r}")
        self.rate = float(rate_per_second)
        self.burst = burst
        most = max(1, math.ceil(self.rate))
        if window_limit is not None and not 1 <= window_limit <= most:
            raise ValueError(f"window_limit must be between 1 and {most}, got {window_limit!r}")
        self.window_limit = most if window_limit is None else window_limit
        self._interval = 1.0 / self.rate
        self._tolerance = (burst - 1) * self._interval
        self._tat = -math.inf  # GCRA "theoretical arrival time" of the next grant
        self._log: deque[float] = deque(maxlen=self.window_limit)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()

    def _earliest(self, now: float) -> float:
        earliest = now
        scheduled = self._tat - self._tolerance
        # Summing 1/rate drifts by a few ulps; do not make a caller sleep for a nanosecond.
        if scheduled > now + 1e-9:
            earliest = scheduled
        # The window rule is exact: it is the guarantee providers' limits are stated in.
        if len(self._log) == self.window_limit:
            earliest = max(earliest, self._log[0] + 1.0)
        return earliest

    def _attempt(self) -> tuple[float, float]:
        # Returns (seconds to wait, now); a wait of 0.0 means the grant was taken at ``now``.
        with self._lock:
            now = self._clock()
            earliest = self._earliest(now)
            if earliest > now:
                return earliest - now, now
            self._tat = max(self._tat, now) + self._interval
            self._log.append(now)
            return 0.0, now

    def try_acquire(self) -> float:
        """Take a grant now and return 0.0, or return how long to wait before trying again."""
        return self._attempt()[0]

    def acquire(self) -> float:
        """Block until a grant is available; return the clock time it was granted at."""
        while True:
            wait, now = self._attempt()
            if wait <= 0.0:
                return now
            # Sleep outside the lock so other workers can compute their own wait meanwhile;
            # whoever wakes first re-checks, so oversleeping never lets two grants crowd in.
            self._sleep(wait)


def backoff_delay(
    attempt: int,
    base: float = 1.0,
    cap: float = 300.0,
    rng: Callable[[], float] = random.random,
) -> float:
    """Full-jitter exponential backoff: uniform in ``[0, min(cap, base * 2**attempt))``."""
    if attempt < 0:
        raise ValueError("attempt must be 0 or more")
    # Beyond 2**63 the ceiling is the cap anyway; avoid float overflow for silly attempts.
    ceiling = cap if attempt >= 63 else min(cap, base * (2.0**attempt))
    return rng() * ceiling


def retry_delay(
    result: SendResult,
    attempt: int,
    base: float = 1.0,
    cap: float = 300.0,
    rng: Callable[[], float] = random.random,
) -> float:
    """Delay before retrying a TRANSIENT result: backoff, or longer if the provider asked."""
    delay = backoff_delay(attempt, base=base, cap=cap, rng=rng)
    if result.retry_after is not None and result.retry_after > delay:
        delay = result.retry_after
    return min(max(delay, 0.0), cap)


RATE_HEADROOM = 0.035  # share of rate_per_second left unused to absorb client-side jitter


def pacer(rate_per_second: float) -> TokenBucket:
    """The limiter for a provider's "N per second": paced a little under N, never above it.

    The bucket's guarantee holds when a send is granted; building, signing and connecting
    before the request reaches the provider add jitter that can bunch arrivals. Pacing a little
    under the limit keeps the provider's own count within it.
    """
    paced = rate_per_second * (1 - RATE_HEADROOM)
    # Where that margin is two sends or more, a grant that came late (a worker woke a fraction
    # of a millisecond after its slot) may be followed by one up to a tenth of an interval
    # early, so lateness is not lost for good while two grants never go out together; the
    # sliding one-second window still caps them at ceil(paced).
    margin = rate_per_second - math.ceil(paced)
    # At low rates ceil(paced) is the limit itself: keep the window one send under it.
    window = max(1, min(math.ceil(paced), math.ceil(rate_per_second) - 1))
    return TokenBucket(paced, burst=1.1 if margin >= 2 else 1, window_limit=window)
