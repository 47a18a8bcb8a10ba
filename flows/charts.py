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

    parts = axes_frame(width, height, left, right, top, bottom, title, x_label, y_label)
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


def bar_chart_svg(bars: list[tuple[str, float]], *, title: str, x_label: str, y_label: str,
                  width: int = 640, height: int = 320, errors: list[float] | None = None) -> str:
    """Vertical bars, one per (label, value); ``errors`` (one per bar, e.g. standard errors) draws ± whiskers."""
    if not bars:
        raise ValueError(f"chart {title!r} has no bars to draw")
    if errors is not None and len(errors) != len(bars):
        raise ValueError(f"chart {title!r} has {len(bars)} bars but {len(errors)} error values")
    errors = errors or [0.0] * len(bars)
    left, right, top, bottom = 60, 20, 30, 60
    top_value = max(value + error for (_, value), error in zip(bars, errors)) or 1
    slot = (width - left - right) / len(bars)
    parts = axes_frame(width, height, left, right, top, bottom, title, x_label, y_label)

    def y_of(value: float) -> float:
        return height - bottom - max(value, 0.0) / top_value * (height - top - bottom)

    for i in range(5):  # value ticks
        value = top_value * i / 4
        parts.append(f'<text x="{left - 4}" y="{y_of(value) + 4:.1f}" text-anchor="end">{value:.4g}</text>')
    for i, ((label, value), error) in enumerate(zip(bars, errors)):
        x = left + i * slot
        shown = f"{value:,}" + (f" ± {error:.4g}" if error else "")
        parts.append(f'<rect x="{x + slot * 0.1:.1f}" y="{y_of(value):.1f}" width="{slot * 0.8:.1f}" '
                     f'height="{height - bottom - y_of(value):.1f}" fill="{COLORS[0]}"><title>{escape(label)}: {shown}'
                     f'</title></rect>')
        if error:
            mid, cap = x + slot / 2, slot * 0.15
            low, high = y_of(value - error), y_of(value + error)
            parts.append(f'<path d="M{mid:.1f},{low:.1f}V{high:.1f}M{mid - cap:.1f},{low:.1f}H{mid + cap:.1f}'
                         f'M{mid - cap:.1f},{high:.1f}H{mid + cap:.1f}" stroke="#222" fill="none"/>')
        label_y = height - bottom + 12
        parts.append(f'<text x="{x + slot / 2:.1f}" y="{label_y}" text-anchor="end" '
                     f'transform="rotate(-35 {x + slot / 2:.1f} {label_y})">{escape(label)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def axes_frame(width: int, height: int, left: int, right: int, top: int, bottom: int, title: str, x_label: str,
               y_label: str) -> list[str]:
    """The opening SVG parts every chart shares: white canvas, title, both axes and their labels."""
    return [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
             f'font-size="11"><rect width="100%" height="100%" fill="white"/>',
             f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="13">{escape(title)}</text>',
             f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="#444"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#444"/>',
             f'<text x="{(left + width - right) / 2}" y="{height - 8}" text-anchor="middle">{escape(x_label)}</text>',
             f'<text x="14" y="{(top + height - bottom) / 2}" text-anchor="middle" '
             f'transform="rotate(-90 14 {(top + height - bottom) / 2})">{escape(y_label)}</text>']


def svg_markdown_image(svg: str, alt: str) -> str:
    """Markdown that shows ``svg`` inline (a base64 ``data:`` URI)."""
    return f"![{alt}](data:image/svg+xml;base64,{base64.b64encode(svg.encode()).decode()})"


def dag_svg(labels: list[str], edges: list[tuple[int, int]], *, title: str, box_width: int = 190) -> str:
    """A left-to-right graph: node i in the column of its longest path from a source, arrows for (from, to) edges."""
    column = [0] * len(labels)
    for _ in labels:  # longest-path layering (graphs here are a few dozen nodes)
        for a, b in edges:
            column[b] = max(column[b], column[a] + 1)
    has_input = {b for _, b in edges}
    for node in range(len(labels)):  # input files sit just before what reads them, not all in the first column
        children = [column[b] for a, b in edges if a == node]
        if node not in has_input and children:
            column[node] = min(children) - 1
    rows: dict[int, list[int]] = {}
    for node, col in enumerate(column):
        rows.setdefault(col, []).append(node)
    box_h, gap_x, gap_y, top = 34, 50, 16, 34
    height = top + max(len(nodes) for nodes in rows.values()) * (box_h + gap_y) + 10
    width = len(rows) * (box_width + gap_x) + 10
    position = {node: (10 + col * (box_width + gap_x), top + i * (box_h + gap_y))
                for col, nodes in rows.items() for i, node in enumerate(nodes)}
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
             f'font-size="11"><rect width="100%" height="100%" fill="white"/>',
             '<defs><marker id="a" markerWidth="8" markerHeight="8" refX="8" refY="4" orient="auto">'
             '<path d="M0,0 L8,4 L0,8 z" fill="#555"/></marker></defs>',
             f'<text x="10" y="20" font-size="13">{escape(title)}</text>']
    for a, b in edges:
        (xa, ya), (xb, yb) = position[a], position[b]
        parts.append(f'<line x1="{xa + box_width}" y1="{ya + box_h / 2}" x2="{xb}" y2="{yb + box_h / 2}" '
                     f'stroke="#555" marker-end="url(#a)"/>')
    for node, (x, y) in position.items():
        text = labels[node] if len(labels[node]) <= box_width // 6 else labels[node][:box_width // 6 - 1] + "…"
        fill = "#e8f0fe" if column[node] == max(column) else "#f5f5f5"
        parts.append(f'<rect x="{x}" y="{y}" width="{box_width}" height="{box_h}" rx="5" fill="{fill}" stroke="#888"/>')
        parts.append(f'<text x="{x + 8}" y="{y + box_h / 2 + 4}">{escape(text)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)
