"""Text and HTML clean-up for feed content on its way into an email.

Feed HTML is written for a browser by someone else; an email client is a stricter and older
audience, and a hostile feed must not get script, tracking CSS or phishing links into a digest.
Everything here is a pure function of its input, so the feed step and the tests can share it.

- `html`: the allow-list sanitizer and WordPress clean-up (HTML in, HTML out);
- `text`: readable plain text from sanitized HTML, summaries, highlights, one-line fields;
- `mojibake`: UTF-8 that was read as a single-byte code page, put back;
- `links`: absolute, percent-encoded http(s) links without tracking parameters.
"""

from newsletter.clean.html import READ_MORE, clean_html, link_read_more, sanitize_html
from newsletter.clean.links import clean_link, link_identity, safe_url
from newsletter.clean.mojibake import repair_mojibake
from newsletter.clean.text import (
    excerpt_html,
    extract_highlights,
    fix_text,
    html_to_text,
    html_to_words,
    one_line,
    shorten,
    summarize,
)

__all__ = [
    "READ_MORE",
    "clean_html",
    "clean_link",
    "excerpt_html",
    "extract_highlights",
    "fix_text",
    "html_to_text",
    "html_to_words",
    "link_identity",
    "link_read_more",
    "one_line",
    "repair_mojibake",
    "safe_url",
    "sanitize_html",
    "shorten",
    "summarize",
]
