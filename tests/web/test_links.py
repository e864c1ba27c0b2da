"""Confirm and unsubscribe links over real HTTP: GET safety, one-click, tokens.

RFC 8058 one-click, RFC 9110 9.2.1 safe methods. Uses the `WebServer` harness
(`tests.support.web`): uvicorn on 127.0.0.1 port 0, aiosmtpd, fake clock.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from newsletter.models import SubscriberStatus
from newsletter.tokens import Tokens
from tests.support.clock import T0
from tests.support.web import SCANNER_UA, SECRET, Servers, WebServer, add, store_issue

ACTIVE, PENDING = SubscriberStatus.ACTIVE, SubscriberStatus.PENDING
UNSUBSCRIBED = SubscriberStatus.UNSUBSCRIBED


def tokens(*keys: str) -> Tokens:
    return Tokens(keys or (SECRET,), timedelta(days=7), clock=lambda: T0)


def signed_up(web: WebServer, address: str) -> str:
    """Sign up through the form; return the path of the confirm link from the mail."""
    assert web.sign_up(address).status_code == 200
    web.idle()
    return web.confirm_path()


def consents(web: WebServer, address: str) -> list[dict[str, object]]:
    exported = web.store.export_subscriber(address)
    assert exported is not None
    return list(exported["consents"])


def test_get_and_head_change_nothing_even_when_repeated_by_a_scanner(web: WebServer) -> None:
    confirm = signed_up(web, "pending@example.org")
    unsubscribe = f"/u/{tokens().unsubscribe(add(web, 'active@example.org', ACTIVE).public_id)}"
    scanner = httpx.Client(base_url=web.url, headers={"User-Agent": SCANNER_UA})
    before = web.snapshot()
    for _ in range(5):
        for path in (confirm, unsubscribe):
            page = scanner.get(path)
            assert page.status_code == 200 and not scanner.cookies
            assert '<form class="action" method="post"' in page.text
            assert scanner.head(path).status_code == 200
        for path in ("/", "/archive", "/unsubscribe", f"{confirm}/renew", "/embed"):
            scanner.get(path)
            scanner.head(path)
    scanner.close()
    web.idle()
    assert web.snapshot() == before
    assert len(web.smtp.messages) == 1


def test_post_confirms_once_and_records_consent(web: WebServer) -> None:
    path = signed_up(web, "ann@example.org")
    assert web.client.get(path).status_code == 200  # the scanner's visit
    web.clock.advance(hours=2)
    confirmed = web.client.post(path, headers={"User-Agent": "Firefox/140"})
    assert confirmed.status_code == 200 and "You're subscribed" in confirmed.text
    assert web.status("ann@example.org") is ACTIVE
    again = web.client.post(path)
    assert again.status_code == 200 and "already subscribed" in again.text
    [consent] = consents(web, "ann@example.org")
    assert consent["confirmed_at"] == (T0 + timedelta(hours=2)).isoformat()
    assert consent["confirm_ip"] == "127.0.0.1"
    assert consent["confirm_user_agent"] == "Firefox/140"
    assert consent["request_user_agent"] != "Firefox/140"
    page = web.client.get(path)
    assert page.status_code == 200 and "already subscribed" in page.text


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_one_click_unsubscribe_in_both_encodings(web: WebServer, encoding: str) -> None:
    """RFC 8058: no cookie, no CSRF token, 2xx without a redirect, at once, repeatable."""
    path = f"/u/{tokens().unsubscribe(add(web, 'reader@example.org', ACTIVE).public_id)}"
    body: dict[str, object]
    if encoding == "urlencoded":
        body = {"data": {"List-Unsubscribe": "One-Click"}}
    else:
        body = {"files": {"List-Unsubscribe": (None, "One-Click")}}
    with httpx.Client(base_url=web.url, follow_redirects=False) as mail_provider:
        for _ in range(2):
            answer = mail_provider.post(path, **body)  # type: ignore[arg-type]
            assert 200 <= answer.status_code < 300
            assert "location" not in answer.headers and "set-cookie" not in answer.headers
            assert web.status("reader@example.org") is UNSUBSCRIBED
        sent = answer.request.headers["content-type"]
    expected = "application/x-www-form-urlencoded" if encoding == "urlencoded" else "multipart"
    assert sent.startswith(expected)
    store_issue(web, T0.date())  # the next audience lacks the reader: honoured at once
    issue = web.store.get_issue(web.settings.name, T0.date())
    assert issue is not None and list(web.store.pending_recipients(issue.id)) == []


def test_the_unsubscribe_page_button(web: WebServer) -> None:
    path = f"/u/{tokens().unsubscribe(add(web, 'reader@example.org', ACTIVE).public_id)}"
    page = web.client.get(path)
    assert "reader@example.org" in page.text and f'action="{web.url}{path}"' in page.text
    done = web.client.post(path, data={"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200 and "You're unsubscribed" in done.text
    assert "unsubscribed" in web.client.get(path).text.lower()
    web.clock.advance(days=400)  # unsubscribe links never expire (CAN-SPAM: at least 30 days)
    assert web.client.post(path).status_code == 200


def test_forged_foreign_and_cross_purpose_tokens_change_nothing(web: WebServer) -> None:
    public_id = add(web, "reader@example.org", PENDING).public_id
    good_confirm = tokens().confirm(public_id)
    good_unsubscribe = tokens().unsubscribe(public_id)
    flipped = good_unsubscribe[:-1] + ("A" if good_unsubscribe[-1] != "A" else "B")
    bad = {
        "/u/": [flipped, good_confirm, tokens("someone-else").unsubscribe(public_id), "x"],
        "/confirm/": [
            good_confirm[:-2] + "xx",
            good_unsubscribe,
            tokens("someone-else").confirm(public_id),
            "not.a.token",
        ],
    }
    before = web.snapshot()
    for prefix, forged in bad.items():
        for token in forged:
            for method in ("GET", "POST"):
                page = web.client.request(method, prefix + token)
                assert page.status_code == 400, (method, prefix, token)
                assert "This link does not work" in page.text
            if prefix == "/confirm/":
                assert web.client.post(f"/confirm/{token}/renew").status_code == 400
    web.idle()
    assert web.snapshot() == before and web.smtp.messages == []


def test_an_expired_confirm_link_offers_a_fresh_mail(web: WebServer) -> None:
    path = signed_up(web, "late@example.org")
    web.clock.advance(days=web.settings.confirm_max_age_days, seconds=1)
    before = web.snapshot()
    page = web.client.get(path)
    assert page.status_code == 410 and "This link has expired" in page.text
    assert f'action="{web.url}{path}/renew"' in page.text
    refused = web.client.post(path)
    assert refused.status_code == 410 and web.snapshot() == before
    renewed = web.client.post(f"{path}/renew")
    assert renewed.status_code == 200 and "Check your inbox" in renewed.text
    web.idle()
    assert len(web.smtp.messages) == 2
    fresh = web.confirm_path()
    assert fresh != path
    assert web.client.post(fresh).status_code == 200
    assert web.status("late@example.org") is ACTIVE


def test_rotated_keys_old_links_still_work_new_links_use_the_new_key(
    tmp_path: Path, servers: Servers, store_url: str
) -> None:
    with WebServer(tmp_path, servers, keys=("key-2025", "key-2026"), store_url=store_url) as web:
        old = add(web, "old@example.org", ACTIVE)
        old_unsubscribe = tokens("key-2025").unsubscribe(old.public_id)
        path = signed_up(web, "new@example.org")
        token = path.removeprefix("/confirm/")
        assert tokens("key-2026").read_confirm(token).public_id  # signed with the newest key
        web.clock.advance(minutes=1)
        assert web.client.post(path).status_code == 200
        assert web.client.post(f"/u/{old_unsubscribe}").status_code == 200
        assert web.status("old@example.org") is UNSUBSCRIBED
        retired = tokens("key-2024").unsubscribe(old.public_id)
        assert web.client.post(f"/u/{retired}").status_code == 400


def test_a_suppressed_address_comes_back_only_by_a_new_confirmation(web: WebServer) -> None:
    old_link = signed_up(web, "back@example.org")
    assert web.client.post(old_link).status_code == 200
    found = web.store.get_subscriber("back@example.org")
    assert found is not None
    web.client.post(f"/u/{tokens().unsubscribe(found.public_id)}")
    web.clock.advance(hours=1)
    page = web.sign_up("back@example.org")  # same neutral answer, a confirmation mail
    assert page.status_code == 200 and "Check your inbox" in page.text
    web.idle()
    assert len(web.smtp.messages) == 2
    assert web.status("back@example.org") is UNSUBSCRIBED  # still suppressed meanwhile
    used = web.client.post(old_link)  # the old link cannot undo the unsubscribe
    assert used.status_code == 410 and "can no longer be used" in used.text
    assert web.status("back@example.org") is UNSUBSCRIBED
    assert web.client.post(web.confirm_path()).status_code == 200
    assert web.status("back@example.org") is ACTIVE
    records = consents(web, "back@example.org")
    assert [r["confirmed_at"] is not None for r in records] == [True, True]
    assert records[1]["requested_at"] == (T0 + timedelta(hours=1)).isoformat()


def test_links_of_an_erased_subscriber(web: WebServer) -> None:
    path = signed_up(web, "gone@example.org")
    found = web.store.get_subscriber("gone@example.org")
    assert found is not None
    web.store.erase_subscriber("gone@example.org", address_hash="0" * 64, now=T0)
    assert web.client.post(path).status_code == 400
    unsubscribed = web.client.post(f"/u/{tokens().unsubscribe(found.public_id)}")
    assert unsubscribed.status_code == 200  # nothing to stop: the address gets no mail
