"""Bulk import (issue 13): a chunk a transaction, and the same verdicts as one add at a time.

The reference is the row-by-row path imports used before (`Subscriptions.add_without_
confirmation`, still what `add --active` runs): random files over a small pool of addresses
(case variants, tags, refusals, repeats across chunk boundaries, addresses unsubscribed,
bounced, erased or pending beforehand) must get the same verdict on every line and leave the
same rows. Then a 100,000-line file through the command, on both stores, and the race on
PostgreSQL where another writer adds an address between the import's read and its insert.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
import tracemalloc
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from newsletter.addresses import mailbox_key
from newsletter.bulk_import import import_addresses
from newsletter.cli.import_file import read_addresses
from newsletter.cli.main import main
from newsletter.config import load_settings
from newsletter.errors import AddressError, SuppressedAddressError
from newsletter.mail.smtp import SmtpTransport
from newsletter.models import ImportResult, ImportRow, ImportVerdict, SubscriberStatus
from newsletter.store import SqlStore, open_store
from newsletter.store.schema import subscribers
from newsletter.subscriptions import Subscriptions
from tests.support.clock import FakeClock
from tests.support.config import SAMPLE, make_config

KEY = "import-test-key"
ACTIVE, PENDING = SubscriberStatus.ACTIVE, SubscriberStatus.PENDING
POOL = [
    *(f"reader{n}@example.org" for n in range(6)),
    "Reader0@EXAMPLE.org",  # the same address as reader0 once stored
    "reader1+news@example.org",
    "  reader2@example.org  ",
    "left@example.org",
    "bounced@example.org",
    "erased@example.org",
    "waiting@example.org",
    "not-an-address",
    "two@@example.org",
    "ann@localhost",
]


def service_on(url: str, tmp_path: Path, clock: FakeClock) -> Subscriptions:
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = make_config(tmp_path, [("REE", str(SAMPLE))], 2525, database_url=url)
    settings = load_settings(config, {"NEWSLETTER_SECRET_KEY": KEY})
    return Subscriptions(settings, open_store(url), SmtpTransport(settings.smtp), clock)


def seed(service: Subscriptions) -> None:
    """The addresses the list already knows, in every state an import must respect."""
    now = service.clock()
    for email, status in (
        ("left@example.org", SubscriberStatus.UNSUBSCRIBED),
        ("bounced@example.org", SubscriberStatus.BOUNCED),
        ("waiting@example.org", PENDING),
        ("reader3@example.org", ACTIVE),
    ):
        added = service.store.add_subscriber(email, status=PENDING, source="t", now=now)
        service.store.set_status(added.id, status, now)
    service.store.add_subscriber("erased@example.org", status=ACTIVE, source="t", now=now)
    service.erase("erased@example.org")


def one_at_a_time(service: Subscriptions, raw: str, status: SubscriberStatus) -> ImportVerdict:
    """The row-by-row import this replaced, as the reference."""
    try:
        email = service.normalize(raw)
        before = service.store.get_subscriber(email)
        after = service.add_without_confirmation(email, status, "import")
    except SuppressedAddressError as exc:
        return ImportVerdict(ImportResult.SUPPRESSED, exc.reason)
    except AddressError as exc:
        return ImportVerdict(ImportResult.REFUSED, exc.reason)
    if before is None:
        return ImportVerdict(ImportResult.ADDED)
    return ImportVerdict(ImportResult.UNCHANGED if before == after else ImportResult.UPDATED)


def rows(store: SqlStore) -> dict[str, tuple[object, ...]]:
    with store.engine.connect() as conn:
        found = conn.execute(sa.select(subscribers)).all()
    return {
        row.email: (row.status, row.mailbox, row.source, row.confirmed_at, row.unsubscribed_at)
        for row in found
    }


@pytest.mark.parametrize("seed_value", range(12))
def test_bulk_import_judges_every_line_as_one_add_at_a_time_did(
    store_url: str, tmp_path: Path, seed_value: int
) -> None:
    chance = random.Random(seed_value)
    status = chance.choice([ACTIVE, PENDING])
    lines = [chance.choice(POOL) for _ in range(chance.randint(1, 40))]
    clock = FakeClock()
    bulk = service_on(store_url, tmp_path / "bulk", clock)
    reference = service_on(f"sqlite:///{tmp_path / 'ref.db'}", tmp_path / "ref", clock)
    try:
        seed(bulk)
        seed(reference)
        clock.advance(hours=1)
        expected = [one_at_a_time(reference, raw, status) for raw in lines]
        numbered = [(n, raw, "") for n, raw in enumerate(lines)]
        chunk = chance.randint(1, 7)  # repeats land in the same chunk and in later ones
        got = import_addresses(bulk, numbered, status=status, source="import", chunk=chunk)
        assert [verdict for _, verdict in got] == expected
        assert rows(bulk.store) == rows(reference.store)  # type: ignore[arg-type]
    finally:
        bulk.store.close()  # type: ignore[attr-defined]
        reference.store.close()  # type: ignore[attr-defined]


def test_a_repeated_pending_address_is_made_active_once(tmp_path: Path) -> None:
    clock = FakeClock()
    service = service_on(f"sqlite:///{tmp_path / 's.db'}", tmp_path, clock)
    service.store.add_subscriber("w@example.org", status=PENDING, source="t", now=clock())
    clock.advance(hours=1)
    lines = [(n, "w@example.org", "") for n in range(3)]
    got = [v.result for _, v in import_addresses(service, lines, status=ACTIVE, source="t")]
    assert got == [ImportResult.UPDATED, ImportResult.UNCHANGED, ImportResult.UNCHANGED]
    found = service.store.get_subscriber("w@example.org")
    assert found is not None and found.status is ACTIVE and found.updated_at == clock()
    service.store.close()  # type: ignore[attr-defined]


def test_imported_rows_keep_the_file_order_and_are_whole(store_url: str, tmp_path: Path) -> None:
    """Readers are sent in id order, so ids follow the file across chunks; each new row has
    its own public id, its mailbox, the import's stamps, and nothing a later state sets."""
    clock = FakeClock()
    service = service_on(store_url, tmp_path, clock)
    order = random.Random(7).sample(range(1000), 45)
    emails = [f"r{n}.x+tag@gmail.com" if n % 9 == 0 else f"r{n}@example.org" for n in order]
    emails[1:4] = ["o'brien{x}@example.org", "a|b}{@example.org", "null@example.org"]
    lines = [(n, email, "") for n, email in enumerate(emails)]
    got = list(import_addresses(service, lines, status=ACTIVE, source="file.csv", chunk=20))
    assert {verdict.result for _, verdict in got} == {ImportResult.ADDED}
    store: SqlStore = service.store  # type: ignore[assignment]
    with store.engine.connect() as conn:
        found = conn.execute(sa.select(subscribers).order_by(subscribers.c.id)).all()
    store.close()
    assert [row.email for row in found] == emails
    assert len({row.public_id for row in found}) == 45 and all(row.public_id for row in found)
    for row in found:
        assert row.mailbox == mailbox_key(row.email) and row.source == "file.csv"
        assert row.created_at == row.updated_at == row.confirmed_at == clock()
        assert (row.status, row.unsubscribed_at, row.bounce_count) == ("active", None, 0)
        assert row.frequency == "daily"


def test_imported_rows_are_stored_as_one_added_alone_is(store_url: str, tmp_path: Path) -> None:
    """The import writes its own SQL on SQLite, where time stamps are text compared as text:
    each column of an imported row is stored exactly as the store's own insert stores it, the
    same instant in the same spelling, so "since" and "before" queries see both alike."""
    clock = FakeClock()
    clock.advance(seconds=0.123456)  # microseconds, which a spelling may drop
    service = service_on(store_url, tmp_path, clock)
    store: SqlStore = service.store  # type: ignore[assignment]
    store.add_subscriber("alone@example.org", status=ACTIVE, source="t", now=clock())
    rows = [ImportRow("listed@example.org", "listed@example.org", ())]
    store.import_subscribers(rows, status=ACTIVE, source="t", now=clock())
    stamps = ("status", "source", "created_at", "updated_at", "confirmed_at", "frequency")
    raw = sa.select(*(sa.cast(subscribers.c[name], sa.Text) for name in stamps))
    with store.engine.connect() as conn:
        alone, listed = (
            conn.execute(raw.where(subscribers.c.email == email)).one()
            for email in ("alone@example.org", "listed@example.org")
        )
    store.close()
    assert listed == alone and None not in alone


def test_an_address_too_long_for_the_column_is_never_stored_cut_short(
    store_url: str, tmp_path: Path
) -> None:
    """Addresses are refused past 254 characters before they get here; should one get here,
    PostgreSQL's column refuses it (SQLite keeps it whole), though the import casts its
    arrays to varchar(320)[]: a reviewer feared the cast would cut it short without a word."""
    service = service_on(store_url, tmp_path, FakeClock())
    store: SqlStore = service.store  # type: ignore[assignment]
    long = "x" * 330 + "@example.org"
    row = ImportRow(long, "short@example.org", ())  # a long mailbox would be refused alone
    with contextlib.suppress(sa.exc.DBAPIError):
        store.import_subscribers([row], status=ACTIVE, source="t", now=service.clock())
    with store.engine.connect() as conn:
        stored = list(conn.scalars(sa.select(subscribers.c.email)))
    store.close()
    assert stored in ([], [long])


def test_a_line_that_could_not_be_read_is_refused_with_its_problem_in_its_place(
    tmp_path: Path,
) -> None:
    service = service_on(f"sqlite:///{tmp_path / 's.db'}", tmp_path, FakeClock())
    lines = [(1, "a@example.org", ""), (2, "", "not a readable CSV row"), (3, "b@example.org", "")]
    got = list(import_addresses(service, lines, status=ACTIVE, source="t", chunk=2))
    assert got == [
        (1, ImportVerdict(ImportResult.ADDED)),
        (2, ImportVerdict(ImportResult.REFUSED, "not a readable CSV row")),
        (3, ImportVerdict(ImportResult.ADDED)),
    ]
    with pytest.raises(ValueError, match="at least one line"):
        list(import_addresses(service, lines, status=ACTIVE, source="t", chunk=0))
    service.store.close()  # type: ignore[attr-defined]


@pytest.mark.slow
def test_a_hundred_thousand_lines_through_the_command(
    store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every 97th line is refused, every 50th repeats an address of the line 25 before it
    (upper-cased), and the list already holds 300 pending, 100 unsubscribed, 100 bounced and 100
    erased addresses that the file names again."""
    clock = FakeClock()
    service = service_on(store_url, tmp_path, clock)
    known = [f"known{n}@example.org" for n in range(600)]
    list(import_addresses(service, [(n, a, "") for n, a in enumerate(known)], status=PENDING,
                          source="t"))  # fmt: skip
    for email in known[300:400]:
        unsubscribe(service, email, SubscriberStatus.UNSUBSCRIBED)
    for email in known[400:500]:
        unsubscribe(service, email, SubscriberStatus.BOUNCED)
    for email in known[500:]:
        service.erase(email)
    service.store.close()  # type: ignore[attr-defined]
    clock.advance(days=1)
    lines: list[str] = []
    for n in range(1, 100_001):
        if n % 97 == 0:
            lines.append(f"not-an-address-{n}")
        elif n % 50 == 0:
            lines.append(lines[n - 26].upper())
        elif n <= 600:
            lines.append(known[n - 1])
        else:
            lines.append(f"new{n}@example.org")
    source = tmp_path / "list.txt"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = make_config(tmp_path, [("REE", str(SAMPLE))], 2525, database_url=store_url)
    environ = {"NEWSLETTER_SECRET_KEY": KEY}
    argv = ["--config", str(config), "subscribers", "import", "--active", str(source)]
    assert main(argv, clock=clock, environ=environ) == 0
    out, err = capsys.readouterr()

    refused = sum(1 for n in range(1, 100_001) if n % 97 == 0)
    repeats = [n for n in range(1, 100_001) if n % 50 == 0 and n % 97]
    repeated_refusals = sum(1 for n in repeats if (n - 25) % 97 == 0)
    kinds = Counter(kind_of(n) for n in range(1, 601) if n % 97 and n % 50)
    assert kinds["pending"] + kinds["suppressed"] + kinds["erased"] > 0
    # A repeat is judged like its original: refused again, suppressed again, else unchanged.
    again = Counter(kind_of(n - 25) for n in repeats if (n - 25) % 97)
    suppressed = kinds["suppressed"] + kinds["erased"] + again["suppressed"] + again["erased"]
    expected = {
        "added": 100_000 - refused - len(repeats) - sum(kinds.values()),
        "updated": kinds["pending"],
        "unchanged": len(repeats) - repeated_refusals - again["suppressed"] - again["erased"],
        "refused": refused + repeated_refusals,
        "suppressed": suppressed,
    }
    assert out.strip() == ", ".join(f"{key}={value}" for key, value in expected.items())
    problems = err.splitlines()
    assert len(problems) == expected["refused"] + expected["suppressed"]
    assert f"{source}:97: refused 'not-an-address-97': " in problems[0]
    assert f"{source}:301: kept suppressed: unsubscribed on 2026-11-28" in err
    assert f"{source}:401: kept suppressed: bounced" in err
    assert f"{source}:501: kept suppressed: erased on request" in err
    numbers = [int(line.split(":")[1]) for line in problems]
    assert numbers == sorted(numbers)  # in the file's order

    store = open_store(store_url)
    try:
        counts = store.count_by_status()
        assert counts[ACTIVE] == expected["added"] + expected["updated"]
        assert counts[PENDING] == 300 - kinds["pending"]  # the known lines refused or repeats
        assert counts[SubscriberStatus.UNSUBSCRIBED] == 100
        assert counts[SubscriberStatus.BOUNCED] == 100
        assert store.get_subscriber("known550@example.org") is None  # erased stays erased
    finally:
        store.close()


def kind_of(n: int) -> str:
    """What line n (1-based, under 601, not refused) of the big file names."""
    if n <= 300:
        return "pending"
    if n <= 500:
        return "suppressed"  # unsubscribed, then bounced
    return "erased" if n <= 600 else "new"


def unsubscribe(service: Subscriptions, email: str, status: SubscriberStatus) -> None:
    found = service.store.get_subscriber(email)
    assert found is not None
    service.store.set_status(found.id, status, service.clock())


def test_an_address_another_writer_adds_meanwhile_is_judged_as_known(
    store_url: str, tmp_path: Path
) -> None:
    """Another writer has inserted a row (unsubscribed) and unsubscribed a pending reader, not
    yet committed, when the import runs: on PostgreSQL the import's read waits on the locked
    row and misses the new one, whose insert then meets the conflict; on SQLite the import
    waits for the write lock. Either way both rows stay unsubscribed, and are reported so."""
    clock = FakeClock()
    service = service_on(store_url, tmp_path, clock)
    store: SqlStore = service.store  # type: ignore[assignment]
    waiting = store.add_subscriber("waiting@example.org", status=PENDING, source="t", now=clock())
    other = store.engine.connect()
    other_tx = other.begin()
    other.execute(
        sa.update(subscribers)
        .where(subscribers.c.id == waiting.id)
        .values(status="unsubscribed", unsubscribed_at=clock())
    )
    other.execute(
        sa.insert(subscribers).values(
            email="raced@example.org", status="unsubscribed", source="other", public_id="p" * 22,
            mailbox="raced@example.org", created_at=clock(), updated_at=clock(),
            unsubscribed_at=clock(),
        )
    )  # fmt: skip
    lines = [(1, "first@example.org", ""), (2, "raced@example.org", ""), (3, waiting.email, "")]
    got: list[tuple[int, ImportVerdict]] = []
    worker = threading.Thread(
        target=lambda: got.extend(import_addresses(service, lines, status=ACTIVE, source="t"))
    )
    worker.start()
    try:
        if store.engine.dialect.name == "postgresql":
            wait_for_a_lock_wait(store)
        else:
            time.sleep(0.3)
        assert not got  # still waiting for the other writer
    finally:
        other_tx.commit()
        other.close()
        worker.join(10)
    left = ImportVerdict(ImportResult.SUPPRESSED, "unsubscribed on 2026-11-28; needs fresh "
                         "confirmation")  # fmt: skip
    assert got == [(1, ImportVerdict(ImportResult.ADDED)), (2, left), (3, left)]
    for email in ("raced@example.org", waiting.email):
        found = store.get_subscriber(email)
        assert found is not None and found.status is SubscriberStatus.UNSUBSCRIBED
    store.close()


def wait_for_a_lock_wait(store: SqlStore) -> None:
    """Until some session of this database waits on a lock (the import's insert)."""
    query = sa.text("SELECT count(*) FROM pg_locks WHERE NOT granted")
    with store.engine.connect() as conn:
        for _ in range(200):
            if conn.scalar(query):
                return
            time.sleep(0.02)
    raise AssertionError("the import never waited on the other writer's row")


@pytest.mark.parametrize("header", ["", "email\n"])
def test_reading_a_list_takes_the_same_memory_for_any_length(tmp_path: Path, header: str) -> None:
    """Peak memory while reading 20,000 and 200,000 lines (plain and CSV) is the same: nothing
    kept per line (a list of line numbers once grew by ~36 bytes a line)."""
    peaks = []
    for lines in (20_000, 200_000):
        source = tmp_path / f"{lines}.csv"
        source.write_text(header + "".join(f"r{n}@example.org\n" for n in range(lines)))
        tracemalloc.start()
        try:
            count = sum(1 for _ in read_addresses(source))
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert count == lines
    assert peaks[1] < peaks[0] * 1.5 + 64 * 1024, peaks
