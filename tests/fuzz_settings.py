"""Hypothesis profiles for the attack suite, and a counter of inputs tried per loader.

Two profiles:

- ``ci`` (default): a few dozen examples per property, no deadline, no example database on
  disk; keeps the attack suite well under a minute inside ``make test``.
- ``fuzz``: thousands of examples per property; selected with ``MIGCTL_FUZZ=1`` (``make fuzz``).
  ``MIGCTL_FUZZ_EXAMPLES`` overrides the example count of that profile.

Import this module from a test module (``from tests import fuzz_settings``) before any
``@given`` runs; conftest.py is deliberately left alone.

Every property test calls ``count(loader)`` once per input it tries; at the end of the session
the counts are merged into ``$MIGCTL_FUZZ_REPORT`` (default ``<tmp>/migctl-fuzz-report.json``),
which docs/reliability.md's figures are read from.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import tempfile
import threading
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, settings

FUZZ = os.environ.get("MIGCTL_FUZZ", "") not in ("", "0")
_SUPPRESS = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large]

settings.register_profile(
    "ci",
    max_examples=60,
    deadline=None,
    database=None,
    derandomize=False,
    suppress_health_check=_SUPPRESS,
    print_blob=True,
)
settings.register_profile(
    "fuzz",
    max_examples=int(os.environ.get("MIGCTL_FUZZ_EXAMPLES", "2500")),
    deadline=None,
    suppress_health_check=_SUPPRESS,
    print_blob=True,
)
PROFILE = "fuzz" if FUZZ else "ci"
settings.load_profile(PROFILE)


def examples(ci: int, fuzz: int | None = None) -> settings:
    """Per-test settings: ``ci`` examples in CI; in the fuzz profile its count, capped at
    ``fuzz`` for properties that run the whole CLI per example (to fit ``make fuzz`` in ~10 min)."""
    if FUZZ:
        base = settings.get_profile("fuzz")
        return settings(base, max_examples=min(base.max_examples, fuzz or base.max_examples))
    return settings(settings.get_profile("ci"), max_examples=ci)


REPORT = Path(
    os.environ.get(
        "MIGCTL_FUZZ_REPORT", os.path.join(tempfile.gettempdir(), "migctl-fuzz-report.json")
    )
)
_counts: Counter[str] = Counter()
_lock = threading.Lock()


def count(name: str, n: int = 1) -> None:
    """Record that ``n`` more inputs were tried against ``name`` (a loader or scenario)."""
    with _lock:
        _counts[name] += n


def _flush() -> None:
    if not _counts:
        return
    try:
        previous = json.loads(REPORT.read_text()) if REPORT.exists() else {}
    except (OSError, ValueError):
        previous = {}
    merged = Counter(previous.get("inputs", {}))
    merged.update(_counts)
    doc = {"profile": PROFILE, "inputs": dict(sorted(merged.items()))}
    with contextlib.suppress(OSError):
        REPORT.write_text(json.dumps(doc, indent=2) + "\n")


atexit.register(_flush)
