"""The error hierarchy: every failure an operator can cause or fix is a MigctlError."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

# Exit codes from SPEC section 4; the CLI maps errors to these and nothing else does.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_LOCKED = 75


class MigctlError(Exception):
    """A failure with a message meant for the operator (no traceback)."""

    exit_code = EXIT_ERROR


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input, located as precisely as we can."""

    file: str
    line: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
        if self.field:
            where += f": {self.field}"
        return f"{where}: {self.message}"


class InputError(MigctlError):
    """Bad input (YAML, CSV, config, templates): carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem], summary: str | None = None) -> None:
        self.problems = list(problems)
        self.summary = summary
        head = summary or f"{len(self.problems)} problem(s) found"
        lines = "".join(f"\n  {p}" for p in self.problems)
        super().__init__(head + lines)


class UsageError(MigctlError):
    """A command line that cannot be right (a bad option value or combination): exit 2."""

    exit_code = EXIT_USAGE


class ConfigError(MigctlError):
    """The configuration (migctl.toml, environment) is wrong; says what to fix."""


class RuleError(MigctlError):
    """An action the migration rules forbid (e.g. opting in outside the grace period)."""


class NotFoundError(MigctlError):
    """A migration, account or outbox row that does not exist."""


class StoreError(MigctlError):
    """The SQLite store cannot be opened, is locked too long, or is corrupt."""


class SendingStoppedError(MigctlError):
    """Sending stopped partway (the store failed, e.g. a full disk): what was sent before is
    recorded and reported, so the run is partial (exit 3), not "nothing written"."""

    exit_code = EXIT_PARTIAL


class LockHeldError(MigctlError):
    """Another migctl run holds the lock."""

    exit_code = EXIT_LOCKED


def did_you_mean(word: str, choices: Iterable[str], *, cutoff: float = 0.6) -> str:
    """' (did you mean 'x'?)' for the closest of ``choices``, or '' when none is close.

    Key names in files use a stricter ``cutoff`` (0.75): a short key is close to many others.
    """
    found = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=cutoff)
    return f" (did you mean {found[0]!r}?)" if found else ""
