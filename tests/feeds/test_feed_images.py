"""An article's picture and categories, taken from the feed as WordPress and others carry them.

Real feeds served over HTTP on 127.0.0.1 (the pictures themselves are never fetched), and the
choosing rule on its own with Hypothesis: whatever a feed says, a chosen picture is https,
bounded, an image format mail clients show, and never a tracking pixel.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import urlsplit

from hypothesis import example, given
from hypothesis import strategies as st

from newsletter.feeds.images import RawImage, choose
from newsletter.models import LINK_MAX, Article, Image
from newsletter.store.entries import dump_article, load_article
from tests.feeds.test_feeds import SAMPLE, feed, run, server
from tests.support.feedserver import FeedServer

__all__ = ["server"]  # the fixture, shared with test_feeds

SITE = "https://ree-news.example.com/wp-content/uploads/2026/11/"
MEDIA = 'xmlns:media="http://search.yahoo.com/mrss/"'


def rss(items: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0" {MEDIA}><channel>'
        f"<title>REE News</title><link>https://ree-news.example.com/</link>{items}"
        "</channel></rss>"
    ).encode()


def item(n: int, extra: str = "", body: str = "<p>Text.</p>") -> str:
    return (
        f"<item><title>Story {n}</title><link>https://ree-news.example.com/{n}/</link>"
        f"<guid>s{n}</guid><pubDate>Fri, 27 Nov 2026 10:00:00 GMT</pubDate>{extra}"
        f"<description><![CDATA[Summary {n}.]]></description>"
        f"<content:encoded xmlns:content='http://purl.org/rss/1.0/modules/content/'>"
        f"<![CDATA[{body}]]></content:encoded></item>"
    )


def images_of(server: FeedServer, items: str) -> dict[str, Image | None]:
    url = server.add("/feed", rss(items))
    batch = run([feed("REE News", url)])
    return {article.title: article.image for article in batch.articles}


def test_each_way_wordpress_carries_a_featured_image(server: FeedServer) -> None:
    items = "".join([
        item(1, f'<media:content url="{SITE}small.jpg" medium="image" width="300" height="200"/>'
                f'<media:content url="{SITE}big.jpg" medium="image" width="1200" height="800"/>'),
        item(2, f'<media:thumbnail url="{SITE}thumb.jpg" width="150" height="150"/>'),
        item(3, f'<enclosure url="{SITE}photo.png" length="1234" type="image/png"/>'),
        item(4, body='<p>Text.</p><img src="/wp-content/uploads/2026/11/inline.jpg" '
                     'alt="Mixer-settlers at a plant" width="1024" height="576">'),
        item(5, f'<media:content url="{SITE}same.jpg" medium="image" width="800" height="450"/>',
             body=f'<img src="{SITE}same.jpg" alt="The alt text in the body" width="800">'),
        item(6),
    ])  # fmt: skip
    found = images_of(server, items)
    assert found["Story 1"] == Image(f"{SITE}big.jpg", 1200, 800, "Story 1")  # largest first
    assert found["Story 2"] == Image(f"{SITE}thumb.jpg", 150, 150, "Story 2")
    assert found["Story 3"] == Image(f"{SITE}photo.png", 0, 0, "Story 3")  # size unknown
    assert found["Story 4"] == Image(f"{SITE}inline.jpg", 1024, 576, "Mixer-settlers at a plant")
    assert found["Story 5"] == Image(f"{SITE}same.jpg", 800, 450, "The alt text in the body")
    assert found["Story 6"] is None


def test_pixels_videos_svg_and_plain_http_are_not_pictures(server: FeedServer) -> None:
    items = "".join([
        item(1, '<media:content url="https://ree-news.example.com/v.mp4" medium="video" '
                'width="1280" height="720"/>'
                f'<enclosure url="{SITE}podcast.mp3" length="1" type="audio/mpeg"/>'),
        item(2, body='<img src="https://stats.example/pixel.gif" width="1" height="1">'
                     f'<img src="{SITE}real.jpg" width="640" height="360" alt="Real">'),
        item(3, f'<media:content url="{SITE}logo.svg" medium="image" width="600" height="600"/>'
                f'<enclosure url="{SITE}x.svg" length="1" type="image/svg+xml"/>'),
        item(4, '<media:content url="http://ree-news.example.com/insecure.jpg" medium="image"/>'),
        item(5, f'<enclosure url="{SITE}report.pdf" length="1" type="application/pdf"/>',
             body=f'<p><a href="{SITE}chart.pdf">PDF</a></p>'),
    ])  # fmt: skip
    found = images_of(server, items)
    assert found["Story 1"] is None
    assert found["Story 2"] == Image(f"{SITE}real.jpg", 640, 360, "Real")
    assert found["Story 3"] is None
    assert found["Story 4"] is None
    assert found["Story 5"] is None


def test_json_feed_image_and_tags(server: FeedServer) -> None:
    body = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "REE News",
        "items": [
            {"id": "1", "url": "https://ree-news.example.com/1/", "title": "One",
             "content_text": "Text.", "image": f"{SITE}one.webp", "tags": ["Prices", 7, "NdPr"]},
            {"id": "2", "url": "https://ree-news.example.com/2/", "title": "Two",
             "content_text": "Text.", "image": "https://ree-news.example.com/feed.json"},
        ],
    }  # fmt: skip
    url = server.add("/feed.json", json.dumps(body).encode(), content_type="application/feed+json")
    batch = run([feed("REE News", url)])
    one = next(a for a in batch.articles if a.title == "One")
    two = next(a for a in batch.articles if a.title == "Two")
    assert one.image == Image(f"{SITE}one.webp", 0, 0, "One")
    assert one.categories == ("Prices", "NdPr")
    assert two.image is None  # not an image by its name, and JSON Feed gives no type


def test_categories_are_kept_in_feed_order_cleaned_and_bounded(server: FeedServer) -> None:
    many = "".join(f"<category>Tag {n}</category>" for n in range(30))
    extra = ("<category><![CDATA[Supply chain]]></category><category>NdPr</category>"
             "<category>ndpr</category><category>  </category>"
             f"<category>{'Very long category ' * 20}</category>{many}")  # fmt: skip
    url = server.add("/feed", rss(item(1, extra)))
    [article] = run([feed("REE News", url)]).articles
    assert article.categories[:2] == ("Supply chain", "NdPr")
    assert len(article.categories) == 10
    assert all(len(c) <= 60 for c in article.categories)
    assert article.categories[2].endswith("…")


def test_the_sample_feed_has_featured_images_on_the_sites_own_domain() -> None:
    batch = run([feed("REE News (sample)", str(SAMPLE))])
    pictured = [a for a in batch.articles if a.image is not None]
    assert len(pictured) == 8
    assert all(a.image and a.image.url.startswith(SITE) for a in pictured)
    top = batch.articles[0]
    assert top.image == Image(f"{SITE}ndpr-oxide-drums-1200x675.jpg", 1200, 675, top.title)
    assert top.categories == ("Supply chain", "NdPr") and top.words > 100


def test_a_carried_over_article_keeps_its_picture_and_categories() -> None:
    article = Article(
        id="a", title="T", link="https://ree-news.example.com/a", author="", published=datetime(
            2026, 11, 27, tzinfo=UTC), summary_html="", summary_text="", content_html="<p>x</p>",
        source="REE News", image=Image(f"{SITE}a.jpg", 10, 20, "alt"), categories=("Prices",),
        words=321,
    )  # fmt: skip
    again = load_article(dump_article(article))
    assert (again.image, again.categories, again.words) == (article.image, ("Prices",), 321)
    old_row = json.loads(dump_article(article))
    for key in ("image", "categories", "words"):
        del old_row[key]  # written before issue 11
    older = load_article(json.dumps(old_row))
    assert (older.image, older.categories, older.words) == (None, (), 0)


urls = st.one_of(
    st.text(max_size=80),
    st.builds(lambda s, p, e: f"{s}://{p}{e}", st.sampled_from(["http", "https", "ftp", "data"]),
              st.text(max_size=60), st.sampled_from(["", ".jpg", ".svg", ".mp4", ".PNG"])),
)  # fmt: skip
sides = st.one_of(st.text(max_size=8), st.integers(-5, 20_000).map(str))
kinds = st.sampled_from(["", "image", "image/jpeg", "image/svg+xml", "video", "enclosure", "x"])


@given(st.lists(st.builds(RawImage, urls, sides, sides, st.text(max_size=300), kinds),
                max_size=4), st.text(max_size=200))  # fmt: skip
@example([RawImage("#.SVG", kind="image")], "")  # found by Hypothesis: the page itself, no SVG
def test_a_chosen_picture_is_always_https_bounded_and_sized_sanely(
    candidates: list[RawImage], title: str
) -> None:
    image = choose(candidates, "", title, "https://ree-news.example.com/a/")
    if image is None:
        return
    assert image.url.startswith("https://") and len(image.url) <= LINK_MAX
    # the name of what a mail client fetches: a "#.svg" fragment or a "?f=.svg" query is not it
    assert not urlsplit(image.url).path.lower().endswith((".svg", ".mp4"))
    assert (image.width, image.height) == (0, 0) or (
        48 <= image.width <= 10_000 and 48 <= image.height <= 10_000
    )
    assert "\n" not in image.alt and len(image.alt) <= 200
