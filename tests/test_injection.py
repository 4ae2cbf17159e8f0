"""Customer-controlled text (account names) at the rendering layer, and names that must not
leave their folders.

For every hostile name, and hypothesis-generated ones, the rendered notice:
- has a subject of exactly one line (no character any mail or text tool splits lines on);
- has exactly the template's HTML elements and attributes (multiset of (tag, attribute names),
  compared with a benign name);
- shows template syntax in a name literally (``{{7*7}}`` never becomes 49).

Header injection is tested once per layer: the MIME builder and every provider with hostile
header text in test_mime.py / test_providers_contract.py, the rendering here, and the whole CLI
(import -> notify -> the .eml files parsed back) in test_hostile_names.py.
"""

from __future__ import annotations

from collections import Counter
from datetime import date
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from migrate_cli.definitions.model import Migration
from migrate_cli.notices.render import (
    AccountRef,
    NoticeContext,
    Rendered,
    Renderer,
    override_name,
)
from migrate_cli.notices.templates import bundled_templates
from tests import fuzz_settings
from tests.fuzz_settings import count, examples

BENIGN = "Acme Production"
# RFC 2047 encoded words that decode to CR/LF (found by this suite: they added a Bcc header
# before mime.py neutralised encoded words in header text).
ENCODED_WORDS = ["=?UTF-8?Q?=0A?=Bcc: x@evil.test", "=?UTF-8?B?DQpCY2M6IHhAZXZpbC50ZXN0?="]
FIXED = [
    *ENCODED_WORDS,
    "{{7*7}}",
    "{% raw %}x{% endraw %}{{ config }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "' onmouseover='alert(1)",
    "Acme\r\nBcc: x@evil.test",
    "Acme\nBcc: x@evil.test",
    "Acme\r\n\r\n<html>body</html>",
    "Acme\u2028Bcc: x@evil.test",
    "Acme\u2029Bcc: x@evil.test",
    "\u202eevil\u202c Corp",
    "Acme\x00Bcc: x@evil.test",
    "Acme\x85Bcc: x@evil.test",
    "Acme\x0bBcc: x@evil.test",
    "Acme\x1cBcc: x@evil.test",
    "A" * 10_000,
    "Ünïcödé 名前 🚀",
    "<![CDATA[x]]><!-- c -->",
    "&lt;script&gt;",
]
KINDS = ["announcement", "reminder", "schedule_change", "enforced"]
MIGRATION = Migration(
    id="email-changes",
    title="Email changes",
    severity="high",
    grace_period_start=date(2016, 4, 4),
    mandatory_opt_in=date(2016, 5, 11),
    summary="Summary.",
    description="Some *markdown* and a [link](https://docs.example.com/x).",
    docs_url="https://docs.example.com/x",
)
TO = "admin@customer.example"


class _Shape(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.shape: Counter[tuple[str, tuple[str, ...]]] = Counter()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.shape[(tag, tuple(sorted(a for a, _ in attrs)))] += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)


def html_shape(html: str) -> Counter[tuple[str, tuple[str, ...]]]:
    parser = _Shape()
    parser.feed(html)
    parser.close()
    return parser.shape


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(bundled_templates(), "https://dashboard.example.com", product_name="Platform")


def context(kind: str, name: str) -> NoticeContext:
    return NoticeContext(
        migration=MIGRATION,
        kind=kind,
        admin_email=TO,
        deadline=date(2016, 5, 11),
        days_left=10,
        accounts=[AccountRef("acc-1", name, "free")],
        accounts_total=1,  # a single account: the subject names it too
        today=date(2016, 5, 1),
    )


def check_rendered(renderer: Renderer, kind: str, name: str) -> Rendered:
    benign = renderer.render(kind, context(kind, BENIGN))
    out = renderer.render(kind, context(kind, name))
    assert html_shape(out.html) == html_shape(benign.html), name[:80]
    # str.splitlines splits on every line break a mail or text tool might honour
    # (CR, LF, VT, FF, FS/GS/RS, NEL, LS, PS): the subject must be one line for all of them.
    assert len(out.subject.splitlines()) == 1 and "\x00" not in out.subject, repr(out.subject)
    if "{{7*7}}" in name:
        assert "{{7*7}}" in out.text and "{{7*7}}" in out.html
        assert "49" not in out.subject
    if "__subclasses__" in name:
        assert "subclasses__()" in out.text  # shown, not evaluated
    return out


@pytest.mark.parametrize("name", FIXED, ids=[f"fixed{i}" for i in range(len(FIXED))])
@pytest.mark.parametrize("kind", KINDS)
def test_fixed_names_render_as_data(renderer: Renderer, kind: str, name: str) -> None:
    count("injection: fixed names x kinds (render)")
    check_rendered(renderer, kind, name)


@examples(80)
@given(name=st.text(min_size=1, max_size=300), kind=st.sampled_from(KINDS))
def test_generated_names_render_as_data(renderer: Renderer, name: str, kind: str) -> None:
    count("injection: generated names (render)")
    check_rendered(renderer, kind, name)


# --------------------------------------------------------------------------- names cannot leave folders


@pytest.mark.parametrize(
    "bad", ["../x", "..", "a/b", "/etc", "a\\b", "A", "a.b", "", "x" * 65, "a\x00"]
)
def test_override_template_names_cannot_escape(bad: str) -> None:
    with pytest.raises(ValueError):
        override_name(bad, "reminder", "html")
    with pytest.raises(ValueError):
        override_name("ok", bad if bad else "../reminder", "html")


def test_renderer_refuses_traversal_migration_ids(renderer: Renderer) -> None:
    from dataclasses import replace

    evil = replace(MIGRATION, id="../../etc")
    ctx = NoticeContext(
        migration=evil,
        kind="reminder",
        admin_email=TO,
        deadline=None,
        days_left=None,
        accounts=[],
        accounts_total=0,
        today=date(2016, 5, 1),
    )
    with pytest.raises(ValueError):
        renderer.render("reminder", ctx)


def test_preview_out_writes_only_inside_its_folder(
    tmp_path: Path, runner: Any, synced_store: Path
) -> None:
    out = tmp_path / "previews" / "../previews2"
    before = {p for p in tmp_path.rglob("*")}
    r = runner(
        "--db",
        synced_store,
        "--now",
        "2016-04-20",
        "preview",
        "email-delivery-changes",
        "--kind",
        "reminder",
        "--out",
        out,
    )
    assert r.exit_code == 0, r.output
    created = {p for p in tmp_path.rglob("*")} - before
    target = out.resolve()
    files = [p for p in created if p.is_file() and not p.name.startswith("migctl.db")]
    assert files, created
    for p in files:
        assert p.resolve().parent == target, p
    assert {p.suffix for p in files} == {".html", ".eml"}


@pytest.mark.parametrize("kind", ["../../x", "reminder/../../x", "a b"])
def test_preview_kind_cannot_name_a_path(
    tmp_path: Path, runner: Any, synced_store: Path, kind: str
) -> None:
    r = runner(
        "--db",
        synced_store,
        "--now",
        "2016-04-20",
        "preview",
        "email-delivery-changes",
        "--kind",
        kind,
        "--out",
        tmp_path / "p",
    )
    assert r.exit_code == 2  # not one of the kinds: a usage mistake
    assert not list(tmp_path.glob("p/*"))


assert fuzz_settings.PROFILE
