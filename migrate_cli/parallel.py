"""A second dispatcher process for large runs of a local provider (the machine's other core).

A local provider (console, file, null) costs nothing to wait for: a run is bound by one core
rendering and recording. For a large run, a helper process sends from the highest pending id
down while this process is still queuing notices, then sends from the lowest id up; each row
is claimed atomically (``pending`` → ``sending``), so the two never send the same row and
meet, at worst racing for one batch, in the middle. Network providers keep their worker
threads, which wait on the network rather than on the CPU; runs with a rate limit or a daily
quota stay in one process, where those budgets are kept.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from migrate_cli.config import Config
from migrate_cli.dispatch import DispatchSummary
from migrate_cli.providers import ProviderConfigError

PARALLEL_MIN = 10_000  # notices queued before a helper is worth its start-up (~0.5 s)
JOIN_SECONDS = 60.0  # how long a stopping run waits for its helper before killing it


@dataclass(frozen=True)
class HelperJob:
    """What the helper needs to rebuild the dispatcher on its own connection."""

    db_path: str
    config: Config
    now: datetime
    only: str | None


def wanted(config: Config, network: bool, db_path: Path) -> bool:
    """Whether a run may use a helper at all (it starts only once the run is large)."""
    email = config.email
    return (
        not network
        and not email.rate_per_second
        and not email.daily_quota
        and str(db_path) != ":memory:"
        and (os.cpu_count() or 1) >= 2
    )


class Helper:
    """The parent's handle on the helper process: start, tell it queuing ended, collect.

    The helper is ``python -m migrate_cli.parallel``, a fresh interpreter (not a fork of a
    process that may hold threads and an open database). The job goes to its stdin as a pickle;
    closing stdin tells it queuing has ended; it answers on stdout with pickled messages.
    """

    def __init__(self, job: HelperJob, progress: Callable[[int], None]) -> None:
        self.job = job
        self.progress = progress
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._result: tuple[str, Any] | None = None
        self._failed = False  # could not start: never tried again

    @property
    def started(self) -> bool:
        return self._proc is not None or self._failed

    def start(self) -> None:
        """Start the helper; if it cannot start, the run simply continues on its own."""
        if self._failed:
            return
        proc: subprocess.Popen[bytes] | None = None
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "migrate_cli.parallel"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                # Its own session: Ctrl-C reaches this process, which then stops the helper.
                start_new_session=True,
            )
            assert proc.stdin is not None
            pickle.dump(self.job, proc.stdin)
            proc.stdin.flush()
        except OSError as exc:
            if proc is not None:
                proc.kill()
                proc.wait()
            self._failed = True
            sys.stderr.write(f"warning: no helper process ({exc}); sending from one process\n")
            return
        self._proc = proc
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        try:
            while True:
                kind, value = pickle.load(self._proc.stdout)
                if kind == "progress":
                    self.progress(value)
                    continue
                self._result = (kind, value)
                return
        except (EOFError, OSError, pickle.UnpicklingError):
            return  # the helper died without a word: reported by join()

    def queuing_done(self) -> None:
        if self._proc is not None and self._proc.stdin is not None:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()

    def join(self, summary: DispatchSummary, *, stopping: bool) -> None:
        """Wait for the helper and add its figures to ``summary``; re-raise its failure."""
        if self._proc is None:
            return
        self.queuing_done()
        if stopping and self._proc.poll() is None:
            self._proc.terminate()  # SIGTERM: it finishes the send in flight and records it
        try:
            self._proc.wait(JOIN_SECONDS if stopping else None)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._reader is not None:
            self._reader.join(5.0)
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        if self._result is None:
            raise RuntimeError(
                f"the dispatch helper process ended without a report (exit "
                f"{self._proc.returncode}); rows it had claimed are reported in doubt by the "
                "next run"
            )
        kind, value = self._result
        if kind == "done":
            _merge(summary, value)
            return
        if kind == "config_error":
            provider, message, code, partial = value
            _merge(summary, partial)
            raise ProviderConfigError(provider, message, code)
        raise RuntimeError(f"the dispatch helper process failed: {value}")


def _merge(into: DispatchSummary, other: DispatchSummary) -> None:
    into.sent += other.sent
    into.failed += other.failed
    into.retry_later += other.retry_later
    into.in_doubt += other.in_doubt
    into.quota_reached = into.quota_reached or other.quota_reached
    into.stopped = into.stopped or other.stopped
    for kind, n in other.by_kind.items():
        into.by_kind[kind] = into.by_kind.get(kind, 0) + n


def helper_main() -> None:
    """The helper process: dispatch from the top of the outbox until nothing is left."""
    from migrate_cli.catalog import load_catalog, store_timezone
    from migrate_cli.dispatch import Dispatcher
    from migrate_cli.notices import make_renderer, provider_factory
    from migrate_cli.store import Store

    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # stray prints must not corrupt the message stream

    def send(message: tuple[str, Any]) -> None:
        pickle.dump(message, out)
        out.flush()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    parent = os.getppid()
    job: HelperJob = pickle.load(sys.stdin.buffer)
    queuing = threading.Event()
    queuing.set()

    def watch_stdin() -> None:
        sys.stdin.buffer.read()  # returns at EOF: the parent finished queuing (or died)
        queuing.clear()

    threading.Thread(target=watch_stdin, daemon=True).start()

    def watch_parent() -> None:
        while not stop.wait(0.2):
            if os.getppid() != parent:  # the parent was killed: stop after this batch
                stop.set()

    threading.Thread(target=watch_parent, daemon=True).start()

    def more_coming() -> bool:
        return queuing.is_set() and not stop.is_set()

    dispatcher: Dispatcher | None = None
    try:
        with Store(Path(job.db_path), create=False) as store:
            factory, _ = provider_factory(job.config)
            dispatcher = Dispatcher(
                store,
                job.config,
                factory,
                make_renderer(job.config),
                load_catalog(store),
                store_timezone(store),
                job.now,
                stop=stop,
                progress=lambda n: send(("progress", n)),
                descending=True,
                more_coming=more_coming,
            )
            dispatcher.run(job.only, sweep=False)
        send(("done", dispatcher.summary))
    except ProviderConfigError as exc:
        partial = dispatcher.summary if dispatcher is not None else DispatchSummary()
        message = str(exc).removeprefix(f"{exc.provider}: ")
        with contextlib.suppress(OSError):
            send(("config_error", (exc.provider, message, exc.code, partial)))
    except BaseException as exc:  # reported to the parent, which fails the run
        with contextlib.suppress(OSError):
            send(("error", f"{type(exc).__name__}: {exc}"))


if __name__ == "__main__":
    helper_main()
