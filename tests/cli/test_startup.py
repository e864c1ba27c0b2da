"""What the command loads before it does anything (issue 13: `status` and `subscribers counts`
answer in under a second on a list of a million, and most of a second was imports).

`status`, `subscribers counts` and `--version` need the store and the config; the send's weight
(rendering, CSS inlining, feeds, the mail templates) loads only when a command uses it. A
module-level import of one of those in a command module puts ~0.4 s back on every command.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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
