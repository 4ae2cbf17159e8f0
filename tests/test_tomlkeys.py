"""tomlkeys.key_lines: the line of every key, whichever way the table is written."""

from __future__ import annotations

import tomllib

from hypothesis import given
from hypothesis import strategies as st

from migrate_cli.tomlkeys import KeyPath, key_lines, line_of


def test_headers_dotted_keys_and_inline_tables() -> None:
    text = (
        "# migctl\n"  # 1
        'environment = "production"  # a = 1\n'  # 2
        "dashboard.url = 'https://d.example/[x]'\n"  # 3
        "\n"  # 4
        '[ email . "smtp" ]\n'  # 5
        'host = "relay.example"\n'  # 6
        "tls.verify = true\n"  # 7
        "[email]\n"  # 8
        'ses = { region = "eu-west-1", extra = { deep = 1 } }\n'  # 9
        "[[hooks]]\n"  # 10
        'name = "x"\n'  # 11
    )
    tomllib.loads(text)
    lines = key_lines(text)
    assert lines[("environment",)] == 2
    assert lines[("dashboard",)] == lines[("dashboard", "url")] == 3
    assert lines[("email",)] == lines[("email", "smtp")] == 5
    assert lines[("email", "smtp", "host")] == 6
    assert lines[("email", "smtp", "tls", "verify")] == 7
    assert lines[("email", "ses", "region")] == lines[("email", "ses", "extra", "deep")] == 9
    assert lines[("hooks",)] == 10
    assert ("a",) not in lines  # the comment's "a = 1" is not a key


def test_strings_arrays_and_comments_that_look_like_keys_are_skipped() -> None:
    text = (
        'a = """\n'  # 1
        "[email]\n"  # 2
        'b = \\"""" \n'  # 3: an escaped quote, then the closing delimiter after one more quote
        "c = '''\n"  # 4
        "d = 1\n"  # 5
        "'''\n"  # 6
        "e = [\n"  # 7
        "  1, # f = 2\n"  # 8
        '  "g = 3",\n'  # 9
        "  { h = 4 },\n"  # 10
        "]\n"  # 11
        "i = 'x\"y'\r\n"  # 12
        '"quoted \\u0041" = 5\n'  # 13
    )
    data = tomllib.loads(text)
    lines = key_lines(text)
    assert set(lines) == {(k,) for k in data}
    assert lines == {("a",): 1, ("c",): 4, ("e",): 7, ("i",): 12, ("quoted A",): 13}


def test_line_of_falls_back_to_the_nearest_written_ancestor() -> None:
    lines = key_lines("x = 1\n[email]\nprovider = 'smtp'\n")
    assert line_of(lines, ("email", "smtp", "host")) == 2
    assert line_of(lines, ("nope", "deeper")) is None


def test_text_tomllib_refused_never_raises() -> None:
    for text in ['a = "unterminated\n', "= 1\n", "[a\n", "a = [[[[" * 300]:
        key_lines(text)


# -- property: every key of a generated document is found on the line it was written on --------

NAMES = st.sampled_from(["a", "b", "host", "port", "smtp", "x-y", '"q.k"', "'lit'"])
TRICKY_VALUES = st.sampled_from(
    [
        "1",
        '"plain"',
        '"[not] = a header"',
        "'# not a comment'",
        '"""\nline = 1\n[fake]\n"""',
        "'''\n[[fake]]\n'''",
        "[\n  1,\n  2, # x = 1\n]",
        "[{ k = 1 }, { k = 2 }]",
        "1979-05-27 07:32:00",
        "{}",
    ]
)


def _plain(name: str) -> str:
    return name.strip("\"'")


@st.composite
def documents(draw: st.DrawFn) -> tuple[str, dict[KeyPath, int]]:
    out: list[str] = []
    expected: dict[KeyPath, int] = {}

    def note(path: KeyPath) -> None:
        line = sum(chunk.count("\n") + 1 for chunk in out) + 1
        for depth in range(1, len(path) + 1):
            expected.setdefault(path[:depth], line)

    def body(prefix: KeyPath, names: list[str]) -> None:
        for name in names:
            style = draw(st.sampled_from(["value", "dotted", "inline"]))
            path = (*prefix, _plain(name))
            note(path)
            if style == "value":
                out.append(f"{name} = {draw(TRICKY_VALUES)}")
            elif style == "dotted":
                note((*path, "leaf"))
                out.append(f"{name} . leaf = {draw(TRICKY_VALUES)}")
            else:
                note((*path, "k"))
                note((*path, "k", "m"))
                out.append(f"{name} = {{ k = {{ m = {draw(TRICKY_VALUES)} }} }}")

    unique = st.lists(NAMES, unique_by=_plain, max_size=4)
    body((), draw(unique))
    for table in draw(st.lists(st.sampled_from(["email", "dash", "e2"]), unique=True, max_size=3)):
        sub = draw(st.sampled_from(["", ".smtp", '."s t"']))
        path = (table, *([_plain(sub[1:])] if sub else []))
        note(path)
        out.append(f"[{table}{sub}]")
        body(path, draw(unique))
    return "\n".join(out) + "\n", expected


@given(documents())
def test_every_written_key_is_found_on_its_line(doc: tuple[str, dict[KeyPath, int]]) -> None:
    text, expected = doc
    tomllib.loads(text)  # the generator writes valid TOML
    assert key_lines(text) == expected
