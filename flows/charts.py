"""Small SVG line charts for Prefect artifacts (no plotting library: a chart is a few polylines and labels).

The UI renders markdown artifacts; an image embedded as a ``data:`` URI shows there and in any markdown viewer,
with no file server behind it.
"""
from __future__ import annotations

import base64
import math
from html import escape

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")


def line_chart_svg(series: dict[str, list[tuple[float, float]]], *, title: str, x_label: str, y_label: str,
                   width: int = 640, height: int = 320) -> str:
    """One chart, one polyline per named series of (x, y) points; non-finite points are skipped."""
    points = {name: [(x, y) for x, y in pts if math.isfinite(x) and math.isfinite(y)] for name, pts in series.items()}
    every = [p for pts in points.values() for p in pts]
    if not every:
        raise ValueError(f"chart {title!r} has no finite points to draw")
    left, right, top, bottom = 60, 20, 30, 45
    x0, x1 = min(x for x, _ in every), max(x for x, _ in every)
    y0, y1 = min(y for _, y in every), max(y for _, y in every)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (width - left - right)

    def sy(y: float) -> float:
        return height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
             f'font-size="11"><rect width="100%" height="100%" fill="white"/>',
             f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="13">{escape(title)}</text>',
             f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="#444"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#444"/>',
             f'<text x="{(left + width - right) / 2}" y="{height - 8}" text-anchor="middle">{escape(x_label)}</text>',
             f'<text x="14" y="{(top + height - bottom) / 2}" text-anchor="middle" '
             f'transform="rotate(-90 14 {(top + height - bottom) / 2})">{escape(y_label)}</text>']
    for i in range(5):  # axis ticks
        xv, yv = x0 + (x1 - x0) * i / 4, y0 + (y1 - y0) * i / 4
        parts.append(f'<text x="{sx(xv):.1f}" y="{height - bottom + 14}" text-anchor="middle">{xv:.4g}</text>')
        parts.append(f'<text x="{left - 4}" y="{sy(yv) + 4:.1f}" text-anchor="end">{yv:.4g}</text>')
    for i, (name, pts) in enumerate(points.items()):
        color = COLORS[i % len(COLORS)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{path}"/>')
        parts.append(f'<text x="{width - right - 4}" y="{top + 14 * (i + 1)}" text-anchor="end" fill="{color}">'
                     f'{escape(name)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def svg_markdown_image(svg: str, alt: str) -> str:
    """Markdown that shows ``svg`` inline (a base64 ``data:`` URI)."""
    return f"![{alt}](data:image/svg+xml;base64,{base64.b64encode(svg.encode()).decode()})"
