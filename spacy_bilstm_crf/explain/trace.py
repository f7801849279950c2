"""Collect a trace: run a ``crf_ner`` pipeline on one text stage by stage.

Each stage is the output of one of the tagger's layers, run on the doc
through Thinc's public API (``model.get_ref(...).predict``): the tok2vec, the
encoder and the emission layer; then the component's own inference API
(``constrain``, ``decode``, ``marginals``, ``entity_probs``, ``kbest_paths``)
on those emission scores. The stages together give exactly what the
component predicts.
"""

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy
from spacy.language import Language
from spacy.tokens import Doc
from thinc.types import Floats2d

from ..pipeline.crf_ner import CRFEntityRecognizer, EmissionScores
from ..tag_scheme import TagSequenceError, tags_to_spans
from .data import (
    EmissionStage,
    EncoderStage,
    EntityInfo,
    PathInfo,
    PathStage,
    TokenInfo,
    Trace,
    TransitionStage,
    VectorStage,
)
from .transformer import transformer_stage

TOP_TAGS = 3
N_TRANSITIONS = 8
PREVIEW = 4
START, END = "<start>", "<end>"


def explain(nlp: Language, text: str, *, k: int = 3, component: Optional[str] = None) -> Trace:
    """Run ``nlp`` on ``text`` up to its CRF component (``component``, by
    default the first ``crf_ner``) and trace what each stage of the tagger
    computes, with the ``k`` best paths."""
    name = component or _find_component(nlp)
    if name not in nlp.pipe_names:
        raise ValueError(f"The pipeline has no component {name!r}; its components: {', '.join(nlp.pipe_names)}.")
    pipe = nlp.get_pipe(name)
    if not isinstance(pipe, CRFEntityRecognizer):
        raise ValueError(f"Component {name!r} is not a crf_ner component.")
    if pipe.is_exported:
        raise ValueError(
            f"Component {name!r} is an export (ONNX), whose encoder and emission layer are one graph: "
            "explain the torch pipeline it was exported from."
        )
    position = nlp.pipe_names.index(name)
    doc = nlp(text, disable=nlp.pipe_names[position:])
    if len(doc) == 0:
        raise ValueError("The text has no tokens.")
    model = pipe.model
    vectors = model.get_ref("tok2vec").predict([doc])[0]  # (T, W)
    encoded = model.get_ref("encoder").predict([vectors])[0]  # (T, H)
    emissions: Floats2d = model.get_ref("emission").predict(encoded)  # (T, K)
    lattice = pipe.constrain([doc], [emissions])
    tags = pipe.tags
    config = nlp.config["components"][name]["model"]
    marginals = numpy.asarray(pipe.marginals(lattice)[0])
    paths = _paths(pipe, lattice, k, marginals)
    return Trace(
        text=text,
        lang=str(nlp.lang),
        component=name,
        scheme=pipe.scheme,
        labels=list(pipe.labels),
        tokens=[TokenInfo(t.i, t.text, t.whitespace_, t.is_space, bool(t.is_sent_start)) for t in doc],
        transformer=transformer_stage(nlp, name, model.get_ref("tok2vec"), doc),
        vectors=_vector_stage(config.get("tok2vec", {}), vectors),
        encoder=_encoder_stage(config.get("encoder", {}), model.get_ref("encoder"), encoded),
        emissions=_emission_stage(tags, pipe.scheme, emissions),
        transitions=_transition_stage(tags, pipe.transition_scores()),
        paths=paths,
        entities=_entities(pipe, doc, lattice, paths.paths[0]),
        threshold=pipe.threshold,
        marginals=_rounded(marginals),
    )


def _find_component(nlp: Language) -> str:
    for name, pipe in nlp.pipeline:
        if isinstance(pipe, CRFEntityRecognizer):
            return name
    raise ValueError(f"The pipeline has no crf_ner component: {nlp.pipe_names}.")


def _rounded(array: Any, digits: int = 4) -> List[Any]:
    return numpy.round(numpy.asarray(array, dtype="float64"), digits).tolist()


def _architecture(config: Dict[str, Any]) -> str:
    return str(config.get("@architectures", config.get("@layers", "?")))


def _vector_stage(config: Dict[str, Any], vectors: numpy.ndarray) -> VectorStage:
    architecture = _architecture(config)
    if "window_size" in config and "depth" in config:
        reach = int(config["window_size"]) * int(config["depth"])
        context = f"{2 * reach + 1} tokens ({config['depth']} CNN layers of window {config['window_size']})"
    elif "Transformer" in architecture:
        context = "the transformer window around the token"
    else:
        context = "see the architecture"
    return VectorStage(
        architecture=architecture,
        shape=[int(n) for n in vectors.shape],
        context=context,
        preview=_rounded(numpy.asarray(vectors)[:, :PREVIEW]),
    )


def _encoder_stage(config: Dict[str, Any], encoder: Any, encoded: numpy.ndarray) -> EncoderStage:
    settings = {key: value for key, value in config.items() if not key.startswith("@")}
    attrs = encoder.attrs
    field = attrs.get("receptive_field")
    if "computation" not in attrs:
        computation = "none: the token vectors go straight to the emission layer"
    elif field is None:
        computation = f"{attrs['computation']} ({len(encoded)} tokens); each output sees the whole doc"
    else:
        computation = f"{attrs['computation']}; each output sees {field} tokens"
    return EncoderStage(
        architecture=_architecture(config) if config else encoder.name,
        settings=settings,
        shape=[int(n) for n in encoded.shape],
        receptive_field=field,
        computation=computation,
    )


def _emission_stage(tags: Sequence[str], scheme: str, emissions: Floats2d) -> EmissionStage:
    scores = numpy.asarray(emissions, dtype="float64")
    order = numpy.argsort(-scores, axis=1, kind="stable")[:, :TOP_TAGS].tolist()
    top = [[(tags[j], round(float(row[j]), 4)) for j in best] for row, best in zip(scores, order)]
    argmax = [tags[j] for j in scores.argmax(axis=1).tolist()]
    problem = None
    try:
        tags_to_spans(argmax, scheme)
    except TagSequenceError as exc:
        problem = str(exc)
    return EmissionStage(list(tags), _rounded(scores), top, argmax, problem)


def _transition_stage(tags: Sequence[str], crf: Dict[str, numpy.ndarray]) -> TransitionStage:
    allowed = crf["allowed_transitions"]
    scores = crf["transitions"]
    forbidden = [(START, tags[j]) for j in numpy.nonzero(~crf["allowed_start"])[0].tolist()]
    forbidden += [(tags[i], tags[j]) for i, j in numpy.argwhere(~allowed).tolist()]
    forbidden += [(tags[i], END) for i in numpy.nonzero(~crf["allowed_end"])[0].tolist()]
    pairs = [(tags[i], tags[j], float(scores[i, j])) for i, j in numpy.argwhere(allowed).tolist()]
    ranked = sorted(pairs, key=lambda pair: -pair[2])
    return TransitionStage(
        tags=list(tags),
        scores=_rounded(scores),
        start=_rounded(crf["start"]),
        end=_rounded(crf["end"]),
        allowed=allowed.tolist(),
        allowed_start=crf["allowed_start"].tolist(),
        allowed_end=crf["allowed_end"].tolist(),
        forbidden=forbidden,
        strongest=[(a, b, round(s, 4)) for a, b, s in ranked[:N_TRANSITIONS]],
        weakest=[(a, b, round(s, 4)) for a, b, s in ranked[::-1][:N_TRANSITIONS]],
    )


def path_score(path: Sequence[int], emissions: numpy.ndarray, crf: Dict[str, numpy.ndarray]) -> float:
    """The score of a tag path: start + emissions + transitions + end."""
    ids = numpy.asarray(path)
    score = crf["start"][ids[0]] + crf["end"][ids[-1]] + emissions[numpy.arange(len(ids)), ids].sum()
    return float(score + crf["transitions"][ids[:-1], ids[1:]].sum())


def _paths(pipe: CRFEntityRecognizer, lattice: EmissionScores, k: int, marginals: numpy.ndarray) -> PathStage:
    scores = pipe.transition_scores()
    temperature = pipe.temperature
    ids, log_probs = pipe.kbest_paths(lattice, k)[0]
    ids_list: List[List[int]] = numpy.asarray(ids).tolist()
    tags = pipe.tags
    best = ids_list[0]
    emitted = numpy.asarray(lattice.scores[0], dtype="float64")
    infos = []
    for path, log_prob in zip(ids_list, numpy.asarray(log_probs).tolist()):
        path_tags = [tags[j] for j in path]
        infos.append(
            PathInfo(
                tags=path_tags,
                score=round(path_score(path, emitted, scores), 4),
                probability=round(float(numpy.exp(log_prob)), 6),
                entities=tags_to_spans(path_tags, pipe.scheme),
                differs_at=[t for t, (a, b) in enumerate(zip(path, best)) if a != b],
            )
        )
    log_z = path_score(best, emitted, scores) / temperature - float(numpy.asarray(log_probs)[0])
    on_path = marginals[numpy.arange(len(best)), best]
    return PathStage(round(log_z, 4), temperature, infos, _rounded(on_path))


def _entities(pipe: CRFEntityRecognizer, doc: Doc, lattice: EmissionScores, best: PathInfo) -> List[EntityInfo]:
    scored = pipe.entity_probs(lattice, [best.entities], threshold=pipe.threshold)[0]
    presets = set(lattice.kept[0])
    probs: Dict[Tuple[int, int, str], float] = {(s, e, label): p for s, e, label, p in scored}
    predicted = set(best.entities) | presets
    out = []
    for start, end, label in sorted(probs):
        tokens = doc[start:end]
        out.append(
            EntityInfo(
                start=start,
                end=end,
                label=label,
                text=tokens.text,
                start_char=tokens.start_char,
                end_char=tokens.end_char,
                probability=round(probs[(start, end, label)], 6),
                predicted=(start, end, label) in predicted,
                preset=(start, end, label) in presets,
            )
        )
    return out
