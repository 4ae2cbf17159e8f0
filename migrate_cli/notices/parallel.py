"""A second dispatcher process for large runs of a local provider (the machine's other core).

A local provider (file, null) costs nothing to wait for: a run is bound by one core
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
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from migrate_cli.config import Config
from migrate_cli.delivery.registry import ProviderConfigError
from migrate_cli.errors import MigctlError
from migrate_cli.notices.dispatch import DispatchSummary
from migrate_cli.store.lock import held_lock_fds

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
        and email.provider != "console"  # two processes printing would interleave messages
        and not email.rate_per_second
        and not email.daily_quota
        and str(db_path) != ":memory:"
        and (os.cpu_count() or 1) >= 2
    )


class Helper:
    """The parent's handle on the helper process: start, tell it queuing ended, collect.

    The helper is ``python -m migrate_cli.notices.parallel``, a fresh interpreter (not a fork of a
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
                [sys.executable, "-m", "migrate_cli.notices.parallel"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                # Its own session: Ctrl-C reaches this process, which then stops the helper.
                start_new_session=True,
                # The run lock's descriptor: the lock then lasts until the helper has exited
                # too, even if this process is killed (no second run meanwhile).
                pass_fds=held_lock_fds(),
            )
            assert proc.stdin is not None
            pickle.dump(self.job, proc.stdin)
            proc.stdin.flush()
        except OSError as exc:
            if proc is not None:
                proc.kill()
                proc.communicate()  # reaps it and closes its pipes
            self._failed = True
            sys.stderr.write(f"warning: no helper process ({exc}); sending from one process\n")
            return
        self._proc = proc
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        while True:  # drain to the end, whatever happens: a full pipe would block the helper
            try:
                kind, value = pickle.load(self._proc.stdout)
            except (EOFError, OSError):
                return  # the helper ended (without a word, if no result: join() says so)
            except Exception:  # a garbled message (its bytes are consumed): read on
                continue
            if kind == "progress":
                with contextlib.suppress(Exception):  # the display must not stop the drain
                    self.progress(value)
            else:
                self._result = (kind, value)

    def queuing_done(self) -> None:
        if self._proc is not None and self._proc.stdin is not None:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()

    def join(
        self, summary: DispatchSummary, *, stopping: bool, stop: threading.Event | None = None
    ) -> None:
        """Wait for the helper and add its figures to ``summary``; re-raise its failure.

        ``stopping``: ask it to stop now (SIGTERM; it finishes its send in flight and records
        it). While waiting, a ``stop`` set later (a signal to this process) does the same.
        """
        if self._proc is None:
            return
        self.queuing_done()
        asked = False
        deadline: float | None = None
        while self._proc.poll() is None:
            if (stopping or (stop is not None and stop.is_set())) and not asked:
                self._proc.terminate()
                asked = True
                deadline = time.monotonic() + JOIN_SECONDS
            if deadline is not None and time.monotonic() > deadline:
                self._proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(0.1)
        if self._reader is not None:
            self._reader.join(5.0)
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        if self._result is None:
            raise MigctlError(
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
        raise MigctlError(f"the dispatch helper process failed: {value}")


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
    from migrate_cli.notices.dispatch import Dispatcher
    from migrate_cli.notices.notify import make_renderer, provider_factory
    from migrate_cli.store.db import Store
    from migrate_cli.store.stored_migrations import load_catalog, store_timezone

    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # stray prints must not corrupt the message stream

    def send(message: tuple[str, Any]) -> None:
        pickle.dump(message, out)
        out.flush()

    def report_progress(n: int) -> None:
        # Best effort: with the parent gone, the pipe is broken, and the send just recorded
        # must not be rolled back for a progress bar nobody sees.
        with contextlib.suppress(OSError):
            send(("progress", n))

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
                progress=report_progress,
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
