"""Progress of long steps: told by the library (phase, total, advance), shown by the CLI."""

from __future__ import annotations

from collections.abc import Generator, Iterable
from typing import TypeVar

T = TypeVar("T")


class Progress:
    """Silent progress, and the interface a display overrides.

    A step announces its phase with the real total when it is known (None: counted as it goes,
    never a made-up total), then advances; calling the object advances too, so a plain
    ``Callable[[int], None]`` consumer (the send loop) takes one as is."""

    def phase(self, label: str, total: int | None = None) -> None:
        """A new phase (planning, queuing, sending, …): the count starts again at zero."""

    def advance(self, n: int = 1) -> None:
        """``n`` more items of the current phase are done."""

    def __call__(self, n: int) -> None:
        self.advance(n)


NO_PROGRESS = Progress()


def counted(items: Iterable[T], progress: Progress, every: int = 1000) -> Generator[T, None, None]:
    """Yield ``items``, advancing ``progress`` every ``every`` items (a per-item call would cost
    more than the work at a million rows). Closing it closes ``items`` (e.g. a file reader)."""
    n = 0
    try:
        for item in items:
            yield item
            n += 1
            if n == every:
                progress.advance(n)
                n = 0
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()
    if n:
        progress.advance(n)
