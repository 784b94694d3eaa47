"""Charts as inline SVG, drawn here on the server side.

Why SVG by hand rather than a plotting library: the report must be one file that opens offline. Plotly or
Vega-Lite would embed 1-4 MB of JavaScript into every report (or fetch it from a CDN, which is not offline);
matplotlib would add numpy and a 40 MB dependency to render a few bars, and a PNG cannot be searched, zoomed
or tested in the DOM. Grouped bars with error bars and histograms are a few rectangles and lines each: a
hundred lines of SVG code, no dependency, crisp at any zoom, and each bar carries a ``<title>`` tooltip.
"""

from __future__ import annotations

import math
from html import escape

#: colour per run (Okabe-Ito, readable by colour-blind people)
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")

WIDTH, HEIGHT = 760, 300
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 16, 70


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _frame(kind: str, title: str, body: list[str], y_label: str, y_max: float, y_ticks: int = 5) -> str:
    plot_h = HEIGHT - TOP - BOTTOM
    parts = [f'<svg class="chart" data-chart="{escape(kind)}" role="img" aria-label="{escape(title)}" '
             f'viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" xmlns="http://www.w3.org/2000/svg">',
             f"<title>{escape(title)}</title>"]
    for i in range(y_ticks + 1):
        value = y_max * i / y_ticks
        y = TOP + plot_h - plot_h * i / y_ticks
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        label = f"{value:.2f}" if y_max <= 1.0 else f"{value:.0f}"
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{label}</text>')
    parts.append(f'<text x="12" y="{TOP + plot_h / 2:.1f}" font-size="11" text-anchor="middle" '
                 f'transform="rotate(-90 12 {TOP + plot_h / 2:.1f})">{escape(y_label)}</text>')
    parts.extend(body)
    parts.append("</svg>")
    return "".join(parts)


def grouped_bars(groups: list[str], series: list[str], values: list[list[tuple[float, float, float] | None]],
                 title: str, y_label: str = "mean score") -> str:
    """``values[g][s]`` = (mean, ci_low, ci_high) of series ``s`` in group ``g`` (None: no data); scale 0..1.
    Each bar has an error bar from ci_low to ci_high."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    group_w = plot_w / max(1, len(groups))
    bar_w = min(40.0, group_w * 0.8 / max(1, len(series)))
    body = []
    for g, group in enumerate(groups):
        x0 = LEFT + g * group_w + (group_w - bar_w * len(series)) / 2
        for s, name in enumerate(series):
            cell = values[g][s]
            if cell is None:
                continue
            mean, low, high = cell
            x = x0 + s * bar_w
            y = TOP + plot_h * (1 - mean)
            body.append(f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bar_w - 2:.1f}" '
                        f'height="{plot_h * mean:.1f}" fill="{colour(s)}"><title>{escape(name)} - '
                        f'{escape(group)}: {mean:.3f} (95% CI {low:.3f}-{high:.3f})</title></rect>')
            cx = x + (bar_w - 2) / 2
            y_low, y_high = TOP + plot_h * (1 - low), TOP + plot_h * (1 - high)
            body.append(f'<g class="errorbar" stroke="#222" stroke-width="1.2"><line x1="{cx:.1f}" x2="{cx:.1f}" '
                        f'y1="{y_low:.1f}" y2="{y_high:.1f}"/><line x1="{cx - 4:.1f}" x2="{cx + 4:.1f}" '
                        f'y1="{y_low:.1f}" y2="{y_low:.1f}"/><line x1="{cx - 4:.1f}" x2="{cx + 4:.1f}" '
                        f'y1="{y_high:.1f}" y2="{y_high:.1f}"/></g>')
        label_x = LEFT + g * group_w + group_w / 2
        body.append(f'<text x="{label_x:.1f}" y="{HEIGHT - BOTTOM + 14}" font-size="11" text-anchor="end" '
                    f'transform="rotate(-25 {label_x:.1f} {HEIGHT - BOTTOM + 14})">{escape(group)}</text>')
    return _frame("category-bars", title, body, y_label, 1.0)


def histograms(edges: list[float], series: list[str], counts: list[list[int]], title: str, x_label: str,
               kind: str) -> str:
    """One histogram per series on shared bins ``edges`` (len(counts[s]) == len(edges) - 1), as grouped bars
    per bin, each normalised to the share of that series' samples."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    n_bins = len(edges) - 1
    shares = [[c / max(1, sum(row)) for c in row] for row in counts]
    top = math.ceil(max([v for row in shares for v in row] + [0.05]) * 20) / 20  # a round axis, in 5 % steps
    bin_w = plot_w / max(1, n_bins)
    bar_w = bin_w * 0.9 / max(1, len(series))
    body = []
    for b in range(n_bins):
        for s, name in enumerate(series):
            share = shares[s][b]
            h = plot_h * share / top
            x = LEFT + b * bin_w + bin_w * 0.05 + s * bar_w
            body.append(f'<rect class="bar" x="{x:.1f}" y="{TOP + plot_h - h:.1f}" width="{max(1.0, bar_w - 1):.1f}" '
                        f'height="{h:.1f}" fill="{colour(s)}"><title>{escape(name)}: {counts[s][b]} samples '
                        f'in [{edges[b]:g}, {edges[b + 1]:g})</title></rect>')
        if b % max(1, n_bins // 10) == 0 or b == n_bins - 1:
            body.append(f'<text x="{LEFT + b * bin_w:.1f}" y="{HEIGHT - BOTTOM + 14}" font-size="10" '
                        f'text-anchor="middle">{edges[b]:g}</text>')
    body.append(f'<text x="{LEFT + plot_w:.1f}" y="{HEIGHT - BOTTOM + 14}" font-size="10" '
                f'text-anchor="middle">{edges[-1]:g}</text>')
    body.append(f'<text x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - BOTTOM + 34}" font-size="11" '
                f'text-anchor="middle">{escape(x_label)}</text>')
    return _frame(kind, title, body, "share of samples", top)


def legend(series: list[str]) -> str:
    items = "".join(f'<span class="key"><span class="swatch" style="background:{colour(i)}"></span>'
                    f"{escape(name)}</span>" for i, name in enumerate(series))
    return f'<div class="legend">{items}</div>'
