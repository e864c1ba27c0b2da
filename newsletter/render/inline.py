"""Stylesheets for mail: most rules go into style attributes, the rest stays in one <style>.

Gmail's apps (for non-Google accounts), many webmail and older Outlook drop or limit <style>,
so every rule that can be is copied onto its elements by premailer. What cannot be inlined
(media queries: phone widths and dark mode; Outlook.com's `[data-ogsc]`/`[data-ogsb]`
attributes, which the client adds when it darkens a message) is written after the HEAD_MARKER
line of the stylesheet and goes into the templates' `<style data-premailer="ignore">` as is.
The layout must work without it: that is what the browser test checks with <style> removed.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import cast

import cssutils

from newsletter.errors import RenderError

HEAD_MARKER = "/* ==== kept in <style> (not inlined) ==== */"

# premailer checks every style it parses against cssutils' CSS profiles (disable_validation
# does not reach its merge step), only to log what fails, and those logs are silenced below.
# The first checks of a process compile some hundred regexes: ~35 ms before every send's first
# message. Without profiles cssutils keeps each value as written, as it did after checking.
cssutils.profile.removeProfile(all=True)


class _Offline(ModuleType):
    """What premailer gets for `requests`: any attempt to fetch is a RenderError."""

    def __getattr__(self, name: str) -> object:
        if name.startswith("__"):  # what the import system and repr look up
            raise AttributeError(name)
        raise RenderError(f"premailer asked for requests.{name}: inlining never uses the network")


def _import_premailer() -> ModuleType:
    """premailer imports requests at its top (with urllib3, chardet and charset_normalizer:
    ~60 ms of a send's start-up, before its first message) only to fetch stylesheets from the
    web, which `inline_css` never lets it do. While premailer loads, `requests` is a stand-in
    that refuses every use; the real one stays importable by anything else. Where requests is
    already loaded, premailer gets it as usual."""
    if "requests" in sys.modules:
        import premailer
    else:
        stand_in = sys.modules["requests"] = _Offline("requests")
        try:
            import premailer
        finally:
            if sys.modules.get("requests") is stand_in:
                del sys.modules["requests"]
    return cast(ModuleType, premailer)


premailer = _import_premailer()


@dataclass(frozen=True)
class Stylesheet:
    inline: str  # rules premailer copies into style attributes
    head: str  # rules that stay in the <style> element


def read_stylesheet(folder: Path, name: str) -> Stylesheet:
    """Read once per renderer; a stylesheet without the marker keeps nothing in <style>."""
    try:
        css = (Path(folder) / name).read_text(encoding="utf-8")
    except OSError as exc:
        raise RenderError(f"cannot read {name} in {folder}: {exc}") from exc
    inline, _, head = css.partition(HEAD_MARKER)
    return Stylesheet(inline, head.strip())


def inline_css(html: str, css: str) -> str:
    """Move `css` into style attributes; never touches the network.

    Style elements marked data-premailer="ignore" are left as they are (the marker goes).
    CSS widths and heights are never copied into attributes: premailer would overwrite a
    picture's pixel size with "100%" and "auto", which Outlook reads as a 100 px picture.
    """
    inliner = premailer.Premailer(
        base_url=None,
        allow_network=False,
        allow_loading_external_files=False,
        css_text=css,
        disable_validation=True,
        disable_basic_attributes=["width", "height"],  # CSS sizes must not replace pixel ones
        keep_style_tags=False,
        strip_important=False,
        cssutils_logging_level=logging.CRITICAL,
    )
    try:
        return str(inliner.transform(html, pretty_print=False))
    except Exception as exc:  # premailer, cssutils and lxml raise unrelated types
        raise RenderError(f"inlining CSS failed: {exc}") from exc
