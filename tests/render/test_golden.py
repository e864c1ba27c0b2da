"""Golden test: a WordPress-shaped feed, as the site publishes it, to the digest's text part.

`tests/data/golden/wordpress.xml` holds the cases of issue 10 in one feed: tracking parameters
on every link, a syndicated copy under another guid, cp874 mojibake in a title, an author and a
body, an escaped `<blink>` in a title, an excerpt ending ". […]", a fullwidth colon, Persian
ZWNJ, slot markers in a title, link and summary, a link with a quote and a space, a relative
guid, an over-long title, an over-long link, and entries outside the window (undated: first
seen after the cutoff; yesterday's; scheduled for later). `wordpress-digest.txt` is the text
part a reader gets, reviewed line by line. The invisible WORD JOINER that keeps feed text from
being a slot is written `[U+2060]` there so a reviewer can see it.

After an intended change: `REE_GOLDEN_UPDATE=1 pytest tests/render/test_golden.py`, then review the
diff of the expected file line by line before committing it.
"""

from __future__ import annotations

import asyncio
import os
from datetime import date
from pathlib import Path

from lxml import html as lxml_html

from newsletter.compose import personalize
from newsletter.config import load_settings
from newsletter.mail.outbox import OutboxTransport
from newsletter.models import Digest, Recipient
from newsletter.pipeline import Run, run_issue
from newsletter.render import subject_line
from newsletter.store import open_store
from tests.support.clock import at_send_time
from tests.support.config import closed_port, make_config

GOLDEN = Path(__file__).parents[1] / "data" / "golden"
FEED = GOLDEN / "wordpress.xml"
EXPECTED = GOLDEN / "wordpress-digest.txt"
DAY = date(2026, 11, 28)
READER = Recipient(
    subscriber_id=1,
    email="reader@example.org",
    unsubscribe_url="https://ree-news.example.com/newsletter/u/TOKEN.signature",
)


def digest_of_the_day(tmp_path: Path) -> Digest:
    config = make_config(tmp_path, [("REE News", str(FEED))], closed_port())
    settings = load_settings(config)
    store = open_store(f"sqlite:///{tmp_path / 'absent.db'}", read_only=True)  # a fresh store
    try:
        run = Run(settings, store, OutboxTransport(), at_send_time(settings, DAY), dry_run=True)
        summary, digest = asyncio.run(run_issue(run, DAY))
    finally:
        store.close()
    assert digest is not None, summary
    return digest


def test_wordpress_feed_to_text_part(tmp_path: Path) -> None:
    digest = digest_of_the_day(tmp_path)
    text = personalize(digest.text, READER, escape=False).replace("\u2060", "[U+2060]")
    if os.environ.get("REE_GOLDEN_UPDATE"):
        EXPECTED.write_text(text, encoding="utf-8")
    expected = EXPECTED.read_text(encoding="utf-8")
    assert text.splitlines() == expected.splitlines()
    assert text == expected


def test_the_same_feed_in_the_html_part_and_subject(tmp_path: Path) -> None:
    digest = digest_of_the_day(tmp_path)
    doc = lxml_html.document_fromstring(digest.html)
    titles = doc.xpath("//h3//text()")
    assert "History of the <blink> tag, and what magnet makers can learn from it" in titles
    assert "History of the &lt;blink&gt; tag" in digest.html  # escaped once, not twice
    assert not doc.xpath("//blink") and "&amp;lt;" not in digest.html
    assert "Separation capacity outside China—the year in review" in titles
    assert doc.xpath("//a[@href=$u]", u="https://ok.example/a%22onmouseover=%22alert(1)%20b")
    assert not [a for a in doc.xpath("//a/@href") if "utm_" in a or "fbclid" in a]
    assert digest.subject == (
        "REE Daily, 28 Nov 2026: Lynas lifts NdPr output 18% as Kalgoorlie plant ramps up"
    )
    assert len(digest.article_ids) == 10
    blink = subject_line("REE Daily", DAY, "History of the <blink> tag")
    assert blink == "REE Daily, 28 Nov 2026: History of the <blink> tag"
