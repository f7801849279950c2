"""Heatmaps as inline SVG: no plotting library, self-contained markup."""

from html import escape
from typing import List, Optional, Sequence, Tuple

CELL = 26
FONT = 11


def _color(value: float, low: float, high: float) -> str:
    """Blue (low) through white (the middle) to red (high)."""
    if high <= low:
        return "rgb(255,255,255)"
    x = 2.0 * (value - low) / (high - low) - 1.0  # -1..1
    x = max(-1.0, min(1.0, x))
    if x < 0:
        return f"rgb({int(255 + 205 * x)},{int(255 + 145 * x)},255)"
    return f"rgb(255,{int(255 - 175 * x)},{int(255 - 205 * x)})"


def heatmap(
    values: Sequence[Sequence[float]],
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    *,
    title: str,
    blocked: Optional[Sequence[Sequence[bool]]] = None,
    path: Optional[Sequence[int]] = None,
    css_class: str = "heatmap",
) -> str:
    """An SVG heatmap of ``values`` (rows x columns) with its labels.

    ``blocked`` cells are drawn grey with a cross and left out of the colour
    scale; ``path`` (a row index per column) is drawn as a line through the
    cells, with a dot on each.
    """
    n_rows, n_cols = len(row_labels), len(col_labels)
    left = 8 + 7 * max((len(label) for label in row_labels), default=1)
    top = 40 + 7 * max((len(label) for label in col_labels), default=1)
    width = max(left + n_cols * CELL + 10, 8 + 7 * len(title))
    height = top + n_rows * CELL + 10
    low: float
    high: float
    open_cells = [
        values[r][c] for r in range(n_rows) for c in range(n_cols) if not (blocked is not None and blocked[r][c])
    ]
    low, high = (min(open_cells), max(open_cells)) if open_cells else (0.0, 1.0)
    parts: List[str] = [
        f'<svg class="{css_class}" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f'<text x="4" y="16" font-size="13" font-weight="bold">{escape(title)}</text>',
        f'<text x="4" y="32" font-size="{FONT}" fill="#555">colour: {low:.2f} (blue) to {high:.2f} (red)</text>',
    ]
    for c, label in enumerate(col_labels):
        x, base = left + c * CELL + CELL / 2 + 4, top - 6
        parts.append(
            f'<text x="{x:.1f}" y="{base}" font-size="{FONT}" transform="rotate(-60 {x:.1f} {base})">'
            f"{escape(label)}</text>"
        )
    for r, label in enumerate(row_labels):
        y = top + r * CELL + CELL / 2 + 4
        parts.append(f'<text x="{left - 6}" y="{y:.1f}" font-size="{FONT}" text-anchor="end">{escape(label)}</text>')
        for c in range(n_cols):
            x0, y0 = left + c * CELL, top + r * CELL
            value = values[r][c]
            tip = f"{row_labels[r]} / {col_labels[c]}: {value:.3f}"
            if blocked is not None and blocked[r][c]:
                parts.append(
                    f'<rect x="{x0}" y="{y0}" width="{CELL}" height="{CELL}" fill="#d0d0d0" stroke="#fff">'
                    f"<title>{escape(tip)} (forbidden)</title></rect>"
                    f'<path d="M{x0 + 7},{y0 + 7} L{x0 + CELL - 7},{y0 + CELL - 7} M{x0 + CELL - 7},{y0 + 7} '
                    f'L{x0 + 7},{y0 + CELL - 7}" stroke="#888" stroke-width="1"/>'
                )
            else:
                parts.append(
                    f'<rect x="{x0}" y="{y0}" width="{CELL}" height="{CELL}" fill="{_color(value, low, high)}" '
                    f'stroke="#fff"><title>{escape(tip)}</title></rect>'
                )
    if path:
        points: List[Tuple[float, float]] = [
            (left + c * CELL + CELL / 2, top + r * CELL + CELL / 2) for c, r in enumerate(path)
        ]
        line = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        parts.append(f'<polyline class="path" points="{line}" fill="none" stroke="#111" stroke-width="2.5"/>')
        parts.extend(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="#111"/>' for x, y in points)
    parts.append("</svg>")
    return "\n".join(parts)
