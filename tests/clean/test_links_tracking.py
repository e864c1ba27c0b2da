"""Each tracking parameter named, and each part of a link pinned where it is cleaned.

The names are written out here rather than read from `TRACKING_PARAMETERS`, so that dropping
one from the module (a reader then carries a campaign id around, and the same story looks like
two) fails a test that names it.
"""

from __future__ import annotations

import pytest

from newsletter.clean import clean_link, link_identity
from newsletter.clean.links import is_tracking

STORY = "https://ree-news.example.com/2026/11/27/lynas-output/"
TRACKERS = [
    "fbclid",
    "gclid",
    "gclsrc",
    "dclid",
    "gbraid",
    "wbraid",
    "msclkid",
    "yclid",
    "ysclid",
    "twclid",
    "ttclid",
    "li_fat_id",
    "igshid",
    "igsh",
    "mc_cid",
    "mc_eid",
    "mkt_tok",
    "_hsenc",
    "_hsmi",
    "__hstc",
    "__hssc",
    "__hsfp",
    "hsctatracking",
    "_ga",
    "_gl",
    "ref_src",
    "ref_url",
    "oly_anon_id",
    "oly_enc_id",
    "vero_id",
    "vero_conv",
    "wt_mc",
    "s_cid",
    "rb_clickid",
    "srsltid",
    "_openstat",
    "fb_action_ids",
    "fb_action_types",
    "fb_ref",
    "fb_source",
    "action_object_map",
    "action_type_map",
    "action_ref_map",
    "pk_campaign",
    "pk_kwd",
    "pk_keyword",
    "pk_source",
    "pk_medium",
    "pk_content",
    "piwik_campaign",
    "piwik_kwd",
    "piwik_keyword",
]


@pytest.mark.parametrize("name", TRACKERS)
def test_a_named_tracking_parameter_is_removed_and_the_rest_kept(name: str) -> None:
    assert clean_link(f"{STORY}?p=1&{name}=x&lang=de") == f"{STORY}?p=1&lang=de"
    assert clean_link(f"{STORY}?{name.upper()}=x") == STORY
    assert is_tracking(name) and is_tracking(name.upper())


@pytest.mark.parametrize("name", ["utm_source", "utm_x", "UTM_Term", "mtm_campaign", "Mtm_kwd"])
def test_a_campaign_family_parameter_is_removed(name: str) -> None:
    assert clean_link(f"{STORY}?{name}=rss&id=7") == f"{STORY}?id=7"


@pytest.mark.parametrize("name", ["utm", "mtm", "xutm_source", "ref", "ga", "fbclid2", "page"])
def test_a_parameter_that_only_looks_like_a_tracker_stays(name: str) -> None:
    assert clean_link(f"{STORY}?{name}=1") == f"{STORY}?{name}=1"


def test_an_encoded_tracker_name_is_still_a_tracker() -> None:
    assert clean_link(f"{STORY}?utm%5Fsource=rss&%66bclid=1&q=2") == f"{STORY}?q=2"


@pytest.mark.parametrize(
    ("query", "kept"),
    [
        ("a=1&&b=2", "a=1&b=2"),  # an empty pair is nothing
        ("flag&a=", "flag&a="),  # a name without "=", a blank value: both kept as written
        ("a=b=c", "a=b%3Dc"),  # "=" inside a value is encoded: one "=" per pair
        ("q=a&b", "q=a&b"),
        ("q=1%262", "q=1%262"),  # an encoded "&" stays inside its value
        ("q=x/y?z:@!$'()*+,;", "q=x/y?z:@!$'()*+,;"),  # allowed in a query part
        ("q=%7e%41", "q=~A"),  # escapes of unreserved characters are decoded
        ("q=%2f", "q=%2F"),  # others upper-cased
        ("q=[1]#{x}", "q=%5B1%5D#%7Bx%7D"),
        ("utm_source=rss", ""),
    ],
)
def test_the_query_keeps_its_pairs_as_written_encoded_where_needed(query: str, kept: str) -> None:
    expected = f"{STORY}?{kept}" if kept else STORY
    assert clean_link(f"{STORY}?{query}") == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://ok.example/a;b=c/d:e@f!$&'()*+,=", "https://ok.example/a;b=c/d:e@f!$&'()*+,="),
        ("https://ok.example/a#x/y?z:@!$&'()*+,;=", "https://ok.example/a#x/y?z:@!$&'()*+,;="),
        ("https://ok.example/a#%7e%2f b", "https://ok.example/a#~%2F%20b"),
        ("https://ok.example/%", "https://ok.example/%25"),
        ("https://ok.example/%4", "https://ok.example/%254"),
        ("https://ok.example/%41%3f", "https://ok.example/A%3F"),
        ("https://OK.example./a", "https://ok.example./a"),
        ("https://a-b.c-d.example/", "https://a-b.c-d.example/"),
        ("https://-ab.example/", ""),
        ("https://ab-.example/", ""),
        ("https://a..b.example/", ""),
        ("https://a_b.example/", ""),
        ("https://[::1]/a", "https://[::1]/a"),
        ("https://[fe80::1%25eth0]/", ""),
        ("http://127.0.0.1:80/", "http://127.0.0.1/"),
        ("http://127.0.0.1:443/", "http://127.0.0.1:443/"),
        ("https://ok.example:80/", "https://ok.example:80/"),
        ("https://ok.example:/a", "https://ok.example/a"),
        ("https://xn--bcher-kva.example/", "https://xn--bcher-kva.example/"),
        ("https://bü\u0080cher.example/", ""),
        ("ftp://ok.example/a", ""),
        ("", ""),
    ],
)
def test_each_part_of_a_link_is_cleaned_by_its_own_rule(raw: str, expected: str) -> None:
    assert clean_link(raw) == expected


def test_relative_links_need_a_base_and_resolve_like_a_browser() -> None:
    base = "https://ree-news.example.com/2026/11/27/story/"
    assert clean_link("../other/", base) == "https://ree-news.example.com/2026/11/27/other/"
    assert clean_link("//cdn.example/x", base) == "https://cdn.example/x"
    assert clean_link("", base) == ""  # no link is no link, not the base
    assert clean_link("  ", base) == ""
    assert clean_link("other/") == ""


def test_identity_is_everything_before_the_first_hash() -> None:
    assert link_identity("https://x.example/a?b=1#c#d") == "https://x.example/a?b=1"
    assert link_identity("") == ""
