"""Render a trace as text for a terminal: a table per stage, long rows cut.

Every line goes through :func:`cut`, which escapes control characters: the
labels and wordpieces come from the model, and a terminal would obey the
escape sequences in them.
"""

import unicodedata
from typing import List, Sequence

from ..safe_text import printable
from .data import Trace

ELLIPSIS = "…"
MAX_CELL = 28


def display_width(text: str) -> int:
    """Columns ``text`` takes in a terminal (CJK characters take two)."""
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def cut(text: str, width: int) -> str:
    """``text`` with its control characters escaped, cut to ``width``
    columns, with an ellipsis where it was cut."""
    text = printable(text)
    if display_width(text) <= width:
        return text
    out, used = "", 0
    for ch in text:
        w = display_width(ch)
        if used + w > width - 1:
            break
        out, used = out + ch, used + w
    return out + ELLIPSIS


def pad(text: str, width: int) -> str:
    return text + " " * max(0, width - display_width(text))


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], width: int) -> List[str]:
    """Lines of a table; cells longer than MAX_CELL columns and lines longer
    than ``width`` are cut."""
    cells = [[cut(str(cell), MAX_CELL) for cell in row] for row in [list(headers), *rows]]
    widths = [max(display_width(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        line = "  " + " | ".join(pad(cell, w) for cell, w in zip(row, widths))
        lines.append(cut(line.rstrip(), width))
        if n == 0:
            lines.append(cut("  " + "-+-".join("-" * w for w in widths), width))
    return lines


def wrap(items: Sequence[str], width: int, indent: str = "  ") -> List[str]:
    """Items joined by two spaces, wrapped to ``width`` columns."""
    lines, line = [], indent
    for item in items:
        if display_width(line) + display_width(item) + 2 > width and line.strip():
            lines.append(line.rstrip())
            line = indent
        line += item + "  "
    if line.strip():
        lines.append(line.rstrip())
    return lines


def _fmt(value: float) -> str:
    return f"{value:.2f}"


def span_text(trace: Trace, start: int, end: int) -> str:
    """The text of tokens ``start..end-1`` of the traced doc."""
    tokens = trace.tokens[start:end]
    return "".join(t.text + t.whitespace for t in tokens).strip()


def _entities_text(trace: Trace, spans: Sequence[Sequence[object]]) -> str:
    found = [f"{span_text(trace, int(s), int(e))} [{label}]" for s, e, label in spans]  # type: ignore[call-overload]
    return ", ".join(found) or "(none)"


def render_text(trace: Trace, width: int = 100) -> str:
    """The trace as text, ``width`` columns wide."""
    out: List[str] = []

    def section(title: str) -> None:
        out.extend(["", title, "=" * min(width, display_width(title))])

    out.append(cut(f"{trace.component}: {trace.text}", width))
    out.append(cut(f"scheme {trace.scheme}, labels {' '.join(trace.labels)} ({len(trace.emissions.tags)} tags)", width))

    section(f"1. Tokens ({len(trace.tokens)})")
    marks = [f"{t.i}:{t.text!r}" if t.is_space else f"{t.i}:{t.text}" for t in trace.tokens]
    out.extend(wrap(marks, width))
    starts = [t.i for t in trace.tokens if t.sent_start and t.i > 0]
    if starts:
        out.append(f"  sentence starts at tokens {starts}")

    trf = trace.transformer
    section("2. Transformer" if trf else "2. Transformer: none (CPU tok2vec)")
    if trf:
        shape = tuple(trf.output_shape)
        out.append(f"  {trf.kind} transformer {trf.name!r}; output (windows, wordpieces, width) = {shape}")
        rows = [
            [n, f"{w.start}..{w.end - 1}", len(w.wordpieces), " ".join(w.wordpieces)] for n, w in enumerate(trf.windows)
        ]
        out.extend(table(["window", "tokens", "pieces", "wordpieces"], rows, width))
        out.append("")
        aligned = []
        for token, pairs in zip(trace.tokens, trf.alignment):
            pieces = [trf.windows[w].wordpieces[p] if p < len(trf.windows[w].wordpieces) else "?" for w, p in pairs]
            where = " ".join(f"{w}:{p}" for w, p in pairs)
            aligned.append([token.i, token.text, " ".join(pieces) or "(none)", where])
        out.extend(table(["#", "token", "wordpieces", "window:position"], aligned, width))

    vec = trace.vectors
    section("3. Token vectors")
    out.append(cut(f"  {vec.architecture}: shape {tuple(vec.shape)} (tokens x width {vec.shape[1]})", width))
    out.append(cut(f"  context of one vector: {vec.context}", width))
    rows = [[t.i, t.text, " ".join(f"{v:+.2f}" for v in values) + " …"] for t, values in zip(trace.tokens, vec.preview)]
    out.extend(table(["#", "token", "first values"], rows[:3], width))

    enc = trace.encoder
    section("4. Encoder")
    settings = ", ".join(f"{key}={value}" for key, value in enc.settings.items())
    out.append(cut(f"  {enc.architecture}({settings}): output shape {tuple(enc.shape)}", width))
    if enc.receptive_field is not None:
        out.append(f"  receptive field: {enc.receptive_field} tokens")
    out.append(cut(f"  {enc.computation}", width))

    em = trace.emissions
    section(f"5. Emission scores: {len(trace.tokens)} tokens x {len(em.tags)} tags, top {len(em.top[0])} per token")
    rows = [[t.i, t.text] + [f"{tag} {score:.2f}" for tag, score in top] for t, top in zip(trace.tokens, em.top)]
    out.extend(table(["#", "token"] + [f"top {n + 1}" for n in range(len(em.top[0]))], rows, width))
    if em.argmax_problem:
        out.append(cut(f"  per-token argmax (a softmax tagger) is ill-formed: {em.argmax_problem}", width))
    else:
        out.append("  per-token argmax (a softmax tagger) is well-formed here")

    tr = trace.transitions
    section("6. Transitions")
    total = len(tr.tags) ** 2 + 2 * len(tr.tags)
    out.append(f"  {len(tr.forbidden)} of {total} transitions (start and end included) are forbidden by {trace.scheme}")
    out.extend(wrap([f"{a} -> {b}" for a, b in tr.forbidden[:12]] + (["…"] if len(tr.forbidden) > 12 else []), width))
    rows = [[a, b, _fmt(s)] for a, b, s in tr.strongest]
    out.append("  strongest allowed:")
    out.extend(table(["from", "to", "score"], rows, width))

    paths = trace.paths
    section(f"7. Viterbi path and the next {len(paths.paths) - 1} best")
    best = paths.paths[0]
    out.append(f"  log Z = {paths.log_z:.2f} (temperature {paths.temperature:g})")
    for n, path in enumerate(paths.paths):
        where = "" if n == 0 else f", differs at tokens {path.differs_at}"
        name = "Viterbi" if n == 0 else f"path {n + 1}"
        found = _entities_text(trace, path.entities)
        out.append(f"  {name}: score {path.score:.2f}, p = {path.probability:.4f}{where}: {found}")
    headers = ["#", "token", "Viterbi", "p(tag)"] + [f"path {n + 1}" for n in range(1, len(paths.paths))]
    rows = []
    for t, token in enumerate(trace.tokens):
        row: List[object] = [t, token.text, best.tags[t], f"{paths.viterbi_marginals[t]:.2f}"]
        row += [("*" if t in p.differs_at else "") + p.tags[t] for p in paths.paths[1:]]
        rows.append(row)
    out.extend(table(headers, rows, width))
    out.append("  * where a path differs from Viterbi; p(tag): marginal probability of the Viterbi tag")

    section(f"8. Entities (other spans from p >= {trace.threshold:g})")
    rows = [
        [f"{e.start}..{e.end - 1}", e.text, e.label, f"{e.probability:.4f}", kind(e.predicted, e.preset)]
        for e in trace.entities
    ]
    out.extend(table(["tokens", "text", "label", "probability", ""], rows, width) if rows else ["  (none)"])
    return "\n".join(cut(line, width) for line in out) + "\n"


def kind(predicted: bool, preset: bool) -> str:
    """How an entity of the trace came about."""
    if preset:
        return "pre-set"
    return "entity" if predicted else "other span"
