"""The web app under a hostile client (issue 12), over real HTTP on SQLite and PostgreSQL.

Each test is one door an attacker tried: token spellings and database ids, redirects built
from the Host header, a forged consent version, filling the per-IP limiter, telling the
honeypot apart, inbox variants past the per-address limits, answers outside the middleware,
other spellings of an archive URL, addresses we cannot deliver to. The timing side channel has
its own module (`test_timing.py`) and the random requests theirs (`test_fuzz.py`).
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from itsdangerous import URLSafeSerializer, URLSafeTimedSerializer

from newsletter.models import SubscriberStatus
from newsletter.tokens import CONFIRM_SALT, UNSUBSCRIBE_SALT, Tokens
from tests.support.clock import T0
from tests.support.web import SECRET, Servers, WebServer, add, store_issue

ACTIVE, PENDING = SubscriberStatus.ACTIVE, SubscriberStatus.PENDING
UNSUBSCRIBED = SubscriberStatus.UNSUBSCRIBED
PUBLIC = "https://ree-news.example.com/newsletter"
SECURITY = ("content-security-policy", "referrer-policy", "x-content-type-options", "cache-control")
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def tokens() -> Tokens:
    return Tokens((SECRET,), timedelta(days=7), clock=lambda: T0)


def legacy_unsubscribe(payload: object) -> str:
    """An unsubscribe token as mailed before public ids: the database id, signed."""
    return URLSafeSerializer([SECRET], salt=UNSUBSCRIBE_SALT).dumps(payload)


def secured(answer: httpx.Response) -> bool:
    return all(answer.headers.get(name) for name in SECURITY)


def signed_up(web: WebServer, address: str) -> str:
    assert web.sign_up(address).status_code == 200
    web.idle()
    return web.confirm_path()


# tokens


def test_mailed_links_name_a_random_public_id_not_the_database_id(web: WebServer) -> None:
    paths = [signed_up(web, f"reader{n}@example.org") for n in range(3)]
    names = [path.removeprefix("/confirm/").split(".")[0] for path in paths]
    stored = [web.store.get_subscriber(f"reader{n}@example.org") for n in range(3)]
    assert names == [found.public_id for found in stored if found is not None]
    assert [found.id for found in stored if found is not None] == [1, 2, 3]
    assert not {"MQ", "Mg", "Mw"} & set(names)  # base64 of "1", "2", "3": the old tokens
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", name) for name in names)


def test_only_the_one_spelling_of_a_token_works(web: WebServer) -> None:
    """base64 leaves two spare bits in the MAC's last character: three other spellings used to
    verify. Now each gets 400 and changes nothing, on every route that reads a token."""
    confirm = signed_up(web, "ann@example.org").removeprefix("/confirm/")
    unsubscribe = tokens().unsubscribe(add(web, "bob@example.org", ACTIVE).public_id)
    web.clock.advance(minutes=1)
    before = web.snapshot()
    for prefix, token in (("/confirm/", confirm), ("/u/", unsubscribe)):
        spellings = [token[:-1] + c for c in B64 if c != token[-1]]
        spellings += [token[:-3] + "~" + token[-3:], token + "="]
        for spelling in spellings:
            for method in ("GET", "POST"):
                answer = web.client.request(method, prefix + spelling)
                assert answer.status_code == 400, (method, spelling)
                assert "This link does not work" in answer.text
    web.idle()
    assert web.snapshot() == before and len(web.smtp.messages) == 1
    assert web.client.post(f"/u/{unsubscribe}").status_code == 200  # the one spelling does
    assert web.status("bob@example.org") is UNSUBSCRIBED


def test_unsubscribe_links_already_mailed_with_a_database_id_keep_working(web: WebServer) -> None:
    reader = add(web, "old-mail@example.org", ACTIVE)
    old = legacy_unsubscribe(reader.id)
    page = web.client.get(f"/u/{old}")
    assert page.status_code == 200 and "old-mail@example.org" in page.text
    assert web.client.post(f"/u/{old}").status_code == 200
    assert web.status("old-mail@example.org") is UNSUBSCRIBED


@pytest.mark.parametrize("payload", [2**63, 2**31, 2**64 + 5, -1])
def test_a_signed_id_out_of_the_columns_range_answers_400(web: WebServer, payload: int) -> None:
    before = web.snapshot()
    confirm = URLSafeTimedSerializer([SECRET], salt=CONFIRM_SALT).dumps(payload)
    for method, path in [
        ("GET", f"/u/{legacy_unsubscribe(payload)}"),
        ("POST", f"/u/{legacy_unsubscribe(payload)}"),
        ("GET", f"/confirm/{confirm}"),
        ("POST", f"/confirm/{confirm}"),
        ("POST", f"/confirm/{confirm}/renew"),
    ]:
        answer = web.client.request(method, path)
        assert answer.status_code == 400, (method, path)
        assert secured(answer)
    web.idle()
    assert web.snapshot() == before


# absolute URLs come from base_url


def test_redirects_come_from_base_url_never_from_the_host_header(
    tmp_path: Path, servers: Servers, store_url: str
) -> None:
    with WebServer(tmp_path, servers, store_url=store_url, base_url=PUBLIC) as web:
        store_issue(web, date(2026, 11, 27), render=False)
        evil = {"Host": "evil.example", "X-Forwarded-Host": "evil.example"}
        for path, target in [
            ("/archive/", "/archive"),
            ("/archive/2026-11-27/", "/archive/2026-11-27"),
            ("/subscribe/", "/subscribe"),
            ("/subscribe//", "/subscribe"),
            ("/unsubscribe/", "/unsubscribe"),
        ]:
            answer = web.client.get(path, headers=evil)
            assert answer.status_code == 301, path
            assert answer.headers["location"] == PUBLIC + target  # the proxy's prefix kept
            assert secured(answer)
        for path in ("/", "/subscribe", "/archive", "/archive/2026-11-27", "/nope", "/nope/"):
            answer = web.client.get(path, headers=evil)
            assert "evil.example" not in answer.text + str(answer.headers), path
        assert web.client.post("/subscribe/", data={"email": "a@example.org"}).status_code == 404
        assert web.client.get("/no/such/page/").status_code == 404


# the consent version


def test_the_server_records_the_consent_version_it_rendered(web: WebServer) -> None:
    form = web.client.get("/subscribe").text
    field = re.search(r'name="consent_version" value="([^"]+)"', form)
    assert field and field.group(1) != web.settings.web.consent_version  # signed, not bare
    older = tokens().consent_version("2025-06-v0")  # a snippet pasted before the wording changed
    posts = [
        ("forged@example.org", "1999-01-forged"),
        ("bare@example.org", web.settings.web.consent_version),
        ("rendered@example.org", field.group(1)),
        ("snippet@example.org", older),
        ("foreign@example.org", older.replace("v0", "v9")),
        ("none@example.org", ""),
    ]
    for address, version in posts:
        assert web.sign_up(address, consent_version=version).status_code == 200
    web.idle()
    recorded = {row["email"]: row["consent_version"] for row in web.consents()}
    current = web.settings.web.consent_version
    assert recorded == {
        "forged@example.org": current,
        "bare@example.org": current,
        "rendered@example.org": current,
        "snippet@example.org": "2025-06-v0",
        "foreign@example.org": current,
        "none@example.org": current,
    }


# the per-client limit


def test_invalid_addresses_do_not_count_and_retry_after_is_true(
    tmp_path: Path, servers: Servers, store_url: str
) -> None:
    with WebServer(tmp_path, servers, store_url=store_url, ip_limit_per_hour=3) as web:
        for n in range(10):
            assert web.sign_up(f"not-an-address-{n}").status_code == 422
        for n in range(3):
            web.clock.advance(minutes=10)
            assert web.sign_up(f"r{n}@example.org").status_code == 200
        web.clock.advance(minutes=5)  # the first counted post was 25 minutes ago
        refused = web.sign_up("r3@example.org")
        assert refused.status_code == 429 and secured(refused)
        assert refused.headers["retry-after"] == str(35 * 60)
        assert "35 minutes" in refused.text
        web.clock.advance(minutes=35)
        assert web.sign_up("r3@example.org").status_code == 200


def test_a_full_limiter_forgets_the_quietest_client_and_refuses_no_new_one(
    tmp_path: Path, servers: Servers, store_url: str
) -> None:
    with WebServer(
        tmp_path, servers, store_url=store_url, ip_limit_per_hour=1, ip_limit_clients=40
    ) as web:
        web.app.state.signups.pace = 0.002  # volume, not timing, is tested here
        for n in range(40):  # a flood from 40 /64s fills the table, each at its limit
            web.clock.advance(seconds=1)
            flood = web.sign_up("victim@example.org", client_ip=f"2001:db8:{n}::1")
            assert flood.status_code == 200
        limited = web.sign_up("victim@example.org", client_ip="2001:db8:39::2")  # same /64
        assert limited.status_code == 429 and limited.headers["retry-after"] == "3600"
        for n in range(5):  # new readers are still taken: the quietest flooders are forgotten
            web.clock.advance(seconds=1)
            reader = web.sign_up(f"new{n}@example.org", client_ip=f"2001:db8:ffff:{n}::1")
            assert reader.status_code == 200
        web.clock.advance(seconds=1)
        again = web.sign_up("victim@example.org", client_ip="2001:db8:39::3")
        assert again.status_code == 429
        assert again.headers["retry-after"] == str(3600 - 6)  # its one post was 6 s ago
        web.idle()
    assert sum(m.rcpt_tos == ("victim@example.org",) for m in web.smtp.messages) == 1


# the honeypot


@pytest.mark.parametrize("address", ["  Reader@Example.ORG ", "two@@example.org", "no-at-sign"])
def test_a_filled_honeypot_looks_like_any_sign_up(web: WebServer, address: str) -> None:
    """Same status, headers and page as a person's post of the same address; nothing stored."""
    web.app.state.signups.pace = 0.002

    def answer(**fields: str) -> tuple[int, dict[str, str], str]:
        page = web.sign_up(address, **fields)
        headers = {k: v for k, v in page.headers.items() if k not in ("date", "content-length")}
        return page.status_code, headers, page.text

    caught = answer(website="https://spam.example")
    web.idle()
    assert web.snapshot()["subscribers"] == [] and web.smtp.messages == []
    person = answer()
    assert caught == person
    if person[0] == 200:
        assert "reader@example.org" in person[2] and "Reader@Example.ORG" not in person[2]
    else:
        assert person[0] == 422


def test_the_honeypot_counts_against_the_limit_like_a_sign_up(
    tmp_path: Path, servers: Servers, store_url: str
) -> None:
    with WebServer(tmp_path, servers, store_url=store_url, ip_limit_per_hour=2) as web:
        assert web.sign_up("a@example.org", website="x").status_code == 200
        assert web.sign_up("b@example.org").status_code == 200
        assert web.sign_up("c@example.org", website="x").status_code == 429
        assert web.sign_up("d@example.org").status_code == 429


# per-mailbox limits


GMAIL_VARIANTS = [
    "jane.doe@gmail.com",
    "janedoe@gmail.com",
    "j.a.n.e.d.o.e@gmail.com",
    "JaneDoe+Caps@Gmail.com",
    "janedoe+news@gmail.com",
    "jane.doe+ree@gmail.com",
    "janedoe+1@gmail.com",
    "j.anedoe+x@gmail.com",
    "janedoe@googlemail.com",
    "jane.doe@googlemail.com",
    "janedoe+a+b@gmail.com",
    "jan.edoe@gmail.com",
    "janedo.e@gmail.com",
]


def test_variants_of_one_inbox_share_its_limits_and_are_stored_as_typed(web: WebServer) -> None:
    web.app.state.signups.pace = 0.002
    for n, variant in enumerate(GMAIL_VARIANTS):  # 13 spellings from 13 clients
        assert web.sign_up(variant, client_ip=f"198.51.100.{n + 1}").status_code == 200
    web.idle()
    assert len(web.smtp.messages) == 1
    stored = {row[1] for row in web.snapshot()["subscribers"]}
    assert len(stored) == len({v.lower() for v in GMAIL_VARIANTS}) == 13
    assert "jane.doe+ree@gmail.com" in stored and "janedoe@googlemail.com" in stored
    for step in range(1, 24 * 6):  # every 10 minutes for a day, another variant each time
        web.clock.now = T0 + timedelta(minutes=10 * step)
        web.sign_up(GMAIL_VARIANTS[step % 13], client_ip=f"203.0.113.{step % 250}")
        web.idle()
    assert len(web.smtp.messages) == web.settings.web.address_limit_per_day == 3


def test_plus_tags_share_the_mailbox_at_any_provider(web: WebServer) -> None:
    for address in ("ann+a@example.org", "ann+b@example.org", "ann@example.org"):
        web.sign_up(address)
    web.sign_up("ann.other@example.org")  # dots matter outside Gmail: another mailbox
    web.idle()
    received = [m.rcpt_tos[0] for m in web.smtp.messages]
    assert len(received) == 2 and "ann.other@example.org" in received
    received.remove("ann.other@example.org")  # and one of the three spellings of ann's inbox
    assert received[0] in ("ann+a@example.org", "ann+b@example.org", "ann@example.org")


def test_an_active_variant_does_not_hide_a_new_mailbox(web: WebServer) -> None:
    add(web, "sam@example.org", ACTIVE)
    web.sign_up("sam@example.org")
    web.sign_up("sam+news@example.org")
    web.idle()
    assert [m.rcpt_tos[0] for m in web.smtp.messages] == ["sam+news@example.org"]


# answers outside the app's middleware, methods, client errors


def test_413_and_500_carry_the_security_headers(
    web: WebServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    huge = web.client.post("/subscribe", content=b"email=" + b"a" * 100_000)
    assert huge.status_code == 413 and secured(huge)
    assert "larger than 64 KB" in huge.text
    chunked = web.client.post(  # no Content-Length: the limit is met while the form is read
        "/subscribe",
        content=iter([b"email=a%40example.org", b"&" * 70_000]),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert chunked.status_code == 413 and secured(chunked)
    assert "larger than 64 KB" in chunked.text
    declared = web.client.post(
        "/u/whatever", content=b"x" * 70_000, headers={"Content-Type": "text/plain"}
    )
    assert declared.status_code == 413 and secured(declared)

    def broken(*args: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(web.store, "archive_page", broken)
    failed = web.client.get("/archive")
    assert failed.status_code == 500 and secured(failed)
    assert "Something went wrong" in failed.text and "a bug" not in failed.text


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/subscribe", "GET, HEAD, POST"),
        ("DELETE", "/u/abc.def", "GET, HEAD, POST"),
        ("PATCH", "/confirm/abc.def", "GET, HEAD, POST"),
        ("GET", "/confirm/abc.def/renew", "POST"),
        ("POST", "/archive", "GET, HEAD"),
        ("POST", "/archive/2026-11-27", "GET, HEAD"),
        ("OPTIONS", "/healthz", "GET, HEAD"),
        ("POST", "/", "GET, HEAD"),
    ],
)
def test_405_names_the_allowed_methods(web: WebServer, method: str, path: str, allow: str) -> None:
    answer = web.client.request(method, path)
    assert answer.status_code == 405 and answer.headers["allow"] == allow
    assert "Method not allowed" in answer.text and "Page not found" not in answer.text
    assert secured(answer)


def test_client_errors_say_what_is_wrong(web: WebServer) -> None:
    upload = web.client.post(
        "/subscribe", data={"email": "a@example.org"}, files={"cv": ("cv.pdf", b"%PDF-1.7")}
    )
    many = web.client.post("/subscribe", data={f"f{n}": "x" for n in range(30)})
    long_field = web.client.post(
        "/subscribe", files={"email": (None, "a" * 2000)}, data={"source": "embed"}
    )
    broken = web.client.post(
        "/subscribe", content=b"--x\r\n", headers={"Content-Type": "multipart/form-data"}
    )
    for answer, says in [
        (upload, "no file uploads"),
        (many, "more than 20 fields"),
        (long_field, "longer than 1024 bytes"),
        (broken, "could not be read"),
    ]:
        assert answer.status_code == 400 and says in answer.text, answer.text
        assert "try again in a few minutes" not in answer.text and secured(answer)
    web.idle()
    assert web.snapshot()["subscribers"] == []


# the archive: one URL per issue; HSTS


def test_an_issue_has_one_canonical_url(web: WebServer) -> None:
    store_issue(web, date(2026, 11, 28), render=False)
    assert web.client.get("/archive/2026-11-28").status_code == 200
    for other in ("2026-W48-6", "2026W486", "20261128", "2026-11-28T00", "2026-332", "+2026-11-28"):
        assert web.client.get(f"/archive/{other}").status_code == 404, other
    moved = web.client.get("/archive/2026-11-28/")
    assert moved.status_code == 301
    assert moved.headers["location"] == f"{web.url}/archive/2026-11-28"
    index = web.client.get("/archive?before=2026-W49-1")  # not a cursor: the newest page
    assert index.status_code == 200 and "/archive/2026-11-28" in index.text


@pytest.mark.parametrize(
    ("base_url", "options", "expected"),
    [
        (PUBLIC, {}, "max-age=31536000"),
        (PUBLIC, {"hsts_max_age": 300}, "max-age=300"),
        (PUBLIC, {"hsts": False}, None),
        (None, {}, None),  # http base_url: HSTS would be ignored and means nothing
    ],
)
def test_hsts_when_base_url_is_https(
    tmp_path: Path,
    servers: Servers,
    store_url: str,
    base_url: str | None,
    options: dict[str, Any],
    expected: str | None,
) -> None:
    with WebServer(tmp_path, servers, store_url=store_url, base_url=base_url, **options) as web:
        for answer in (
            web.client.get("/subscribe"),
            web.client.get("/nope"),
            web.client.put("/subscribe"),
            web.client.post("/subscribe", content=b"x" * 70_000),
        ):
            assert answer.headers.get("strict-transport-security") == expected


# addresses we cannot deliver to


def test_an_internationalised_domain_is_stored_and_mailed_as_a_labels(web: WebServer) -> None:
    page = web.sign_up("Ann@Bücher.example")
    assert page.status_code == 200 and "ann@xn--bcher-kva.example" in page.text
    web.idle()
    assert web.status("ann@xn--bcher-kva.example") is PENDING
    [mail] = web.smtp.messages
    assert mail.rcpt_tos == ("ann@xn--bcher-kva.example",)
    assert web.mails()[0]["To"] == "ann@xn--bcher-kva.example"
    assert mail.data.isascii()


@pytest.mark.parametrize(
    ("address", "says"),
    [
        ("rëader@example.org", "cannot deliver to an address with accented"),
        ("用户@example.org", "cannot deliver to an address with accented"),
        ("a" * 65 + "@example.org", "65 bytes long; mail servers accept at most 64"),
    ],
)
def test_an_address_we_cannot_deliver_to_is_refused_and_costs_nothing(
    tmp_path: Path, servers: Servers, store_url: str, address: str, says: str
) -> None:
    with WebServer(tmp_path, servers, store_url=store_url, ip_limit_per_hour=1) as web:
        refused = web.sign_up(address)
        assert refused.status_code == 422 and says in refused.text
        web.idle()
        assert web.snapshot()["subscribers"] == [] and web.consents() == []
        assert web.smtp.messages == []
        assert web.sign_up("fine@example.org").status_code == 200  # the limit was not spent
