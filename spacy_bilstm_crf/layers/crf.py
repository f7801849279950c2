"""The CRF as a Thinc layer: negative log-likelihood forward, Viterbi decoding,
and what the CRF knows beyond the best path: token marginals, entity
probabilities and the k best paths.

The layer owns its tag inventory and constraints: :func:`set_tag_scheme`
gives it the tags and their scheme, from which the allowed transitions are
built when the torch module is built (and re-applied whenever they change).
The inventory is kept in the layer's attrs, so it is saved with the model.

Per-token constraints come as ``allowed`` masks: for each doc a (T_i, K) bool
array of the tags each token may take (None: any tag the transitions allow).

The inference functions take a ``temperature``: the CRF's scores (emissions,
transitions, start and end) are divided by it before the distribution over
paths is formed, which flattens (> 1) or sharpens (< 1) the probabilities
without changing their order, so the best path stays the same.
"""

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, cast

import numpy
import torch
from thinc.api import ArgsKwargs, Model, torch2xp, xp2torch
from thinc.types import Floats1d, Floats2d, Floats3d, Ints1d, Ints2d

from ..modules.crf import ConditionalRandomField, NonFiniteScoresError, NoValidPathError
from ..tag_scheme import Span, allowed_transitions
from .crf_numpy import (
    AllowedTags,
    ScoredSpan,
    add_candidates,
    check_spans,
    flat_spans,
    kbest_rows,
    scored_spans,
)
from .crf_numpy import check_crf_inputs as _check_inputs
from .lazy_torch import lazy_torch_layer, torch_module
from .sequences import lengths_tensor, non_empty, pad_to_torch, padding_mask, place, shim_device

# Per doc: emission scores (T_i, K); the gold tag of each token (-1: unknown);
# optionally the tags each token may take (T_i, K) bool.
CRFInput = Tuple[List[Floats2d], List[Ints1d], AllowedTags]

__all__ = [
    "CRF",
    "CRFInput",
    "NoValidPathError",
    "NonFiniteScoresError",
    "ScoredSpan",
    "crf_decode",
    "crf_kbest",
    "crf_marginals",
    "crf_nll",
    "crf_span_probs",
    "crf_transition_scores",
    "set_tag_scheme",
]


def CRF(nO: Optional[int] = None) -> Model[CRFInput, Floats1d]:
    """Linear-chain CRF over ``nO`` tags. The forward pass maps emission scores,
    gold tags and allowed-tag masks to the negative log-likelihood of each doc;
    its backward pass gives the gradient of the emission scores. Decode with
    :func:`crf_decode`."""
    return lazy_torch_layer(
        "crf",
        _forward,
        _make_crf,
        infer_dims=_infer_num_tags,
        convert_inputs=_convert_inputs,
        convert_outputs=_convert_outputs,
        dims={"nO": nO},
        attrs={"tags": [], "scheme": ""},
    )


def set_tag_scheme(model: Model[CRFInput, Floats1d], tags: Sequence[str], scheme: str) -> None:
    """Give the CRF its tag inventory; its transitions are constrained to
    the sequences that are well formed in ``scheme``."""
    if model.has_dim("nO") and model.get_dim("nO") != len(tags):
        raise ValueError(f"The CRF has {model.get_dim('nO')} tags; cannot give it {len(tags)}: {list(tags)[:8]}...")
    model.attrs["tags"] = list(tags)
    model.attrs["scheme"] = scheme
    if model.layers:
        _apply_constraints(model, cast(ConditionalRandomField, torch_module(model)))


def _make_crf(model: Model) -> ConditionalRandomField:
    module = ConditionalRandomField(model.get_dim("nO"))
    _apply_constraints(model, module)
    return module


def _apply_constraints(model: Model, module: ConditionalRandomField) -> None:
    if not model.attrs["tags"]:
        return
    masks = allowed_transitions(model.attrs["tags"], model.attrs["scheme"])
    device = module.transitions.device
    module.set_constraints(*(torch.from_numpy(mask).to(device) for mask in masks))


def crf_decode(
    model: Model[CRFInput, Floats1d], emissions: Sequence[Floats2d], allowed: AllowedTags = None
) -> List[Ints1d]:
    """The best well-formed tag sequence of each doc, within ``allowed``."""
    _check_inputs(model, emissions, None, allowed)
    ops = model.ops
    keep = non_empty(emissions)
    if not keep:
        return [ops.alloc1i(0) for _ in emissions]
    module, padded, mask, allowed_t = _inference_batch(model, emissions, allowed, keep, temperature=1.0)
    with torch.inference_mode():
        best, _ = module.decode(padded, mask, allowed=allowed_t)  # (B, T)
        best_xp = ops.asarray2i(cast(Ints2d, torch2xp(best.int())))
    rows = [best_xp[row, : len(emissions[i])] for row, i in enumerate(keep)]
    return place(len(emissions), keep, rows, lambda _: ops.alloc1i(0))


def crf_nll(
    model: Model[CRFInput, Floats1d],
    emissions: Sequence[Floats2d],
    tags: Sequence[Ints1d],
    allowed: AllowedTags = None,
) -> Tuple[Floats1d, List[Floats2d]]:
    """The negative log-likelihood of ``tags`` (-1: unknown, marginalised
    out) for each doc, within ``allowed``, and its gradient with respect to
    the emission scores. Pure: unlike the layer's forward and backward pass,
    it leaves the gradients of the CRF's own parameters untouched."""
    _check_inputs(model, emissions, tags, allowed)
    ops = model.ops
    n_tags = model.get_dim("nO")
    nll = ops.alloc1f(len(emissions))
    keep = non_empty(emissions)
    if not keep:
        return nll, [ops.alloc2f(0, n_tags) for _ in emissions]
    wrapper = model.layers[0]
    module = cast(ConditionalRandomField, torch_module(model))
    kept = [emissions[i] for i in keep]
    inputs = _training_batch(wrapper, kept, [tags[i] for i in keep], allowed, keep, requires_grad=True)
    padded = inputs.args[0]  # (B, T, K)
    with torch.enable_grad():
        nll_kept = module(*inputs.args, **inputs.kwargs)  # (B,)
        (d_padded,) = torch.autograd.grad(nll_kept.sum(), padded)  # (B, T, K); no parameter gradient
    nll[ops.asarray1i(keep)] = ops.asarray1f(cast(Floats1d, torch2xp(nll_kept.detach().float())))
    d_kept = cast(List[Floats2d], ops.unpad(cast(Floats3d, torch2xp(d_padded.float())), [len(e) for e in kept]))
    return nll, place(len(emissions), keep, d_kept, lambda _: ops.alloc2f(0, n_tags))


def crf_marginals(
    model: Model[CRFInput, Floats1d],
    emissions: Sequence[Floats2d],
    allowed: AllowedTags = None,
    *,
    temperature: float = 1.0,
) -> List[Floats2d]:
    """Per doc (T_i, K): the probability of each tag at each token under the
    CRF, over the well-formed sequences within ``allowed``; rows sum to 1."""
    _check_inputs(model, emissions, None, allowed)
    ops = model.ops
    n_tags = model.get_dim("nO")
    keep = non_empty(emissions)
    if not keep:
        return [ops.alloc2f(0, n_tags) for _ in emissions]
    module, padded, mask, allowed_t = _inference_batch(model, emissions, allowed, keep, temperature)
    with torch.inference_mode():
        probs = module.marginals(padded, mask, allowed=allowed_t).float()  # (B, T, K)
        probs_xp = cast(Floats3d, torch2xp(probs))
    rows = [ops.asarray2f(probs_xp[row, : len(emissions[i])]) for row, i in enumerate(keep)]
    return place(len(emissions), keep, rows, lambda _: ops.alloc2f(0, n_tags))


def crf_span_probs(
    model: Model[CRFInput, Floats1d],
    emissions: Sequence[Floats2d],
    spans: Sequence[Sequence[Span]],
    allowed: AllowedTags = None,
    *,
    threshold: Optional[float] = None,
    temperature: float = 1.0,
) -> List[List[ScoredSpan]]:
    """Per doc, the probability that each of its ``spans`` (start, end, label)
    is an entity: the total probability of the well-formed paths within
    ``allowed`` that tag exactly these tokens as one entity of that label
    (``B-X I-X L-X`` or ``U-X``; in BIO ``B-X I-X`` with no ``I-X`` after it).

    With ``threshold``, every other span of the doc whose probability is at
    least ``threshold`` follows the given ones, sorted; such spans are found
    from the token marginals (:func:`~spacy_bilstm_crf.tag_scheme.candidate_spans`)
    of the same forward-backward pass.
    """
    _check_inputs(model, emissions, None, allowed)
    check_spans(emissions, spans)
    keep = non_empty(emissions)
    if not keep:
        return [[] for _ in emissions]
    module, padded, mask, allowed_t = _inference_batch(model, emissions, allowed, keep, temperature)
    with torch.inference_mode():
        alpha_beta = module.forward_backward(padded, mask, allowed=allowed_t)
        asked: List[List[Span]] = [list(spans[i]) for i in keep]
        if threshold is not None:
            log_alpha, log_beta, log_z = alpha_beta
            probs = (log_alpha + log_beta - log_z[:, None, None]).exp().float()  # (B, T, K)
            probs_np = model.ops.to_numpy(torch2xp(probs))
            add_candidates(model, asked, [probs_np[row, : len(emissions[i])] for row, i in enumerate(keep)], threshold)
        log_probs = _span_log_probs(model, module, padded, mask, allowed_t, alpha_beta, asked)
    return place(len(emissions), keep, scored_spans(spans, keep, asked, log_probs, threshold), lambda _: [])


def crf_kbest(
    model: Model[CRFInput, Floats1d],
    emissions: Sequence[Floats2d],
    k: int,
    allowed: AllowedTags = None,
    *,
    temperature: float = 1.0,
) -> List[Tuple[Ints2d, Floats1d]]:
    """Per doc, its ``k`` most probable well-formed tag sequences within
    ``allowed`` (exact k-best Viterbi), best first: tag ids (n, T_i) and
    their log-probabilities (n,), with n = k unless the doc has fewer
    sequences. An empty doc has one empty sequence of log-probability 0."""
    if k < 1:
        raise ValueError(f"k-best decoding needs k >= 1, got k={k}.")
    _check_inputs(model, emissions, None, allowed)
    ops = model.ops
    keep = non_empty(emissions)
    empty = (ops.alloc2i(1, 0), ops.alloc1f(1))
    if not keep:
        return [empty for _ in emissions]
    module, padded, mask, allowed_t = _inference_batch(model, emissions, allowed, keep, temperature)
    with torch.inference_mode():
        paths, scores = module.kbest(padded, mask, k, allowed=allowed_t)  # (B, k, T), (B, k)
        log_z = module.log_partition(padded, mask, allowed=allowed_t)  # (B,)
        log_probs = (scores - log_z.unsqueeze(1)).float()
        paths_np = model.ops.to_numpy(torch2xp(paths.int()))
        log_probs_np = model.ops.to_numpy(torch2xp(log_probs))
    return kbest_rows(model, emissions, keep, paths_np, log_probs_np)


def crf_transition_scores(model: Model[CRFInput, Floats1d]) -> Dict[str, numpy.ndarray]:
    """The CRF's learned scores and its constraints as numpy arrays:
    ``transitions`` (K, K) (row: previous tag), ``start`` (K,), ``end`` (K,),
    and the bool masks ``allowed_transitions``, ``allowed_start``, ``allowed_end``."""
    module = cast(ConditionalRandomField, torch_module(model))
    with torch.no_grad():
        return {
            "transitions": module.transitions.detach().float().cpu().numpy(),
            "start": module.start_transitions.detach().float().cpu().numpy(),
            "end": module.end_transitions.detach().float().cpu().numpy(),
            "allowed_transitions": module.allowed_transitions.cpu().numpy(),
            "allowed_start": module.allowed_start.cpu().numpy(),
            "allowed_end": module.allowed_end.cpu().numpy(),
        }


def _inference_batch(
    model: Model, emissions: Sequence[Floats2d], allowed: AllowedTags, keep: Sequence[int], temperature: float
) -> Tuple[ConditionalRandomField, torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """The (tempered) CRF module and the padded emissions, mask and allowed
    tags of the docs ``keep``, on the module's device."""
    if not temperature > 0:
        raise ValueError(f"The temperature must be positive, got {temperature}.")
    wrapper = model.layers[0]
    module = _tempered(cast(ConditionalRandomField, torch_module(model)), temperature)
    padded = pad_to_torch(wrapper, [emissions[i] for i in keep])  # (B, T, K)
    mask = padding_mask(lengths_tensor([len(emissions[i]) for i in keep], padded.device), padded.shape[1])
    if temperature != 1.0:
        padded = padded / temperature
    return module, padded, mask, _pad_allowed(wrapper, allowed, keep)


def _tempered(module: ConditionalRandomField, temperature: float) -> ConditionalRandomField:
    """``module``, or a copy with its scores divided by ``temperature``."""
    if temperature == 1.0:
        return module
    scaled = ConditionalRandomField(module.num_tags).to(module.transitions.device)
    with torch.no_grad():
        for name in ("transitions", "start_transitions", "end_transitions"):
            getattr(scaled, name).copy_(getattr(module, name) / temperature)
    scaled.set_constraints(module.allowed_transitions, module.allowed_start, module.allowed_end)
    return scaled


def _span_log_probs(
    model: Model,
    module: ConditionalRandomField,
    padded: torch.Tensor,
    mask: torch.Tensor,
    allowed: Optional[torch.Tensor],
    alpha_beta: Tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    spans: Sequence[Sequence[Span]],
) -> numpy.ndarray:
    """Log-probabilities of the spans of all batch rows, row after row, in one call to the module."""
    flat, follow_row = flat_spans(model, spans)
    if not flat:
        return numpy.zeros((0,), dtype="float64")
    follow = torch.from_numpy(follow_row).to(padded.device).unsqueeze(0).expand(len(flat), -1)  # (N, K)
    log_probs = module.span_log_probs(padded, mask, flat, follow, allowed=allowed, alpha_beta=alpha_beta)
    return log_probs.double().cpu().numpy()


def _pad_allowed(wrapper: Model, allowed: AllowedTags, keep: Sequence[int]) -> Optional[torch.Tensor]:
    if allowed is None:
        return None
    rows = [wrapper.ops.asarray(cast(Any, allowed[i]), dtype="int32") for i in keep]
    return pad_to_torch(wrapper, rows).bool()  # (B, T, K); padding rows are False and masked


def _infer_num_tags(model: Model, X: Any, Y: Any) -> None:
    if model.has_dim("nO"):
        return
    if model.attrs["tags"]:
        model.set_dim("nO", len(model.attrs["tags"]))
        return
    if X is not None:
        keep = non_empty(X[0])
        if keep:
            model.set_dim("nO", X[0][keep[0]].shape[1])


def _forward(model: Model, X: CRFInput, is_train: bool) -> Tuple[Floats1d, Callable]:
    emissions, tags, allowed = X
    _check_inputs(model, emissions, tags, allowed)
    ops = model.ops
    n_tags = model.get_dim("nO")
    nll = ops.alloc1f(len(emissions))
    keep = non_empty(emissions)
    if not keep:
        return nll, lambda d_nll: [ops.alloc2f(0, n_tags) for _ in emissions]
    kept_allowed = None if allowed is None else [allowed[i] for i in keep]
    kept_input = ([emissions[i] for i in keep], [tags[i] for i in keep], kept_allowed)
    nll_kept, backprop_kept = model.layers[0](kept_input, is_train)
    keep_index = ops.asarray1i(keep)
    nll[keep_index] = nll_kept

    def backprop(d_nll: Floats1d) -> List[Floats2d]:
        d_kept = backprop_kept(d_nll[keep_index])
        return place(len(emissions), keep, d_kept, lambda _: ops.alloc2f(0, n_tags))

    return nll, backprop


def _convert_inputs(model: Model, X: CRFInput, is_train: bool) -> Tuple[ArgsKwargs, Callable]:
    emissions, tags, allowed = X
    lengths = [len(e) for e in emissions]
    inputs = _training_batch(model, emissions, tags, allowed, range(len(emissions)), requires_grad=is_train)

    def backprop(d_inputs: ArgsKwargs) -> List[Floats2d]:
        return cast(List[Floats2d], model.ops.unpad(cast(Floats3d, torch2xp(d_inputs.args[0])), lengths))

    return inputs, backprop


def _training_batch(
    wrapper: Model,
    emissions: Sequence[Floats2d],
    tags: Sequence[Ints1d],
    allowed: AllowedTags,
    keep: Sequence[int],
    *,
    requires_grad: bool,
) -> ArgsKwargs:
    """The module's training inputs for non-empty docs: padded emissions
    (B, T, K), mask (B, T), tags (B, T) and allowed tags of the docs ``keep``
    of ``allowed``."""
    padded = pad_to_torch(wrapper, emissions, requires_grad=requires_grad)  # (B, T, K)
    mask = padding_mask(lengths_tensor([len(e) for e in emissions], shim_device(wrapper)), padded.shape[1])  # (B, T)
    padded_tags = pad_to_torch(wrapper, [wrapper.ops.asarray1i(t) for t in tags]).long()  # (B, T)
    return ArgsKwargs(args=(padded, mask, padded_tags), kwargs={"allowed": _pad_allowed(wrapper, allowed, keep)})


def _convert_outputs(
    model: Model, X_Ytorch: Tuple[CRFInput, torch.Tensor], is_train: bool
) -> Tuple[Floats1d, Callable]:
    _, nll_torch = X_Ytorch  # (B,)

    def backprop(d_nll: Floats1d) -> ArgsKwargs:
        return ArgsKwargs(args=(nll_torch,), kwargs={"grad_tensors": xp2torch(d_nll, device=shim_device(model))})

    return cast(Floats1d, torch2xp(nll_torch)), backprop
