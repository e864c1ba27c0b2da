"""Random requests at the real server (Hypothesis), on SQLite and PostgreSQL.

Methods, paths (every route, genuine and mangled tokens, random text), headers (Host,
X-Forwarded-For, Content-Type, ...) and bodies (forms with real and secret addresses, the
honeypot, multipart with files, random bytes, bodies over the limit) are thrown at one app
holding a few readers. Before each request the readers are put back as they were (active,
pending with an open request, unsubscribed) and the genuine links are signed afresh, so every
request finds something to change. After it, once the sign-up queue has drained:
- no answer is a 5xx;
- the store changed only if the request was a POST that may change it (the sign-up form
  without the honeypot, or a genuine confirm, renew or unsubscribe link), and a sign-up stored
  only addresses it was given;
- every answer carries the security headers (HSTS too: base_url is https here);
- no answer names a reader's address unless the request gave it (in its text, or as a
  genuine token naming that reader).
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from itsdangerous import URLSafeSerializer

from newsletter.addresses import normalize_address
from newsletter.errors import AddressError
from newsletter.models import ConsentRequest, MailLimits, Subscriber, SubscriberStatus
from newsletter.tokens import UNSUBSCRIBE_SALT, Tokens
from tests.support.web import SECRET, Servers, WebServer, add, store_issue

PUBLIC = "https://ree-news.example.com/newsletter"
SECURITY = (
    "content-security-policy",
    "referrer-policy",
    "x-content-type-options",
    "cache-control",
    "strict-transport-security",
)
ACTIVE, PENDING = SubscriberStatus.ACTIVE, SubscriberStatus.PENDING
UNSUBSCRIBED = SubscriberStatus.UNSUBSCRIBED
READERS = {
    "secret-active@example.org": ACTIVE,
    "secret-pending@example.org": PENDING,
    "secret-gone@example.org": UNSUBSCRIBED,
}
# Genuine links, filled in when the request is sent: {name: (path template, whose)}.
LINKS = {
    "unsubscribe": ("/u/{unsubscribe}", "secret-active@example.org"),
    "legacy": ("/u/{legacy}", "secret-active@example.org"),
    "gone": ("/u/{gone}", "secret-gone@example.org"),
    "confirm": ("/confirm/{confirm}", "secret-pending@example.org"),
    "renew": ("/confirm/{confirm}/renew", "secret-pending@example.org"),
}
PAGES = [
    "/",
    "/subscribe",
    "/embed",
    "/embed/snippet",
    "/unsubscribe",
    "/archive",
    "/archive/2026-11-27",
    "/archive?before=2026-11-28",
    "/healthz",
]
FIELDS = ["email", "website", "source", "consent_version", "List-Unsubscribe", "x", "email[]"]
HEADER_NAMES = [
    "Host",
    "Content-Type",
    "X-Forwarded-For",
    "X-Forwarded-Host",
    "X-Forwarded-Proto",
    "Referer",
    "User-Agent",
    "Accept",
    "Cookie",
    "Origin",
]
CONTENT_TYPES = [
    "application/x-www-form-urlencoded",
    "application/x-www-form-urlencoded; charset=latin-1",
    "multipart/form-data",
    "multipart/form-data; boundary=",
    "multipart/form-data; boundary=zz; charset=nonsense",
    "application/json",
    "text/plain; charset=utf-8",
    "",
]
HOST_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789.-:"
PRINTABLE = "".join(chr(c) for c in range(0x20, 0x7F))
ADDRESSES = [*READERS, "new@example.org", "New+Tag@Example.ORG", "Ann@Bücher.example", "no-at"]


@dataclass(frozen=True)
class Mangle:
    """What to do to a path after its genuine tokens are filled in."""

    at: int = -1  # replace the character at this index (-1: leave it)
    char: str = ""
    suffix: str = ""

    def __call__(self, path: str) -> str:
        if 0 <= self.at < len(path):
            path = path[: self.at] + self.char + path[self.at + 1 :]
        return path + self.suffix

    @property
    def harmless(self) -> bool:
        return self.at < 0 and not self.suffix


@dataclass
class Request:
    method: str
    template: str
    mangle: Mangle
    headers: dict[str, str]
    body: bytes
    given: list[str] = field(default_factory=list)  # the texts the request carries
    honeypot: bool = False  # a sign-up form with the honeypot filled must change nothing


@dataclass
class World:
    web: WebServer
    readers: dict[str, Subscriber]
    tokens: Tokens
    tokens_now: dict[str, str] = field(default_factory=dict)

    def reset(self) -> dict[str, str]:
        """Readers back to their seeded state; the genuine link tokens, signed now."""
        web = self.web
        web.clock.advance(minutes=11)  # out of the resend window of the last request
        now = web.clock()
        for address, status in READERS.items():
            reader = self.readers[address]
            if web.status(address) is not status:
                web.store.set_status(reader.id, status, now)
                if status is PENDING:
                    open_request(web, reader)
        pending = self.readers["secret-pending@example.org"]
        active = self.readers["secret-active@example.org"]
        self.tokens_now = {
            "unsubscribe": self.tokens.unsubscribe(active.public_id),
            "legacy": URLSafeSerializer([SECRET], salt=UNSUBSCRIBE_SALT).dumps(active.id),
            "gone": self.tokens.unsubscribe(self.readers["secret-gone@example.org"].public_id),
            "confirm": self.tokens.confirm(pending.public_id),
        }
        return self.tokens_now


def open_request(web: WebServer, reader: Subscriber) -> None:
    request = ConsentRequest("v", "fuzz", "", "", "", hashlib.sha256(b"").hexdigest(), "<m@x>")
    limits = MailLimits(timedelta(0), 1_000_000)
    web.store.record_consent_request(reader.id, request, limits, web.clock())


def seed(web: WebServer) -> World:
    readers = {address: add(web, address, status) for address, status in READERS.items()}
    open_request(web, readers["secret-pending@example.org"])
    store_issue(web, date(2026, 11, 27), render=False)
    return World(web, readers, Tokens((SECRET,), timedelta(days=7), clock=web.clock))


def mangles() -> st.SearchStrategy[Mangle]:
    junk = st.text(max_size=20).map(lambda s: quote(s, safe="/?=&.%~-_"))
    return st.one_of(
        st.just(Mangle()),
        st.builds(Mangle, at=st.integers(0, 70), char=st.sampled_from("A_-.x~%/=")),
        st.builds(Mangle, suffix=st.one_of(st.sampled_from(["/", "=", "?x=1", "/renew"]), junk)),
    )


def templates() -> st.SearchStrategy[str]:
    junk = st.text(max_size=30).map(lambda s: "/" + quote(s, safe="/?=&.%~-_").lstrip("/"))
    links = [template for template, _ in LINKS.values()]
    return st.one_of(st.sampled_from(links), st.sampled_from(PAGES), junk)


def forms() -> st.SearchStrategy[dict[str, str]]:
    address = st.one_of(st.sampled_from(ADDRESSES), st.emails(), st.text(max_size=30))
    values = st.one_of(address, st.text(max_size=40))
    keys = st.one_of(st.sampled_from(FIELDS), st.text(min_size=1, max_size=10))
    trap = st.one_of(st.just(""), st.just(""), st.text(PRINTABLE, min_size=1, max_size=10))
    return st.tuples(st.dictionaries(keys, values, max_size=4), address, trap).map(
        lambda p: {**p[0], "email": p[1], **({"website": p[2]} if p[2] else {})}
    )


@st.composite
def requests(draw: st.DrawFn) -> Request:
    """Any request; about half of them a POST of a form to a route that takes one."""
    if draw(st.booleans()):
        method = "POST"
        template = draw(st.sampled_from(["/subscribe", "/subscribe", LINKS["renew"][0]]))
    else:
        method = draw(st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"]))
        template = draw(templates())
    mangle = draw(mangles())
    names = draw(st.lists(st.sampled_from(HEADER_NAMES), max_size=3, unique=True))
    headers: dict[str, str] = {}
    for name in names:
        if name == "Host":
            headers[name] = draw(st.text(HOST_CHARS, min_size=1, max_size=30))
        elif name == "Content-Type":
            value = draw(st.one_of(st.sampled_from(CONTENT_TYPES), st.text(PRINTABLE)))
            headers[name] = value.strip()  # h11 sends no value with surrounding blanks
        else:
            headers[name] = draw(st.text(PRINTABLE, max_size=60)).strip()
    kind = draw(st.sampled_from(["none", "form", "form", "multipart", "bytes", "huge"]))
    given = [template, mangle.suffix, *headers.values()]
    body, honeypot = b"", False
    if kind in ("form", "multipart"):
        form = draw(forms())
        given += [*form.values(), *form.keys()]
        honeypot = bool(form.get("website", "").strip())
        if kind == "form":
            body = urlencode(form).encode("utf-8")
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        else:
            body = multipart(form, with_file=draw(st.booleans()))
            headers.setdefault("Content-Type", "multipart/form-data; boundary=fuzzbound")
    elif kind == "bytes":
        body = draw(st.binary(max_size=300))
        given.append(body.decode("latin-1"))
    elif kind == "huge":
        body = b"email=" + b"a" * 70_000
    return Request(method, template, mangle, headers, body, given, honeypot)


def multipart(form: dict[str, str], *, with_file: bool) -> bytes:
    parts = [
        f'--fuzzbound\r\nContent-Disposition: form-data; name="{quote(k)}"\r\n\r\n{v}\r\n'
        for k, v in form.items()
    ]
    if with_file:
        parts.append(
            '--fuzzbound\r\nContent-Disposition: form-data; name="cv"; filename="a.pdf"\r\n'
            "Content-Type: application/pdf\r\n\r\n%PDF\r\n"
        )
    return ("".join(parts) + "--fuzzbound--\r\n").encode("utf-8")


def given_addresses(request: Request) -> set[str]:
    """Every address the request carries, as typed and as we would store it."""
    found: set[str] = set()
    for text in request.given:
        found.add(text.lower())
        with contextlib.suppress(AddressError):
            found.add(normalize_address(text))
    return found


def check(world: World, client: httpx.Client, request: Request) -> None:
    web = world.web
    genuine = request.template.format(**world.reset())
    path = request.mangle(genuine)
    before = web.snapshot()
    answer = client.request(
        request.method, path, headers=request.headers, content=request.body or None
    )
    web.idle()
    after = web.snapshot()
    shown = (answer.text + str(answer.headers)).lower()
    assert answer.status_code < 500, (answer.status_code, answer.text[:300])
    assert "traceback" not in shown
    for name in SECURITY:
        assert answer.headers.get(name), (name, answer.status_code, request)
    route = urlsplit(path).path
    owners = {template.format(**world.tokens_now): whose for template, whose in LINKS.values()}
    owner = owners.get(route)  # a genuine link however it was built (confirm + "/renew")
    if after != before:
        assert request.method == "POST", (path, request)
        assert route == "/subscribe" or owner is not None, (path, request)
        if route == "/subscribe":  # the links read no body: the honeypot is the form's
            assert not request.honeypot, request
            new = {row[1] for row in after["subscribers"]} - {r[1] for r in before["subscribers"]}
            assert new <= given_addresses(request), (new, request)
    given = given_addresses(request)
    for address in READERS:
        if address in shown:
            assert address == owner or any(address in text for text in given), (address, path)


def test_random_requests_keep_the_invariants(
    tmp_path: Path, servers: Servers, store_url: str
) -> None:
    with WebServer(
        tmp_path, servers, store_url=store_url, base_url=PUBLIC, ip_limit_per_hour=1_000_000
    ) as web:
        web.app.state.signups.pace = 0.001
        world = seed(web)
        client = httpx.Client(base_url=web.url, follow_redirects=False, timeout=10)

        @settings(
            max_examples=200,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(requests())
        def throw(request: Request) -> None:
            check(world, client, request)

        try:
            throw()
        finally:
            client.close()
