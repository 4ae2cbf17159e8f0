"""Safe, strict YAML loading with line numbers: no tags, no duplicate keys, no YAML 1.1 surprises."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from migrate_cli.errors import InputError, Problem

MAX_BYTES = 2 * 1024 * 1024  # a definitions file is a few KB; anything this big is a mistake
MAX_NODES = 100_000  # bounds alias expansion ("billion laughs")

_INT = re.compile(r"^-?(0|[1-9][0-9]*)$")
_STR_TAG = "tag:yaml.org,2002:str"
_PLAIN_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:timestamp",
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq",
    "tag:yaml.org,2002:value",
    "tag:yaml.org,2002:merge",  # a plain `<<` value (a `<<` key is refused below)
}
MAX_DEPTH = 64  # nesting; deeper documents (or recursive aliases) are refused, never a crash


@dataclass
class Located:
    """A loaded document plus the line of every key path, for error messages."""

    data: Any
    lines: dict[tuple[str | int, ...], int] = field(default_factory=dict)
    file: str = ""

    def line(self, *path: str | int) -> int | None:
        """The line of the deepest known prefix of ``path``."""
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return self.lines.get((), 1)


class _Builder:
    def __init__(self, file: str) -> None:
        self.file = file
        self.lines: dict[tuple[str | int, ...], int] = {}
        self.problems: list[Problem] = []
        self.count = 0

    def build(self, node: yaml.Node, path: tuple[str | int, ...]) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise _TooBig()
        line = node.start_mark.line + 1
        if len(path) > MAX_DEPTH:
            raise _TooDeep(line)
        self.lines.setdefault(path, line)
        if node.tag not in _PLAIN_TAGS:
            # Only the standard scalar/collection tags: `!!python/...`, `!!binary`, `!!set`,
            # local `!tags` are refused (they are never constructed either: we only compose).
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            self.problems.append(
                Problem(self.file, line, _dotted(path) or None, f"YAML tag {tag!r} is not allowed")
            )
            return None
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    self.problems.append(
                        Problem(
                            self.file,
                            key_node.start_mark.line + 1,
                            _dotted(path),
                            "keys must be plain strings",
                        )
                    )
                    continue
                if key_node.value == "<<":
                    self.problems.append(
                        Problem(
                            self.file,
                            key_node.start_mark.line + 1,
                            _dotted(path),
                            "merge keys (<<) are not supported",
                        )
                    )
                    continue
                key = str(key_node.value)
                if key in out:
                    self.problems.append(
                        Problem(
                            self.file,
                            key_node.start_mark.line + 1,
                            _dotted((*path, key)),
                            f"duplicate key {key!r} (first on line {self.lines.get((*path, key))})",
                        )
                    )
                    continue
                self.lines[(*path, key)] = key_node.start_mark.line + 1
                out[key] = self.build(value_node, (*path, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        if not encodable(node.value):
            # A "\ud800" escape makes a lone surrogate: it passes as text but can never be
            # stored or sent as UTF-8.
            self.problems.append(
                Problem(
                    self.file,
                    line,
                    _dotted(path) or None,
                    "contains a character that is not valid Unicode (a lone surrogate, "
                    "e.g. from a \\ud800 escape)",
                )
            )
            return None
        return _scalar(node)


def encodable(text: str) -> bool:
    """Whether ``text`` can be stored and sent as UTF-8 (a lone surrogate cannot)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class _TooBig(Exception):
    pass


class _TooDeep(Exception):
    def __init__(self, line: int | None) -> None:
        super().__init__(line)
        self.line = line


def _scalar(node: yaml.ScalarNode) -> Any:
    # Only unambiguous plain scalars get a type; everything else stays a string so that
    # `NO`, `on`, `0755` or `1:20` reach the validator as text and get a clear message.
    if node.style is not None and node.style != "":
        return node.value
    text = node.value
    if text in ("", "~", "null"):
        return None
    if text in ("true", "false"):
        return text == "true"
    if _INT.match(text):
        return int(text)
    return text


def _dotted(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _separator_line(text: str, content_line: int) -> int:
    """The 1-based line of the `---` that starts the document whose content starts at
    ``content_line`` (0-based): the line an operator has to delete."""
    lines = text.splitlines()
    for i in range(min(content_line, len(lines) - 1), -1, -1):
        if lines[i].startswith("---"):
            return i + 1
    return content_line + 1


def load_yaml(path: Path) -> Located:
    """Load one YAML document from ``path`` or raise InputError naming file and line."""
    name = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(
            [Problem(name, None, None, "file not found")], "cannot read definitions"
        ) from None
    except OSError as exc:
        raise InputError([Problem(name, None, None, f"cannot read: {exc.strerror}")]) from None
    if len(raw) > MAX_BYTES:
        raise InputError(
            [Problem(name, None, None, f"file is {len(raw):,} bytes; the limit is {MAX_BYTES:,}")]
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        bad_line = raw[: exc.start].count(b"\n") + 1
        raise InputError([Problem(name, bad_line, None, "file is not valid UTF-8")]) from None
    if not text.strip():
        raise InputError([Problem(name, 1, None, "file is empty")])
    try:
        docs = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise InputError(
            [Problem(name, line, None, f"invalid YAML: {exc.problem or exc}")]
        ) from None
    except yaml.YAMLError as exc:
        raise InputError([Problem(name, None, None, f"invalid YAML: {exc}")]) from None
    except RecursionError:
        raise InputError([Problem(name, None, None, "the document is nested too deeply")]) from None
    except (ValueError, OverflowError):
        # PyYAML turns an escape like "\U7fffffff" into chr() and lets its error through.
        raise InputError(
            [
                Problem(
                    name, _bad_escape_line(text), None, "invalid YAML: an escape is not a character"
                )
            ]
        ) from None
    docs = [d for d in docs if d is not None]
    if not docs:
        raise InputError([Problem(name, 1, None, "file has no content")])
    if len(docs) > 1:
        raise InputError(
            [
                Problem(
                    name,
                    _separator_line(text, docs[1].start_mark.line),
                    None,
                    "only one YAML document is allowed (found '---')",
                )
            ]
        )
    builder = _Builder(name)
    try:
        data = builder.build(docs[0], ())
    except _TooBig:
        raise InputError(
            [
                Problem(
                    name,
                    None,
                    None,
                    f"document expands to more than {MAX_NODES:,} nodes (alias bomb?)",
                )
            ]
        ) from None
    except (_TooDeep, RecursionError) as exc:
        deep_line = exc.line if isinstance(exc, _TooDeep) else None
        raise InputError(
            [
                Problem(
                    name,
                    deep_line,
                    None,
                    f"the document is nested more than {MAX_DEPTH} levels deep (recursive alias?)",
                )
            ]
        ) from None
    if builder.problems:
        raise InputError(builder.problems)
    return Located(data=data, lines=builder.lines, file=name)


def _bad_escape_line(text: str) -> int | None:
    """The line of the first \\U escape naming no Unicode character (beyond U+10FFFF)."""
    for match in re.finditer(r"\\U([0-9A-Fa-f]{8})", text):
        if int(match.group(1), 16) > 0x10FFFF:
            return text.count("\n", 0, match.start()) + 1
    return None
