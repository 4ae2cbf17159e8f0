"""The line each key of a TOML document is written on (tomllib gives no positions)."""

from __future__ import annotations

import contextlib
import tomllib

KeyPath = tuple[str, ...]

_BARE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_BLANK = " \t\r"


def key_lines(text: str) -> dict[KeyPath, int]:
    """Map every key path (``("email", "smtp", "port")``) to the 1-based line defining it.

    Meant for text tomllib has already accepted: it follows table headers, dotted keys and
    inline tables, and skips strings, arrays and comments. A path defined implicitly (the
    ``email`` of ``[email.smtp]`` or of ``email.provider = …``) gets the line of its first
    mention. Keys inside arrays are not recorded (errors there are located at the array).
    """
    scanner = _Scanner(text)
    # Errors only arise with text tomllib refused; the lines found so far still help.
    with contextlib.suppress(IndexError, RecursionError):
        scanner.document()
    return scanner.lines


def line_of(lines: dict[KeyPath, int], path: KeyPath) -> int | None:
    """The line of ``path``, or of its nearest ancestor that is written in the file."""
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return None


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1
        self.lines: dict[KeyPath, int] = {}

    # -- characters -------------------------------------------------------------------------

    def peek(self, n: int = 1) -> str:
        return self.text[self.pos : self.pos + n]

    def advance(self, n: int = 1) -> None:
        self.line += self.text.count("\n", self.pos, self.pos + n)
        self.pos += n

    def skip_blank(self, *, newlines: bool = False) -> None:
        """Skip spaces (and, inside arrays and inline tables, newlines and comments)."""
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch in _BLANK or (newlines and ch == "\n"):
                self.advance()
            elif newlines and ch == "#":
                self.skip_to_eol()
            else:
                return

    def skip_to_eol(self) -> None:
        end = self.text.find("\n", self.pos)
        self.advance((len(self.text) if end < 0 else end) - self.pos)

    def record(self, path: KeyPath, line: int) -> None:
        for depth in range(1, len(path) + 1):
            self.lines.setdefault(path[:depth], line)

    # -- grammar ----------------------------------------------------------------------------

    def document(self) -> None:
        table: KeyPath = ()
        while self.pos < len(self.text):
            self.skip_blank(newlines=True)
            if self.pos >= len(self.text):
                return
            line = self.line
            if self.peek() == "[":
                double = self.peek(2) == "[["
                self.advance(2 if double else 1)
                table = self.dotted_key()
                self.advance(2 if double else 1)
                self.record(table, line)
            else:
                key = table + self.dotted_key()
                self.advance()  # "="
                self.record(key, line)
                self.value(key)
            self.skip_blank()
            if self.peek() == "#":
                self.skip_to_eol()

    def dotted_key(self) -> KeyPath:
        parts: list[str] = []
        while True:
            self.skip_blank()
            parts.append(self.simple_key())
            self.skip_blank()
            if self.peek() != ".":
                return tuple(parts)
            self.advance()

    def simple_key(self) -> str:
        if self.peek() in ('"', "'"):
            start = self.pos
            self.string()
            # Let tomllib decode the escapes, so the key matches the parsed document's.
            decoded: str = tomllib.loads("k = " + self.text[start : self.pos])["k"]
            return decoded
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _BARE:
            self.pos += 1
        if self.pos == start:
            raise IndexError("no key here")  # not TOML; stop scanning
        return self.text[start : self.pos]

    def value(self, path: KeyPath | None) -> None:
        self.skip_blank()
        ch = self.peek()
        if ch in ('"', "'"):
            self.string()
        elif ch == "{":
            self.inline_table(path)
        elif ch == "[":
            self.array()
        else:
            while self.pos < len(self.text) and self.text[self.pos] not in ",]}\n#":
                self.pos += 1

    def inline_table(self, path: KeyPath | None) -> None:
        self.advance()  # "{"
        while True:
            self.skip_blank(newlines=True)
            if self.peek() in ("}", ""):
                self.advance()
                return
            line = self.line
            key = self.dotted_key()
            self.advance()  # "="
            inner = None if path is None else path + key
            if inner is not None:
                self.record(inner, line)
            self.value(inner)
            self.skip_blank(newlines=True)
            if self.peek() == ",":
                self.advance()

    def array(self) -> None:
        self.advance()  # "["
        while True:
            self.skip_blank(newlines=True)
            if self.peek() in ("]", ""):
                self.advance()
                return
            self.value(None)
            self.skip_blank(newlines=True)
            if self.peek() == ",":
                self.advance()

    def string(self) -> None:
        quote = self.peek()
        multi = self.peek(3) == quote * 3
        self.advance(3 if multi else 1)
        while self.pos < len(self.text):
            if quote == '"' and self.peek() == "\\":
                self.advance(2)
            elif multi and self.peek(3) == quote * 3:
                self.advance(3)
                # A closing delimiter may be preceded by up to two quotes of the content.
                for _ in range(2):
                    if self.peek() == quote:
                        self.advance()
                return
            elif not multi and self.peek() == quote:
                self.advance()
                return
            else:
                self.advance()
        raise IndexError("unterminated string")
