"""The CRF of an exported pipeline: a Thinc layer over a :class:`NumpyCRF`.

It predicts only. Its functions take and give what those of the torch CRF
layer (``layers/crf.py``) do, under the same names, so the component runs
either layer the same way: ``crf_decode``, ``crf_marginals``,
``crf_span_probs``, ``crf_kbest``, ``crf_transition_scores`` and
``set_tag_scheme``. The checks of their inputs and the bookkeeping of spans
live here and serve both layers; nothing here imports torch.

The CRF's state (scores and constraint masks, six plain arrays) is an attr
of the layer, saved with the model as the bytes of a ``.npz`` file and read
back as untrusted input (:meth:`NumpyCRF.from_bytes`).
"""

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, cast

import numpy
from thinc.api import Model
from thinc.model import deserialize_attr, serialize_attr
from thinc.types import Floats1d, Floats2d, Ints1d, Ints2d

from ..runtime.numpy_crf import NonFiniteScoresError, NumpyCRF
from ..tag_scheme import Span, allowed_transitions, candidate_spans, continuation_tags, entity_tags
from .sequences import non_empty, place

AllowedTags = Optional[Sequence[numpy.ndarray]]
ScoredSpan = Tuple[int, int, str, float]
"""An entity and its probability: (start token, end token exclusive, label, probability)."""
# (batch row, start, end exclusive, tag id of each token)
FlatSpan = Tuple[int, int, int, List[int]]

LAYER_NAME = "numpy_crf"


class CRFStateError(ValueError):
    """Saved bytes that are not a CRF's state."""


class CRFState:
    """The attr that holds a layer's :class:`NumpyCRF` (None before one is
    set or loaded); saved as the CRF's ``.npz`` bytes."""

    def __init__(self, crf: Optional[NumpyCRF] = None) -> None:
        self.crf = crf


@serialize_attr.register(CRFState)
def _serialize_state(_: CRFState, value: CRFState, name: str, model: Model) -> bytes:
    return b"" if value.crf is None else value.crf.to_bytes()


@deserialize_attr.register(CRFState)
def _deserialize_state(_: CRFState, data: bytes, name: str, model: Model) -> CRFState:
    try:
        return CRFState(NumpyCRF.from_bytes(data) if data else None)
    except ValueError as exc:
        raise CRFStateError(f"its CRF: {exc}") from None


def NumpyCRFLayer(crf: Optional[NumpyCRF] = None) -> Model:
    """A CRF layer over ``crf`` (set later with :func:`set_crf`, or loaded),
    for prediction only; its tags and scheme come with :func:`set_tag_scheme`."""
    dims = {"nO": crf.num_tags if crf is not None else None}
    return Model(
        LAYER_NAME,
        _forward,
        dims=dims,
        attrs={"tags": [], "scheme": "", "crf_state": CRFState(crf)},
    )


def is_numpy_crf(model: Model) -> bool:
    return model.name == LAYER_NAME


def set_crf(model: Model, crf: NumpyCRF) -> None:
    """Give the layer its CRF (the scores and masks of a trained one)."""
    model.attrs["crf_state"] = CRFState(crf)
    model.set_dim("nO", crf.num_tags, force=True)


def numpy_crf(model: Model) -> NumpyCRF:
    crf = model.attrs["crf_state"].crf
    if crf is None:
        raise ValueError(f"Layer {model.name!r} has no CRF yet: load an exported pipeline, or call set_crf().")
    return cast(NumpyCRF, crf)


def has_crf(model: Model) -> bool:
    return model.attrs["crf_state"].crf is not None


def set_tag_scheme(model: Model, tags: Sequence[str], scheme: str) -> None:
    """Give the layer its tag inventory. The constraints come with the CRF's
    state; they must be those of ``scheme`` over ``tags``, or this raises."""
    if model.has_dim("nO") and model.get_dim("nO") != len(tags):
        raise ValueError(f"The CRF has {model.get_dim('nO')} tags; cannot give it {len(tags)}: {list(tags)[:8]}...")
    if has_crf(model):
        expected = allowed_transitions(list(tags), scheme)
        state = numpy_crf(model).to_arrays()
        saved = (state["allowed_transitions"], state["allowed_start"], state["allowed_end"])
        if not all(numpy.array_equal(a, b) for a, b in zip(saved, expected)):
            raise ValueError(f"the CRF's saved constraints are not those of the {scheme} scheme over its tags.")
    model.attrs["tags"] = list(tags)
    model.attrs["scheme"] = scheme


def crf_decode(model: Model, emissions: Sequence[Floats2d], allowed: AllowedTags = None) -> List[Ints1d]:
    """The best well-formed tag sequence of each doc, within ``allowed``."""
    check_crf_inputs(model, emissions, None, allowed)
    ops = model.ops
    keep = non_empty(emissions)
    if not keep:
        return [ops.alloc1i(0) for _ in emissions]
    padded, mask, allowed_np = _batch(emissions, allowed, keep)
    best, _ = numpy_crf(model).decode(padded, mask, allowed=allowed_np)  # (B, T)
    rows = [ops.asarray1i(cast(Ints1d, best[row, : len(emissions[i])].astype("int32"))) for row, i in enumerate(keep)]
    return place(len(emissions), keep, rows, lambda _: ops.alloc1i(0))


def crf_marginals(
    model: Model, emissions: Sequence[Floats2d], allowed: AllowedTags = None, *, temperature: float = 1.0
) -> List[Floats2d]:
    """Per doc (T_i, K): the probability of each tag at each token; rows sum to 1."""
    check_crf_inputs(model, emissions, None, allowed)
    ops = model.ops
    n_tags = model.get_dim("nO")
    keep = non_empty(emissions)
    if not keep:
        return [ops.alloc2f(0, n_tags) for _ in emissions]
    padded, mask, allowed_np = _batch(emissions, allowed, keep)
    probs = numpy_crf(model).marginals(padded, mask, allowed=allowed_np, temperature=temperature)  # (B, T, K)
    rows = [
        ops.asarray2f(cast(Floats2d, probs[row, : len(emissions[i])].astype("float32"))) for row, i in enumerate(keep)
    ]
    return place(len(emissions), keep, rows, lambda _: ops.alloc2f(0, n_tags))


def crf_span_probs(
    model: Model,
    emissions: Sequence[Floats2d],
    spans: Sequence[Sequence[Span]],
    allowed: AllowedTags = None,
    *,
    threshold: Optional[float] = None,
    temperature: float = 1.0,
) -> List[List[ScoredSpan]]:
    """Per doc, the probability that each of its ``spans`` is an entity; with
    ``threshold``, every other span of at least that probability follows,
    sorted (as the torch CRF layer's ``crf_span_probs``)."""
    check_crf_inputs(model, emissions, None, allowed)
    check_spans(emissions, spans)
    keep = non_empty(emissions)
    if not keep:
        return [[] for _ in emissions]
    crf = numpy_crf(model)
    padded, mask, allowed_np = _batch(emissions, allowed, keep)
    alpha_beta = crf.forward_backward(padded, mask, allowed=allowed_np, temperature=temperature)
    asked: List[List[Span]] = [list(spans[i]) for i in keep]
    if threshold is not None:
        log_alpha, log_beta, log_z = alpha_beta
        probs = numpy.exp(log_alpha + log_beta - log_z[:, None, None])  # (B, T, K)
        add_candidates(model, asked, [probs[row, : len(emissions[i])] for row, i in enumerate(keep)], threshold)
    flat, follow_row = flat_spans(model, asked)
    values = numpy.zeros((0,), dtype="float64")
    if flat:
        follow = numpy.broadcast_to(follow_row, (len(flat), len(follow_row)))  # (N, K)
        values = crf.span_log_probs(
            padded, mask, flat, follow, allowed=allowed_np, alpha_beta=alpha_beta, temperature=temperature
        ).astype("float64")
    return place(len(emissions), keep, scored_spans(spans, keep, asked, values, threshold), lambda _: [])


def crf_kbest(
    model: Model,
    emissions: Sequence[Floats2d],
    k: int,
    allowed: AllowedTags = None,
    *,
    temperature: float = 1.0,
) -> List[Tuple[Ints2d, Floats1d]]:
    """Per doc, its ``k`` most probable well-formed tag sequences, best first:
    tag ids (n, T_i) and log-probabilities (n,)."""
    if k < 1:
        raise ValueError(f"k-best decoding needs k >= 1, got k={k}.")
    check_crf_inputs(model, emissions, None, allowed)
    ops = model.ops
    keep = non_empty(emissions)
    empty = (ops.alloc2i(1, 0), ops.alloc1f(1))
    if not keep:
        return [empty for _ in emissions]
    crf = numpy_crf(model)
    padded, mask, allowed_np = _batch(emissions, allowed, keep)
    paths, scores = crf.kbest(padded, mask, k, allowed=allowed_np, temperature=temperature)  # (B, k, T), (B, k)
    log_z = crf.log_partition(padded, mask, allowed=allowed_np, temperature=temperature)  # (B,)
    with numpy.errstate(invalid="ignore"):  # missing paths score -inf
        log_probs = scores - log_z[:, None]
    return kbest_rows(model, emissions, keep, paths, log_probs)


def crf_transition_scores(model: Model) -> Dict[str, numpy.ndarray]:
    """The CRF's scores and constraints, named as the torch layer names them."""
    return numpy_crf(model).to_arrays()


# --- shared with the torch CRF layer -------------------------------------


def check_crf_inputs(
    model: Model, emissions: Sequence[Floats2d], tags: Optional[Sequence[Ints1d]], allowed: AllowedTags
) -> None:
    """Raise a ValueError naming the doc if the CRF cannot take these inputs."""
    n_tags = model.get_dim("nO")
    for name, other in (("tag sequences", tags), ("allowed-tag masks", allowed)):
        if other is not None and len(other) != len(emissions):
            raise ValueError(f"CRF got {len(emissions)} docs of emission scores but {len(other)} {name}.")
    xp = model.ops.xp
    for i, scores in enumerate(emissions):
        if scores.ndim != 2 or scores.shape[1] != n_tags:
            raise ValueError(f"CRF over {n_tags} tags got emission scores of shape {tuple(scores.shape)} for doc {i}.")
        if tags is not None and len(tags[i]) != len(scores):
            raise ValueError(f"Doc {i} has {len(scores)} emission rows but {len(tags[i])} tags.")
        if allowed is not None and tuple(allowed[i].shape) != tuple(scores.shape):
            raise ValueError(f"Doc {i} has emission scores {scores.shape} but an allowed-tag mask {allowed[i].shape}.")
        if len(scores) and not bool(xp.isfinite(scores).all()):
            raise NonFiniteScoresError(f"The emission scores of doc {i} hold NaN or infinite values.")


def check_spans(emissions: Sequence[Floats2d], spans: Sequence[Sequence[Span]]) -> None:
    if len(spans) != len(emissions):
        raise ValueError(f"CRF got {len(emissions)} docs of emission scores but {len(spans)} lists of spans.")
    for i, (doc_spans, scores) in enumerate(zip(spans, emissions)):
        for start, end, label in doc_spans:
            if not 0 <= start < end <= len(scores):
                raise ValueError(f"Span ({start}, {end}, {label!r}) of doc {i} is outside 0..{len(scores)}.")


def kbest_rows(
    model: Model, emissions: Sequence[Floats2d], keep: Sequence[int], paths: numpy.ndarray, log_probs: numpy.ndarray
) -> List[Tuple[Ints2d, Floats1d]]:
    """Per doc the found paths (n, T_i) and log-probabilities (n,) from the
    batch's k-best (B, k, T) and (B, k) (-inf: no such path); an empty doc
    has one empty path of log-probability 0."""
    ops = model.ops
    rows = []
    for row, i in enumerate(keep):
        found = numpy.isfinite(log_probs[row])
        rows.append(
            (
                ops.asarray2i(cast(Ints2d, paths[row, found, : len(emissions[i])].astype("int32"))),
                ops.asarray1f(cast(Floats1d, log_probs[row, found].astype("float32"))),
            )
        )
    return place(len(emissions), keep, rows, lambda _: (ops.alloc2i(1, 0), ops.alloc1f(1)))


def add_candidates(model: Model, asked: List[List[Span]], probs: Sequence[Any], threshold: float) -> None:
    """Append to each row's spans the other spans whose probability, read
    from the token marginals ``probs`` (per row (T_i, K)), reaches ``threshold``."""
    tags, scheme = model.attrs["tags"], model.attrs["scheme"]
    for row, row_probs in enumerate(probs):
        given = set(asked[row])
        found = candidate_spans(row_probs, tags, scheme, threshold)
        asked[row].extend(span for span in found if span not in given)


def flat_spans(model: Model, spans: Sequence[Sequence[Span]]) -> Tuple[List[FlatSpan], numpy.ndarray]:
    """The spans of all batch rows as (row, start, end, tag ids), and the
    (K,) bool mask of the tags that may follow an entity."""
    tags, scheme = model.attrs["tags"], model.attrs["scheme"]
    index = {tag: i for i, tag in enumerate(tags)}
    flat: List[FlatSpan] = []
    for row, row_spans in enumerate(spans):
        for start, end, label in row_spans:
            try:
                ids = [index[tag] for tag in entity_tags(end - start, label, scheme)]
            except KeyError:
                raise ValueError(f"The CRF has no tags for the label {label!r}: its tags are {tags}.") from None
            flat.append((row, start, end, ids))
    return flat, ~continuation_tags(tags, scheme)


def scored_spans(
    spans: Sequence[Sequence[Span]],
    keep: Sequence[int],
    asked: Sequence[Sequence[Span]],
    log_probs: numpy.ndarray,
    threshold: Optional[float],
) -> List[List[ScoredSpan]]:
    """Per kept doc: its given spans with their probabilities, then (with a
    ``threshold``) the other spans that reach it, sorted. ``log_probs`` holds
    the log-probability of every span of ``asked``, row after row."""
    bounds = numpy.cumsum([0] + [len(row_spans) for row_spans in asked])
    out: List[List[ScoredSpan]] = []
    for row, i in enumerate(keep):
        values = log_probs[bounds[row] : bounds[row + 1]]
        scored = [(s, e, label, float(numpy.exp(lp))) for (s, e, label), lp in zip(asked[row], values)]
        n_given = len(spans[i])
        extra = sorted(scored[n_given:]) if threshold is not None else []
        out.append(scored[:n_given] + [span for span in extra if span[3] >= cast(float, threshold)])
    return out


def _batch(
    emissions: Sequence[Floats2d], allowed: AllowedTags, keep: Sequence[int]
) -> Tuple[numpy.ndarray, numpy.ndarray, Optional[numpy.ndarray]]:
    """The docs ``keep`` padded: emissions (B, T, K) float32, mask (B, T) and allowed tags (B, T, K)."""
    lengths = numpy.asarray([len(emissions[i]) for i in keep])
    length, n_tags = int(lengths.max()), emissions[keep[0]].shape[1]
    padded = numpy.zeros((len(keep), length, n_tags), dtype="float32")
    allowed_np = None if allowed is None else numpy.zeros((len(keep), length, n_tags), dtype=bool)
    for row, i in enumerate(keep):
        padded[row, : lengths[row]] = numpy.asarray(emissions[i])
        if allowed_np is not None:
            allowed_np[row, : lengths[row]] = cast(Sequence[numpy.ndarray], allowed)[i]
    mask = numpy.arange(length)[None, :] < lengths[:, None]  # (B, T)
    return padded, mask, allowed_np


def _forward(model: Model, X: Any, is_train: bool) -> Tuple[Any, Callable]:
    raise ValueError(
        "The CRF of an exported pipeline predicts only: train the torch pipeline and export it again "
        "(spacy-bilstm-crf export)."
    )
