"""Stage 2 of a trace: the transformer's wordpieces, windows, alignment and output."""

from typing import List, Optional, Tuple, cast

from spacy.language import Language
from spacy.tokens import Doc
from thinc.api import Model

from .data import TransformerStage, Window


def transformer_stage(nlp: Language, component: str, tok2vec: Model, doc: Doc) -> Optional[TransformerStage]:
    """The transformer's view of ``doc``, or None when the tok2vec is no
    transformer (or spacy-transformers is not installed). An inline
    transformer is run on the doc; a listener's data is the ``doc._.trf_data``
    that the upstream transformer component set."""
    try:
        from spacy_transformers.layers.listener import TransformerListener
        from spacy_transformers.layers.transformer_model import TransformerModel
    except ImportError:
        return None
    nodes = list(tok2vec.walk())
    inline = next((node for node in nodes if isinstance(node, TransformerModel)), None)
    if inline is not None:
        batch = inline.predict([doc])
        return _stage("inline", inline, batch.spans[0], batch.doc_data[0])
    listener = next((node for node in nodes if isinstance(node, TransformerListener)), None)
    if listener is None:
        return None
    upstream = _upstream_model(nlp, component, listener.upstream_name, TransformerModel)
    if upstream is None or not doc.has_extension("trf_data") or doc._.trf_data is None:
        raise ValueError(f"Component {component!r} listens to a transformer, but no transformer ran on the doc.")
    spans = upstream.attrs["get_spans"]([doc])[0]
    return _stage("listener", upstream, spans, doc._.trf_data)


def _upstream_model(nlp: Language, component: str, upstream: str, model_type: type) -> Optional[Model]:
    """The transformer model of the component that a listener listens to."""
    for name, pipe in nlp.pipeline:
        if name == component:
            break
        if upstream not in ("*", name) or not hasattr(pipe, "model"):
            continue
        for node in pipe.model.walk():
            if isinstance(node, model_type):
                return cast(Model, node)
    return None


def _stage(kind: str, model: Model, spans: List, data: object) -> TransformerStage:
    wordpieces = data.wordpieces  # type: ignore[attr-defined]
    padded_length = int(wordpieces.input_ids.shape[1]) if len(wordpieces) else 0
    windows = [
        Window(span.start, span.end, list(strings[:length]))
        for span, strings, length in zip(spans, wordpieces.strings, wordpieces.lengths)
    ]
    align = data.align  # type: ignore[attr-defined]
    alignment: List[List[Tuple[int, int]]] = []
    for i in range(len(align.lengths)):
        flat = [int(x) for x in align[i].dataXd.ravel().tolist()]
        alignment.append([(x // padded_length, x % padded_length) for x in flat] if padded_length else [])
    output = data.model_output.last_hidden_state  # type: ignore[attr-defined]
    return TransformerStage(
        kind=kind,
        name=str(model.attrs.get("name", "")),
        windows=windows,
        alignment=alignment,
        output_shape=[int(n) for n in output.shape],
    )
