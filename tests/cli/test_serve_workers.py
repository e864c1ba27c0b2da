"""`newsletter serve --workers N`: real worker processes on one port, real Redis, real SMTP.

Which worker answered is read from the JSON access log (each line carries its pid), and the
posts go on fresh connections until both workers have answered some, so every test here
knows its requests were spread over both processes. Each test has its own Redis key prefix
and deletes its keys afterwards.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from newsletter.cli.main import main
from newsletter.web.signups import MAX_RUNNING
from tests.support.config import closed_port, sample_config
from tests.support.operator import ADMIN_HASH
from tests.support.redis import REDIS_URL, keys, own_prefix
from tests.support.serving import ServeProcess
from tests.support.smtp_server import RecordingHandler, SmtpServer

CLIENT = "203.0.113.9"  # posed through X-Forwarded-For, trusted from 127.0.0.1 like a proxy
MAX_POSTS = 150


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
def prefix() -> Iterator[str]:
    with own_prefix() as own:
        yield own


def config(tmp_path: Path, smtp_port: int, limit: int, *, redis_url: str = "", **more: str) -> Path:
    replace = {"ip_limit_per_hour = 20 ": f"ip_limit_per_hour = {limit} "}
    replace['redis_url = ""'] = f'redis_url = "{redis_url}"'
    replace.update(more)
    return sample_config(tmp_path, smtp_port, replace=replace)


def post(serve: ServeProcess, n: int, client: str = CLIENT) -> httpx.Response:
    """One sign-up on a connection of its own (so the kernel may hand it to either worker)."""
    data = {"email": f"reader{n}@example.org", "source": "subscribe-page"}
    headers = {"X-Forwarded-For": client, "Connection": "close"}
    return httpx.post(f"{serve.url}/subscribe", data=data, headers=headers, timeout=10)


def post_until(
    serve: ServeProcess, done: object, client: str = CLIENT
) -> list[tuple[httpx.Response, int]]:
    """Post sign-ups until `done(answers)` says so; each answer with the pid that gave it."""
    assert callable(done)
    answers: list[tuple[httpx.Response, int]] = []
    while not done(answers):
        assert len(answers) < MAX_POSTS, f"still not done after {MAX_POSTS} posts"
        answer = post(serve, len(answers), client)
        pid, status = serve.wait_answered("POST", "/subscribe", len(answers) + 1)[len(answers)]
        assert status == answer.status_code
        answers.append((answer, pid))
    return answers


def both_workers(count: int) -> object:
    def done(answers: list[tuple[httpx.Response, int]]) -> bool:
        return len(answers) >= count and len({pid for _, pid in answers}) == 2

    return done


def each_worker(count: int) -> object:
    """Done when each of the two workers has answered `count` posts: the kernel may hand one
    worker most connections, and a worker with fewer than MAX_RUNNING has nothing queued."""

    def done(answers: list[tuple[httpx.Response, int]]) -> bool:
        per_worker = Counter(pid for _, pid in answers)
        return len(per_worker) == 2 and min(per_worker.values()) >= count

    return done


@pytest.mark.slow
def test_two_workers_share_one_limit_in_redis(
    tmp_path: Path, smtp: SmtpServer, prefix: str
) -> None:
    path = config(tmp_path, smtp.port, 5, redis_url=REDIS_URL, **{
        'redis_prefix = "newsletter"': f'redis_prefix = "{prefix}"'
    })  # fmt: skip
    with ServeProcess(path, "--workers", "2") as serve:
        answers = post_until(serve, both_workers(12))
        assert serve.stop() == 0
    statuses = [answer.status_code for answer, _ in answers]
    assert statuses == [200] * 5 + [429] * (len(answers) - 5)  # five in all, on either worker
    for refused, _ in answers[5:]:
        assert 3500 < int(refused.headers["retry-after"]) <= 3600  # the first post's hour
    assert keys(prefix) == [f"{prefix}:LIMITER/{CLIENT}/5/3600/second"]
    assert not any("per-IP limit alone" in m for m in serve.messages())
    assert sorted(m.rcpt_tos[0] for m in smtp.messages) == [
        f"reader{n}@example.org" for n in range(5)
    ]


@pytest.mark.slow
@pytest.mark.parametrize("redis", ["none", "dead"])
def test_without_a_redis_that_answers_each_worker_counts_alone_and_every_post_is_answered(
    tmp_path: Path, smtp: SmtpServer, redis: str
) -> None:
    dead = f"redis://127.0.0.1:{closed_port()}/0"
    path = config(tmp_path, smtp.port, 3, redis_url=dead if redis == "dead" else "")

    def each_refused(answers: list[tuple[httpx.Response, int]]) -> bool:
        refused = {pid for answer, pid in answers if answer.status_code == 429}
        return len(refused) == 2

    with ServeProcess(path, "--workers", "2") as serve:
        answers = post_until(serve, each_refused)
        assert serve.stop() == 0
    accepted = Counter(pid for answer, pid in answers if answer.status_code == 200)
    assert sorted(accepted.values()) == [3, 3]  # 2 x ip_limit_per_hour in all
    assert {answer.status_code for answer, _ in answers} == {200, 429}  # never a 5xx
    warned = [line for line in serve.lines if "Redis did not answer" in line["message"]]
    per_process = [m for m in serve.messages() if "per-IP limit alone" in m]
    if redis == "dead":
        assert sorted(line["pid"] for line in warned) == sorted(accepted)  # once per worker
        assert not per_process
    else:
        assert not warned
        assert per_process == [
            "--workers 2 without [web] redis_url: each worker counts the per-IP limit alone, "
            "so a client may get up to 2 x 3 = 6 sign-ups an hour"
        ]
    assert len(smtp.messages) == 6


class GatedRelay(RecordingHandler):
    """A relay that holds every DATA until the test opens the gate: while it is shut, each
    worker has its few jobs in flight and the rest of its sign-ups still queued."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.waiting = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            self.waiting += 1
        while not self.gate.is_set():
            await asyncio.sleep(0.01)
        return await super().handle_DATA(server, session, envelope)


@pytest.mark.slow
def test_sigterm_stops_every_worker_after_it_has_done_its_queued_sign_ups(
    tmp_path: Path,
) -> None:
    relay = GatedRelay()
    with SmtpServer(relay) as smtp:
        path = config(tmp_path, smtp.port, 100)
        with ServeProcess(path, "--workers", "2") as serve:
            answers = post_until(serve, each_worker(MAX_RUNNING + 2))
            assert {answer.status_code for answer, _ in answers} == {200}
            assert serve.wait_for(lambda: relay.waiting == 2 * MAX_RUNNING)  # 4 per worker
            serve.process.terminate()  # type: ignore[union-attr]
            stopping = "Waiting for application shutdown."  # logged just before the drain
            assert serve.wait_for(lambda: serve.messages("uvicorn.error").count(stopping) == 2)
            assert relay.waiting == 2 * MAX_RUNNING and not smtp.messages
            relay.gate.set()
            assert serve.stop() == 0
        sent = sorted(m.rcpt_tos[0] for m in smtp.messages)
    assert sent == sorted(f"reader{n}@example.org" for n in range(len(answers)))
    workers = {pid for _, pid in answers}
    finished = {
        int(found.group(1))
        for m in serve.messages("uvicorn.error")
        if (found := re.match(r"Finished server process \[(\d+)\]", m))
    }
    assert finished == workers
    assert not any("left undone" in m for m in serve.messages())


@pytest.mark.slow
def test_the_metrics_listener_adds_up_every_workers_requests(tmp_path: Path) -> None:
    port = closed_port()
    path = sample_config(tmp_path, 2525, replace={"enabled = false": "enabled = true"})
    path.write_text(path.read_text().replace("port = 9108", f"port = {port}"))
    with ServeProcess(path, "--workers", "2") as serve:
        served: set[int] = set()
        count = 0
        while len(served) < 2 or count < 6:
            assert count < MAX_POSTS
            answer = httpx.get(f"{serve.url}/healthz", headers={"Connection": "close"})
            assert answer.status_code == 200
            count += 1
            served = {pid for pid, _ in serve.wait_answered("GET", "/healthz", count)}
        scrape = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert serve.stop() == 0
    requests = 'newsletter_http_requests_total{method="GET",route="/healthz",status="200"}'
    assert f"{requests} {float(count)}" in scrape
    assert 'newsletter_subscribers{status="active"} 0.0' in scrape  # the store, read once
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_workers_must_be_at_least_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "serve-test-key")
    path = sample_config(tmp_path, 2525)
    assert main(["--config", str(path), "serve", "--port", "0", "--workers", "0"]) == 1
    assert "--workers: a whole number >= 1, got 0" in capsys.readouterr().err


def test_more_workers_are_refused_while_admin_sessions_live_in_one_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "serve-test-key")
    monkeypatch.setenv("NEWSLETTER_ADMIN_PASSWORD_HASH", ADMIN_HASH)
    path = sample_config(tmp_path, 2525)
    assert main(["--config", str(path), "serve", "--port", "0", "--workers", "2"]) == 1
    error = capsys.readouterr().err
    assert "--workers: one process only while [admin] is on" in error
    assert not (tmp_path / "s.db").exists()  # refused before the store was opened


def test_more_workers_are_refused_on_an_in_memory_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "serve-test-key")
    path = sample_config(tmp_path, 2525)
    path.write_text(path.read_text().replace(f"sqlite:///{tmp_path / 's.db'}", "sqlite://"))
    assert main(["--config", str(path), "serve", "--port", "0", "--workers", "3"]) == 1
    assert "in-memory store" in capsys.readouterr().err


@pytest.mark.slow
def test_a_worker_that_dies_stops_the_others_and_the_parent_exits_1(tmp_path: Path) -> None:
    started = re.compile(r"Started server process \[(\d+)\]")
    with ServeProcess(sample_config(tmp_path, 2525), "--workers", "2") as serve:
        assert serve.wait_for(
            lambda: len([m for m in serve.messages() if started.match(m)]) == 2, 30
        )
        one, other = (int(found[1]) for m in serve.messages() if (found := started.match(m)))
        os.kill(one, signal.SIGKILL)
        assert serve.process is not None
        assert serve.process.wait(timeout=40) == 1
    assert f"worker {one} exited (status -9): stopping the others" in serve.messages()
    assert f"Finished server process [{other}]" in serve.messages()  # stopped, not killed
