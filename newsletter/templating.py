"""The one Jinja2 environment: the digest, the confirmation mail and the web pages share it.

Autoescaping for HTML and XML templates, `StrictUndefined` so a misspelt variable fails the run
instead of printing nothing, and `fill` for the plain-text parts. One environment per templates
folder, built once per process, so every template is compiled once however many readers,
requests or issues use it; and compiled code is kept between processes in Jinja2's own
bytecode cache, so a send started by cron loads its templates instead of compiling them.
"""

from __future__ import annotations

import contextlib
import functools
import textwrap
from pathlib import Path

import jinja2
from jinja2.bccache import Bucket

from newsletter.clean import one_line
from newsletter.errors import RenderError
from newsletter.slots import reserve_width

TEXT_WIDTH = 78


class QuietCache(jinja2.FileSystemBytecodeCache):
    """Jinja2's bytecode cache, which never fails a render: an entry it cannot read (cut
    short, written by another Jinja2) or write (a full or read-only disk) is compiled instead.

    Jinja2 keys each entry by the template's name and file and checks it against a checksum of
    the source, so an edited template is compiled again. Compiling the digest's templates costs
    ~65 ms of a send's start-up (before its first message); loading them ~2 ms.
    """

    def load_bytecode(self, bucket: Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except Exception:  # pickle and marshal raise several types on a damaged file
            bucket.reset()

    def dump_bytecode(self, bucket: Bucket) -> None:
        with contextlib.suppress(OSError):  # the next process compiles again, as without a cache
            super().dump_bytecode(bucket)


def bytecode_cache(directory: str | None = None) -> QuietCache | None:
    """The cache in `directory`, by default a directory of the system's temp folder that only
    this user may use (Jinja2 makes it 0700 and refuses one another user owns); None where
    there is no such directory: every process then compiles, as without a cache."""
    try:
        return QuietCache(directory)
    except (OSError, RuntimeError):
        return None


@functools.lru_cache(maxsize=8)
def environment(templates_dir: Path, cache_dir: str | None = None) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir),
        autoescape=jinja2.select_autoescape(["html", "htm", "xml"], default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        bytecode_cache=bytecode_cache(cache_dir),
    )
    env.filters["fill"] = fill
    return env


def template(templates_dir: Path, name: str) -> jinja2.Template:
    """A compiled template, or RenderError naming the file and line: fails at start-up."""
    try:
        return environment(Path(templates_dir)).get_template(name)
    except jinja2.TemplateError as exc:
        raise RenderError(describe(name, exc)) from exc


def render(compiled: jinja2.Template, context: dict[str, object]) -> str:
    try:
        return compiled.render(context)
    except jinja2.TemplateError as exc:
        raise RenderError(describe(compiled.name or "?", exc)) from exc


def describe(name: str, exc: jinja2.TemplateError) -> str:
    where = getattr(exc, "name", None) or name
    line = getattr(exc, "lineno", None)
    return f"template {where}{f' line {line}' if line else ''}: {exc.message or exc}"


def clean(value: str) -> str:
    """One line of printable text: feed titles may carry CR/LF, tabs or control characters."""
    return one_line(value)


def fill(value: object, first: str = "", rest: str | None = None, width: int = TEXT_WIDTH) -> str:
    """Wrap a paragraph for the text part without ever breaking a URL or a placeholder.

    Each placeholder counts as wide as the value that will replace it, so the lines stay
    within TEXT_WIDTH after substitution too (an over-long one goes on its own line).
    """
    text = reserve_width(clean(str(value)))
    wrapped = textwrap.fill(
        text,
        width=width,
        initial_indent=first,
        subsequent_indent=" " * len(first) if rest is None else rest,
        break_long_words=False,
        break_on_hyphens=False,
    )
    return wrapped.replace("\0", "")
