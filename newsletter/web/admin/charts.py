"""Charts as inline SVG, drawn on the server: no script, no third-party code, nothing fetched.

The app's Content-Security-Policy allows no scripts at all; inline SVG is markup, so it
renders under it. Each bar carries a <title>, which browsers show on hover, so the exact
numbers are there without JavaScript; every chart also has a text summary for screen readers.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT = 320, 120
PAD_LEFT, PAD_BOTTOM, PAD_TOP = 34, 18, 8


def bar_chart(
    title: str,
    labels: Sequence[date],
    values: Sequence[float],
    color: str,
    *,
    percent: bool = False,
    lines: Sequence[tuple[float, str, str]] = (),
) -> Markup:
    """One series as bars over `labels`; `lines` are horizontal marks (value, label, color)."""
    top = max([*values, *(value for value, _, _ in lines), 0.0]) or 1.0
    plot_w, plot_h = WIDTH - PAD_LEFT - 4, HEIGHT - PAD_BOTTOM - PAD_TOP
    step = plot_w / max(len(values), 1)

    def shown(value: float) -> str:
        return f"{value:.2%}" if percent else f"{value:g}"

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{PAD_LEFT}" y1="{PAD_TOP + plot_h}" x2="{WIDTH - 4}" y2="{PAD_TOP + plot_h}" '
        'stroke="#9aa5b1" stroke-width="1"/>',
        f'<text x="{PAD_LEFT - 4}" y="{PAD_TOP + 8}" text-anchor="end" font-size="9" '
        f'fill="#52606d">{escape(shown(top))}</text>',
        f'<text x="{PAD_LEFT - 4}" y="{PAD_TOP + plot_h}" text-anchor="end" font-size="9" '
        'fill="#52606d">0</text>',
    ]
    for index, value in enumerate(values):
        height = plot_h * value / top
        x = PAD_LEFT + index * step + step * 0.1
        y = PAD_TOP + plot_h - height
        label = f"{labels[index].isoformat()}: {shown(value)}"
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{step * 0.8:.1f}" height="{height:.1f}" '
            f'fill="{color}"><title>{escape(label)}</title></rect>'
        )
    for value, name, line_color in lines:
        y = PAD_TOP + plot_h - plot_h * value / top
        parts.append(
            f'<line x1="{PAD_LEFT}" y1="{y:.1f}" x2="{WIDTH - 4}" y2="{y:.1f}" '
            f'stroke="{line_color}" stroke-dasharray="4 3" stroke-width="1">'
            f"<title>{escape(name)}</title></line>"
        )
    if labels:
        first, last = labels[0].strftime("%d %b"), labels[-1].strftime("%d %b")
        parts.append(
            f'<text x="{PAD_LEFT}" y="{HEIGHT - 4}" font-size="9" fill="#52606d">{first}</text>'
        )
        parts.append(
            f'<text x="{WIDTH - 4}" y="{HEIGHT - 4}" text-anchor="end" font-size="9" '
            f'fill="#52606d">{last}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # built from escaped values only
