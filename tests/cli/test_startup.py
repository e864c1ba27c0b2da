"""What the command loads before it does anything (issue 13: `status` and `subscribers counts`
answer in under a second on a list of a million, and most of a second was imports).

`status`, `subscribers counts` and `--version` need the store and the config; the send's weight
(rendering, CSS inlining, feeds, the mail templates) loads only when a command uses it. A
module-level import of one of those in a command module puts ~0.4 s back on every command.
"""

from __future__ import annotations

import email
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from newsletter.config import load_settings
from newsletter.models import SubscriberStatus
from newsletter.store import open_store
from tests.support.clock import at_send_time
from tests.support.config import ROOT, sample_config
from tests.support.faketime import wall_clock_env
from tests.support.smtp_server import SmtpServer

SAMPLE_FEED = Path(__file__).resolve().parents[2] / "feeds" / "sample-ree-news.xml"
pytestmark = pytest.mark.slow  # each test starts a fresh interpreter

HEAVY = ("premailer", "newsletter.pipeline", "newsletter.render", "newsletter.feeds",
         "newsletter.subscriptions", "newsletter.confirm_mail", "mailbox")  # fmt: skip


def loaded_after(code: str) -> set[str]:
    probe = f"import sys\n{code}\nprint('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_the_parser_and_every_command_module_load_without_the_sends_weight() -> None:
    loaded = loaded_after("from newsletter.cli.main import build_parser\nbuild_parser()")
    assert "newsletter.cli.delivery" in loaded and "newsletter.cli.send" in loaded
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_a_send_still_finds_what_it_imports_late() -> None:
    loaded = loaded_after("from newsletter.cli import send, run\nimport newsletter.pipeline")
    assert "premailer" in loaded  # the probe can see a heavy module when it is there


def test_a_send_on_a_day_without_an_editors_note_does_not_load_markdown() -> None:
    """markdown-it reads an editor's note, and most days have none: ~14 ms of a send's
    start-up (the first message is due within 1 s of it) when it is not used."""
    loaded = loaded_after("from newsletter.cli import send, run\nimport newsletter.pipeline")
    assert "newsletter.render.notes" in loaded
    assert "markdown_it" not in loaded
    loaded = loaded_after("from newsletter.render.notes import note_from_markdown\n"
                          "note_from_markdown('*REE*')")  # fmt: skip
    assert "markdown_it" in loaded


def test_a_send_whose_feeds_are_files_makes_no_http_client() -> None:
    """The HTTP client's transport (httpcore, a TLS context) is ~50 ms of start-up: only a
    feed on the web needs it. The probe collects the bundled sample feed, then a feed on the
    web (a closed port on 127.0.0.1: it fails, but through the client)."""
    probe = (
        "import asyncio, sys\n"
        "from datetime import datetime, UTC\n"
        "from newsletter.config.settings import FeedConfig, FetchConfig\n"
        "from newsletter.feeds import collect\n"
        "fetch = FetchConfig(timeout=2, max_bytes=1_000_000, user_agent='t')\n"
        "now = datetime(2026, 11, 28, tzinfo=UTC)\n"
        "def run(url):\n"
        "    batch = asyncio.run(collect([FeedConfig('f', url)], fetch, {}, now))\n"
        "    print(batch.reports[0].ok, len(batch.articles), 'httpcore' in sys.modules)\n"
        f"run({str(SAMPLE_FEED)!r})\n"
        "run('http://127.0.0.1:9/feed.xml')\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["True 18 False", "False 0 True"]


def test_premailer_loads_without_an_http_client_and_cannot_fetch() -> None:
    """premailer imports requests (urllib3, chardet, charset_normalizer: ~60 ms of start-up)
    only to fetch stylesheets from the web. A send inlines without it; premailer's `requests`
    refuses every use, and the real requests is still there for anyone who imports it."""
    probe = (
        "import sys\n"
        "from newsletter.errors import RenderError\n"
        "from newsletter.render.inline import inline_css, premailer\n"
        "html = inline_css('<html><head><link rel=stylesheet href=\"http://127.0.0.1:9/a.css\">'\n"
        "                  '</head><body><p>x</p></body></html>', 'p {color: red}')\n"
        "print('style=\"color:red\"' in html, 'a.css' in html)\n"
        "print(*[name for name in ('requests', 'urllib3', 'chardet') if name in sys.modules])\n"
        "try:\n"
        "    premailer.premailer.requests.get('http://127.0.0.1:9/a.css')\n"
        "except RenderError as exc:\n"
        "    print('refused:', exc)\n"
        "import requests\n"
        "print(requests.get.__module__)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == [
        "True True",
        "",
        "refused: premailer asked for requests.get: inlining never uses the network",
        "requests.api",
    ], out.stderr


def test_premailer_gets_the_real_requests_where_it_is_already_loaded() -> None:
    probe = "import requests\nfrom newsletter.render.inline import premailer\n"
    probe += "print(premailer.premailer.requests is requests)\n"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True"]


def test_the_ciphers_load_with_the_first_sealed_address_not_at_start() -> None:
    """cryptography's ciphers (~40 ms) serve VERP's sealed addresses only; most sends have
    none (`verp_domain` unset). Every command and the send's own modules start without them."""
    loaded = loaded_after("from newsletter.cli import send, run\nimport newsletter.pipeline")
    assert "newsletter.bounces" in loaded
    assert "cryptography.hazmat.primitives.ciphers" not in loaded
    loaded = loaded_after(
        "from newsletter.bounces import Verp\nVerp(['k' * 32], 'bounce.example.com').address(7)"
    )
    assert "cryptography.hazmat.primitives.ciphers" in loaded


@pytest.mark.parametrize("ed25519", [False, True])
def test_a_signed_sends_signer_loads_without_dkimpy_or_a_dns_library(
    tmp_path: Path, ed25519: bool
) -> None:
    """dkimpy (the reference verifier, which `check` uses to read a published record) pulls in
    dnspython and PyNaCl: 60-140 ms of a signed send's start. The signer reads its keys with
    cryptography, and a probe shows it signing without them."""
    from newsletter.mail.dkim import ED25519, RSA, generate_key

    generate_key("s", RSA, tmp_path / "rsa.pem")
    generate_key("e", ED25519, tmp_path / "ed.key")
    second = f"'e', Path({str(tmp_path / 'ed.key')!r})" if ed25519 else "'', None"
    loaded = loaded_after(
        "from datetime import UTC, datetime\nfrom pathlib import Path\n"
        "from newsletter.config import DkimConfig\nfrom newsletter.mail import dkim_signer\n"
        f"config = DkimConfig('example.com', 's', Path({str(tmp_path / 'rsa.pem')!r}), {second})\n"
        "sign = dkim_signer(config, lambda: datetime(2026, 11, 28, tzinfo=UTC))\n"
        "signed = sign(b'From: a@example.com\\r\\nSubject: x\\r\\n\\r\\nbody\\r\\n')\n"
        "assert signed.count(b'DKIM-Signature:') == (2 if config.ed25519_selector else 1)\n"
    )
    assert "newsletter.mail.dkim" in loaded
    assert not {"dkim", "dns", "nacl"} & loaded


def test_a_send_as_cron_starts_it_loads_no_bar_no_http_client_and_no_postgresql_dialect(
    tmp_path: Path,
) -> None:
    """The first message is due within 1 s of the start. A send with no terminal (cron, the
    scheduler), on SQLite, whose feeds are files, needs neither rich's bar (~40 ms of imports),
    httpx (~80 ms), requests (~60 ms) nor SQLAlchemy's PostgreSQL dialect (~40 ms). The probe
    runs the real command to the end, then lists what it loaded; SQLite's dialect and premailer
    show it can see them."""
    issue_day = date(2026, 11, 28)
    with SmtpServer() as smtp:
        config = sample_config(tmp_path, smtp.port)
        settings = load_settings(config)
        clock = at_send_time(settings, issue_day)
        store = open_store(settings.database_url)
        try:
            store.add_subscriber(
                "reader@example.org", status=SubscriberStatus.ACTIVE, source="test", now=clock()
            )
        finally:
            store.close()
        args = ["--config", str(config), "send", "--force", "--date", issue_day.isoformat()]
        probe = (
            "import runpy, sys\n"
            f"sys.argv = ['newsletter', *{args!r}]\n"
            "try:\n"
            "    runpy.run_module('newsletter', run_name='__main__', alter_sys=True)\n"
            "except SystemExit as exc:\n"
            "    print('exit', exc.code)\n"
            "wanted = ['rich', 'httpx', 'sqlalchemy.dialects.postgresql', 'requests',\n"
            "          'urllib3', 'sqlalchemy.dialects.sqlite', 'premailer']\n"
            "print(*[name for name in wanted if name in sys.modules])\n"
        )
        env = {"NEWSLETTER_SECRET_KEY": "startup-test", **wall_clock_env(clock())}
        out = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT,
            env={**os.environ, **env}, timeout=120,
        )  # fmt: skip
        received = smtp.messages
    lines = out.stdout.strip().splitlines()
    assert lines[-2:] == ["exit 0", "sqlalchemy.dialects.sqlite premailer"], out.stderr
    assert [message.rcpt_tos for message in received] == [("reader@example.org",)]
    assert email.message_from_bytes(received[0].data)["To"] == "reader@example.org"


def test_a_read_only_open_of_a_current_store_does_not_load_alembic(tmp_path: Path) -> None:
    """`status`, `subscribers counts` and a dry run open the store read-only, which checks its
    schema revision; walking Alembic's scripts to know an older one took ~0.16 s of each,
    and a store at the program's own revision needs no walk. An older store still does."""
    url = f"sqlite:///{tmp_path / 'current.db'}"
    open_store(url).close()  # made, at the head revision
    probe = (
        "from newsletter.store import open_store\n"
        f"store = open_store({url!r}, read_only=True)\n"
        "print(sum(store.count_by_status().values()))\n"
        "store.close()\n"
    )
    loaded = loaded_after(probe)
    assert "newsletter.store.migrate" in loaded
    assert not {name for name in loaded if name.split(".")[0] == "alembic"}
    store = open_store(url)
    try:
        with store.engine.begin() as conn:  # an older revision: refused, after a look
            conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0010'")
    finally:
        store.close()
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.returncode != 0 and "this program needs" in out.stderr, out.stderr
