"""Article links: absolute http(s), RFC 3986 encoded, tracking parameters gone, one identity."""

from __future__ import annotations

import random
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from newsletter.clean import clean_link, link_identity, safe_url
from newsletter.clean.links import TRACKING_PARAMETERS

STORY = "https://ree-news.example.com/2026/11/27/lynas-output/"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # WordPress adds these to every feed link
        (f"{STORY}?utm_source=rss&utm_medium=rss&utm_campaign=lynas-output", STORY),
        (f"{STORY}?fbclid=IwAR0x&gclid=Cj0&dclid=1&msclkid=2", STORY),
        (f"{STORY}?mc_cid=abc&mc_eid=def&_hsenc=p2&_hsmi=9&yclid=3&igshid=4&ref_src=twsrc", STORY),
        (f"{STORY}?UTM_Source=rss&Utm_Term=x", STORY),
        # other parameters stay, in their order
        (f"{STORY}?p=12&utm_source=rss&lang=de", f"{STORY}?p=12&lang=de"),
        (f"{STORY}?z=1&a=2", f"{STORY}?z=1&a=2"),
        # scheme and host lower-cased, default port and user name dropped, fragment kept
        ("HTTPS://REE-News.Example.COM:443/A/b", "https://ree-news.example.com/A/b"),
        ("http://ree-news.example.com:80/a", "http://ree-news.example.com/a"),
        ("https://ree-news.example.com:8443/a", "https://ree-news.example.com:8443/a"),
        ("https://bank.example@evil.example/login", "https://evil.example/login"),
        (f"{STORY}#comments", f"{STORY}#comments"),
        ("https://ree-news.example.com", "https://ree-news.example.com/"),
        # spaces, quotes and angle brackets are encoded, so the text part shows one clean URL
        (
            'https://ok.example/a"onmouseover="alert(1)',
            "https://ok.example/a%22onmouseover=%22alert(1)",
        ),
        ("https://ok.example/a b/<c>?q=a b", "https://ok.example/a%20b/%3Cc%3E?q=a%20b"),
        ("https://ok.example/100%/x%zz", "https://ok.example/100%25/x%25zz"),
        ("https://ok.example/%7euser/%c3%a9", "https://ok.example/~user/%C3%A9"),
        (
            "https://ok.example/münchen?ort=zürich",
            "https://ok.example/m%C3%BCnchen?ort=z%C3%BCrich",
        ),
        ("https://bücher.example/", "https://xn--bcher-kva.example/"),
        ("https://[2001:db8::1]:8080/a", "https://[2001:db8::1]:8080/a"),
        ("  https://ok.example/a\n/b\t ", "https://ok.example/a/b"),
        # not a web link at all
        ("javascript:alert(1)", ""),
        ("data:text/html,<script>x</script>", ""),
        ("mailto:desk@ree-news.example.com", ""),
        ("/relative/only", ""),
        ("https:///no-host", ""),
        ("https://ok.example:99999/", ""),
        ('https://ok.example"onmouseover="x/', ""),
        ("https://exa mple.com/", ""),
    ],
)
def test_clean_link(raw: str, expected: str) -> None:
    assert clean_link(raw) == expected
    assert safe_url(raw) == expected


def test_relative_links_resolve_against_the_feed() -> None:
    feed = "https://ree-news.example.com/feed/"
    assert clean_link("/2026/11/27/x/", feed) == "https://ree-news.example.com/2026/11/27/x/"
    assert clean_link("x?utm_source=rss", feed) == "https://ree-news.example.com/feed/x"
    assert clean_link("javascript:alert(1)", feed) == ""


def test_a_broken_link_with_a_base_is_no_link_not_an_error() -> None:
    """urljoin raises on a broken IPv6 literal: one entry's link must not fail its feed."""
    for raw in ("https://[", "http://]x/", "A://["):
        assert clean_link(raw, "https://ree-news.example.com/feed/") == ""


def test_identity_ignores_fragment_but_not_query() -> None:
    assert link_identity(f"{STORY}#respond") == STORY
    assert link_identity(clean_link(f"{STORY}?utm_source=x#a")) == link_identity(STORY)
    assert link_identity(f"{STORY}?p=1") != link_identity(f"{STORY}?p=2")


# A parameter name that is no tracker; hypothesis draws letters, digits and "_"/"-".
plain_names = st.from_regex(r"[a-z][a-z0-9_-]{0,8}", fullmatch=True).filter(
    lambda n: n not in TRACKING_PARAMETERS and not n.startswith(("utm_", "mtm_"))
)
values = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
trackers = st.sampled_from([*sorted(TRACKING_PARAMETERS), "utm_source", "utm_campaign"])


@given(
    st.lists(st.tuples(plain_names, values), max_size=5),
    st.lists(st.tuples(trackers, values), max_size=4),
    st.randoms(),
)
def test_tracking_goes_and_everything_else_stays_in_order(
    plain: list[tuple[str, str]], tracking: list[tuple[str, str]], shuffle: random.Random
) -> None:
    mixed = plain + tracking
    shuffle.shuffle(mixed)
    order = [pair for pair in mixed if pair in plain]
    query = "&".join(f"{quote(n)}={quote(v)}" for n, v in mixed)
    link = clean_link(f"{STORY}?{query}")
    kept = parse_qsl(urlsplit(link).query, keep_blank_values=True)
    assert kept == order
    assert link.isascii() and " " not in link and '"' not in link
    assert clean_link(link) == link  # cleaning a clean link changes nothing
