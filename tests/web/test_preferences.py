"""Daily or weekly from the reader's side: the sign-up form's choice, the preferences page behind
the signed link in every issue, and the unsubscribe page's offer to switch to weekly."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from newsletter.config import Settings
from newsletter.models import Digest, Frequency, IssueStatus, SubscriberStatus
from newsletter.tokens import Tokens, preferences_url
from tests.support.web import SCANNER_UA, Servers, WebServer

RADIO = re.compile(r'name="frequency" value="(daily|weekly)"( checked)?')


class WeeklyServer(WebServer):
    """The app with `[weekly] enabled = true` (or not), on the shared servers."""

    def __init__(self, *args: object, weekly: bool, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.weekly = weekly

    def _settings(self) -> Settings:
        settings = super()._settings()
        weekly = dataclasses.replace(settings.weekly, enabled=self.weekly)
        return dataclasses.replace(settings, weekly=weekly)


@pytest.fixture(params=[True, False], ids=["weekly on", "weekly off"])
def site(
    request: pytest.FixtureRequest, tmp_path: Path, servers: Servers, store_url: str
) -> Iterator[WeeklyServer]:
    server = WeeklyServer(tmp_path, servers, store_url=store_url, weekly=request.param)
    with server:
        yield server


def frequency(site: WeeklyServer, address: str) -> Frequency | None:
    found = site.store.get_subscriber(address)
    return None if found is None else site.store.frequency_of(found.id)


def confirmed(site: WeeklyServer, address: str, **fields: str) -> str:
    """Sign up through the form and confirm; return the reader's preferences path."""
    assert site.sign_up(address, **fields).status_code == 200
    site.idle()
    assert site.client.post(site.confirm_path()).status_code == 200
    found = site.store.get_subscriber(address)
    assert found is not None and found.status is SubscriberStatus.ACTIVE
    token = Tokens(site.settings.secret_keys, timedelta(days=7), site.clock).unsubscribe(
        found.public_id
    )
    return preferences_url("", token)


def test_the_form_offers_weekly_only_when_it_exists_and_consent_records_the_choice(
    site: WeeklyServer,
) -> None:
    form = site.client.get("/subscribe").text
    assert RADIO.findall(form) == ([("daily", " checked"), ("weekly", "")] if site.weekly else [])
    confirmed(site, "ann@example.org", frequency="weekly")
    chosen = Frequency.WEEKLY if site.weekly else Frequency.DAILY
    assert frequency(site, "ann@example.org") is chosen
    export = site.store.export_subscriber("ann@example.org")
    assert export is not None and export["subscriber"]["frequency"] == chosen.value
    assert [c["frequency"] for c in export["consents"]] == [chosen.value]


def test_the_preferences_page_changes_only_on_post(site: WeeklyServer) -> None:
    path = confirmed(site, "bo@example.org")
    before = site.snapshot()
    for method in ("GET", "HEAD"):
        page = site.client.request(method, path, headers={"user-agent": SCANNER_UA})
        assert page.status_code == 200
    assert site.snapshot() == before  # a scanner's fetch changes nothing
    answer = site.client.post(path, data={"frequency": "weekly"})
    if not site.weekly:
        assert answer.status_code == 400 and frequency(site, "bo@example.org") is Frequency.DAILY
        return
    assert answer.status_code == 200 and "Saved" in answer.text
    assert frequency(site, "bo@example.org") is Frequency.WEEKLY
    assert RADIO.findall(answer.text) == [("daily", ""), ("weekly", " checked")]
    assert site.client.post(path, data={"frequency": "hourly"}).status_code == 400
    assert site.client.post(path + "x", data={"frequency": "daily"}).status_code == 400
    assert frequency(site, "bo@example.org") is Frequency.WEEKLY


def test_the_unsubscribe_page_offers_weekly_before_the_button(site: WeeklyServer) -> None:
    path = confirmed(site, "cy@example.org")
    unsubscribe = path.replace("/preferences/", "/u/")
    page = site.client.get(unsubscribe).text
    offer = 'name="frequency" value="weekly"'
    assert (offer in page) is site.weekly
    if site.weekly:
        assert page.index(offer) < page.index('name="List-Unsubscribe"')
        assert site.client.post(path, data={"frequency": "weekly"}).status_code == 200
        found = site.store.get_subscriber("cy@example.org")
        assert found is not None and found.status is SubscriberStatus.ACTIVE
        assert offer not in site.client.get(unsubscribe).text  # already weekly


def test_the_archive_keeps_both_kinds_and_hides_what_never_went_out(site: WeeklyServer) -> None:
    day = date(2026, 11, 27)
    cutoff = datetime(2026, 11, 27, 7, tzinfo=UTC)
    digest = Digest(
        "REE Daily Weekly, 27 Nov 2026: The week", "p", "<body>round-up</body>", "t", ()
    )
    weekly = site.store.create_issue(
        site.settings.weekly.name, day, cutoff, digest, cutoff, Frequency.WEEKLY
    )
    site.store.set_issue_status(weekly.id, IssueStatus.SENT, cutoff)
    skipped = Digest("", "", "", "", ())
    gone = site.store.create_issue(site.settings.name, day, cutoff, skipped, cutoff)
    site.store.set_issue_status(gone.id, IssueStatus.ABANDONED, cutoff)
    index = site.client.get("/archive").text
    assert ("Weekly round-ups" in index) is site.weekly
    assert "/archive/2026-11-27" not in index  # the abandoned daily of that day
    page = site.client.get("/archive/weekly/2026-11-27")
    assert page.status_code == (200 if site.weekly else 404)
    assert site.client.get("/archive/2026-11-27").status_code == 404
