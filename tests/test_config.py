"""Config is read once; every bad value stops the run with the key, the file and the expectation."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.config import DRY_RUN_KEY, load_settings
from newsletter.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = (ROOT / "config.toml").read_text(encoding="utf-8")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_config_loads_and_resolves_paths_next_to_the_file() -> None:
    settings = load_settings(ROOT / "config.toml", environ={})
    assert settings.name == "REE Daily"
    assert settings.feeds[0].url == str(ROOT / "feeds" / "sample-ree-news.xml")
    assert settings.database_url == f"sqlite:///{ROOT / 'subscribers' / 'subscribers.db'}"
    assert settings.postal_address
    assert settings.base_url.startswith("https://")
    assert not settings.secret_key_is_set and settings.secret_keys == (DRY_RUN_KEY,)


def test_secrets_come_from_the_environment_oldest_key_first() -> None:
    env = {
        "NEWSLETTER_SECRET_KEY": "new",
        "NEWSLETTER_OLD_SECRET_KEYS": "old1, old2",
        "NEWSLETTER_SMTP_PASSWORD": "pw",
    }
    settings = load_settings(ROOT / "config.toml", environ=env)
    assert settings.secret_keys == ("old1", "old2", "new")
    assert settings.smtp.password == "pw"
    assert settings.secret_key_is_set


@pytest.mark.parametrize(
    ("old", "new", "key", "expected"),
    [
        ("port = 587", 'port = "587"', "smtp.port", "expected an integer"),
        ("port = 587", "port = 70000", "smtp.port", "up to 65535"),
        ('tls = "starttls"', 'tls = "ssl"', "smtp.tls", "starttls, tls, none"),
        ('timezone = "Europe/London"', 'timezone = "Mars/Olympus"', "newsletter.timezone", "IANA"),
        ('send_time = "07:00"', 'send_time = "7 am"', "newsletter.send_time", "HH:MM"),
        (
            'from_address = "daily@ree-news.example.com"',
            'from_address = "not an address"',
            "newsletter.from_address",
            "email address",
        ),
        (
            'base_url = "https://ree-news.example.com/newsletter"',
            'base_url = "ree-news.example.com"',
            "newsletter.base_url",
            "absolute http(s) URL",
        ),
        ("min_articles = 1", "min_articles = 0", "newsletter.min_articles", "positive"),
        ("connections = 4 ", "connections = true ", "smtp.connections", "expected an integer"),
        ('url = "feeds/sample-ree-news.xml"', 'url = "ftp://x/feed"', "feeds[0].url", "http(s)"),
        (
            'url = "sqlite:///subscribers/subscribers.db"',
            'url = "mysql://x"',
            "store.url",
            "sqlite",
        ),
    ],
)
def test_bad_value_names_key_and_file(
    tmp_path: Path, old: str, new: str, key: str, expected: str
) -> None:
    assert old in SHIPPED
    path = write(tmp_path, SHIPPED.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert info.value.key == key
    assert info.value.path == str(path)
    assert expected in str(info.value)
    assert str(path) in str(info.value)


def test_missing_required_key_is_named(tmp_path: Path) -> None:
    text = "\n".join(line for line in SHIPPED.splitlines() if not line.startswith("postal_address"))
    with pytest.raises(ConfigError, match=r"newsletter\.postal_address: missing"):
        load_settings(write(tmp_path, text), environ={})


def test_missing_file_and_broken_toml_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(tmp_path / "nope.toml", environ={})
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "[newsletter\nname = 1"), environ={})


def test_no_feeds_is_an_error(tmp_path: Path) -> None:
    text = SHIPPED.replace("[[feeds]]", "[[not_feeds]]")
    with pytest.raises(ConfigError, match="feeds: expected at least one"):
        load_settings(write(tmp_path, text), environ={})
