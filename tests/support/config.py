"""The one config writer for tests: the shipped config.toml pointed at local servers."""

from __future__ import annotations

import socket
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "feeds" / "sample-ree-news.xml"


def closed_port() -> int:
    """A port nothing listens on (bound once and released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def make_config(
    tmp_path: Path,
    feed_urls: list[tuple[str, str]],
    smtp_port: int,
    *,
    database_url: str | None = None,
    extra: str = "",
    replace: dict[str, str] | None = None,
) -> Path:
    """The shipped config pointed at local servers; `replace` swaps exact lines of it.

    Every swap must find its line, so a change to the shipped file cannot silently leave a
    test on the default port or the default database.
    """
    text = (ROOT / "config.toml").read_text(encoding="utf-8")
    name, url = feed_urls[0]
    text = text.replace(
        'name = "REE News (sample)"\nurl = "feeds/sample-ree-news.xml"',
        f'name = "{name}"\nurl = "{url}"',
    )
    for name, url in feed_urls[1:]:
        text += f'\n[[feeds]]\nname = "{name}"\nurl = "{url}"\n'
    swaps = {
        'host = "localhost"': 'host = "127.0.0.1"',
        "port = 587": f"port = {smtp_port}",
        'tls = "starttls"': 'tls = "none"',
        "timeout = 20 ": "timeout = 3 ",
        'dir = "out"': f'dir = "{tmp_path / "out"}"',
        'templates_dir = "templates"': f'templates_dir = "{ROOT / "templates"}"',
    }
    if database_url:
        swaps['url = "sqlite:///subscribers/subscribers.db"'] = f'url = "{database_url}"'
    swaps.update(replace or {})
    for old, new in swaps.items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "config.toml"
    path.write_text(text + extra, encoding="utf-8")
    return path


def sample_config(tmp_path: Path, smtp_port: int, **options: object) -> Path:
    """The bundled sample feed (a local file) and a SQLite store under tmp_path."""
    database_url = f"sqlite:///{tmp_path / 's.db'}"
    return make_config(
        tmp_path, [("REE News (sample)", str(SAMPLE))], smtp_port, database_url=database_url,
        **options,  # type: ignore[arg-type]
    )  # fmt: skip
