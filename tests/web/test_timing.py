"""The timing side channel of the sign-up form, measured as an attacker would (issue 12).

The answer to a sign-up is the same page for every address; what used to differ was the work
done after it, which slowed the requests that came next when the address was not an active
subscriber (about 2x on SQLite, 5x at p95 on PostgreSQL). Here a client posts an active or a
new address, then at once sends a burst of GETs, and the latencies of the first GET and of the
whole burst are compared between the two kinds. The kinds come in pairs (one of each, in a
random order from a fixed seed), so the machine's own noise (other jobs on a shared 2-core box)
falls on both alike. Each sample waits for its own job to end before the next one starts: in
pairs, a sample follows one of the other kind three times in four, so the longer job of a new
address (its mail is sent) ran on into the next sample, three times in four an active one. CI
then saw the active addresses' bursts slower (12.98 vs 9.64 ms, p<0.001); measured here, a new
address's bursts took 23.6 ms after a new address's sample and 21.3 ms after an active one's.

A Mann-Whitney U test must not tell the kinds apart at the 0.1% level, for the first GET and
for the burst. The burst (six GETs, which span the worker's next tick) of a new address must
also be no slower than an active one's by more than 1.5x in the mean of its middle 80% and 1.5x
in the mean of its slowest fifth (one-sided: only a new address gets a mail to send). A single
GET gets no ratio bound: it meets a tick with work or not, so its sample has two humps, and any
mean or quantile of it jumps between them on noise alone (CI saw 1.7x and 1.6x ratios at
p=0.44 and p=0.086). The bursts' sample has two humps too, and its p90, the tail bound until
2026-12-01, jumped between them: 1.53x and 1.83x with central means within 1.1x and p=0.125 and
0.415. The mean of the slowest fifth moves with how many bursts are slow and by how much, which
is what a leak in the tail changes.

The relay runs in a process of its own, as a real one does: in the test's process, taking in
each confirmation mail took the GIL from the app and slowed it after new addresses only.

Checked against the old behaviour (work at once after the answer, none for an active address):
SQLite first GET 1.9 vs 4.9 ms and bursts 9 vs 19 ms, PostgreSQL bursts 10 vs 19 ms (its first
GET alone did not tell), each at Mann-Whitney p < 0.001 with every burst bound broken.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from pathlib import Path

import httpx
import pytest

from newsletter.models import SubscriberStatus
from tests.support.smtp_process import SmtpProcess
from tests.support.web import Servers, WebServer, add

SAMPLES = 150  # per kind
BURST = 6  # GETs after each POST: with the worker's 50 ms tick they span its next job
# The largest ratio of central means taken as "the same". The leak measured 1.9-2.1x; noise on a
# loaded 2-core box reached 1.32x (Mann-Whitney p=0.078) under CI's faketime pass, so 1.3 failed
# on noise and 1.5 keeps a wide margin below the leak.
CENTRAL_RATIO = 1.5
TAIL_RATIO = 1.5  # the same for the means of the bursts' slowest fifth
SIGNIFICANCE = 0.001
pytestmark = pytest.mark.slow


def timed(client: httpx.Client, method: str, path: str, **options: object) -> float:
    started = time.perf_counter()
    answer = client.request(method, path, **options)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - started
    assert answer.status_code == 200
    return elapsed


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1]


def tail_mean(values: list[float]) -> float:
    """The mean of the slowest fifth: unlike a quantile it does not jump from one hump of a
    two-humped sample to the other when one sample more or less falls in the upper one."""
    ordered = sorted(values)
    return statistics.fmean(ordered[len(ordered) - len(ordered) // 5 :])


def central_mean(values: list[float]) -> float:
    """The mean of the middle 80%. A burst is fast or slow as it meets a tick with work or not,
    and the median of such a two-humped sample jumps from one hump to the other on noise alone
    (CI saw a 1.7x median ratio at Mann-Whitney p=0.44); this mean moves with the share of slow
    bursts, which is what a leak changes, and not with which hump the middle sample fell in."""
    ordered = sorted(values)
    cut = len(ordered) // 10
    return statistics.fmean(ordered[cut : len(ordered) - cut])


def mann_whitney_p(a: list[float], b: list[float]) -> float:
    """Two-sided p-value of the Mann-Whitney U test (normal approximation, ties averaged)."""
    ranked = sorted([(v, 0) for v in a] + [(v, 1) for v in b])
    ranks = [0.0] * len(ranked)
    start = 0
    while start < len(ranked):
        end = start
        while end + 1 < len(ranked) and ranked[end + 1][0] == ranked[start][0]:
            end += 1
        for index in range(start, end + 1):
            ranks[index] = (start + end) / 2 + 1
        start = end + 1
    n1, n2 = len(a), len(b)
    rank_sum = sum(r for r, (_, group) in zip(ranks, ranked, strict=True) if group == 0)
    u = rank_sum - n1 * (n1 + 1) / 2
    z = (u - n1 * n2 / 2) / math.sqrt(n1 * n2 * (n1 + n2 + 1) / 12)
    return math.erfc(abs(z) / math.sqrt(2))


def test_what_follows_a_sign_up_takes_as_long_for_every_address(
    tmp_path: Path, servers: Servers, store_url: str
) -> None:
    with (
        SmtpProcess() as relay,
        WebServer(
            tmp_path, servers, store_url=store_url, relay_port=relay.port, ip_limit_per_hour=10_000
        ) as web,
    ):
        active = [add(web, f"reader{n}@example.org", SubscriberStatus.ACTIVE) for n in range(20)]
        chance = random.Random(12)
        kinds = [kind for _ in range(SAMPLES) for kind in chance.sample(["active", "new"], 2)]
        first: dict[str, list[float]] = {"active": [], "new": []}
        burst: dict[str, list[float]] = {"active": [], "new": []}
        with httpx.Client(base_url=web.url, timeout=10) as client:
            for _ in range(10):  # warm up: connections, templates, the store
                timed(client, "GET", "/subscribe")
            for n, kind in enumerate(kinds):
                address = active[n % 20].email if kind == "active" else f"new{n}@example.org"
                form = {"email": address, "source": "subscribe-page"}
                timed(client, "POST", "/subscribe", data=form)
                times = [timed(client, "GET", "/subscribe") for _ in range(BURST)]
                first[kind].append(times[0])
                burst[kind].append(sum(times))
                web.idle()  # this sample's job is done before the next sample starts
                time.sleep(chance.uniform(0, 0.05))  # any phase against the worker's tick
        assert relay.count() == SAMPLES  # the new ones got their mail, no one else
    for name, measured in (("first", first), ("burst", burst)):
        new, old = measured["new"], measured["active"]
        central_ratio = central_mean(new) / central_mean(old)
        tail_ratio = tail_mean(new) / tail_mean(old)
        p_value = mann_whitney_p(new, old)
        summary = (
            f"{name}: central mean {central_mean(old) * 1e3:.2f} vs "
            f"{central_mean(new) * 1e3:.2f} ms, median {statistics.median(old) * 1e3:.2f} vs "
            f"{statistics.median(new) * 1e3:.2f} ms, p90 {p90(old) * 1e3:.2f} vs "
            f"{p90(new) * 1e3:.2f} ms, slowest fifth {tail_mean(old) * 1e3:.2f} vs "
            f"{tail_mean(new) * 1e3:.2f} ms, Mann-Whitney p={p_value:.3f}"
        )
        print(summary)
        assert p_value > SIGNIFICANCE, summary
        if name == "burst":  # a single GET's sample is two-humped: its ratios are noise
            # One-sided: the only work that differs is the confirmation mail, which only a new
            # address has, so a leak makes "new" slower. "Active slower" is the machine's noise
            # (CI saw 0.75x at p=0.053); the rank test above still refuses either direction.
            assert central_ratio < CENTRAL_RATIO, summary
            assert tail_ratio < TAIL_RATIO, summary
