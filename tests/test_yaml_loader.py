"""The safe YAML loader: no tags, no duplicate keys, no YAML 1.1 surprises, located errors, no crash."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrate_cli.definitions.model import load_definitions
from migrate_cli.definitions.yamlsafe import MAX_BYTES, load_yaml
from migrate_cli.errors import InputError


def write(text: str | bytes, name: str = "migrations.yaml") -> Path:
    path = Path(name)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def problems_of(path: Path) -> list:
    with pytest.raises(InputError) as info:
        load_yaml(path)
    return info.value.problems


def test_plain_document_and_line_map() -> None:
    doc = load_yaml(write("a: 1\nb:\n  c: [x, y]\n  d: text\n"))
    assert doc.data == {"a": 1, "b": {"c": ["x", "y"], "d": "text"}}
    assert doc.line("a") == 1
    assert doc.line("b", "d") == 4
    assert doc.line("b", "c", 1) == 3
    assert doc.line("b", "nope") == 2  # deepest known prefix


@pytest.mark.parametrize(
    "scalar",
    [
        "NO",
        "no",
        "on",
        "Off",
        "yes",
        "Y",
        "0755",
        "1:20",
        "1_000",
        "0x1F",
        "0o17",
        ".inf",
        "1e3",
        "1.5",
        "2016-05-11",
        "2016-05-11T10:00:00",
        "=",
        "<<",
    ],
)
def test_yaml_1_1_scalars_stay_text(scalar: str) -> None:
    """Anything that YAML 1.1 would silently turn into a bool, octal, sexagesimal or date stays a string."""
    doc = load_yaml(write(f"k: {scalar}\n"))
    assert doc.data == {"k": scalar}


def test_unambiguous_scalars_are_typed() -> None:
    doc = load_yaml(write("a: true\nb: false\nc: 42\nd: -7\ne: ~\nf: null\ng:\nh: '42'\n"))
    assert doc.data == {
        "a": True,
        "b": False,
        "c": 42,
        "d": -7,
        "e": None,
        "f": None,
        "g": None,
        "h": "42",
    }


def test_bom_is_accepted() -> None:
    doc = load_yaml(write(b"\xef\xbb\xbfa: 1\nb: 2\n"))
    assert doc.data == {"a": 1, "b": 2}
    assert doc.line("b") == 2


@pytest.mark.parametrize("text", ["", "   \n\n", "\ufeff"])
def test_empty_file(text: str) -> None:
    (p,) = problems_of(write(text))
    assert p.file == "migrations.yaml" and p.line == 1 and "empty" in p.message


def test_comment_only_file() -> None:
    (p,) = problems_of(write("# nothing here\n"))
    assert "no content" in p.message


def test_two_documents_refused_with_line() -> None:
    (p,) = problems_of(write("a: 1\n---\nb: 2\n"))
    assert p.line == 2  # the separator, the line to delete
    (p,) = problems_of(write("a: 1\n---\n# the second document\n\nb: 2\n"))
    assert p.line == 2
    assert "one YAML document" in p.message


def test_tabs_give_a_located_error() -> None:
    (p,) = problems_of(write("defaults:\n\ttimezone: UTC\nmigrations: []\n"))
    assert p.line == 2
    assert "invalid YAML" in p.message


def test_non_utf8_bytes_located() -> None:
    (p,) = problems_of(write(b"a: 1\nb: caf\xe9\n"))
    assert p.line == 2
    assert "UTF-8" in p.message


def test_syntax_error_located() -> None:
    (p,) = problems_of(write("a: [1, 2\nb: 3\n"))
    assert p.line is not None and "invalid YAML" in p.message


def test_file_over_two_megabytes_refused_without_parsing() -> None:
    path = write(b"# " + b"x" * MAX_BYTES + b"\n")
    (p,) = problems_of(path)
    assert "limit" in p.message and f"{MAX_BYTES:,}" in p.message


def test_missing_file() -> None:
    (p,) = problems_of(Path("nope.yaml"))
    assert p.file == "nope.yaml" and "not found" in p.message


def test_duplicate_keys_report_both_lines() -> None:
    problems = problems_of(write("a: 1\nb:\n  c: 1\n  c: 2\na: 3\n"))
    messages = {(p.line, p.field): p.message for p in problems}
    assert "duplicate key 'c' (first on line 3)" in messages[(4, "b.c")]
    assert "duplicate key 'a' (first on line 1)" in messages[(5, "a")]
    assert len(problems) == 2  # all at once


def test_merge_keys_refused() -> None:
    (p,) = problems_of(write("base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n"))
    assert p.line == 3 and "merge keys" in p.message


def test_complex_keys_refused() -> None:
    (p,) = problems_of(write("? [a, b]\n: 1\n"))
    assert "plain strings" in p.message


@pytest.mark.parametrize(
    ("text", "tag"),
    [
        ("x: !!python/object/apply:os.system ['touch PWNED']\n", "!!python/object/apply:os.system"),
        (
            "x: !!python/object/apply:os.system\n  args: ['touch PWNED']\n",
            "!!python/object/apply:os.system",
        ),
        ("x: !!python/name:os.system\n", "!!python/name:os.system"),
        ("x: !!binary aGVsbG8=\n", "!!binary"),
        ("x: !!set {a, b}\n", "!!set"),
        ("x: !!omap [a: 1]\n", "!!omap"),
        ("x: !custom thing\n", "!custom"),
    ],
)
def test_tags_are_refused_and_never_executed(
    text: str, tag: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*a: object, **k: object) -> int:
        raise AssertionError("os.system was called")

    monkeypatch.setattr(os, "system", boom)
    (p,) = problems_of(write(text))
    assert p.line == 1 and p.field == "x"
    assert tag in p.message and "not allowed" in p.message
    assert not Path("PWNED").exists()


def test_python_tag_in_a_real_definitions_file_is_refused() -> None:
    text = (
        "migrations:\n  - id: !!python/object/apply:os.system ['touch PWNED']\n"
        "    title: T\n    severity: low\n    grace_period_start: 2016-01-01\n"
        "    mandatory_opt_in: TBD\n    summary: s\n"
    )
    with pytest.raises(InputError) as info:
        load_definitions(write(text))
    assert "migrations.yaml:2: migrations[0].id: YAML tag" in str(info.value)
    assert not Path("PWNED").exists()


def test_alias_bomb_is_refused_before_it_expands() -> None:
    """Nine levels of nine aliases expand to 9**10 items: a loader that expanded them would
    never return, so reaching the assertion proves the refusal came first (no timing needed)."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 9)}]")
    (p,) = problems_of(write("\n".join(lines) + "\n"))
    assert "alias bomb" in p.message


def test_recursive_alias_is_refused() -> None:
    (p,) = problems_of(write("a: &a [*a]\n"))
    assert "nested" in p.message


def test_very_deep_nesting_is_refused() -> None:
    (p,) = problems_of(write("a: " + "[" * 5000 + "]" * 5000 + "\n"))
    assert "nested" in p.message


def test_moderate_aliases_are_fine() -> None:
    doc = load_yaml(write("base: &n {reminder_every: 7d}\nx: *n\n"))
    assert doc.data["x"] == {"reminder_every": "7d"}


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    path = write(data, "fuzz.yaml")
    try:
        load_definitions(path)
    except InputError as exc:
        assert exc.problems
        assert all(p.file == "fuzz.yaml" for p in exc.problems)


_TOKENS = [*"ab:-[]{}&*!?|>'\"#%@`,\n\t 0123456789TBDdh"]
_TOKENS += ["migrations", "defaults", "  ", "- ", "id", "notices", "!!", "<<"]
_YAMLISH = st.lists(st.sampled_from(_TOKENS), max_size=80).map("".join)


@settings(max_examples=300, deadline=None)
@given(_YAMLISH)
def test_arbitrary_yamlish_text_never_crashes(text: str) -> None:
    path = write(text, "fuzz.yaml")
    try:
        load_definitions(path)
    except InputError as exc:
        assert exc.problems
