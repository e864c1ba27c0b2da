"""`newsletter serve` as an operator runs it: a real process, a real port, stopped by SIGTERM."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from newsletter.cli import main
from tests.test_web import write_config

ROOT = Path(__file__).resolve().parent.parent


def test_serve_answers_on_its_port_and_stops_on_sigterm(tmp_path: Path) -> None:
    config = write_config(tmp_path, 2525)
    env = {**os.environ, "NEWSLETTER_SECRET_KEY": "serve-test-key"}
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
    config = write_config(tmp_path, 2525)
    monkeypatch.delenv("NEWSLETTER_SECRET_KEY", raising=False)
    assert main(["--config", str(config), "serve", "--port", "0"]) == 1
    assert "NEWSLETTER_SECRET_KEY" in capsys.readouterr().err
