"""Customer-controlled account names are data: imported as given, never evaluated as templates,
escaped in HTML, flattened to one line, and unable to touch a notice's headers (SPEC section 6).

Every hostile name gets its own administrator, so each .eml carries exactly one of them; one
more administrator gets all of them in one digest. The .eml files come from the real `file`
provider and are parsed with Python's `email` package (policy=default).
"""

from __future__ import annotations

import json
import os
import re
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from migrate_cli.cli.app import app
from tests.helpers_notices import (
    ONE_MIGRATION,
    account,
    flat,
    parse_eml,
    parts,
    write_csv,
    write_jsonl,
)

# (account id, name as imported, how the name must read in the text part)
HOSTILE = [
    ("h-jinja", "{{ 7*7 }}", "{{ 7*7 }}"),
    ("h-raw", "{% raw %}", "{% raw %}"),
    ("h-stmt", "{% for x in range(3) %}X{% endfor %}", "{% for x in range(3) %}X{% endfor %}"),
    ("h-script", "<script>alert(1)</script>", "<script>alert(1)</script>"),
    ("h-attr", '"><img src=x onerror=alert(1)>', '"><img src=x onerror=alert(1)>'),
    ("h-crlf", "Line one\r\nBcc: x@evil.test", "Line one Bcc: x@evil.test"),
    ("h-lf", "Acme\nSubject: pwned", "Acme Subject: pwned"),
    ("h-ew", "=?UTF-8?Q?=0A?=Bcc: x@evil.test", "=?UTF-8?Q?=0A?=Bcc: x@evil.test"),
    ("h-ew-spoof", "=?UTF-8?B?UGF5IGludm9pY2UgNDI=?=", "=?UTF-8?B?UGF5IGludm9pY2UgNDI=?="),
    ("h-ew-b", "=?UTF-8?B?DQpCY2M6IHhAZXZpbC50ZXN0?=", "=?UTF-8?B?DQpCY2M6IHhAZXZpbC50ZXN0?="),
    ("h-blank", "Acme\r\n\r\n<html>body</html>", "Acme <html>body</html>"),
    ("h-nel", "Acme\x85Bcc: x@evil.test", "Acme Bcc: x@evil.test"),
    ("h-u2028", "Before\u2028After", "Before After"),
    ("h-u2029", "Before\u2029After", "Before After"),
    ("h-rlo", "Invoice \u202etxt.exe", "Invoice txt.exe"),
    ("h-long", "N" * 1000, "N" * 199 + "\u2026"),  # the importer's limit; the email caps at 200
]
BENIGN = ("benign", "Plain Company Ltd", "Plain Company Ltd")
EXPECTED_HEADERS = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "MIME-Version",
    "X-Migctl-Notice",
    "X-Migctl-Kind",
    "X-Migctl-Migration",
    "Content-Type",
]
NOW = "2016-04-20"


SUBJECT = "[Platform] Action needed: Email Delivery Changes, opt in by 11 May 2016 for "
SUBJECT_LIMIT = 200


def subject_for(shown: str) -> str:
    subject = SUBJECT + shown
    if len(subject) > SUBJECT_LIMIT:
        subject = subject[: SUBJECT_LIMIT - 1].rstrip() + "\u2026"
    return subject


def admin_for(acc_id: str) -> str:
    return f"{acc_id}@x.test"


def cli(*args: str) -> object:
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def hostile_mail(tmp_path_factory: pytest.TempPathFactory) -> dict[str, EmailMessage]:
    """One store, one notify through the file provider; every .eml parsed, by recipient."""
    root = tmp_path_factory.mktemp("hostile")
    (root / "migrations.yaml").write_text(ONE_MIGRATION.replace("{mandatory}", "2016-05-11"))
    (root / "migctl.toml").write_text(
        'environment = "development"\n[email]\nprovider = "file"\n'
        'from = "Platform Notices <notices@platform.example>"\nreply_to = "support@platform.example"\n'
        '[email.file]\ndirectory = "outbox"\n[dashboard]\nurl = "https://dash.example.com/m"\n'
    )
    rows = [
        account(acc_id, [admin_for(acc_id), "all@x.test"], name=name)
        for acc_id, name, _ in [*HOSTILE, BENIGN]
    ]
    write_csv(root / "accounts.csv", rows)
    base = ("--db", root / "m.db", "--config", root / "migctl.toml")
    # Module-scoped, so built before the autouse per-test isolation: isolate it the same way.
    with pytest.MonkeyPatch.context() as mp:
        for name in [n for n in os.environ if n.startswith("MIGCTL_")]:
            mp.delenv(name)
        mp.chdir(root)
        for args in (
            ("--now", "2016-03-01", "sync", "--file", root / "migrations.yaml"),
            ("--now", "2016-03-01", "accounts", "import", root / "accounts.csv"),
            ("--now", NOW, "notify", "--json"),
        ):
            result = cli(*base, *args)
            assert result.exit_code == 0, (args, result.stdout, result.stderr)  # type: ignore[attr-defined]
    mail: dict[str, EmailMessage] = {}
    for path in sorted((root / "outbox").glob("*.eml")):
        msg = parse_eml(path)
        assert str(msg["To"]) not in mail, "one notice per administrator"
        mail[str(msg["To"])] = msg
    assert len(mail) == len(HOSTILE) + 2
    return mail


class Tags(HTMLParser):
    """Every (tag, attribute) pair and all text data of an HTML document."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.pairs: set[tuple[str, str]] = set()
        self.tags: set[str] = set()
        self.data: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.pairs.update((tag, name) for name, _ in attrs)

    handle_startendtag = handle_starttag

    def handle_data(self, data: str) -> None:
        self.data.append(data)


def _header_cases() -> list[object]:
    return [pytest.param(*case, id=case[0]) for case in [*HOSTILE, BENIGN]]


@pytest.mark.parametrize(("acc_id", "name", "shown"), _header_cases())
def test_headers_are_exactly_the_notices_own(
    hostile_mail: dict[str, EmailMessage], acc_id: str, name: str, shown: str
) -> None:
    msg = hostile_mail[admin_for(acc_id)]
    assert list(msg.keys()) == EXPECTED_HEADERS
    assert not msg.defects
    to = msg.get_all("To")
    assert to is not None and len(to) == 1
    assert [a.addr_spec for a in msg["To"].addresses] == [admin_for(acc_id)]
    assert msg["Bcc"] is None and msg["Cc"] is None
    # A one-account digest names the account in the subject: the one header customer text
    # reaches. It must come back exactly as the flattened name, not as anything decoded from it.
    # An encoded word in a name is defused with a WORD JOINER after its "=" (mime.py), so it
    # reads the same but is never decoded into header structure.
    assert str(msg["Subject"]).replace("=\u2060?", "=?") == subject_for(shown)
    assert re.search(r"=\?[^?\s]*\?[bBqQ]\?", str(msg["Subject"])) is None
    assert (
        str(msg["X-Migctl-Notice"])
        == f"email-delivery-changes|{admin_for(acc_id)}|announcement|announcement"
    )
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    for part in msg.iter_parts():
        assert not part.defects
        assert set(part.keys()) <= {"Content-Type", "Content-Transfer-Encoding"}


@pytest.mark.parametrize(("acc_id", "name", "shown"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_the_text_part_shows_the_name_literally_on_one_line(
    hostile_mail: dict[str, EmailMessage], acc_id: str, name: str, shown: str
) -> None:
    text = parts(hostile_mail[admin_for(acc_id)])["plain"]
    # one line: the name, the id, then the account's own date
    (line,) = [x for x in text.split("\n") if x.startswith(f"- {shown} ({acc_id})")]
    assert line.removeprefix(f"- {shown} ({acc_id})").startswith(": ")
    assert "- 49 (" not in text and "XXX" not in text  # never evaluated
    for ch in ("\r", "\x85", "\u2028", "\u2029", "\u202e"):
        assert ch not in text
    # The raw name's header-looking tail is never at the start of a line.
    assert not any(line.startswith(("Bcc:", "Subject: pwned")) for line in text.splitlines())


@pytest.mark.parametrize(("acc_id", "name", "shown"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_the_html_part_has_only_the_templates_own_tags_and_attributes(
    hostile_mail: dict[str, EmailMessage], acc_id: str, name: str, shown: str
) -> None:
    benign = Tags(parts(hostile_mail[admin_for(BENIGN[0])])["html"])
    html = parts(hostile_mail[admin_for(acc_id)])["html"]
    found = Tags(html)
    assert found.pairs == benign.pairs
    assert found.tags == benign.tags
    assert not found.tags & {"script", "img", "iframe", "object", "form"}
    assert not any(attr.startswith("on") for _, attr in found.pairs)
    # The name is there as text (escaped in the source, literal once parsed).
    assert shown in "".join(found.data)
    assert "- 49" not in html and ">49<" not in html
    for ch in ("\x85", "\u2028", "\u2029", "\u202e"):
        assert ch not in html


def test_one_digest_with_every_hostile_name(hostile_mail: dict[str, EmailMessage]) -> None:
    msg = hostile_mail["all@x.test"]
    assert list(msg.keys()) == EXPECTED_HEADERS
    text = parts(msg)["plain"]
    for acc_id, _, shown in [*HOSTILE, BENIGN]:
        assert f"- {shown} ({acc_id})" in text
    found = Tags(parts(msg)["html"])
    benign = Tags(parts(hostile_mail[admin_for(BENIGN[0])])["html"])
    assert found.pairs == benign.pairs


def test_jsonl_import_keeps_the_same_names(runner: object, tmp_path: Path) -> None:
    rows = [
        {**account(acc_id, admin_for(acc_id), name=name), "admins": [admin_for(acc_id)]}
        for acc_id, name, _ in HOSTILE
    ]
    write_jsonl(tmp_path / "accounts.jsonl", rows)
    result = runner("accounts", "import", "accounts.jsonl")  # type: ignore[operator]
    assert result.exit_code == 0, result.stderr
    listed = json.loads(runner("accounts", "list", "--json", "--limit", "50").stdout)  # type: ignore[operator]
    # Stored as given (only surrounding whitespace is trimmed); cleaning happens on output.
    assert {a["id"]: a["name"] for a in listed["accounts"]} == {
        acc_id: name.strip() for acc_id, name, _ in HOSTILE
    }


def test_a_10000_character_name_is_refused_with_its_line_and_nothing_is_imported(
    runner: object,
) -> None:
    # 1000 characters is a generous cap for a display name; 10,000 is not a name, and a
    # clear refusal (file, line, field, limit) beats silently truncating customer data.
    write_csv(
        Path("accounts.csv"),
        [
            account("fine", "a@x.test", name="Fine"),
            account("huge", "b@x.test", name="Z" * 10_000),
        ],
    )
    result = runner("accounts", "import", "accounts.csv")  # type: ignore[operator]
    assert result.exit_code == 1
    err = flat(result.stderr)
    assert "accounts.csv:3" in err and "name" in err and "10000" in err and "1000" in err
    # nothing imported: the store this first command would have created is not left behind
    assert sorted(p.name for p in Path().iterdir()) == ["accounts.csv"]


@pytest.mark.parametrize(
    "admins",
    [
        "x@evil.test\nBcc: y@evil.test",
        "x@evil.test, y@evil.test",
        "Name <x@evil.test>",
        "x@evil.test\rBcc: y@evil.test",
    ],
)
def test_hostile_administrator_addresses_are_refused(runner: object, admins: str) -> None:
    write_csv(Path("accounts.csv"), [account("acme", admins)])
    result = runner("accounts", "import", "accounts.csv")  # type: ignore[operator]
    assert result.exit_code == 1, result.stdout
    assert "accounts.csv:2" in flat(result.stderr) and "admins" in flat(result.stderr)


def test_preview_eml_with_hostile_names_has_the_same_guarantees(runner: object) -> None:
    from tests.helpers_notices import build_store

    build_store([account(acc_id, "ops@x.test", name=name) for acc_id, name, _ in HOSTILE])
    result = runner(
        "--now",
        NOW,
        "preview",
        "email-delivery-changes",
        "--kind",
        "reminder",  # type: ignore[operator]
        "--out",
        "previews",
    )
    assert result.exit_code == 0, result.stderr
    (eml,) = Path("previews").glob("*.eml")
    msg = parse_eml(eml)
    assert list(msg.keys()) == EXPECTED_HEADERS
    text = parts(msg)["plain"]
    for acc_id, _, shown in HOSTILE:
        assert f"- {shown} ({acc_id})" in text
    html_file = Tags(next(Path("previews").glob("*.html")).read_text())
    assert not html_file.tags & {"script", "img"}
    assert not any(attr.startswith("on") for _, attr in html_file.pairs)
