"""`newsletter serve` as an operator runs it: a real process, a real port, stopped by SIGTERM."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from newsletter.cli.main import main
from tests.support.clock import T0
from tests.support.config import sample_config
from tests.support.faketime import wall_clock_env


@pytest.mark.slow
def test_serve_answers_on_its_port_and_stops_on_sigterm(tmp_path: Path) -> None:
    config = sample_config(tmp_path, 2525)
    env = {**os.environ, "NEWSLETTER_SECRET_KEY": "serve-test-key", **wall_clock_env(T0)}
    command = [sys.executable, "-m", "newsletter", "--config", str(config), "serve", "--port", "0"]
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        deadline = time.monotonic() + 20
        url = None
        while url is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            assert line, "serve exited before listening"
            found = re.search(r"running on (http://127\.0\.0\.1:\d+)", line)
            url = found.group(1) if found else None
        assert url, "serve did not report its address"
        health = httpx.get(f"{url}/healthz", timeout=5)
        assert health.status_code == 200 and health.json()["status"] == "ok"
        assert "Subscribe" in httpx.get(f"{url}/subscribe", timeout=5).text
        assert "server" not in health.headers
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0  # a graceful stop, the store closed
    assert not (tmp_path / "s.db-wal").exists()


def test_serve_refuses_to_start_without_the_secret_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = sample_config(tmp_path, 2525)
    monkeypatch.delenv("NEWSLETTER_SECRET_KEY", raising=False)
    assert main(["--config", str(config), "serve", "--port", "0"]) == 1
    assert "NEWSLETTER_SECRET_KEY" in capsys.readouterr().err


@pytest.mark.slow
def test_serve_puts_metrics_on_their_own_port_and_logs_json(tmp_path: Path) -> None:
    from tests.support.config import closed_port

    port = closed_port()
    config = sample_config(tmp_path, 2525)
    text = config.read_text().replace("enabled = false", "enabled = true")
    config.write_text(text.replace("port = 9108", f"port = {port}"))
    env = {**os.environ, "NEWSLETTER_SECRET_KEY": "serve-test-key", **wall_clock_env(T0)}
    command = [sys.executable, "-m", "newsletter", "--log-format", "json", "--config", str(config)]
    process = subprocess.Popen(
        [*command, "serve", "--port", "0"], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stderr is not None
        deadline = time.monotonic() + 20
        url = None
        while url is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            assert line, "serve exited before listening"
            message = json.loads(line)["message"]  # every log line is one JSON object
            found = re.search(r"running on (http://127\.0\.0\.1:\d+)", message)
            url = found.group(1) if found else None
        assert url and not url.endswith(f":{port}")
        assert httpx.get(f"{url}/metrics", timeout=5).status_code == 404  # not on the public app
        scrape = f"http://127.0.0.1:{port}/metrics"
        for _ in range(100):  # the metrics listener starts next to the app
            try:
                answer = httpx.get(scrape, timeout=5)
                break
            except httpx.ConnectError:
                time.sleep(0.05)
        assert answer.status_code == 200
        assert 'newsletter_subscribers{status="active"} 0.0' in answer.text
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(scrape, timeout=2)
