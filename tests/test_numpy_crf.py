"""The numpy CRF (runtime/numpy_crf.py) against the torch CRF, its reference,
and against an enumeration of every path that shares no code with either.

Tolerances. Viterbi and k-best add and compare the same float32 (or float64)
numbers in the same order in both implementations, so their paths and scores
must be equal bit for bit. Forward-backward runs in float64 in both, by the
same recursion but with other reduction orders (BLAS, pairwise sums), so the
two differ by rounding: about 1e-15 times the size of the scores and the
number of steps. 1e-9 (absolute, on log-values and probabilities) leaves six
orders of magnitude for that and none for a real slip: a missed transition or
a shift applied twice moves these values by far more than 1e-9. In float32
(the pipeline's dtype) both round the same float64 values to float32, so they
agree to a float32 ulp or two: rtol 1e-6. Every numpy call here runs with
division by zero, invalid operations (NaN) and overflow raising.
"""

import copy
import io
import itertools
import math
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy
import pytest
import torch

from spacy_bilstm_crf.layers.crf import _tempered
from spacy_bilstm_crf.modules import crf as torch_crf
from spacy_bilstm_crf.modules.crf import ConditionalRandomField
from spacy_bilstm_crf.runtime import numpy_crf
from spacy_bilstm_crf.runtime.numpy_crf import (
    STATE_KEYS,
    NonFiniteScoresError,
    NoValidPathError,
    NumpyCRF,
    fixed_tags_mask,
)
from spacy_bilstm_crf.tag_scheme import allowed_transitions, continuation_tags, entity_tags, make_tags

REPO = Path(__file__).resolve().parents[1]
F64_TOLERANCE = 1e-9
F32_RTOL = 1e-6
SCHEMES = {
    "BILUO": make_tags(["A", "B"], "BILUO"),  # 9 tags
    "BIO": make_tags(["A", "B"], "BIO"),  # 5 tags
    "BIOES": make_tags(["A", "B"], "BIOES"),  # 9 tags
    "BMES": make_tags(["A"], "BMES"),  # 5 tags
    "IOB1": make_tags(["A"], "IOB1"),  # 3 tags
}
# Scheme constraints, no constraints at all, random ones.
CASES = [*SCHEMES, "free", "random"]
LENGTHS = [8, 1, 5, 3, 7]


@pytest.fixture(autouse=True)
def floating_point_errors_raise():
    with numpy.errstate(divide="raise", invalid="raise", over="raise"):
        yield


# ------------------------------------------------------------------ builders


def make_torch_crf(case: str, seed: int, dtype: torch.dtype = torch.float64) -> ConditionalRandomField:
    """A torch CRF with random scores and the constraints of ``case``."""
    gen = torch.Generator().manual_seed(seed)
    num_tags = len(SCHEMES[case]) if case in SCHEMES else {"free": 4, "random": 6}[case]
    module = ConditionalRandomField(num_tags).to(dtype)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=gen, dtype=dtype))
    if case in SCHEMES:
        module.set_constraints(*(torch.from_numpy(m) for m in allowed_transitions(SCHEMES[case], case)))
    elif case == "random":
        transitions = torch.rand(num_tags, num_tags, generator=gen) < 0.5
        start, end = torch.rand(num_tags, generator=gen) < 0.5, torch.rand(num_tags, generator=gen) < 0.5
        transitions[0, 0] = start[0] = end[0] = True  # tag 0 alone is always a path
        module.set_constraints(transitions, start, end)
    return module


def numpy_twin(module: ConditionalRandomField) -> NumpyCRF:
    """The numpy CRF with the torch module's state, as an export would save it."""
    state = {name: tensor.detach().cpu().numpy() for name, tensor in module.state_dict().items()}
    names = {"start_transitions": "start", "end_transitions": "end"}
    return NumpyCRF.from_arrays({names.get(name, name): array for name, array in state.items()})


def random_inputs(
    lengths: Sequence[int],
    num_tags: int,
    seed: int,
    *,
    dtype: type = numpy.float64,
    with_allowed: bool = False,
    scale: float = 2.0,
) -> Tuple[numpy.ndarray, numpy.ndarray, Optional[numpy.ndarray]]:
    """Emissions (B, T, K), mask (B, T) and, optionally, allowed tags (B, T, K)
    that always allow tag 0 (O in every scheme), so that every row has a path."""
    rng = numpy.random.default_rng(seed)
    length = max(lengths, default=0)
    emissions = (rng.standard_normal((len(lengths), length, num_tags)) * scale).astype(dtype)
    mask = numpy.arange(length)[None, :] < numpy.asarray(lengths, dtype=numpy.int64).reshape(-1, 1)
    allowed = None
    if with_allowed:
        allowed = rng.random(emissions.shape) < 0.6
        allowed[:, :, 0] = True
    return emissions, mask, allowed


def torch_tempered(module: ConditionalRandomField, temperature: float) -> ConditionalRandomField:
    """The torch reference at ``temperature``: the CRF layer's own ``_tempered``
    for a float32 module (the pipeline's), which builds its copy in float32; a
    copy that keeps the dtype for a float64 one."""
    if module.transitions.dtype == torch.float32:
        return _tempered(module, temperature)
    scaled = copy.deepcopy(module)
    with torch.no_grad():
        for param in scaled.parameters():
            param.div_(temperature)
    return scaled


def as_torch(array: Optional[numpy.ndarray]) -> Optional[torch.Tensor]:
    return None if array is None else torch.from_numpy(array)


def to_numpy(tensor: torch.Tensor) -> numpy.ndarray:
    return tensor.detach().cpu().numpy()


def assert_close(actual: numpy.ndarray, expected: numpy.ndarray, *, atol: float = 0.0, rtol: float = 0.0) -> None:
    """Same shape and dtype, no NaN, -inf exactly where expected, finite values within tolerance."""
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    assert not numpy.isnan(actual).any() and not numpy.isnan(expected).any()
    assert numpy.array_equal(numpy.isneginf(actual), numpy.isneginf(expected))
    finite = numpy.isfinite(expected)
    assert numpy.isfinite(actual[finite]).all()
    excess = numpy.abs(actual[finite] - expected[finite]) - (atol + rtol * numpy.abs(expected[finite]))
    assert excess.size == 0 or excess.max() <= 0.0, f"off by {numpy.abs(actual - expected)[finite].max()}"


def sample_spans(
    case: str, num_tags: int, lengths: Sequence[int], seed: int
) -> Tuple[List[numpy_crf.Span], numpy.ndarray]:
    """Spans of every row: entities of the scheme (in their own tags) and random
    tag ids, some impossible; and ``follow`` (N, K) as the CRF layer builds it."""
    rng = numpy.random.default_rng(seed)
    spans: List[numpy_crf.Span] = []
    for row, length in enumerate(lengths):
        for _ in range(3):
            start = int(rng.integers(0, length))
            end = int(rng.integers(start + 1, length + 1))
            if case in SCHEMES:
                index = {tag: i for i, tag in enumerate(SCHEMES[case])}
                spans.append((row, start, end, [index[tag] for tag in entity_tags(end - start, "A", case)]))
            spans.append((row, start, end, rng.integers(0, num_tags, end - start).tolist()))
    if case in SCHEMES:
        follow = numpy.tile(~continuation_tags(SCHEMES[case], case), (len(spans), 1))
    else:
        follow = rng.random((len(spans), num_tags)) < 0.7
    return spans, follow


# --------------------------------------------------------------- parity


def check_parity(
    module: ConditionalRandomField,
    emissions: numpy.ndarray,
    mask: numpy.ndarray,
    allowed: Optional[numpy.ndarray],
    *,
    case: str,
    temperature: float = 1.0,
    atol: float = F64_TOLERANCE,
    rtol: float = 0.0,
) -> None:
    """Every inference method of the numpy CRF against the torch module, the
    temperature applied as the CRF layer applies it (layers/crf.py)."""
    crf = numpy_twin(module)
    lengths = mask.sum(1).tolist()
    em_t, mask_t, allowed_t = torch.from_numpy(emissions), torch.from_numpy(mask), as_torch(allowed)
    tempered = torch_tempered(module, temperature)
    em_tempered = em_t / temperature if temperature != 1.0 else em_t

    best, best_scores = crf.decode(emissions, mask, allowed=allowed)
    best_t, best_scores_t = module.decode(em_t, mask_t, allowed=allowed_t)
    assert numpy.array_equal(best, to_numpy(best_t)) and best.dtype == numpy.int64
    assert numpy.array_equal(best_scores, to_numpy(best_scores_t)) and best_scores.dtype == best_scores_t.numpy().dtype

    for k in (1, 3, 50):  # 50: more than the valid paths of the short rows
        paths, scores = crf.kbest(emissions, mask, k, allowed=allowed, temperature=temperature)
        paths_t, scores_t = tempered.kbest(em_tempered, mask_t, k, allowed=allowed_t)
        assert numpy.array_equal(paths, to_numpy(paths_t)) and paths.dtype == numpy.int64
        assert numpy.array_equal(scores, to_numpy(scores_t)) and scores.dtype == scores_t.numpy().dtype
    state = crf.to_arrays()
    for b in numpy.flatnonzero(mask.sum(1) == 1):  # k = 50 is more than a one-token row's paths
        single = state["allowed_start"] & state["allowed_end"] & (True if allowed is None else allowed[b, 0])
        assert numpy.isfinite(scores[b]).sum() == single.sum() and (paths[b, single.sum() :] == -1).all()

    log_z = crf.log_partition(emissions, mask, allowed=allowed, temperature=temperature)
    log_z_t = to_numpy(tempered.log_partition(em_tempered, mask_t, allowed=allowed_t))
    assert_close(log_z, log_z_t, atol=atol, rtol=rtol)

    alpha_beta = crf.forward_backward(emissions, mask, allowed=allowed, temperature=temperature)
    alpha_beta_t = tempered.forward_backward(em_tempered, mask_t, allowed=allowed_t)
    for ours, theirs in zip(alpha_beta, alpha_beta_t):
        assert_close(ours, to_numpy(theirs), atol=atol, rtol=rtol)
    assert_close(alpha_beta[2], log_z, atol=atol, rtol=rtol)

    marginals = crf.marginals(emissions, mask, allowed=allowed, temperature=temperature)
    assert_close(marginals, to_numpy(tempered.marginals(em_tempered, mask_t, allowed=allowed_t)), atol=atol, rtol=rtol)
    for b, n in enumerate(lengths):
        assert numpy.abs(marginals[b, :n].sum(1) - 1.0).max() < 1e-5 and not marginals[b, n:].any()

    spans, follow = sample_spans(case, crf.num_tags, lengths, seed=len(lengths))
    log_probs = crf.span_log_probs(emissions, mask, spans, follow, allowed=allowed, temperature=temperature)
    log_probs_t = tempered.span_log_probs(em_tempered, mask_t, spans, torch.from_numpy(follow), allowed=allowed_t)
    assert_close(log_probs, to_numpy(log_probs_t), atol=atol, rtol=rtol)
    assert numpy.isfinite(log_probs).any() and (log_probs <= 0.0).all()
    # As crf_span_probs calls it: one forward-backward shared, in the scores' dtype.
    shared = crf.span_log_probs(
        emissions, mask, spans, follow, allowed=allowed, alpha_beta=alpha_beta, temperature=temperature
    )
    shared_t = tempered.span_log_probs(
        em_tempered, mask_t, spans, torch.from_numpy(follow), allowed=allowed_t, alpha_beta=alpha_beta_t
    )
    assert_close(shared, to_numpy(shared_t), atol=atol, rtol=rtol)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("with_allowed", [False, True])
@pytest.mark.parametrize("temperature", [1.0, 0.6, 2.5])
def test_parity_with_the_torch_crf_in_float64(case, with_allowed, temperature):
    module = make_torch_crf(case, seed=CASES.index(case))
    emissions, mask, allowed = random_inputs(LENGTHS, module.num_tags, seed=11, with_allowed=with_allowed)
    check_parity(module, emissions, mask, allowed, case=case, temperature=temperature)


@pytest.mark.parametrize("case", ["BILUO", "BIO", "random"])
def test_parity_in_float32_the_pipelines_dtype(case):
    module = make_torch_crf(case, seed=3, dtype=torch.float32)
    emissions, mask, allowed = random_inputs(LENGTHS, module.num_tags, seed=5, dtype=numpy.float32, with_allowed=True)
    check_parity(module, emissions, mask, allowed, case=case, temperature=1.3, atol=1e-7, rtol=F32_RTOL)
    assert numpy_twin(module).marginals(emissions, mask).dtype == numpy.float32


def test_float32_emissions_with_float64_scores_compute_in_float64():
    module = make_torch_crf("BIO", seed=4)
    emissions, mask, _ = random_inputs([4, 2], module.num_tags, seed=6, dtype=numpy.float32)
    check_parity(module, emissions, mask, None, case="BIO")
    assert numpy_twin(module).decode(emissions, mask)[1].dtype == numpy.float64
    half = emissions.astype(numpy.float16)
    assert numpy_twin(make_torch_crf("BIO", 4, torch.float32)).marginals(half, mask).dtype == numpy.float32


def test_wide_score_spreads_fall_back_to_log_space_in_both():
    module = make_torch_crf("BILUO", seed=8)
    emissions, mask, allowed = random_inputs(LENGTHS, module.num_tags, seed=9, with_allowed=True, scale=300.0)
    check_parity(module, emissions, mask, allowed, case="BILUO")
    crf = numpy_twin(module)
    for scale, fast in ((1.0, True), (300.0, False)):
        em, transitions, start, end, flags = crf._lattice(emissions * scale / 300.0, mask, allowed)
        em_t, trans_t, start_t, end_t = (torch.from_numpy(x) for x in (em, transitions, start, end))
        mask_t = torch.from_numpy(flags)
        assert numpy_crf._alpha_recursion(em, transitions, start, flags)[1] is fast
        assert numpy_crf._beta_recursion(em, transitions, end, flags)[1] is fast
        assert torch_crf._alpha_recursion(em_t, trans_t, start_t, mask_t)[1] is fast
        assert torch_crf._beta_recursion(em_t, trans_t, end_t, mask_t)[1] is fast


def test_fixed_tags_and_path_scores_match_the_torch_crf():
    module = make_torch_crf("BILUO", seed=2)
    emissions, mask, allowed = random_inputs([5, 3], module.num_tags, seed=4, with_allowed=True)
    allowed[0, 1, 1] = allowed[0, 2, 3] = True
    crf = numpy_twin(module)
    fixed = numpy.array([[-1, 1, 3, -1, -1], [-1, -1, 0, -100, 7]])  # B-A L-A; padding may hold anything
    best, scores = crf.decode(emissions, mask, fixed, allowed=allowed)
    best_t, scores_t = module.decode(
        torch.from_numpy(emissions), torch.from_numpy(mask), torch.from_numpy(fixed), allowed=torch.from_numpy(allowed)
    )
    assert numpy.array_equal(best, to_numpy(best_t)) and numpy.array_equal(scores, to_numpy(scores_t))
    assert best[0, 1:3].tolist() == [1, 3] and best[1, 2] == 0
    assert numpy.array_equal(
        fixed_tags_mask(fixed[:1], 9), to_numpy(torch_crf.fixed_tags_mask(torch.from_numpy(fixed[:1]), 9))
    )
    paths = numpy.array([[0, 1, 3, 0, 4], [4, 0, 0, -1, -1], [0, 2, 0, 0, 0]])  # the last is ill-formed
    em3, mask3 = emissions[[0, 1, 0]], mask[[0, 1, 0]]
    scored = crf.path_score(em3, mask3, paths)
    scored_t = module.path_score(torch.from_numpy(em3), torch.from_numpy(mask3), torch.from_numpy(paths))
    assert_close(scored, to_numpy(scored_t), atol=1e-12)
    assert scored[2] == -math.inf and math.isfinite(scored[0])
    assert scored[0] == pytest.approx(crf.decode(em3[:1], mask3[:1], paths[:1])[1][0], abs=1e-12)


# ---------------------------------------------------------- enumeration oracle


class Enumeration:
    """Every allowed path of one row, by ``itertools.product``, scored with
    Python floats from the plain arrays of a CRF's state."""

    def __init__(self, state: Dict[str, numpy.ndarray], emissions: numpy.ndarray, allowed: Optional[numpy.ndarray]):
        transitions, start, end = (state[name].tolist() for name in ("transitions", "start", "end"))
        ok_transitions, ok_start, ok_end = (
            state[f"allowed_{name}"].tolist() for name in ("transitions", "start", "end")
        )
        length, num_tags = emissions.shape
        self.length, self.num_tags = length, num_tags
        self.scores: Dict[Tuple[int, ...], float] = {}
        for path in itertools.product(range(num_tags), repeat=length):
            steps = list(zip(path, path[1:]))
            if not (ok_start[path[0]] and ok_end[path[-1]] and all(ok_transitions[i][j] for i, j in steps)):
                continue
            if allowed is not None and not all(allowed[t, tag] for t, tag in enumerate(path)):
                continue
            terms = [start[path[0]], end[path[-1]], *(emissions[t, tag] for t, tag in enumerate(path))]
            self.scores[path] = math.fsum(terms + [transitions[i][j] for i, j in steps])
        top = max(self.scores.values())
        self.log_z = top + math.log(math.fsum(math.exp(s - top) for s in self.scores.values()))

    def probability(self, path: Tuple[int, ...]) -> float:
        return math.exp(self.scores[path] - self.log_z)

    def ranked(self) -> List[Tuple[int, ...]]:
        """Best first; equal scores by the tags read from the last token back."""
        return sorted(self.scores, key=lambda path: (-self.scores[path], path[::-1]))

    def marginals(self) -> numpy.ndarray:
        out = numpy.zeros((self.length, self.num_tags))
        for path in self.scores:
            for t, tag in enumerate(path):
                out[t, tag] += self.probability(path)
        return out

    def span_probability(self, start: int, end: int, tags: Sequence[int], follow: numpy.ndarray) -> float:
        return math.fsum(
            self.probability(path)
            for path in self.scores
            if list(path[start:end]) == list(tags) and (end == self.length or follow[path[end]])
        )


@pytest.mark.parametrize("case", ["BIO", "BMES", "random"])
@pytest.mark.parametrize("with_allowed", [False, True])
def test_against_enumeration(case, with_allowed):
    module = make_torch_crf(case, seed=21)
    crf = numpy_twin(module)
    state = crf.to_arrays()
    lengths = [4, 2, 1, 3]
    emissions, mask, allowed = random_inputs(lengths, crf.num_tags, seed=22, with_allowed=with_allowed)
    oracles = [
        Enumeration(state, emissions[b, :n], None if allowed is None else allowed[b, :n]) for b, n in enumerate(lengths)
    ]
    best, best_scores = crf.decode(emissions, mask, allowed=allowed)
    paths, scores = crf.kbest(emissions, mask, 6**4 + 1, allowed=allowed)  # more than every path
    log_z = crf.log_partition(emissions, mask, allowed=allowed)
    marginals = crf.marginals(emissions, mask, allowed=allowed)
    spans, follow = sample_spans(case, crf.num_tags, lengths, seed=23)
    log_probs = crf.span_log_probs(emissions, mask, spans, follow, allowed=allowed)
    for b, (n, oracle) in enumerate(zip(lengths, oracles)):
        ranked = oracle.ranked()
        assert tuple(best[b, :n]) == ranked[0] and (best[b, n:] == best[b, n - 1]).all()
        assert best_scores[b] == pytest.approx(oracle.scores[ranked[0]], abs=F64_TOLERANCE)
        found = int(numpy.isfinite(scores[b]).sum())
        assert found == len(ranked) and [tuple(p[:n]) for p in paths[b, :found]] == ranked
        assert numpy.allclose(scores[b, :found], [oracle.scores[p] for p in ranked], rtol=0, atol=F64_TOLERANCE)
        assert (paths[b, found:] == -1).all()
        assert log_z[b] == pytest.approx(oracle.log_z, abs=F64_TOLERANCE)
        assert numpy.allclose(marginals[b, :n], oracle.marginals(), rtol=0, atol=F64_TOLERANCE)
    for (b, s, e, tags), follows, log_prob in zip(spans, follow, log_probs):
        probability = oracles[b].span_probability(s, e, tags, follows)
        assert math.exp(log_prob) == pytest.approx(probability, abs=F64_TOLERANCE)


def test_ties_take_the_first_tag_and_the_torch_crf_agrees_on_scores():
    """Integer scores tie often and sum exactly. decode takes the first best
    tag, as torch's max does; kbest orders ties by the tags read backwards,
    where torch.topk's order is unspecified: same scores and the same paths."""
    rng = numpy.random.default_rng(31)
    tags = make_tags(["A"], "BILUO")
    masks = allowed_transitions(tags, "BILUO")
    scores = {
        name: rng.integers(-1, 2, shape).astype(numpy.float64)
        for name, shape in (("transitions", (5, 5)), ("start", (5,)), ("end", (5,)))
    }
    crf = NumpyCRF(scores["transitions"], scores["start"], scores["end"], *masks)
    module = ConditionalRandomField(5).double()
    with torch.no_grad():
        for name, key in (("transitions", "transitions"), ("start_transitions", "start"), ("end_transitions", "end")):
            getattr(module, name).copy_(torch.from_numpy(scores[key]))
    module.set_constraints(*(torch.from_numpy(m) for m in masks))
    lengths = [4, 3, 4]
    emissions = rng.integers(-1, 2, (3, 4, 5)).astype(numpy.float64)
    mask = numpy.arange(4) < numpy.array(lengths)[:, None]
    state = crf.to_arrays()
    oracles = [Enumeration(state, emissions[b, :n], None) for b, n in enumerate(lengths)]
    assert any(len(set(o.scores.values())) < len(o.scores) for o in oracles)  # there are ties
    best, _ = crf.decode(emissions, mask)
    best_t, _ = module.decode(torch.from_numpy(emissions), torch.from_numpy(mask))
    assert numpy.array_equal(best, to_numpy(best_t))
    paths, path_scores = crf.kbest(emissions, mask, 200)
    paths_t, path_scores_t = module.kbest(torch.from_numpy(emissions), torch.from_numpy(mask), 200)
    assert numpy.array_equal(path_scores, to_numpy(path_scores_t))
    one, _ = crf.kbest(emissions, mask, 1)
    assert numpy.array_equal(one[:, 0], best)
    for b, (n, oracle) in enumerate(zip(lengths, oracles)):
        ranked = oracle.ranked()
        assert tuple(best[b, :n]) == ranked[0]
        assert [tuple(p[:n]) for p in paths[b, : len(ranked)]] == ranked
        assert {tuple(p) for p in paths[b]} == {tuple(p) for p in to_numpy(paths_t[b])}


# --------------------------------------------------------------- edge cases


def test_a_row_without_a_path_behaves_like_the_torch_crf():
    module = make_torch_crf("BILUO", seed=12)
    crf = numpy_twin(module)
    emissions, mask, _ = random_inputs([3, 3, 2], crf.num_tags, seed=13)
    allowed = numpy.ones(emissions.shape, dtype=bool)
    allowed[1, 1] = False
    allowed[1, 1, 2] = True  # I-A in the middle ...
    allowed[1, 2] = False
    allowed[1, 2, 0] = True  # ... then O: no BILUO sequence does that
    em_t, mask_t, allowed_t = torch.from_numpy(emissions), torch.from_numpy(mask), torch.from_numpy(allowed)
    calls = [
        ("decode", (), ()),
        ("kbest", (3,), (3,)),
        ("marginals", (), ()),
        ("span_log_probs", ([(1, 0, 1, [0])],), ([(1, 0, 1, [0])],)),
    ]
    for name, args, args_t in calls:
        with pytest.raises(NoValidPathError) as ours:
            getattr(crf, name)(emissions, mask, *args, allowed=allowed)
        with pytest.raises(torch_crf.NoValidPathError) as theirs:
            getattr(module, name)(em_t, mask_t, *args_t, allowed=allowed_t)
        assert str(ours.value) == str(theirs.value) and "Row(s) [1]" in str(ours.value)
    # log Z is -inf there, alpha and beta hold no NaN; the other rows are unaffected.
    log_z = crf.log_partition(emissions, mask, allowed=allowed)
    assert log_z[1] == -math.inf and numpy.isfinite(log_z[[0, 2]]).all()
    assert_close(log_z, to_numpy(module.log_partition(em_t, mask_t, allowed=allowed_t)), atol=F64_TOLERANCE)
    for ours, theirs in zip(
        crf.forward_backward(emissions, mask, allowed=allowed), module.forward_backward(em_t, mask_t, allowed=allowed_t)
    ):
        assert_close(ours, to_numpy(theirs), atol=F64_TOLERANCE)
    spans = [(0, 0, 2, [1, 3]), (2, 1, 2, [4])]  # rows with a path still answer
    assert_close(
        crf.span_log_probs(emissions, mask, spans, allowed=allowed),
        to_numpy(module.span_log_probs(em_t, mask_t, spans, allowed=allowed_t)),
        atol=F64_TOLERANCE,
    )


def test_a_certain_span_has_log_probability_zero_not_more():
    """Where the allowed tags leave one path, every span of it has probability 1:
    log-probabilities that rounding would put a hair above 0 are 0, as in torch."""
    module = make_torch_crf("BILUO", seed=29)
    crf = numpy_twin(module)
    lengths = [6, 6, 5, 4, 6, 1]
    emissions, mask, _ = random_inputs(lengths, crf.num_tags, seed=30, scale=5.0)
    forced = [0, 1, 2, 3, 0, 4]  # O B-A I-A L-A O U-A
    allowed = numpy.zeros(emissions.shape, dtype=bool)
    allowed[:, numpy.arange(6), forced] = True
    spans = [(b, s, e, forced[s:e]) for b, n in enumerate(lengths) for s in range(n) for e in range(s + 1, n + 1)]
    log_probs = crf.span_log_probs(emissions, mask, spans, allowed=allowed)
    assert (log_probs <= 0.0).all() and numpy.abs(log_probs).max() < 1e-12
    expected = module.span_log_probs(
        torch.from_numpy(emissions), torch.from_numpy(mask), spans, allowed=torch.from_numpy(allowed)
    )
    assert_close(log_probs, to_numpy(expected), atol=1e-12)


def test_empty_batches_and_empty_rows_match_the_torch_crf():
    module = make_torch_crf("free", seed=14)
    crf = numpy_twin(module)
    for shape in [(2, 0), (0, 3), (0, 0)]:
        emissions = numpy.zeros((*shape, crf.num_tags))
        mask = numpy.zeros(shape, dtype=bool)
        best, score = crf.decode(emissions, mask)
        assert best.shape == shape and score.tolist() == [0.0] * shape[0]
        paths, scores = crf.kbest(emissions, mask, 2)
        assert paths.shape == (shape[0], 2, shape[1]) and scores.tolist() == [[0.0, -math.inf]] * shape[0]
        assert crf.log_partition(emissions, mask).tolist() == [0.0] * shape[0]
        alpha, beta, log_z = crf.forward_backward(emissions, mask)
        assert alpha.shape == beta.shape == emissions.shape and numpy.isneginf(alpha).all()
        assert log_z.tolist() == [0.0] * shape[0] and crf.marginals(emissions, mask).shape == emissions.shape
        assert crf.span_log_probs(emissions, mask, []).shape == (0,)
    # Empty rows next to real ones.
    emissions, mask, _ = random_inputs([0, 2, 1], crf.num_tags, seed=15)
    em_t, mask_t = torch.from_numpy(emissions), torch.from_numpy(mask)
    for ours, theirs in zip(crf.decode(emissions, mask), module.decode(em_t, mask_t)):
        assert numpy.array_equal(ours, to_numpy(theirs))
    for ours, theirs in zip(crf.kbest(emissions, mask, 5), module.kbest(em_t, mask_t, 5)):
        assert numpy.array_equal(ours, to_numpy(theirs))
    assert_close(crf.marginals(emissions, mask), to_numpy(module.marginals(em_t, mask_t)), atol=F64_TOLERANCE)
    for ours, theirs in zip(crf.forward_backward(emissions, mask), module.forward_backward(em_t, mask_t)):
        assert_close(ours, to_numpy(theirs), atol=F64_TOLERANCE)
    assert crf.decode(emissions, mask)[0][0].tolist() == [0, 0]


def test_padding_is_ignored_whatever_it_holds():
    crf = numpy_twin(make_torch_crf("BIO", seed=16))
    emissions, mask, _ = random_inputs([4, 2], crf.num_tags, seed=17)
    noisy = emissions.copy()
    noisy[1, 2:] = 1.0e30
    for ours, reference in zip(crf.decode(noisy, mask), crf.decode(emissions, mask)):
        assert numpy.array_equal(ours, reference)
    assert numpy.array_equal(crf.marginals(noisy, mask), crf.marginals(emissions, mask))
    assert numpy.array_equal(crf.log_partition(noisy, mask), crf.log_partition(emissions, mask))
    alone = crf.decode(emissions[1:, :2], mask[1:, :2])[0]
    assert numpy.array_equal(crf.decode(emissions, mask)[0][1], [*alone[0], alone[0, -1], alone[0, -1]])


def test_bad_inputs_raise_one_line_value_errors_naming_them():
    crf = numpy_twin(make_torch_crf("BIO", seed=18))
    emissions, mask, _ = random_inputs([3, 2], crf.num_tags, seed=19)
    cases = [
        (
            lambda: crf.decode(emissions[:, :, :2], mask),
            r"needs float emissions \(B, T, 5\), got float64 of shape \(2, 3, 2\)",
        ),
        (lambda: crf.decode(emissions[0], mask), r"emissions .* of shape \(3, 5\)"),
        (lambda: crf.decode(emissions.astype(numpy.int64), mask), r"float emissions .* got int64"),
        (lambda: crf.decode(emissions, mask[:, :2]), r"mask has shape \(2, 2\), expected \(2, 3\)"),
        (lambda: crf.decode(emissions, mask.astype(numpy.float32)), r"mask must be a bool .* float32"),
        (
            lambda: crf.marginals(emissions, mask, allowed=numpy.ones((2, 3, 2), bool)),
            r"allowed has shape \(2, 3, 2\), expected \(2, 3, 5\)",
        ),
        (
            lambda: crf.decode(emissions, numpy.array([[True, False, True], [True, True, False]])),
            r"mask row\(s\) \[0\] are not a prefix",
        ),
        (lambda: crf.kbest(emissions, mask, 0), r"k >= 1, got k=0"),
        (lambda: crf.marginals(emissions, mask, temperature=0.0), r"temperature must be positive, got 0.0"),
        (
            lambda: crf.decode(emissions, mask, numpy.array([[-2, 0, 0], [0, 0, 0]])),
            r"-1 \(unknown\) or in \[0, 5\): row\(s\) \[0\]",
        ),
        (lambda: crf.decode(emissions, mask, numpy.zeros((2, 2), int)), r"tags have shape \(2, 2\), expected \(2, 3\)"),
        (lambda: crf.path_score(emissions, mask, numpy.full((2, 3), -1)), r"needs every tag, but row\(s\) \[0, 1\]"),
        (lambda: crf.span_log_probs(emissions, mask, [(1, 1, 3, [0, 0])]), r"Span 0 \(1, 1, 3\) is not within"),
        (lambda: crf.span_log_probs(emissions, mask, [(0, 0, 2, [0])]), r"Span 0 needs 2 tag ids in \[0, 5\)"),
        (
            lambda: crf.span_log_probs(emissions, mask, [(0, 0, 1, [0])], numpy.ones((2, 5), bool)),
            r"follow has shape \(2, 5\), expected \(1, 5\)",
        ),
        (
            lambda: crf.span_log_probs(
                emissions, mask, [(0, 0, 1, [0])], alpha_beta=crf.forward_backward(emissions[:1], mask[:1])
            ),
            r"alpha_beta has shapes \(1, 3, 5\)",
        ),
        (
            lambda: NumpyCRF(numpy.zeros((3, 2)), numpy.zeros(3), numpy.zeros(3)),
            r"transitions has shape \(3, 2\), expected \(K, K\)",
        ),
        (
            lambda: NumpyCRF(numpy.zeros((3, 3)), numpy.zeros(4), numpy.zeros(3)),
            r"start has shape \(4,\), expected \(3,\)",
        ),
        (
            lambda: NumpyCRF(numpy.zeros((3, 3)), numpy.zeros(3, int), numpy.zeros(3)),
            r"start has dtype int64, expected float32 or float64",
        ),
        (
            lambda: NumpyCRF(numpy.zeros((3, 3)), numpy.zeros(3), numpy.zeros(3), numpy.ones((3, 3))),
            r"allowed_transitions has dtype float64, expected bool",
        ),
        (lambda: NumpyCRF(numpy.zeros((0, 0)), numpy.zeros(0), numpy.zeros(0)), r"K >= 1"),
        (lambda: NumpyCRF.from_arrays({"transitions": numpy.zeros((1, 1))}), r"missing \['start', 'end'"),
    ]
    for call, pattern in cases:
        with pytest.raises(ValueError, match=pattern) as raised:
            call()
        assert "\n" not in str(raised.value)
    for bad in (math.nan, math.inf, -math.inf):
        broken = emissions.copy()
        broken[1, 2, 3] = bad  # padding too: as in the torch CRF
        with pytest.raises(NonFiniteScoresError, match=r"row\(s\) \[1\] of the batch of 2"):
            crf.marginals(broken, mask)
        with pytest.raises(NonFiniteScoresError, match="transition, start or end"):
            NumpyCRF(numpy.full((2, 2), bad), numpy.zeros(2), numpy.zeros(2))
    with pytest.raises(NonFiniteScoresError, match="transition, start or end"):
        crf.marginals(emissions, mask, temperature=1e-310)  # the tempered scores overflow


def test_integer_masks_are_read_as_bool_like_torch():
    crf = numpy_twin(make_torch_crf("BIO", seed=24))
    emissions, mask, allowed = random_inputs([3, 2], crf.num_tags, seed=25, with_allowed=True)
    assert_close(
        crf.marginals(emissions, mask.astype(numpy.int8), allowed=allowed.astype(numpy.int64)),
        crf.marginals(emissions, mask, allowed=allowed),
    )


# ------------------------------------------------------------ serialization


def test_state_round_trips_through_bytes_and_arrays():
    module = make_torch_crf("BILUO", seed=26, dtype=torch.float32)
    crf = numpy_twin(module)
    again = NumpyCRF.from_bytes(crf.to_bytes())
    assert list(again.to_arrays()) == list(STATE_KEYS)
    for name, array in crf.to_arrays().items():
        loaded = again.to_arrays()[name]
        assert loaded.dtype == array.dtype and numpy.array_equal(loaded, array)
    assert again.dtype == numpy.float32 and again.num_tags == 9
    emissions, mask, allowed = random_inputs(LENGTHS, 9, seed=27, dtype=numpy.float32, with_allowed=True)
    for ours, theirs in zip(again.kbest(emissions, mask, 3), crf.kbest(emissions, mask, 3)):
        assert numpy.array_equal(ours, theirs)
    assert numpy.array_equal(
        again.marginals(emissions, mask, allowed=allowed), crf.marginals(emissions, mask, allowed=allowed)
    )
    # The state is read-only inside, and to_arrays hands out copies.
    arrays = crf.to_arrays()
    arrays["transitions"][:] = 0.0
    assert numpy.array_equal(crf.to_arrays()["transitions"], to_numpy(module.transitions))


def saved(**arrays: numpy.ndarray) -> bytes:
    buffer = io.BytesIO()
    numpy.savez(buffer, **arrays)
    return buffer.getvalue()


def test_damaged_state_bytes_raise_one_line_value_errors(monkeypatch):
    crf = numpy_twin(make_torch_crf("BIO", seed=28))
    good = crf.to_bytes()
    state = crf.to_arrays()
    damaged = {
        "empty": (b"", "Not a valid CRF state"),
        "not a zip": (b"\x93NUMPY garbage" * 10, "Not a valid CRF state"),
        "truncated": (good[: len(good) // 2], "Not a valid CRF state"),
        "truncated tail": (good[:-10], "Not a valid CRF state"),
        "wrong shape": (saved(**{**state, "start": numpy.zeros(6)}), r"start has shape \(6,\), expected \(5,\)"),
        "wrong dtype": (
            saved(**{**state, "allowed_end": state["allowed_end"].astype(numpy.int8)}),
            "allowed_end has dtype int8",
        ),
        "strings": (saved(**{**state, "end": numpy.array(["a"] * 5)}), "end has dtype <U1"),
        "object array": (
            saved(**{**state, "end": numpy.array([None] * 5, dtype=object)}),
            "end.npy holds Python objects",
        ),
        "missing array": (saved(**{k: v for k, v in state.items() if k != "end"}), "expected .*'end.npy'"),
        "extra array": (saved(**state, extra=numpy.zeros(1)), "extra.npy"),
        "non-finite": (saved(**{**state, "transitions": numpy.full((5, 5), numpy.nan)}), "NaN or infinite"),
    }
    for name, (data, pattern) in damaged.items():
        with pytest.raises(ValueError, match=pattern) as raised:
            NumpyCRF.from_bytes(data)
        message = str(raised.value)
        assert "\n" not in message and message.startswith("Not a valid CRF state: "), name
    for cut in range(0, len(good), 97):  # every truncation fails cleanly
        with pytest.raises(ValueError, match="Not a valid CRF state"):
            NumpyCRF.from_bytes(good[:cut])
    # A corrupted array is caught by the zip's checksum: flip the last byte of the first array.
    with zipfile.ZipFile(io.BytesIO(good)) as archive:
        first = archive.infolist()[0]
    assert first.filename == "transitions.npy"
    flipped = bytearray(good)
    flipped[good.index(b"\x93NUMPY") + first.file_size - 1] ^= 0xFF
    with pytest.raises(ValueError, match="Not a valid CRF state"):
        NumpyCRF.from_bytes(bytes(flipped))
    # A header that declares a huge array over a few bytes is refused before numpy allocates it.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, array in state.items():
            with archive.open(f"{name}.npy", "w") as member:
                if name == "transitions":
                    header = {"descr": "<f8", "fortran_order": False, "shape": (1 << 20, 1 << 20)}
                    numpy.lib.format.write_array_header_1_0(member, header)
                    member.write(b"\0" * 64)
                else:
                    numpy.lib.format.write_array(member, array)
    with pytest.raises(ValueError, match=r"transitions.npy declares 8796093022208 bytes of data"):
        NumpyCRF.from_bytes(buffer.getvalue())
    monkeypatch.setattr(numpy_crf, "MAX_STATE_BYTES", 100)
    with pytest.raises(ValueError, match="more than the 100 allowed"):
        NumpyCRF.from_bytes(good)


# ------------------------------------------------------------ torch-free


NO_TORCH = """
import sys

class BlockTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
        return None

sys.meta_path.insert(0, BlockTorch())
try:
    import torch
except ImportError:
    pass
else:
    raise SystemExit("the blocker did not block torch")

import numpy
from spacy_bilstm_crf.runtime.numpy_crf import NumpyCRF
from spacy_bilstm_crf.tag_scheme import allowed_transitions, make_tags

tags = make_tags(["A"], "BILUO")
rng = numpy.random.default_rng(0)
scores = rng.standard_normal((5, 5)), rng.standard_normal(5), rng.standard_normal(5)
crf = NumpyCRF(*scores, *allowed_transitions(tags, "BILUO"))
crf = NumpyCRF.from_bytes(crf.to_bytes())
emissions = rng.standard_normal((2, 4, 5)).astype("float32")
mask = numpy.array([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=bool)
best, _ = crf.decode(emissions, mask)
paths, _ = crf.kbest(emissions, mask, 3, temperature=2.0)
marginals = crf.marginals(emissions, mask)
assert numpy.allclose(marginals[0].sum(1), 1.0) and (paths[:, 0] == best).all()
import spacy_bilstm_crf.runtime.numpy_crf as module
print(module.__file__)
print(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "thinc", "spacy", "srsly")))
"""


def test_the_runtime_imports_and_runs_with_torch_blocked():
    env = {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", NO_TORCH], capture_output=True, text=True, timeout=120, env=env, cwd=REPO
    )
    assert done.returncode == 0, done.stderr
    *_, path, heavy = done.stdout.strip().splitlines()
    assert Path(path) == REPO / "spacy_bilstm_crf" / "runtime" / "numpy_crf.py"
    assert heavy == "[]"
