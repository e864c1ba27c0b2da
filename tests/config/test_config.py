"""Config is read once; every bad value stops the run with the key, the file and the expectation."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.config import DRY_RUN_KEY, load_settings
from newsletter.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
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


@pytest.mark.parametrize(
    ("old", "new", "key", "nearest"),
    [
        ("port = 587", "prot = 2525", "smtp.prot", "smtp.port"),
        ("\n[smtp]\n", "\n[smpt]\n", "smpt", "smtp"),
        ("retry_deadline_hours = 24", "retry_deadline_hour = 24", "delivery.retry_deadline_hour",
         "delivery.retry_deadline_hours"),
    ],
)  # fmt: skip
def test_an_unknown_key_or_table_names_the_file_and_the_nearest_known_key(
    tmp_path: Path, old: str, new: str, key: str, nearest: str
) -> None:
    """A typo must stop the run, not send to the default port."""
    assert old in SHIPPED
    path = write(tmp_path, SHIPPED.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert info.value.key == key and info.value.path == str(path)
    assert f"did you mean {nearest}?" in str(info.value)


def test_an_unknown_key_far_from_any_lists_the_known_ones(tmp_path: Path) -> None:
    path = write(tmp_path, SHIPPED.replace("[fetch]", "[fetch]\nzzz = 1", 1))
    with pytest.raises(ConfigError, match=r"fetch\.zzz: unknown key \(known here: .*timeout"):
        load_settings(path, environ={})


def test_a_config_file_that_is_not_utf8_or_not_a_file_is_a_clear_error(tmp_path: Path) -> None:
    latin = tmp_path / "latin.toml"
    latin.write_bytes(SHIPPED.replace("REE Daily", "Caf\u00e9").encode("latin-1", "replace"))
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_settings(latin, environ={})
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path, environ={})


def test_the_render_table_as_shipped() -> None:
    render = load_settings(ROOT / "config.toml", environ={}).render
    assert render.templates_dir == ROOT / "templates"
    assert render.thumbnails and render.logo is None
    assert (render.image_width, render.image_height) == (1200, 675)
    assert [s.title for s in render.sections] == [
        "Prices and trade", "Policy", "Magnets and supply chain", "Mining and processing",
    ]  # fmt: skip
    assert render.sections[0].categories == ("Prices", "Trade")
    assert render.other_title == "Other news"
    assert render.privacy_url.startswith("https://") and render.contact
    assert render.notes_dir == ROOT / "notes"


def test_a_config_without_render_keys_renders_plainly(tmp_path: Path) -> None:
    start = SHIPPED.index("[render]")
    text = SHIPPED[:start] + SHIPPED[SHIPPED.index("[output]") :]
    render = load_settings(write(tmp_path, text), environ={}).render
    assert render.templates_dir == tmp_path / "templates"
    assert not render.thumbnails and render.logo is None and render.sections == ()
    assert render.privacy_url == "" and render.contact == ""
    assert render.notes_dir == tmp_path / "notes"


LOGO = 'logo_url = "https://ree-news.example.com/logo.png"\nlogo_width = 180\nlogo_height = 40\n'


def test_a_logo_is_read_with_its_size(tmp_path: Path) -> None:
    text = SHIPPED.replace("thumbnails = true\n", "thumbnails = true\n" + LOGO, 1)
    logo = load_settings(write(tmp_path, text), environ={}).render.logo
    assert logo is not None and (logo.url, logo.width, logo.height) == (
        "https://ree-news.example.com/logo.png", 180, 40,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("old", "new", "key", "expected"),
    [
        ("thumbnails = true", 'thumbnails = "yes"', "render.thumbnails", "expected bool"),
        ("thumbnails = true", "thumbnails = true\n" + LOGO.replace("https", "http"),
         "render.logo_url", "https://"),
        ("thumbnails = true", "thumbnails = true\n" + LOGO.replace("= 40", "= 0"),
         "render.logo_height", "1 to 200"),
        ("thumbnails = true", 'thumbnails = true\nlogo_url = "https://x.example/l.png"',
         "render.logo_width", "1 to 600"),
        ('privacy_url = "https://ree-news.example.com/privacy-policy/"',
         'privacy_url = "ree-news.example.com/privacy"', "render.privacy_url", "https://"),
        ("image_width = 1200", "image_width = 0", "render.image_width", "positive"),
        ('categories = ["Policy"]', 'categories = ["Prices"]', "render.sections[1].categories",
         "'Prices' already belongs to section 'Prices and trade'"),
        ('categories = ["Policy"]', "categories = []", "render.sections[1].categories",
         "list of category names"),
        ('categories = ["Policy"]', "categories = [1]", "render.sections[1].categories",
         "list of category names"),
        ('title = "Policy"', 'title = ""', "render.sections[1].title", "must not be empty"),
        ('title = "Policy"', f'title = "{"P" * 61}"', "render.sections[1].title", "at most 60"),
        ('other_title = "Other news"', 'other_title = "x\\ny"', "render.other_title",
         "single line"),
        ('title = "Policy"', 'title = "Policy"\ntitel = "x"', "render.sections[1].titel",
         "did you mean render.sections[1].title?"),
    ],
)  # fmt: skip
def test_bad_render_values_name_the_key(
    tmp_path: Path, old: str, new: str, key: str, expected: str
) -> None:
    assert old in SHIPPED
    path = write(tmp_path, SHIPPED.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert info.value.key == key
    assert expected in str(info.value)


def test_redis_is_off_as_shipped_and_named_by_the_file_or_the_environment(tmp_path: Path) -> None:
    shipped = load_settings(ROOT / "config.toml", environ={})
    assert (shipped.web.redis_url, shipped.web.redis_prefix) == ("", "newsletter")
    text = SHIPPED.replace('redis_url = ""', 'redis_url = "redis://127.0.0.1:6379/2"', 1)
    path = write(tmp_path, text.replace('redis_prefix = "newsletter"', 'redis_prefix = "ree"'))
    assert load_settings(path, environ={}).web.redis_url == "redis://127.0.0.1:6379/2"
    assert load_settings(path, environ={}).web.redis_prefix == "ree"
    secret = "redis://:s3cret@10.0.0.5:6379/0"
    assert load_settings(path, {"NEWSLETTER_REDIS_URL": secret}).web.redis_url == secret


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ('redis_url = ""', 'redis_url = "http://127.0.0.1:6379"', "web.redis_url"),
        ('redis_url = ""', "redis_url = 6379", "web.redis_url"),
        ('redis_prefix = "newsletter"', 'redis_prefix = "two words"', "web.redis_prefix"),
        ('redis_prefix = "newsletter"', 'redis_prefix = ""', "web.redis_prefix"),
    ],
)
def test_a_bad_redis_setting_names_the_key_and_the_file(
    tmp_path: Path, old: str, new: str, key: str
) -> None:
    assert old in SHIPPED
    path = write(tmp_path, SHIPPED.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert (info.value.key, info.value.path) == (key, str(path))


def test_a_bad_redis_url_in_the_environment_is_named_without_echoing_it() -> None:
    env = {"NEWSLETTER_REDIS_URL": "redis//:s3cret@host"}
    with pytest.raises(ConfigError) as info:
        load_settings(ROOT / "config.toml", environ=env)
    assert info.value.key == "NEWSLETTER_REDIS_URL" and "s3cret" not in str(info.value)
    assert "redis://, rediss:// or unix://" in str(info.value)


def test_a_url_scheme_and_host_in_capitals_are_read_in_lower_case(tmp_path: Path) -> None:
    """Both are case-insensitive; the web app sends HSTS and Secure cookies by "https://" and
    compares the browser's Origin (lower case) with the base URL's; a path keeps its case."""
    text = SHIPPED
    for old, new in [
        ("https://ree-news.example.com/newsletter", "HTTPS://Ree-News.example.com/Newsletter"),
        ('site_url = "https://ree-news.example.com/"', 'site_url = "Http://ree.example/"'),
    ]:
        assert old in text
        text = text.replace(old, new, 1)
    settings = load_settings(write(tmp_path, text), environ={})
    assert settings.base_url == "https://ree-news.example.com/Newsletter"
    assert settings.site_url == "http://ree.example/"


def test_a_file_url_with_its_scheme_in_capitals_is_that_file(tmp_path: Path) -> None:
    feed = tmp_path / "feeds" / "ree.xml"
    old = 'url = "feeds/sample-ree-news.xml"'
    assert old in SHIPPED
    text = SHIPPED.replace(old, f'url = "FILE://{feed}"', 1)
    settings = load_settings(write(tmp_path, text), environ={})
    assert settings.feeds[0].url == str(feed)
