"""Bad input never shows a traceback: each case is one clear line and a documented status."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from newsletter.cli.main import main
from newsletter.config import load_settings
from newsletter.models import SubscriberStatus
from newsletter.store import open_store
from tests.support.config import sample_config
from tests.support.smtp_server import SmtpServer


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "bad-input-key")
    with SmtpServer() as smtp:
        yield sample_config(tmp_path, smtp.port)


def run(config: Path, *args: str) -> int:
    return main(["--config", str(config), *args])


def imported(config: Path) -> dict[str, SubscriberStatus]:
    store = open_store(load_settings(config).database_url)
    try:
        return {s.email: s.status for s in store.iter_subscribers()}
    finally:
        store.close()


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("latin1.txt", "caf\u00e9@example.org\n".encode("latin-1"), "line 1 is not UTF-8"),
        ("late.txt", b"ok@example.org\n\xff\xfe@x\n", "line 2 is not UTF-8"),
        ("columns.csv", b"Name,Phone\nAnn,1\n", "found 'Name', 'Phone'"),
    ],
)
def test_an_unreadable_file_is_one_clear_error(
    config: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    data: bytes,
    message: str,
) -> None:
    path = write(tmp_path, name, data)
    assert run(config, "subscribers", "import", "--active", str(path)) == 1
    err = capsys.readouterr().err
    assert message in err and str(path) in err and "Traceback" not in err


def test_a_missing_file_or_a_folder_is_one_clear_error(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(config, "subscribers", "import", str(tmp_path / "nope.csv")) == 1
    assert "no such file" in capsys.readouterr().err
    assert run(config, "subscribers", "import", str(tmp_path)) == 1
    assert "is a folder" in capsys.readouterr().err


def test_exports_of_the_usual_tools_are_read(config: Path, tmp_path: Path) -> None:
    mailchimp = write(tmp_path, "mc.csv", b'"Email Address","First Name"\nann@example.org,Ann\n')
    substack = write(tmp_path, "ss.csv", b"email\nbob@example.org\n")
    utf16 = tmp_path / "u16.txt"
    utf16.write_text("cy@example.org\r\ndee@example.org\r\n", encoding="utf-16")
    for path in (mailchimp, substack, utf16):
        assert run(config, "subscribers", "import", "--active", str(path)) == 0
    assert set(imported(config)) == {
        "ann@example.org",
        "bob@example.org",
        "cy@example.org",
        "dee@example.org",
    }


def test_huge_fields_are_refused_lines_shown_short_and_the_rest_imported(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    huge = b"x" * (200 * 1024)
    path = write(tmp_path, "big.csv", b"email,note\n" + huge + b",n\nok@example.org,fine\n")
    assert run(config, "subscribers", "import", "--active", str(path)) == 0
    err = capsys.readouterr().err
    assert "big.csv:2: refused" in err and "ok@example.org" in imported(config)
    assert max(len(line) for line in err.splitlines()) < 300
    plain = write(tmp_path, "big.txt", huge + b"\nok2@example.org\n")
    assert run(config, "subscribers", "import", "--active", str(plain)) == 0
    err = capsys.readouterr().err
    assert "characters" in err and max(len(line) for line in err.splitlines()) < 300


def test_an_import_where_every_line_is_refused_fails(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "junk.txt", b"not an address\nneither@\n")
    assert run(config, "subscribers", "import", str(path)) == 1
    err = capsys.readouterr().err
    assert "junk.txt:1: refused" in err and "no line could be imported" in err


def test_an_impossible_date_is_a_usage_error(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        run(config, "send", "--dry-run", "--date", "0001-01-01")
    assert done.value.code == 2 and "between 1970 and 9998" in capsys.readouterr().err


def test_a_store_folder_that_cannot_be_made_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "bad-input-key")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    database = f"sqlite:///{blocker / 'sub' / 'x.db'}"
    config = sample_config(tmp_path, 25)
    text = config.read_text(encoding="utf-8").replace(f"sqlite:///{tmp_path / 's.db'}", database)
    config.write_text(text, encoding="utf-8")
    assert run(config, "subscribers", "counts") == 1
    err = capsys.readouterr().err
    assert "cannot create the store's folder" in err and "Traceback" not in err
