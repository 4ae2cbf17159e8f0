"""Customer-controlled text (account names) through rendering and every provider's message.

For every hostile name, and hypothesis-generated ones:
- the message has exactly the headers of a benign notice and exactly one recipient;
- the HTML has exactly the template's elements and attributes (multiset of (tag, attribute
  names), compared with a benign name);
- template syntax in a name stays literal (``{{7*7}}`` never becomes 49).
"""

from __future__ import annotations

import io
import json
import os
from collections import Counter
from collections.abc import Iterator
from datetime import date
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from migrate_cli.definitions.model import Migration
from migrate_cli.delivery.mime import as_bytes, build_message
from migrate_cli.delivery.registry import OutgoingEmail, SendStatus, provider_class
from migrate_cli.delivery.sendgrid import build_payload
from migrate_cli.notices.render import AccountRef, NoticeContext, Renderer, override_name
from migrate_cli.notices.templates import bundled_templates
from migrate_cli.store.outbox import message_id, notice_key
from tests import fuzz_settings
from tests.fakes.common import header_names, make_config, parse
from tests.fakes.sendgrid_server import FakeSendgrid
from tests.fakes.ses_server import DUMMY_AWS_ENV, FakeSes
from tests.fakes.smtp_server import SmtpServer
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
SENDER = "Platform Team <notices@platform.example>"
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


def outgoing(renderer: Renderer, kind: str, name: str) -> OutgoingEmail:
    r = renderer.render(kind, context(kind, name))
    key = notice_key(MIGRATION.id, TO, kind, "2016-05-01")
    return OutgoingEmail(
        key=key,
        to=TO,
        from_addr=SENDER,
        subject=r.subject,
        text=r.text,
        html=r.html,
        message_id=message_id(key, SENDER),
        reply_to="support@platform.example",
        headers={"X-Migctl-Kind": kind, "X-Migctl-Migration": MIGRATION.id},
    )


def check_rendered(renderer: Renderer, kind: str, name: str) -> OutgoingEmail:
    benign = renderer.render(kind, context(kind, BENIGN))
    email = outgoing(renderer, kind, name)
    assert html_shape(email.html) == html_shape(benign.html), name[:80]
    assert "\n" not in email.subject and "\r" not in email.subject
    if "{{7*7}}" in name:
        assert "{{7*7}}" in email.text and "{{7*7}}" in email.html
        assert "49" not in email.subject
    if "__subclasses__" in name:
        assert "subclasses__()" in email.text  # shown, not evaluated
    return email


def check_mime(email: OutgoingEmail, benign_names: list[str]) -> None:
    raw = as_bytes(build_message(email))
    assert header_names(raw) == benign_names
    msg = parse(raw)
    assert msg.get_all("To") == [TO]
    assert msg.get_all("Bcc") is None and msg.get_all("Cc") is None
    assert "\n" not in str(msg["Subject"])
    html = msg.get_body(("html",))
    assert html is not None


@pytest.fixture(scope="module")
def benign_header_names(renderer: Renderer) -> dict[str, list[str]]:
    return {k: header_names(as_bytes(build_message(outgoing(renderer, k, BENIGN)))) for k in KINDS}


@pytest.mark.parametrize("name", FIXED, ids=[f"fixed{i}" for i in range(len(FIXED))])
@pytest.mark.parametrize("kind", KINDS)
def test_fixed_names_render_and_build_safely(
    renderer: Renderer, benign_header_names: dict[str, list[str]], kind: str, name: str
) -> None:
    count("injection: fixed names x kinds (render + MIME + SendGrid JSON)")
    email = check_rendered(renderer, kind, name)
    check_mime(email, benign_header_names[kind])
    payload = build_payload(email)
    assert payload["personalizations"] == [{"to": [{"email": TO}]}]
    assert "\n" not in payload["subject"] and "\r" not in payload["subject"]
    assert set(payload["headers"]) == {
        "Message-ID",
        "X-Migctl-Notice",
        "X-Migctl-Kind",
        "X-Migctl-Migration",
    }


@examples(80)
@given(name=st.text(min_size=1, max_size=300), kind=st.sampled_from(KINDS))
def test_generated_names_render_and_build_safely(
    renderer: Renderer, benign_header_names: dict[str, list[str]], name: str, kind: str
) -> None:
    count("injection: generated names (render + MIME + SendGrid JSON)")
    email = check_rendered(renderer, kind, name)
    check_mime(email, benign_header_names[kind])
    payload = build_payload(email)
    assert [p["to"] for p in payload["personalizations"]] == [[{"email": TO}]]
    json.dumps(payload)  # serialisable as the provider would post it


# --------------------------------------------------------------------------- every provider, on the wire


@pytest.fixture(scope="module")
def wire(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    saved = dict(os.environ)
    os.environ.update(DUMMY_AWS_ENV)
    os.environ["SG_INJECTION_TEST_KEY"] = "SG.injection-test-key"
    tmp = tmp_path_factory.mktemp("wire")
    try:
        with (
            SmtpServer() as smtp,
            FakeSes() as ses,
            FakeSendgrid(api_key="SG.injection-test-key") as sg,
        ):
            yield {"smtp": smtp, "ses": ses, "sendgrid": sg, "tmp": tmp}
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _send_and_read(
    name: str, wire: dict[str, Any], email: OutgoingEmail
) -> tuple[list[str], bytes | None, dict[str, Any] | None]:
    """Send with provider ``name``; return (recipients, raw MIME or None, SendGrid JSON or None)."""
    if name == "console":
        stream = io.StringIO()
        with provider_class("console")(make_config("console"), stream=stream) as p:
            assert p.send(email).status is SendStatus.SENT
        raw = stream.getvalue().split("-" * 79 + "\n")[0].encode("ascii").replace(b"\n", b"\r\n")
        return [], raw, None
    if name == "file":
        d = wire["tmp"] / f"out-{len(list(wire['tmp'].iterdir()))}"
        with provider_class("file")(make_config("file", file={"directory": d})) as p:
            assert p.send(email).status is SendStatus.SENT
        (f,) = list(d.glob("*.eml"))
        return [], f.read_bytes(), None
    if name == "smtp":
        server = wire["smtp"]
        before = len(server.messages)
        config = make_config(
            "smtp", smtp={"host": "127.0.0.1", "port": server.port, "security": "none"}
        )
        with provider_class("smtp")(config) as p:
            assert p.send(email).status is SendStatus.SENT
        (m,) = server.messages[before:]
        return m.rcpt_tos, m.data, None
    if name == "ses":
        ses = wire["ses"]
        before = len(ses.requests)
        if "ses-provider" not in wire:  # one boto3 client for the module: creating one is slow
            wire["ses-provider"] = provider_class("ses")(
                make_config("ses", ses={"endpoint_url": ses.url})
            )
        assert wire["ses-provider"].send(email).status is SendStatus.SENT
        (req,) = ses.requests[before:]
        return req.body["Destination"]["ToAddresses"], req.raw_message, None
    if name == "sendgrid":
        sg = wire["sendgrid"]
        before = len(sg.requests)
        config = make_config(
            "sendgrid", sendgrid={"api_key_env": "SG_INJECTION_TEST_KEY", "host": sg.url}
        )
        with provider_class("sendgrid")(config) as p:
            assert p.send(email).status is SendStatus.SENT
        (payload,) = sg.requests[before:]
        return [t["email"] for per in payload["personalizations"] for t in per["to"]], None, payload
    raise ValueError(name)


PROVIDERS = ["console", "file", "smtp", "ses", "sendgrid"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_fixed_names_through_every_provider(
    renderer: Renderer,
    benign_header_names: dict[str, list[str]],
    wire: dict[str, Any],
    provider: str,
) -> None:
    benign_email = outgoing(renderer, "reminder", BENIGN)
    _, benign_raw, benign_payload = _send_and_read(provider, wire, benign_email)
    for name in FIXED:
        count("injection: fixed names on the wire (per provider)")
        email = outgoing(renderer, "reminder", name)
        recipients, raw, payload = _send_and_read(provider, wire, email)
        if provider in ("smtp", "ses", "sendgrid"):
            assert recipients == [TO], (provider, name[:60], recipients)
        if raw is not None:
            assert benign_raw is not None
            assert header_names(raw) == header_names(benign_raw), (provider, name[:60])
            msg = parse(raw)
            assert msg.get_all("To") == [TO]
            assert msg.get_all("Bcc") is None
            html_part = msg.get_body(("html",))
            assert html_part is not None
            html = html_part.get_content()
        else:
            assert payload is not None and benign_payload is not None
            assert set(payload) == set(benign_payload)
            assert set(payload["headers"]) == set(benign_payload["headers"])
            assert "\n" not in payload["subject"]
            html = payload["content"][1]["value"]
        benign_html = renderer.render("reminder", context("reminder", BENIGN)).html
        assert html_shape(html) == html_shape(benign_html), (provider, name[:60])
        if "{{7*7}}" in name:
            assert "{{7*7}}" in html


@pytest.mark.parametrize("name", ENCODED_WORDS, ids=["q-encoded-lf", "b-encoded-crlf"])
def test_encoded_word_names_cannot_add_headers(
    renderer: Renderer, benign_header_names: dict[str, list[str]], name: str
) -> None:
    email = check_rendered(renderer, "reminder", name)
    check_mime(email, benign_header_names["reminder"])


@pytest.mark.parametrize("provider", ["file", "smtp", "ses"])
def test_encoded_word_names_on_the_wire(
    renderer: Renderer, wire: dict[str, Any], provider: str
) -> None:
    _, raw, _ = _send_and_read(provider, wire, outgoing(renderer, "reminder", ENCODED_WORDS[0]))
    assert raw is not None
    msg = parse(raw)
    assert msg.get_all("Bcc") is None, "a Bcc header was injected"


def test_null_provider_accepts_hostile_names(renderer: Renderer) -> None:
    with provider_class("null")(make_config("null")) as p:
        for name in FIXED:
            assert p.send(outgoing(renderer, "reminder", name)).status is SendStatus.SENT


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
    assert r.exit_code == 1
    assert not list(tmp_path.glob("p/*"))


def test_end_to_end_hostile_names_through_cli_file_provider(tmp_path: Path, runner: Any) -> None:
    """Import hostile names from CSV, notify with the file provider, parse every .eml."""
    import csv

    from tests.test_fuzz_loaders import REPO

    rows = [["id", "name", "plan", "tags", "created_at", "status", "admins"]]
    importable = [n for n in FIXED if "\x00" not in n and len(n) <= 1000]
    for i, name in enumerate(importable):
        rows.append(
            [
                f"acc-{i}",
                name,
                "enterprise",
                "",
                "2015-01-01",
                "active",
                f"admin{i}@customer.example",
            ]
        )
    path = tmp_path / "hostile.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    cfg = tmp_path / "migctl.toml"
    cfg.write_text(
        '[email]\nprovider = "file"\nfrom = "notices@platform.example"\n[email.file]\ndirectory = "outbox"\n'
    )
    db = tmp_path / "m.db"
    assert (
        runner(
            "--db",
            db,
            "--config",
            cfg,
            "--now",
            "2016-03-01",
            "sync",
            "--file",
            REPO / "migrations.yaml",
        ).exit_code
        == 0
    )
    assert runner("--db", db, "--config", cfg, "accounts", "import", path).exit_code == 0
    r = runner("--db", db, "--config", cfg, "--now", "2016-04-20", "notify", "--json")
    assert r.exit_code == 0, r.output
    files = sorted((tmp_path / "outbox").glob("*.eml"))
    assert len(files) >= len(importable)
    shapes = set()
    for f in files:
        count("injection: end-to-end CLI .eml")
        msg = parse(f.read_bytes())
        assert len(msg.get_all("To")) == 1
        assert msg.get_all("Bcc") is None
        html = msg.get_body(("html",)).get_content()
        shapes.add(frozenset(html_shape(html)))
        if "{{7*7}}" in f.read_text(errors="replace") or "7*7" in html:
            assert "49" not in str(msg["Subject"])
    assert len(shapes) <= 2 * len(
        {m for m in ("vulnerable-password-flow", "email-delivery-changes")}
    )


assert fuzz_settings.PROFILE
