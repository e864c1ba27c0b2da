"""The per-reader slots of a digest, and why feed text can never become one.

compose fills `models.EMAIL_PLACEHOLDER`, `models.UNSUBSCRIBE_URL_PLACEHOLDER` and
`models.PREFERENCES_URL_PLACEHOLDER` in every reader's copy. Only our templates may put them
there: a feed title "Claim your prize, __READER_EMAIL__" or a link
`https://evil.example/?e=__READER_EMAIL__` must reach the reader as written, not filled with
their address. Two locks, each enough on its own:

1. `inert` / `inert_url` break every slot-like string in feed-supplied values before they go
   into a template (an invisible WORD JOINER in text, a percent-encoded "_" in a URL, which
   RFC 3986 says is the same URL);
2. the templates get slots with a random key of this render (`Slots`), which no feed can
   predict; `Slots.seal` then breaks every other slot-like string in the output, whatever
   template or filter produced it, and only then turns the keyed slots into the placeholders.

So a digest made by `render` holds the placeholders exactly where the templates put them.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

from newsletter.models import (
    EMAIL_PLACEHOLDER,
    PREFERENCES_URL_PLACEHOLDER,
    UNSUBSCRIBE_URL_PLACEHOLDER,
)

WORD_JOINER = "\u2060"
# What compose would fill, with or without a key; case matters to compose, so it does here.
_SLOT_LIKE = re.compile(r"__(?=READER_EMAIL|UNSUBSCRIBE_URL|PREFERENCES_URL)")
# Room the text part keeps for each value when wrapping (a slot may carry a key).
_WIDTHS = {"READER_EMAIL": 40, "UNSUBSCRIBE_URL": 90, "PREFERENCES_URL": 90}
_ANY_SLOT = re.compile(r"__(READER_EMAIL|UNSUBSCRIBE_URL|PREFERENCES_URL)(?:_[0-9a-f]{16})?__")


def inert(text: str) -> str:
    """Feed text that no later step can mistake for a slot; it reads the same."""
    return _SLOT_LIKE.sub("_" + WORD_JOINER + "_", text)


def inert_url(url: str) -> str:
    """A feed URL that can never be a slot; "%5F" is "_" to every server (RFC 3986 2.3)."""
    return _SLOT_LIKE.sub("_%5F", url)


def reserve_width(text: str) -> str:
    """Pad each slot with NULs to the width of the value it will get, for `templating.fill`."""
    return _ANY_SLOT.sub(lambda m: m.group() + "\0" * (_WIDTHS[m.group(1)] - len(m.group())), text)


@dataclass(frozen=True)
class Slots:
    """Slot markers for one render, keyed with 64 random bits."""

    key: str = field(default_factory=lambda: secrets.token_hex(8))

    @property
    def email(self) -> str:
        return f"__READER_EMAIL_{self.key}__"

    @property
    def unsubscribe_url(self) -> str:
        return f"__UNSUBSCRIBE_URL_{self.key}__"

    @property
    def preferences_url(self) -> str:
        return f"__PREFERENCES_URL_{self.key}__"

    def seal(self, rendered: str) -> str:
        """Break every slot-like string but ours, then make ours the placeholders."""
        final = {
            self.email: EMAIL_PLACEHOLDER,
            self.unsubscribe_url: UNSUBSCRIBE_URL_PLACEHOLDER,
            self.preferences_url: PREFERENCES_URL_PLACEHOLDER,
        }
        ours = "|".join(re.escape(slot) for slot in final)
        pieces = re.split(f"({ours})", rendered)
        return "".join(final[p] if n % 2 else inert(p) for n, p in enumerate(pieces))
