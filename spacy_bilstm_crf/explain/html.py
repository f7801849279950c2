"""Render a trace as one self-contained HTML page: the entities by displaCy,
the emission scores with the Viterbi path and the transitions as heatmaps."""

from html import escape
from typing import Any, Dict, List, Optional

from .data import Trace
from .svg import heatmap
from .terminal import kind, render_text, span_text

STYLE = """
body { font-family: sans-serif; margin: 24px; max-width: 1200px; color: #222; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; }
table { border-collapse: collapse; font-size: 13px; }
td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
.figure { overflow-x: auto; }
pre { font-size: 12px; background: #f6f6f6; padding: 12px; overflow-x: auto; }
"""


def _displacy(trace: Trace) -> str:
    ents = [
        {"start": e.start_char, "end": e.end_char, "label": f"{e.label} {e.probability:.2f}"}
        for e in trace.entities
        if e.predicted
    ]
    data = {"text": trace.text, "ents": ents, "title": None}
    colors = {f"{e.label} {e.probability:.2f}": _label_color(e.label) for e in trace.entities}
    return displacy_entities([data], page=False, colors=colors)


def displacy_entities(parsed: List[Dict[str, Any]], *, page: bool, colors: Optional[Dict[str, str]] = None) -> str:
    """displaCy's entity markup of ``parsed`` (``displacy.parse_ents``'
    dicts), with what displaCy puts in the page as it is escaped first: the
    labels, titles, knowledge-base ids and links, language and direction
    (displaCy escapes only the text). ``colors`` maps labels, as given, to
    colours."""
    from spacy import displacy

    safe = []
    for data in parsed:
        ents = [
            {
                **ent,
                "label": escape(str(ent["label"])),
                "kb_id": escape(str(ent.get("kb_id") or "")),
                "kb_url": escape(_safe_url(str(ent.get("kb_url") or "#"))),
            }
            for ent in data["ents"]
        ]
        settings = {key: escape(str(value)) for key, value in data.get("settings", {}).items()}
        title = data.get("title")
        safe.append({**data, "ents": ents, "title": escape(str(title)) if title else None, "settings": settings})
    options = {"colors": {escape(label): escape(color) for label, color in (colors or {}).items()}}
    return str(displacy.render(safe, style="ent", manual=True, page=page, jupyter=False, options=options))


def _safe_url(url: str) -> str:
    """``url`` if it is a web link or a fragment, else ``#`` (no ``javascript:``)."""
    return url if url.startswith(("https://", "http://", "#")) else "#"


def _label_color(label: str) -> str:
    palette = ["#7aecec", "#feca74", "#aa9cfc", "#bfeeb7", "#ff9561", "#ddd"]
    return palette[sum(map(ord, label)) % len(palette)]


def _entity_table(trace: Trace) -> str:
    rows = "".join(
        f"<tr><td>{e.start}..{e.end - 1}</td><td>{escape(e.text)}</td><td>{escape(e.label)}</td>"
        f"<td>{e.probability:.4f}</td><td>{kind(e.predicted, e.preset)}</td></tr>"
        for e in trace.entities
    )
    head = "<tr><th>tokens</th><th>text</th><th>label</th><th>probability</th><th></th></tr>"
    return f'<table class="entities">{head}{rows}</table>'


def _paths_table(trace: Trace) -> str:
    rows = []
    for n, path in enumerate(trace.paths.paths):
        name = "Viterbi" if n == 0 else f"path {n + 1}"
        differs = ", ".join(map(str, path.differs_at)) or "-"
        ents = ", ".join(f"{span_text(trace, s, e)} [{label}]" for s, e, label in path.entities)
        rows.append(
            f"<tr><td>{name}</td><td>{path.score:.2f}</td><td>{path.probability:.4f}</td>"
            f"<td>{escape(differs)}</td><td>{escape(ents or '(none)')}</td></tr>"
        )
    head = "<tr><th>path</th><th>score</th><th>probability</th><th>differs at tokens</th><th>entities</th></tr>"
    return f'<table class="paths">{head}{"".join(rows)}</table>'


def _emission_heatmap(trace: Trace) -> str:
    tags = trace.emissions.tags
    index = {tag: i for i, tag in enumerate(tags)}
    scores = trace.emissions.scores  # (T, K)
    values = [[scores[t][k] for t in range(len(trace.tokens))] for k in range(len(tags))]
    columns = [f"{t.i} {t.text.strip() or repr(t.text)}" for t in trace.tokens]
    path = [index[tag] for tag in trace.paths.paths[0].tags]
    return heatmap(
        values, tags, columns, title="Emission scores (tags x tokens), Viterbi path", path=path, css_class="emissions"
    )


def _transition_heatmap(trace: Trace) -> str:
    tr = trace.transitions
    k = len(tr.tags)
    values: List[List[float]] = [list(tr.start) + [0.0]]
    blocked: List[List[bool]] = [[not a for a in tr.allowed_start] + [True]]
    for i in range(k):
        values.append(list(tr.scores[i]) + [tr.end[i]])
        blocked.append([not a for a in tr.allowed[i]] + [not tr.allowed_end[i]])
    return heatmap(
        values,
        ["<start>"] + tr.tags,
        tr.tags + ["<end>"],
        title="Transition scores (row: previous tag, column: next tag); grey: forbidden",
        blocked=blocked,
        css_class="transitions",
    )


def render_html(trace: Trace) -> str:
    """The trace as a self-contained HTML page."""
    title = f"{trace.component}: {trace.text[:60]}"
    sections = [
        f"<h1>{escape(title)}</h1>",
        f"<p>scheme {escape(trace.scheme)}, labels {escape(' '.join(trace.labels))}; "
        f"encoder {escape(trace.encoder.architecture)}; tok2vec {escape(trace.vectors.architecture)}</p>",
        "<h2>Entities and their probabilities</h2>",
        f'<div class="displacy">{_displacy(trace)}</div>',
        _entity_table(trace),
        "<h2>Best paths</h2>",
        _paths_table(trace),
        "<h2>Emission scores</h2>",
        f'<div class="figure">{_emission_heatmap(trace)}</div>',
        "<h2>Transitions</h2>",
        f'<div class="figure">{_transition_heatmap(trace)}</div>',
        "<h2>Every stage</h2>",
        f"<pre>{escape(render_text(trace, width=140))}</pre>",
    ]
    body = "\n".join(sections)
    return (
        f'<!DOCTYPE html>\n<html lang="{escape(trace.lang)}">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )
