"""Article links as readers should get them: absolute http(s), percent-encoded, no tracking.

A feed's link is someone else's string. It may be relative, carry spaces or quotes that break
the text part (`https://ok.example/a"onmouseover="x`), hide a user name before the host
(`https://bank.example@evil.example/`), or carry campaign parameters (`?utm_source=rss`) that
follow the reader around and make the same story look like two. `clean_link` turns it into one
RFC 3986 URL; `link_identity` is what two links must share to be the same story.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote, urljoin, urlsplit, urlunsplit

# Query parameters that only track the reader or the campaign; compared case-insensitively.
TRACKING_PARAMETERS = frozenset(
    {"fbclid", "gclid", "gclsrc", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "ysclid"}
    | {"twclid", "ttclid", "li_fat_id", "igshid", "igsh", "mc_cid", "mc_eid", "mkt_tok"}
    | {"_hsenc", "_hsmi", "__hstc", "__hssc", "__hsfp", "hsctatracking", "_ga", "_gl"}
    | {"ref_src", "ref_url", "oly_anon_id", "oly_enc_id", "vero_id", "vero_conv", "wt_mc"}
    | {"s_cid", "rb_clickid", "srsltid", "_openstat", "fb_action_ids", "fb_action_types"}
    | {"fb_ref", "fb_source", "action_object_map", "action_type_map", "action_ref_map"}
    | {"pk_campaign", "pk_kwd", "pk_keyword", "pk_source", "pk_medium", "pk_content"}
    | {"piwik_campaign", "piwik_kwd", "piwik_keyword"}
)
TRACKING_PREFIXES = ("utm_", "mtm_")  # Google Analytics and Matomo campaign families
DEFAULT_PORTS = {"http": 80, "https": 443}

# RFC 3986: what may stand unencoded in each component ("%" is handled on its own).
_SUB_DELIMS = "!$&'()*+,;="
_PATH_SAFE = _SUB_DELIMS + ":@/"
_QUERY_PART_SAFE = "!$'()*+,;:@/?"  # pchar, "/" and "?", less the "&" and "=" between pairs
_FRAGMENT_SAFE = _SUB_DELIMS + ":@/?"
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_LONE_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_HOST = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*\.?")
_IGNORED = re.compile(r"[\t\n\r]")  # browsers drop these anywhere in a URL (WHATWG)


def clean_link(url: str, base: str = "") -> str:
    """The link as an absolute, percent-encoded http(s) URL without tracking; "" if unusable.

    Relative links are resolved against `base` (the feed's address). Scheme and host are
    lower-cased, a default port and any user name are dropped; path, query and fragment keep
    their order and meaning, only encoded where RFC 3986 requires it.
    """
    url = _IGNORED.sub("", url).strip()
    try:
        if base and url:
            url = urljoin(base, url)  # raises for a broken IPv6 literal ("https://[") too
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a port that is not a number, or a broken IPv6 literal
        return ""
    scheme = parts.scheme.lower()
    host = _host(parts.hostname or "")
    if scheme not in DEFAULT_PORTS or not host:
        return ""
    netloc = host if port in (None, DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = _encode(parts.path, _PATH_SAFE) or "/"
    query = _query(parts.query)
    fragment = _encode(parts.fragment, _FRAGMENT_SAFE)
    return urlunsplit((scheme, netloc, path, query, fragment))


def safe_url(url: str) -> str:
    """An absolute http(s) link made clean, else "": the only links a mail may carry."""
    return clean_link(url)


def link_identity(link: str) -> str:
    """What makes two cleaned links the same story: everything but the fragment."""
    return link.partition("#")[0]


def is_tracking(name: str) -> bool:
    lowered = unquote(name).lower()
    return lowered in TRACKING_PARAMETERS or lowered.startswith(TRACKING_PREFIXES)


def _host(host: str) -> str:
    """A lower-case DNS name (IDNA for non-ASCII) or IP literal; "" for anything else."""
    if ":" in host:  # urlsplit has already checked the brackets of an IPv6 literal
        return f"[{host}]" if re.fullmatch(r"[0-9a-f:.]+", host) else ""
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return ""
    host = host.lower()
    return host if _HOST.fullmatch(host) else ""


def _query(query: str) -> str:
    """The query without tracking parameters, in its original order."""
    if not query:
        return ""
    kept = []
    for pair in query.split("&"):
        name, equals, value = pair.partition("=")
        if not pair or is_tracking(name):
            continue
        kept.append(_encode(name, _QUERY_PART_SAFE) + equals + _encode(value, _QUERY_PART_SAFE))
    return "&".join(kept)


def _encode(component: str, safe: str) -> str:
    """Percent-encode what RFC 3986 does not allow, normalizing existing escapes (6.2.2).

    An escape of an unreserved character is decoded ("%7E" is "~"), others are upper-cased,
    and a "%" that starts no escape is itself encoded.
    """
    component = _LONE_PERCENT.sub("%25", component)
    component = _ESCAPE.sub(_normal_escape, component)
    return quote(component, safe=safe + "%")


def _normal_escape(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else f"%{match.group(1).upper()}"
