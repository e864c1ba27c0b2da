"""The sign-up queue: jobs on a fixed grid, a full queue answers 503, shutdown loses nothing."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
import uvicorn

from newsletter.subscriptions import SignupRequest
from newsletter.web.signups import PER_TICK, SignupJob, SignupQueue, until_next_tick
from tests.support.web import Servers, WebServer


def test_jobs_start_on_the_tick_grid_a_few_at_a_time() -> None:
    started: list[float] = []

    async def work(job: SignupJob) -> None:
        started.append(asyncio.get_running_loop().time())
        await asyncio.sleep(0.001)

    async def scenario() -> None:
        queue = SignupQueue(work, pace=0.5)
        loop = asyncio.get_running_loop()
        # Start just after a tick, so all six are posted (at odd moments, 0.1 s in all) before
        # the next: a tick that fell between them would split the backlog by chance.
        await asyncio.sleep(until_next_tick(loop.time(), 0.5) + 0.05)
        for n in range(6):
            assert queue.offer(SignupJob(SignupRequest(f"r{n}@example.org", "test")))
            await asyncio.sleep(0.01 * n)
        while len(started) < 6:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.6)
        assert queue.offer(SignupJob(SignupRequest("alone@example.org", "test")))
        while len(started) < 7:
            await asyncio.sleep(0.01)

    asyncio.run(scenario())
    # just after a tick of the loop's clock (a start at a random moment: 1 in 5 per job); the
    # ticks are 0.5 s apart so that a loaded machine's late wake-ups (tens of ms) fit in 0.1 s
    assert all(moment % 0.5 < 0.1 for moment in started), [m % 0.5 for m in started]
    ticks = Counter(int(moment / 0.5) for moment in started)
    assert max(ticks.values()) == PER_TICK  # a backlog goes a few jobs a tick, not all at once
    assert len(ticks) >= 3 and ticks[int(started[-1] / 0.5)] == 1
    assert until_next_tick(10.01, 0.05) == pytest.approx(0.04)
    assert until_next_tick(10.04, 0.05) == pytest.approx(0.01)


def test_a_failing_job_is_logged_and_the_queue_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    done: list[str] = []

    async def work(job: SignupJob) -> None:
        if job.request.address == "bad@example.org":
            raise RuntimeError("relay down")
        done.append(job.request.address)

    async def scenario() -> SignupQueue:
        queue = SignupQueue(work, pace=0.005)
        for address in ("bad@example.org", "good@example.org"):
            queue.offer(SignupJob(SignupRequest(address, "test")))
        while len(done) < 1:
            await asyncio.sleep(0.005)
        return queue

    queue = asyncio.run(scenario())
    assert done == ["good@example.org"] and queue.wait_idle(1)
    assert "failed after the answer" in caplog.text and "relay down" in caplog.text


def test_a_full_queue_answers_503_the_same_for_every_address(
    tmp_path: Path, servers: Servers, store_url: str
) -> None:
    with WebServer(tmp_path, servers, store_url=store_url) as web:
        signups = web.app.state.signups
        signups.capacity, signups.pace = 2, 30.0  # no tick takes a job while the test fills it
        answers = [web.sign_up(f"r{n}@example.org").status_code for n in range(2)]
        busy = web.sign_up("third@example.org")
        assert answers == [200, 200]
        assert busy.status_code == 503 and busy.headers["retry-after"] == "60"
        assert "try again in a minute" in busy.text.lower()
        assert busy.headers["content-security-policy"] and "third@" not in busy.text
        web.drain()
        assert web.status("third@example.org") is None
        assert sorted(m.rcpt_tos[0] for m in web.smtp.messages) == [
            "r0@example.org",
            "r1@example.org",
        ]


def test_shutdown_does_every_answered_sign_up(tmp_path: Path, servers: Servers) -> None:
    """uvicorn with its lifespan, as `newsletter serve` runs it: SIGTERM, then the queue drains."""
    with WebServer(tmp_path, servers) as web:
        web.app.state.signups.pace = 30.0  # nothing would run before the stop
        config = uvicorn.Config(web.app, host="127.0.0.1", port=0, log_level="warning")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            for n in range(3):
                form = {"email": f"late{n}@example.org"}
                assert client.post("/subscribe", data=form).status_code == 200
        assert web.smtp.messages == []
        server.should_exit = True
        thread.join(timeout=30)
        assert not thread.is_alive()
        assert sorted(m.rcpt_tos[0] for m in web.smtp.messages) == [
            f"late{n}@example.org" for n in range(3)
        ]
