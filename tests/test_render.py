"""Tests for notice rendering: every kind, escaping, subjects, Markdown, overrides and check()."""

from __future__ import annotations

import shutil
import unicodedata
from dataclasses import FrozenInstanceError, replace
from datetime import date
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jinja2 import UndefinedError
from markupsafe import escape

from migrate_cli.definitions.model import NOTICE_KINDS, Migration
from migrate_cli.errors import ConfigError
from migrate_cli.notices.render import (
    MAX_LISTED_ACCOUNTS,
    SUBJECT_LIMIT,
    AccountRef,
    NoticeContext,
    Rendered,
    Renderer,
    markdown_to_html,
    markdown_to_text,
    one_line,
    override_name,
    sample_context,
)

TEMPLATES = Path(__file__).resolve().parent.parent / "email_templates"
# The demo's override folder lives in examples/, outside the shipped templates.
DEMO_OVERRIDE = Path(__file__).resolve().parent.parent / "examples" / "email-delivery-changes"
DASHBOARD = "https://dashboard.example.com/migrations"
TODAY = date(2016, 4, 20)

EMAIL = Migration(
    id="email-delivery-changes",
    title="Email Delivery Changes",
    severity="medium",
    grace_period_start=date(2016, 4, 4),
    mandatory_opt_in=date(2016, 5, 11),
    summary="The built-in email provider becomes test-only.",
    description="Use a *third-party* provider in production.\n\n- Amazon SES\n- SendGrid",
    docs_url="https://docs.example.com/email",
)
# Same as EMAIL but with no override folder: the default templates' wording.
DATED = replace(EMAIL, id="email-provider-changes")
PASSWORD = Migration(
    id="vulnerable-password-flow",
    title="Vulnerable Password Flow",
    severity="high",
    grace_period_start=date(2016, 3, 22),
    mandatory_opt_in=None,
    summary="Password resets move to the new flow.",
    description="Upgrade to **Lock 9** or later.",
)
PER_PLAN = Migration(
    id="per-plan-change",
    title="Per-plan change",
    severity="low",
    grace_period_start=date(2016, 4, 1),
    mandatory_opt_in={"free": date(2016, 5, 1), "enterprise": date(2016, 6, 1)},
    summary="Dates differ per plan.",
)

ACCOUNTS = (
    AccountRef("acc-1", "Acme Production", "free"),
    AccountRef("acc-2", "Acme Staging", "free"),
    AccountRef("acc-3", "Globex", "enterprise"),
)


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(TEMPLATES, DASHBOARD, product_name="Example Cloud")


def ctx(
    kind: str = "reminder",
    migration: Migration = DATED,
    deadline: date | None = date(2016, 5, 11),
    accounts: tuple[AccountRef, ...] = ACCOUNTS,
    accounts_total: int | None = None,
    **extra: object,
) -> NoticeContext:
    return NoticeContext(
        migration=migration,
        kind=kind,
        admin_email="ops@customer.example",
        deadline=deadline,
        days_left=(deadline - TODAY).days if deadline else None,
        accounts=accounts,
        accounts_total=len(accounts) if accounts_total is None else accounts_total,
        today=TODAY,
        **extra,  # type: ignore[arg-type]
    )


class _Shape(HTMLParser):
    """Records the tags and attribute names of a document, and every href."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.shape: set[tuple[str, tuple[str, ...]]] = set()
        self.tags: set[str] = set()
        self.hrefs: list[str] = []
        self.styles = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.shape.add((tag, tuple(sorted(name for name, _ in attrs))))
        for name, value in attrs:
            if name == "href":
                self.hrefs.append(value or "")
            if name == "style":
                self.styles += 1


def shape(html: str) -> _Shape:
    parser = _Shape()
    parser.feed(html)
    parser.close()
    return parser


def flat(text: str) -> str:
    """The text part is wrapped; compare wording with whitespace runs collapsed."""
    return " ".join(text.split())


def assert_single_line(subject: str) -> None:
    assert subject == subject.strip()
    assert len(subject) <= SUBJECT_LIMIT
    for ch in subject:
        assert unicodedata.category(ch) not in ("Cc", "Zl", "Zp"), repr(subject)


# --- every kind -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", NOTICE_KINDS)
def test_each_kind_renders_with_a_date(renderer: Renderer, kind: str) -> None:
    out = renderer.render(kind, ctx(kind))
    assert isinstance(out, Rendered)
    for raw in (out.text, out.html):
        part = flat(raw)
        assert "Email Delivery Changes" in part
        assert "email-provider-changes" in part
        assert "Medium" in part
        assert DASHBOARD in part
        assert "https://docs.example.com/email" in part
        assert "Acme Production" in part and "acc-3" in part
        assert "never changes anything" in part
    assert_single_line(out.subject)
    assert "Email Delivery Changes" in out.subject
    if kind != "enforced":
        for raw in (out.text, out.html):
            part = flat(raw)
            assert "11 May 2016" in part
            assert "21 days left" in part
            assert "opt each account in" in part
            assert "administer 3 accounts with pending changes" in part


@pytest.mark.parametrize("kind", [k for k in NOTICE_KINDS if k != "enforced"])
def test_each_kind_says_when_the_date_is_not_set(renderer: Renderer, kind: str) -> None:
    out = renderer.render(kind, ctx(kind, migration=PASSWORD, deadline=None))
    assert "not set yet (TBD)" in out.text
    assert "Not set yet (TBD)" in out.html
    assert "None" not in out.text and "None" not in out.html
    assert "TBD" in out.subject or "not set yet" in out.subject


def test_enforced_renders_without_a_date(renderer: Renderer) -> None:
    out = renderer.render("enforced", ctx("enforced", migration=PASSWORD, deadline=None))
    assert "now on" in out.text and "now on" in out.html
    assert "None" not in out.text + out.html


def test_per_plan_deadline_is_passed_as_a_single_date(renderer: Renderer) -> None:
    out = renderer.render("reminder", ctx(migration=PER_PLAN, deadline=date(2016, 6, 1)))
    assert "1 June 2016" in out.text and "1 June 2016" in out.html
    assert "42 days left" in out.subject


@pytest.mark.parametrize(
    ("days", "wording"),
    [(30, "30 days left"), (7, "7 days left"), (1, "1 day left"), (0, "the deadline is today")],
)
def test_reminder_puts_days_left_first(renderer: Renderer, days: int, wording: str) -> None:
    context = replace(ctx(), days_left=days)
    out = renderer.render("reminder", context)
    assert wording in out.subject
    assert wording.upper() in out.text.splitlines()[1]
    assert wording.capitalize() in out.html


def test_account_list_and_more(renderer: Renderer) -> None:
    out = renderer.render("reminder", ctx(accounts_total=10))
    for account in ACCOUNTS:
        assert f"- {account.name} ({account.id})" in out.text
        assert account.name in out.html and account.id in out.html
    assert "and 7 more" in out.text and "and 7 more" in out.html
    assert "administer 10 accounts" in flat(out.text) and "administer 10 accounts" in out.html


def test_no_more_line_when_the_list_is_complete(renderer: Renderer) -> None:
    out = renderer.render("reminder", ctx())
    assert "more" not in out.text.replace("more than", "")
    assert "and 0 more" not in out.html


def test_an_overlong_account_list_is_capped(renderer: Renderer) -> None:
    many = tuple(AccountRef(f"acc-{i}", f"Account {i}", "free") for i in range(150))
    out = renderer.render("reminder", ctx(accounts=many))
    assert "Account 99 (acc-99)" in out.text
    assert "Account 100 (acc-100)" not in out.text
    assert f"and {150 - MAX_LISTED_ACCOUNTS} more" in out.text


def test_single_account_is_named_in_the_subject(renderer: Renderer) -> None:
    out = renderer.render("reminder", ctx(accounts=ACCOUNTS[:1]))
    assert out.subject.endswith("for Acme Production")
    assert "administer 1 account with" in flat(out.text)


def test_emergency_enforced_says_so_and_gives_the_reason(renderer: Renderer) -> None:
    context = ctx("enforced", emergency=True, reason="Actively exploited token leak")
    out = renderer.render("enforced", context)
    assert out.subject.startswith("[Example Cloud] Emergency change:")
    assert "EMERGENCY CHANGE" in out.text and "Emergency change" in out.html
    assert "immediately" in out.text and "immediately" in out.html
    assert "Reason: Actively exploited token leak" in out.text
    assert "Actively exploited token leak" in out.html
    assert "now on" in out.text and "now on" in out.html
    assert "ACCOUNTS SWITCHED (3)" in out.text


def test_ordinary_enforced_is_not_called_an_emergency(renderer: Renderer) -> None:
    out = renderer.render("enforced", ctx("enforced"))
    assert "emergency" not in (out.subject + out.text + out.html).lower()
    assert "grace period has ended" in out.text
    assert "Switched on: 20 April 2016" in out.text
    assert "opt each account in" not in out.text


@pytest.mark.parametrize(
    ("previous", "new", "old_text", "new_text", "subject"),
    [
        (date(2016, 5, 11), date(2016, 6, 1), "11 May 2016", "1 June 2016", "Date moved"),
        (None, date(2016, 6, 1), "not set (TBD)", "1 June 2016", "Date set"),
        (date(2016, 5, 11), None, "11 May 2016", "not set yet (TBD)", "Date withdrawn"),
    ],
)
def test_schedule_change_shows_old_and_new(
    renderer: Renderer,
    previous: date | None,
    new: date | None,
    old_text: str,
    new_text: str,
    subject: str,
) -> None:
    out = renderer.render(
        "schedule_change", ctx("schedule_change", deadline=new, previous_deadline=previous)
    )
    assert f"Old deadline: {old_text}" in out.text
    assert f"New deadline: {new_text}" in out.text
    old_html = old_text if previous else "TBD"
    new_html = new_text if new else "TBD"
    assert f"{old_html}</span> &rarr; <strong>{new_html}</strong>" in out.html
    assert subject in out.subject
    assert out.subject.endswith(f"is now due {new_text if new else 'TBD'}")


# --- customer text is data ----------------------------------------------------------------------

HOSTILE = [
    "{{7*7}}",
    "{% raw %}x{% endraw %}",
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "' onmouseover='alert(1)",
    "<b>Bold & Co</b>",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_account_names_are_escaped_and_never_evaluated(
    renderer: Renderer, name: str
) -> None:
    benign = renderer.render("reminder", ctx(accounts=(AccountRef("acc-1", "Benign", "free"),)))
    out = renderer.render("reminder", ctx(accounts=(AccountRef("acc-1", name, "free"),)))
    assert shape(out.html).shape == shape(benign.html).shape
    assert str(escape(name)) in out.html
    assert name in out.text  # text/plain is not HTML: no entities
    assert name in out.subject
    if "{{" in name:
        assert "49" not in out.text and "49" not in out.html and "49" not in out.subject


def test_text_part_is_not_html_escaped(renderer: Renderer) -> None:
    context = ctx("announcement", accounts=(AccountRef("a", "<b>R&D</b>", "x"),))
    out = renderer.render("announcement", context)
    assert "<b>R&D</b>" in out.text
    assert "&lt;" not in out.text and "&amp;" not in out.text
    assert "&lt;b&gt;R&amp;D&lt;/b&gt;" in out.html


def test_hostile_reason_is_escaped(renderer: Renderer) -> None:
    context = ctx("enforced", emergency=True, reason="<script>x</script>\r\nBcc: a@b")
    out = renderer.render("enforced", context)
    assert "<script>" not in out.html
    assert "Reason: <script>x</script> Bcc: a@b" in out.text


SEPARATORS = ["\r", "\n", "\r\n", "\u2028", "\u2029", "\x00", "\x0b", "\x85", "\u202e"]


@pytest.mark.parametrize("sep", SEPARATORS)
def test_subject_is_one_line_whatever_the_title_and_names(renderer: Renderer, sep: str) -> None:
    migration = replace(EMAIL, title=f"Email{sep}Bcc: evil@example.com")
    account = AccountRef("acc-1", f"Acme{sep}Subject: x", "free")
    for kind in NOTICE_KINDS:
        out = renderer.render(kind, ctx(kind, migration=migration, accounts=(account,)))
        assert_single_line(out.subject)
        assert "Email Bcc: evil@example.com" in out.subject


def test_subject_is_capped(renderer: Renderer) -> None:
    migration = replace(EMAIL, title="Very long title " * 40)
    for kind in NOTICE_KINDS:
        out = renderer.render(kind, ctx(kind, migration=migration))
        assert SUBJECT_LIMIT - 2 <= len(out.subject) <= SUBJECT_LIMIT
        assert out.subject.endswith("…")


def test_one_line() -> None:
    assert one_line("a\r\nb\u2028c\x00d\te  f") == "a b c d e f"
    assert one_line("x" * 10, 5) == "xxxx…"
    assert one_line("x" * 5, 5) == "xxxxx"


# Any text, with the characters that matter here (markup, template syntax, line breaks,
# controls) drawn far more often than chance would.
NAMES = st.text(
    alphabet=st.one_of(
        st.characters(exclude_categories=("Cs",)),
        st.sampled_from(list("<>&\"'{}%#/=\r\n\t\x00\x1b\x7f\x85\u2028\u2029\u202e")),
    ),
    max_size=300,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=NAMES, title=NAMES, kind=st.sampled_from(NOTICE_KINDS))
def test_any_account_name_is_safe(name: str, title: str, kind: str) -> None:
    renderer = _shared_renderer()
    migration = replace(DATED, title=title or "t")
    context = ctx(kind, migration=migration, accounts=(AccountRef("acc-1", name, "free"),))
    out = renderer.render(kind, context)
    assert_single_line(out.subject)
    clean = one_line(name, 200)
    assert str(escape(clean)) in out.html
    assert clean in out.text
    for part in (out.text, out.html):
        assert not any(unicodedata.category(ch) == "Cc" and ch not in "\n" for ch in part)
    benign = renderer.render(kind, replace(context, accounts=(AccountRef("acc-1", "x", "free"),)))
    assert shape(out.html).shape == shape(benign.html).shape


_RENDERER: list[Renderer] = []


def _shared_renderer() -> Renderer:
    # hypothesis does not mix with function-scoped fixtures; build one renderer for all examples.
    if not _RENDERER:
        _RENDERER.append(Renderer(TEMPLATES, DASHBOARD))
    return _RENDERER[0]


# --- Markdown ------------------------------------------------------------------------------------

HOSTILE_MARKDOWN = """\
Intro with <script>alert(1)</script> and <b onclick="x()">raw</b>.

[bad](javascript:alert(1)) [worse](JaVaScRiPt:alert(1)) <javascript:alert(2)>
[data](data:text/html;base64,PHNjcmlwdD4=) [relative](/email/providers)
[good](https://example.com/a?b=1&c=2) [mail](mailto:security@example.com)
![pixel](https://tracker.example.com/p.gif)

<a href="javascript:alert(3)">html link</a>
"""


def test_markdown_raw_html_and_unsafe_links_are_neutralised() -> None:
    html = str(markdown_to_html(HOSTILE_MARKDOWN))
    parsed = shape(html)
    assert parsed.tags <= {"p", "a", "em", "strong", "code", "pre", "ul", "ol", "li"}
    assert "script" not in parsed.tags and "img" not in parsed.tags and "b" not in parsed.tags
    assert parsed.hrefs == ["https://example.com/a?b=1&c=2", "mailto:security@example.com"]
    assert "&lt;script&gt;" in html
    assert "javascript:" not in " ".join(parsed.hrefs).lower()
    assert "relative" in html  # the label stays, the dead link goes
    assert "pixel" in html  # images become their alt text


def test_markdown_html_carries_inline_styles() -> None:
    html = str(markdown_to_html("Para with `code` and [a](https://x.example).\n\n- one\n"))
    assert '<p style="' in html and '<ul style="' in html and '<code style="' in html
    assert '<a href="https://x.example" style="' in html


def test_markdown_to_text() -> None:
    text = markdown_to_text(
        "Use **Lock 9** or [later](https://x.example/lock).\n\n"
        "- one\n- two\n\n1. first\n2. second\n\n> quoted\n\n    code\n\n[docs](/relative)"
    )
    assert text == (
        "Use Lock 9 or later (https://x.example/lock).\n\n"
        "- one\n- two\n\n1. first\n2. second\n\n> quoted\n\n    code\n\ndocs"
    )


def test_description_is_rendered_into_both_parts(renderer: Renderer) -> None:
    migration = replace(EMAIL, description=HOSTILE_MARKDOWN)
    out = renderer.render("announcement", ctx("announcement", migration=migration))
    parsed = shape(out.html)
    assert "script" not in parsed.tags
    assert all(h.startswith(("https://", "mailto:")) for h in parsed.hrefs)
    assert "good (https://example.com/a?b=1&c=2)" in out.text
    assert "<script>alert(1)</script>" in out.text  # plain text is inert


# --- HTML conventions ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", NOTICE_KINDS)
def test_html_is_email_safe(renderer: Renderer, kind: str) -> None:
    out = renderer.render(kind, ctx(kind, emergency=True, reason="r"))
    parsed = shape(out.html)
    assert not parsed.tags & {"script", "style", "link", "form", "input", "button", "iframe"}
    assert "table" in parsed.tags and "max-width:600px" in out.html
    assert not any("class" in attrs for _, attrs in parsed.shape)
    assert parsed.styles > 20
    assert set(parsed.hrefs) == {DASHBOARD, "https://docs.example.com/email"}
    assert "Medium severity" in out.html and "Example Cloud" in out.html


def test_text_has_no_markup(renderer: Renderer) -> None:
    for kind in NOTICE_KINDS:
        text = renderer.render(kind, ctx(kind)).text
        assert "<p" not in text and "&amp;" not in text and "&rarr;" not in text
        assert "\n\n\n" not in text and text.endswith("\n") and not text.endswith("\n\n")


# --- templates on disk ---------------------------------------------------------------------------


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    """The shipped templates plus the demo's override folder, as `make demo` lays them out."""
    target = tmp_path / "email_templates"
    shutil.copytree(TEMPLATES, target)
    shutil.copytree(DEMO_OVERRIDE, target / EMAIL.id)
    return target


def test_the_shipped_templates_carry_no_override_folder() -> None:
    assert not [p.name for p in TEMPLATES.iterdir() if p.is_dir()]


def test_the_demo_override_applies_to_its_migration_only(templates: Path) -> None:
    renderer = Renderer(templates, DASHBOARD, product_name="Example Cloud")
    ours = renderer.render("reminder", ctx(migration=EMAIL))
    other = renderer.render("reminder", ctx(migration=DATED))
    assert "Pick a delivery service" in ours.text
    assert "Pick a delivery service" not in other.text
    # only the text part is overridden: HTML and subject stay the defaults
    assert "Pick a delivery service" not in ours.html
    assert renderer.template_name(EMAIL.id, "reminder", "text") == f"{EMAIL.id}/reminder.txt"
    assert renderer.template_name(EMAIL.id, "reminder", "html") == "reminder.html"


def test_override_subset_in_a_folder(templates: Path) -> None:
    folder = templates / PASSWORD.id
    folder.mkdir()
    (folder / "announcement.subject.txt").write_text("Custom: {{ migration.title }}\n")
    renderer = Renderer(templates, DASHBOARD)
    assert renderer.render("announcement", ctx("announcement", PASSWORD)).subject == (
        "Custom: Vulnerable Password Flow"
    )
    assert renderer.render("announcement", ctx("announcement", EMAIL)).subject.startswith(
        "[Platform] Action needed"
    )


@pytest.mark.parametrize("bad", ["../etc", "..", "a/b", "a\\b", "Upper", "a.b", "", "é"])
def test_override_names_cannot_escape_the_folder(renderer: Renderer, bad: str) -> None:
    with pytest.raises(ValueError):
        override_name(bad, "reminder", "text")
    with pytest.raises(ValueError):
        renderer.render("reminder", ctx(migration=replace(EMAIL, id=bad)))


@pytest.mark.parametrize("bad", ["../reminder", "reminder/x", "Reminder", "nope", "re-minder"])
def test_bad_kinds_are_rejected(renderer: Renderer, bad: str) -> None:
    with pytest.raises(ValueError):
        renderer.render(bad, replace(ctx(), kind=bad))


def test_kind_must_match_the_context(renderer: Renderer) -> None:
    with pytest.raises(ValueError, match="reminder"):
        renderer.render("announcement", ctx("reminder"))


def test_dashboard_url_must_be_http() -> None:
    with pytest.raises(ConfigError):
        Renderer(TEMPLATES, "javascript:alert(1)")


def test_rendered_is_frozen(renderer: Renderer) -> None:
    out = renderer.render("reminder", ctx())
    with pytest.raises(FrozenInstanceError):
        out.subject = "x"  # type: ignore[misc]


# --- check() -------------------------------------------------------------------------------------


def test_check_passes_on_the_shipped_templates(renderer: Renderer) -> None:
    assert renderer.check([EMAIL, DATED, PASSWORD, PER_PLAN]) == []


def test_check_reports_a_syntax_error_with_file_and_line(templates: Path) -> None:
    path = templates / "reminder.html"
    lines = path.read_text().splitlines()
    lines.insert(3, "{% if days_left %}unclosed {{ days_left + }}")
    path.write_text("\n".join(lines) + "\n")
    problems = Renderer(templates, DASHBOARD).check([EMAIL, PASSWORD])
    assert len(problems) == 1
    assert problems[0].file == str(templates / "reminder.html")
    assert problems[0].line == 4
    assert "syntax error" in problems[0].message


def test_check_reports_a_syntax_error_in_the_layout(templates: Path) -> None:
    path = templates / "layout.txt"
    source = path.read_text()
    number = source[: source.index("{% endblock %}")].count("\n") + 1
    path.write_text(source.replace("{% endblock %}", "{% endblok %}", 1))
    problems = Renderer(templates, DASHBOARD).check([EMAIL])
    # reported once, though every kind extends the layout
    assert [(p.file, p.line) for p in problems] == [(str(path), number)]


def test_strict_undefined_catches_a_misspelled_variable(templates: Path) -> None:
    path = templates / "announcement.txt"
    lines = path.read_text().splitlines()
    number = next(i for i, line in enumerate(lines, 1) if "grace_period_start" in line)
    path.write_text(path.read_text().replace("grace_period_start", "grace_period_strat"))
    renderer = Renderer(templates, DASHBOARD)
    problems = renderer.check([EMAIL])
    assert [(p.file, p.line) for p in problems] == [(str(path), number)]
    assert "grace_period_strat" in problems[0].message
    with pytest.raises(UndefinedError):
        renderer.render("announcement", ctx("announcement"))


def test_check_reports_an_error_in_an_override(templates: Path) -> None:
    (templates / EMAIL.id / "enforced.html").write_text(
        '{% extends "layout.html" %}\n{% block intro %}\n{{ reasn }}\n{% endblock %}\n'
    )
    problems = Renderer(templates, DASHBOARD).check([EMAIL])
    assert [(p.file, p.line) for p in problems] == [
        (str(templates / EMAIL.id / "enforced.html"), 3)
    ]


def test_check_reports_forbidden_html(templates: Path) -> None:
    (templates / EMAIL.id / "enforced.html").write_text(
        '{% extends "layout.html" %}{% block intro %}<form><script>x</script></form>{% endblock %}'
    )
    problems = Renderer(templates, DASHBOARD).check([EMAIL])
    assert len(problems) == 1 and "<form>, <script>" in problems[0].message


def test_check_reports_folders_files_and_missing_defaults(templates: Path) -> None:
    (templates / "no-such-migration").mkdir()
    (templates / EMAIL.id / "reminder.md").write_text("x")
    (templates / EMAIL.id / ".DS_Store").write_text("x")
    (templates / "schedule_change.subject.txt").unlink()
    problems = Renderer(templates, DASHBOARD).check([EMAIL])
    found = {
        (Path(p.file).relative_to(templates).as_posix(), p.message.split(";")[0]) for p in problems
    }
    assert found == {
        ("schedule_change.subject.txt", "missing default template"),
        (f"{EMAIL.id}/reminder.md", "unknown file in an override folder"),
    }
    # an override folder of an unknown migration is a warning, not a problem
    warnings = Renderer(templates, DASHBOARD).unknown_override_folders([EMAIL])
    assert [(Path(w.file).name, w.message) for w in warnings] == [
        (
            "no-such-migration",
            "override folder 'no-such-migration' is not a known migration id (ignored)",
        )
    ]


# --- sample data ---------------------------------------------------------------------------------


@pytest.mark.parametrize("migration", [EMAIL, PASSWORD, PER_PLAN])
@pytest.mark.parametrize("kind", NOTICE_KINDS)
def test_sample_context_renders(renderer: Renderer, migration: Migration, kind: str) -> None:
    context = sample_context(migration, kind, TODAY)
    assert len(context.accounts) == 3 and context.accounts_total == 3
    out = renderer.render(kind, context)
    assert "Acme Production" in out.text


def test_sample_context_uses_the_plan_dates() -> None:
    context = sample_context(PER_PLAN, "reminder", TODAY)
    assert {a.plan for a in context.accounts} == {"free", "enterprise"}
    assert context.deadline == date(2016, 5, 1)
    assert sample_context(PASSWORD, "reminder", TODAY).deadline is None
