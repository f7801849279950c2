"""The torch CRF against the brute-force oracle (tests/crf_oracle.py) that enumerates every sequence."""

import math
from typing import Sequence, Tuple

import pytest
import torch
from torch.func import functional_call

from spacy_bilstm_crf.modules import crf as crf_module
from spacy_bilstm_crf.modules.crf import (
    FORBIDDEN,
    ConditionalRandomField,
    NonFiniteScoresError,
    NoValidPathError,
    fixed_tags_mask,
)
from spacy_bilstm_crf.tag_scheme import allowed_transitions, is_valid_sequence, make_tags

from .crf_oracle import BruteForce, check_kbest_row

NUM_TAGS = 4
BILUO_TAGS = make_tags(["A"], "BILUO")  # O B-A I-A L-A U-A


def make_crf(constrained: bool = False, seed: int = 0) -> ConditionalRandomField:
    torch.manual_seed(seed)
    if constrained:
        crf = ConditionalRandomField(len(BILUO_TAGS))
        crf.set_constraints(*(torch.from_numpy(m) for m in allowed_transitions(BILUO_TAGS, "BILUO")))
    else:
        crf = ConditionalRandomField(NUM_TAGS)
    with torch.no_grad():
        for param in crf.parameters():
            param.normal_()
    return crf


def random_constraints(crf: ConditionalRandomField, seed: int, density: float = 0.6) -> None:
    """Random masks of allowed transitions, first and last tags; tag 0 alone is always a path."""
    gen = torch.Generator().manual_seed(seed)
    k = crf.num_tags
    transitions = torch.rand(k, k, generator=gen) < density
    start, end = torch.rand(k, generator=gen) < density, torch.rand(k, generator=gen) < density
    transitions[0, 0] = start[0] = end[0] = True
    crf.set_constraints(transitions, start, end)


def random_batch(lengths: Sequence[int], num_tags: int, seed: int = 1) -> Tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    length = max(lengths) if lengths else 0
    emissions = torch.randn(len(lengths), length, num_tags)
    mask = torch.arange(length).unsqueeze(0) < torch.tensor(lengths, dtype=torch.long).view(-1, 1)
    return emissions, mask


def random_allowed(shape: Sequence[int], seed: int, density: float = 0.75) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) < density


def naive_log_partition(crf, emissions, mask, allowed=None, forbidden=-1.0e4):
    """The plain recursion with autograd, forbidden steps penalised by ``forbidden``."""
    trans = torch.where(crf.allowed_transitions, crf.transitions, forbidden)
    start = torch.where(crf.allowed_start, crf.start_transitions, forbidden)
    end = torch.where(crf.allowed_end, crf.end_transitions, forbidden)
    if allowed is not None:
        emissions = torch.where(allowed, emissions, forbidden)
    alpha = start + emissions[:, 0]
    for t in range(1, emissions.shape[1]):
        step = torch.logsumexp(alpha.unsqueeze(2) + trans, dim=1) + emissions[:, t]
        alpha = torch.where(mask[:, t : t + 1], step, alpha)
    return torch.logsumexp(alpha + end, dim=1)


CASES = ["free", "biluo", "random"]


def case_crf(case: str, seed: int = 0) -> ConditionalRandomField:
    crf = make_crf(constrained=case == "biluo", seed=seed)
    if case == "random":
        random_constraints(crf, seed + 7)
    return crf


def check_against_brute(crf, emissions, mask, allowed=None, k=4):
    """log Z, marginals, Viterbi and k-best of every row against enumeration."""
    lengths = mask.sum(1).tolist()
    oracles = BruteForce.rows(crf, emissions, lengths, allowed)
    possible = [bool(o.scores) for o in oracles]
    log_z = crf.log_partition(emissions, mask, allowed=allowed)
    for b, oracle in enumerate(oracles):
        assert log_z[b].item() == pytest.approx(oracle.log_z(), abs=1e-4)
    if not all(possible):
        for method in (crf.decode, crf.marginals):
            with pytest.raises(NoValidPathError, match=f"Row\\(s\\) \\[{possible.index(False)}"):
                method(emissions, mask, allowed=allowed)
        return
    best, best_score = crf.decode(emissions, mask, allowed=allowed)
    marginals = crf.marginals(emissions, mask, allowed=allowed)
    paths, scores = crf.kbest(emissions, mask, k, allowed=allowed)
    for b, (n, oracle) in enumerate(zip(lengths, oracles)):
        assert best_score[b].item() == pytest.approx(max(oracle.scores.values()), abs=1e-4)
        assert tuple(best[b, :n].tolist()) in oracle.scores
        assert oracle.scores[tuple(best[b, :n].tolist())] == pytest.approx(best_score[b].item(), abs=1e-4)
        assert torch.allclose(marginals[b, :n].double(), torch.from_numpy(oracle.marginals()), atol=1e-5)
        assert marginals[b, n:].abs().max().item() == 0.0 if n < mask.shape[1] else True
        check_kbest_row(oracle, paths[b, :, :n], scores[b], k)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("with_allowed", [False, True])
def test_lattice_matches_brute_force(case, with_allowed):
    crf = case_crf(case)
    lengths = [4, 1, 3, 2, 5]
    emissions, mask = random_batch(lengths, crf.num_tags)
    allowed = random_allowed(emissions.shape, seed=5) if with_allowed else None
    if allowed is not None and case == "random":
        allowed[:, :, 0] = True  # keep at least one path in every row
    check_against_brute(crf, emissions, mask, allowed)


def test_empty_lattice_rows():
    crf = make_crf(constrained=True)
    emissions, mask = random_batch([3, 3], crf.num_tags)
    allowed = torch.ones(2, 3, crf.num_tags, dtype=torch.bool)
    allowed[1, 1] = False
    allowed[1, 1, 2] = True  # I-A in the middle ...
    allowed[1, 2] = False
    allowed[1, 2, 0] = True  # ... then O: no BILUO sequence does that
    check_against_brute(crf, emissions, mask, allowed)
    with pytest.raises(NoValidPathError, match=r"Row\(s\) \[1\]"):
        crf(emissions, mask, torch.full((2, 3), -1), allowed=allowed)
    with pytest.raises(NoValidPathError, match=r"Row\(s\) \[1\]"):
        crf.kbest(emissions, mask, 2, allowed=allowed)
    with pytest.raises(NoValidPathError, match=r"Row\(s\) \[1\]"):
        crf.span_log_probs(emissions, mask, [(1, 0, 1, [0])], allowed=allowed)
    # log Z is -inf there, and its gradient zero, not NaN; the other row is unaffected.
    leaf = emissions.clone().requires_grad_(True)
    log_z = crf.log_partition(leaf, mask, allowed=allowed)
    assert log_z[1].item() == -math.inf and math.isfinite(log_z[0].item())
    log_z[0].backward()
    assert torch.isfinite(leaf.grad).all() and leaf.grad[1].abs().max().item() == 0.0
    alone = emissions[:1].clone().requires_grad_(True)
    crf.log_partition(alone, mask[:1]).backward()
    assert torch.allclose(leaf.grad[0], alone.grad[0], atol=1e-6)


@pytest.mark.parametrize("case", CASES)
def test_nll_matches_brute_force_for_known_partial_and_unknown_gold(case):
    crf = case_crf(case, seed=2)
    lengths = [4, 3, 1, 2]
    emissions, mask = random_batch(lengths, crf.num_tags, seed=3)
    allowed = random_allowed(emissions.shape, seed=4, density=0.85)
    for b, n in enumerate(lengths):  # keep the oracle's best path allowed: every row has a gold
        best = BruteForce(crf, emissions[b, :n]).best()
        allowed[b, torch.arange(n), torch.tensor(best)] = True
    gold, _ = crf.decode(emissions, mask, allowed=allowed)
    gold = torch.where(mask, gold, -1)
    partial = torch.where(torch.rand(gold.shape, generator=torch.Generator().manual_seed(0)) < 0.5, -1, gold)
    unknown = torch.full_like(gold, -1)
    for tags in (gold, partial, unknown):
        nll = crf(emissions, mask, tags, allowed=allowed)
        for b, n in enumerate(lengths):
            oracle = BruteForce(crf, emissions[b, :n], allowed[b, :n])
            expected = oracle.log_z() - oracle.log_z(fixed=tags[b, :n].tolist())
            assert nll[b].item() == pytest.approx(expected, abs=1e-4)
            assert nll[b].item() >= -1e-5
    assert crf(emissions, mask, unknown, allowed=allowed).abs().max().item() < 1e-4
    score = crf.path_score(emissions, mask, gold, allowed=allowed)
    assert torch.allclose(
        score - crf.log_partition(emissions, mask, allowed=allowed), -crf(emissions, mask, gold, allowed=allowed)
    )


def test_gold_nll_matches_brute_force():
    crf = make_crf()
    lengths = [3, 2]
    emissions, mask = random_batch(lengths, NUM_TAGS)
    gold = torch.tensor([[1, 0, 3], [2, 2, 0]])
    nll = crf(emissions, mask, gold)
    for row, length in enumerate(lengths):
        oracle = BruteForce(crf, emissions[row, :length])
        gold_score = oracle.scores[tuple(gold[row, :length].tolist())]
        assert nll[row].item() == pytest.approx(oracle.log_z() - gold_score, abs=1e-4)


def test_impossible_gold_raises_naming_the_row():
    crf = make_crf(constrained=True)
    emissions, mask = random_batch([3, 3, 2], crf.num_tags)
    gold = torch.tensor([[0, 0, 0], [0, 2, 0], [4, 0, -1]])  # row 1: O I-A O is ill-formed
    with pytest.raises(NoValidPathError, match=r"row\(s\) \[1\]"):
        crf(emissions, mask, gold)
    partial = torch.tensor([[0, -1, 0], [-1, -1, -1], [-1, 3, -1]])  # row 2: ends with L-A, no B-A fits before
    partial[2, 0] = 0
    with pytest.raises(NoValidPathError, match=r"row\(s\) \[2\]"):
        crf(emissions, mask, partial)
    allowed = torch.ones(3, 3, crf.num_tags, dtype=torch.bool)
    allowed[0, 2, 0] = False  # row 0's gold O at its last token is not allowed
    with pytest.raises(NoValidPathError, match=r"row\(s\) \[0\]"):
        crf(emissions, mask, torch.tensor([[0, 0, 0], [0, 0, 0], [0, 0, -1]]), allowed=allowed)
    with pytest.raises(ValueError, match="-1"):
        crf(emissions, mask, torch.full((3, 3), 7))


def test_constrained_viterbi_never_takes_a_forbidden_step():
    crf = make_crf(constrained=True)
    emissions, mask = random_batch([5] * 8, crf.num_tags, seed=3)
    emissions[:, :, 2] += 5.0  # make I-A (invalid after O/start) very attractive
    best, _ = crf.decode(emissions, mask)
    for row in best.tolist():
        assert is_valid_sequence([BILUO_TAGS[i] for i in row], "BILUO")


@pytest.mark.parametrize("scale", [1.0e4, 1.0e6])
def test_huge_emissions_still_decode_allowed_paths_only(scale):
    """Under the old -1e4 penalty, an emission above 1e4 decoded an ill-formed path."""
    crf = make_crf(constrained=True)
    emissions, mask = random_batch([6, 5, 1], crf.num_tags, seed=8)
    emissions[:, :, 2] += scale  # I-A everywhere: never a valid sequence alone
    emissions[1, 2, 0] += 2 * scale
    paths, scores = crf.kbest(emissions, mask, 3)
    best, best_score = crf.decode(emissions, mask)
    for b, n in enumerate(mask.sum(1).tolist()):
        assert is_valid_sequence([BILUO_TAGS[i] for i in best[b, :n].tolist()], "BILUO")
        for path in paths[b, :, :n].tolist():
            assert is_valid_sequence([BILUO_TAGS[i] for i in path], "BILUO")
    assert torch.equal(paths[:, 0], best) and torch.allclose(scores[:, 0], best_score)
    marginals = crf.marginals(emissions, mask)
    assert torch.isfinite(marginals).all()
    assert torch.allclose(marginals.sum(2), mask.float(), atol=1e-3)
    leaf = emissions.clone().requires_grad_(True)
    crf(leaf, mask, best).sum().backward()
    assert torch.isfinite(leaf.grad).all()


def test_wide_score_spread_falls_back_to_log_space_exactly():
    """Spreads beyond float64's exp range take the log-space recursion; same results."""
    crf = make_crf(constrained=True).double()
    emissions, mask = random_batch([5, 3], crf.num_tags, seed=9)
    emissions = emissions.double() * 300.0  # spreads of ~2000 nats
    with torch.no_grad():
        lattice = crf._lattice(emissions, mask, None)
    _, fast = crf_module._alpha_recursion(lattice[0], lattice[1], lattice[2], mask)
    _, fast_beta = crf_module._beta_recursion(lattice[0], lattice[1], lattice[3], mask)
    assert not fast and not fast_beta
    for b, n in enumerate([5, 3]):
        oracle = BruteForce(crf, emissions[b, :n])
        assert crf.log_partition(emissions, mask)[b].item() == pytest.approx(oracle.log_z(), rel=1e-12)
        assert torch.allclose(crf.marginals(emissions, mask)[b, :n], torch.from_numpy(oracle.marginals()), atol=1e-9)
    check_gradients_against_naive(crf, emissions, mask, None, atol=1e-8)


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_an_underflow_of_the_fast_recursion_is_caught(where):
    """A path forced through a tag 800 nats below the best one at its token: the scaled
    recursion would round it to zero (no path, or a wrong log Z); the check must catch it."""
    crf = make_crf(constrained=True)
    with torch.no_grad():
        for param in crf.parameters():
            param.zero_()
    emissions = torch.zeros(1, 4, crf.num_tags)
    allowed = torch.ones(1, 4, crf.num_tags, dtype=torch.bool)
    t = {"first": 0, "middle": 1, "last": 3}[where]
    emissions[0, t, 0] = 800.0  # O, far above B-A / L-A here
    if where == "last":
        allowed[0, 2] = False
        allowed[0, 2, 1] = True  # B-A before the last token: it must be L-A, 800 below O
    else:
        allowed[0, t + 1] = False
        allowed[0, t + 1, 3] = True  # L-A next: this token must be B-A, 800 below O
    mask = torch.ones(1, 4, dtype=torch.bool)
    oracle = BruteForce(crf, emissions[0], allowed[0])
    assert crf.log_partition(emissions, mask, allowed=allowed).item() == pytest.approx(oracle.log_z(), abs=1e-4)
    marginals = crf.marginals(emissions, mask, allowed=allowed)
    assert torch.allclose(marginals[0].double(), torch.from_numpy(oracle.marginals()), atol=1e-5)
    leaf = emissions.clone().requires_grad_(True)
    crf.log_partition(leaf, mask, allowed=allowed).sum().backward()
    assert torch.allclose(leaf.grad[0].double(), torch.from_numpy(oracle.marginals()), atol=1e-5)


def test_fast_and_log_space_recursions_agree():
    crf = make_crf(constrained=True).double()
    emissions, mask = random_batch([7, 4, 1], crf.num_tags, seed=10)
    allowed = random_allowed(emissions.shape, seed=2)
    with torch.no_grad():
        em, transitions, start, end, mask = crf._lattice(emissions.double(), mask, allowed)
    fast, is_fast = crf_module._alpha_recursion(em, transitions, start, mask)
    assert is_fast
    fast_beta, _ = crf_module._beta_recursion(em, transitions, end, mask)
    saved = dict(crf_module._SAFE_SPREAD)
    try:
        crf_module._SAFE_SPREAD[torch.float64] = -1.0  # force the log-space recursions
        slow, is_fast = crf_module._alpha_recursion(em, transitions, start, mask)
        slow_beta, _ = crf_module._beta_recursion(em, transitions, end, mask)
        assert not is_fast
        slow_grads = check_gradients_against_naive(crf, emissions.double(), mask, allowed, atol=1e-9)
    finally:
        crf_module._SAFE_SPREAD.update(saved)
    both = torch.isfinite(slow)
    assert torch.equal(both, torch.isfinite(fast)) and torch.allclose(fast[both], slow[both], atol=1e-10)
    both = torch.isfinite(slow_beta)
    assert torch.equal(both, torch.isfinite(fast_beta)) and torch.allclose(fast_beta[both], slow_beta[both], atol=1e-10)
    fast_grads = check_gradients_against_naive(crf, emissions.double(), mask, allowed, atol=1e-9)
    for a, b in zip(fast_grads, slow_grads):
        assert torch.allclose(a, b, atol=1e-10)


def check_gradients_against_naive(crf, emissions, mask, allowed, atol):
    """Gradients of a weighted sum of log Z equal autograd through the plain recursion."""
    weights = torch.linspace(0.5, 1.5, emissions.shape[0], dtype=emissions.dtype)
    grads = []
    for function in (crf.log_partition, None):
        crf.zero_grad()
        leaf = emissions.clone().requires_grad_(True)
        if function is None:
            log_z = naive_log_partition(crf, leaf, mask, allowed, forbidden=-1.0e5)
        else:
            log_z = function(leaf, mask, allowed=allowed)
        (log_z * weights).sum().backward()
        grads.append([leaf.grad] + [p.grad.clone() for p in crf.parameters()])
    for ours, naive in zip(*grads):
        assert torch.isfinite(ours).all()
        assert torch.allclose(ours, naive, atol=atol)
    return grads[0]


@pytest.mark.parametrize("case", CASES)
def test_gradients_equal_autograd_on_the_plain_recursion(case):
    crf = case_crf(case, seed=3).double()
    emissions, mask = random_batch([5, 2, 1, 4], crf.num_tags, seed=6)
    allowed = random_allowed(emissions.shape, seed=6)
    for b, n in enumerate([5, 2, 1, 4]):
        oracle = BruteForce(crf, emissions[b, :n])
        if oracle.scores:
            allowed[b, torch.arange(n), torch.tensor(oracle.best())] = True
    check_gradients_against_naive(crf, emissions.double(), mask, None, atol=1e-8)
    check_gradients_against_naive(crf, emissions.double(), mask, allowed, atol=1e-8)


def test_no_nan_gradients_where_every_incoming_step_is_forbidden():
    """A logsumexp over only -inf has a NaN gradient under autograd; ours is finite and exact."""
    crf = make_crf(constrained=True).double()
    emissions, mask = random_batch([4, 4], crf.num_tags, seed=2)
    emissions = emissions.double()
    allowed = torch.ones(2, 4, crf.num_tags, dtype=torch.bool)
    allowed[:, 1] = False
    allowed[:, 1, 0] = True  # only O at token 1: I-A and L-A at token 2 have no allowed predecessor
    naive = emissions.clone().requires_grad_(True)
    naive_log_partition(crf, naive, mask, allowed, forbidden=FORBIDDEN).sum().backward()
    assert torch.isnan(naive.grad).any()
    check_gradients_against_naive(crf, emissions, mask, allowed, atol=1e-9)


@pytest.mark.slow
def test_gradcheck_in_float64():
    """torch.autograd.gradcheck of the NLL and log Z with padding, allowed tags and partial gold."""
    crf = make_crf(constrained=True).double()
    lengths = [3, 1, 2]
    emissions, mask = random_batch(lengths, crf.num_tags, seed=11)
    emissions = emissions.double()
    allowed = random_allowed(emissions.shape, seed=3, density=0.8)
    gold = torch.tensor([[1, 3, 0], [4, -1, -1], [0, 4, -1]])
    allowed[torch.arange(3).view(-1, 1), torch.arange(3), gold.clamp(min=0)] = True
    partial = torch.tensor([[1, -1, -1], [-1, -1, -1], [-1, 4, -1]])
    names = ["transitions", "start_transitions", "end_transitions"]
    params = [getattr(crf, n).detach().clone().requires_grad_(True) for n in names]
    leaf = emissions.clone().requires_grad_(True)
    for tags in (gold, partial):
        for mask_allowed in (None, allowed):

            def nll(em, *values, tags=tags, mask_allowed=mask_allowed):
                return functional_call(crf, dict(zip(names, values)), (em, mask, tags), {"allowed": mask_allowed})

            assert torch.autograd.gradcheck(nll, (leaf, *params))

    # The autograd.Function alone, over the lattice with -inf where forbidden.
    def log_z(em, transitions, start, end):
        lattice = (
            torch.where(allowed, em, FORBIDDEN),
            torch.where(crf.allowed_transitions, transitions, FORBIDDEN),
            torch.where(crf.allowed_start, start, FORBIDDEN),
            torch.where(crf.allowed_end, end, FORBIDDEN),
        )
        return crf_module._LogPartition.apply(*lattice, mask)

    assert torch.autograd.gradcheck(log_z, (leaf, *params))


def test_gradient_of_log_partition_is_the_marginals():
    """d log Z / d emissions[t, k] = P(tag_t = k): check against enumeration."""
    crf = make_crf(constrained=True)
    emissions, mask = random_batch([3], crf.num_tags)
    emissions.requires_grad_(True)
    crf.log_partition(emissions, mask).sum().backward()
    marginals = torch.from_numpy(BruteForce(crf, emissions[0]).marginals())
    assert torch.allclose(emissions.grad[0].double(), marginals, atol=1e-5)


def test_gradient_check_against_finite_differences():
    crf = make_crf()
    emissions, mask = random_batch([3, 2], NUM_TAGS)
    gold = torch.tensor([[0, 1, 2], [3, 1, -1]])
    emissions.requires_grad_(True)
    crf(emissions, mask, gold).sum().backward()
    eps = 1e-2
    for index in [(0, 0, 0), (0, 2, 3), (1, 1, 1), (1, 0, 2)]:
        plus, minus = emissions.detach().clone(), emissions.detach().clone()
        plus[index] += eps
        minus[index] -= eps
        numeric = (crf(plus, mask, gold).sum() - crf(minus, mask, gold).sum()) / (2 * eps)
        assert emissions.grad[index].item() == pytest.approx(numeric.item(), abs=2e-3)
    # Padding gets no gradient.
    assert emissions.grad[1, 2].abs().max().item() == 0.0


@pytest.mark.parametrize("case", CASES)
def test_span_probabilities_match_brute_force(case):
    crf = case_crf(case, seed=4)
    lengths = [5, 3, 1]
    emissions, mask = random_batch(lengths, crf.num_tags, seed=12)
    allowed = None if case == "random" else random_allowed(emissions.shape, seed=1, density=0.9)
    oracles = BruteForce.rows(crf, emissions, lengths, allowed)
    gen = torch.Generator().manual_seed(0)
    spans, follows, expected = [], [], []
    for b, (n, oracle) in enumerate(zip(lengths, oracles)):
        assert oracle.scores
        paths = sorted(oracle.scores, key=oracle.scores.__getitem__, reverse=True)
        for s in range(n):
            for e in range(s + 1, n + 1):
                for source in (paths[0], paths[-1], tuple(torch.randint(crf.num_tags, (n,), generator=gen).tolist())):
                    follow = (torch.rand(crf.num_tags, generator=gen) < 0.6).tolist()
                    spans.append((b, s, e, list(source[s:e])))
                    follows.append(follow)
                    expected.append(oracle.span_prob(s, e, source[s:e], follow))
    follow_mask = torch.tensor(follows)
    log_probs = crf.span_log_probs(emissions, mask, spans, follow_mask, allowed=allowed)
    assert log_probs.shape == (len(spans),)
    assert torch.allclose(log_probs.exp().double(), torch.tensor(expected, dtype=torch.float64), atol=1e-5)
    shared = crf.forward_backward(emissions, mask, allowed=allowed)
    again = crf.span_log_probs(emissions, mask, spans, follow_mask, allowed=allowed, alpha_beta=shared)
    assert torch.allclose(again.exp(), log_probs.exp(), atol=1e-5)
    # No follow mask: every tag may follow; a single token's span probability is its marginal.
    marginals = crf.marginals(emissions, mask, allowed=allowed)
    singles = [(0, t, t + 1, [k]) for t in range(5) for k in range(crf.num_tags)]
    single_probs = crf.span_log_probs(emissions, mask, singles, allowed=allowed).exp().view(5, crf.num_tags)
    assert torch.allclose(single_probs, marginals[0], atol=1e-5)


def test_span_probability_of_an_entity_is_not_the_product_of_marginals():
    """Two analyses of two tokens, B-A L-A or U-A U-A, at even odds: the span B-A L-A has
    probability 1/2, the product of its token marginals 1/4."""
    crf = make_crf(constrained=True)
    with torch.no_grad():
        for param in crf.parameters():
            param.zero_()
    emissions = torch.full((1, 2, crf.num_tags), -50.0)
    emissions[0, 0, [1, 4]] = 0.0  # B-A or U-A
    emissions[0, 1, [3, 4]] = 0.0  # L-A or U-A
    mask = torch.ones(1, 2, dtype=torch.bool)
    marginals = crf.marginals(emissions, mask)
    span = crf.span_log_probs(emissions, mask, [(0, 0, 2, [1, 3])]).exp()
    assert span.item() == pytest.approx(0.5, abs=1e-6)
    assert (marginals[0, 0, 1] * marginals[0, 1, 3]).item() == pytest.approx(0.25, abs=1e-6)
    fixed = torch.tensor([[1, 3]])
    assert crf.span_log_probs(emissions, mask, [(0, 0, 2, [1, 3])], allowed=fixed_tags_mask(fixed, 5)).item() == 0.0


def test_span_inputs_are_validated():
    crf = make_crf()
    emissions, mask = random_batch([3, 2], NUM_TAGS)
    assert crf.span_log_probs(emissions, mask, []).shape == (0,)
    for bad in [(0, 2, 4, [0, 0]), (1, 1, 3, [0, 0]), (2, 0, 1, [0]), (0, 1, 1, [])]:
        with pytest.raises(ValueError, match="not within"):
            crf.span_log_probs(emissions, mask, [bad])
    with pytest.raises(ValueError, match="tag ids"):
        crf.span_log_probs(emissions, mask, [(0, 0, 2, [0])])
    with pytest.raises(ValueError, match="tag ids"):
        crf.span_log_probs(emissions, mask, [(0, 0, 1, [NUM_TAGS])])
    with pytest.raises(ValueError, match="follow"):
        crf.span_log_probs(emissions, mask, [(0, 0, 1, [0])], torch.ones(2, NUM_TAGS, dtype=torch.bool))


def test_forward_backward_conventions():
    crf = make_crf(constrained=True)
    lengths = [4, 2]
    emissions, mask = random_batch(lengths, crf.num_tags)
    log_alpha, log_beta, log_z = crf.forward_backward(emissions, mask)
    assert log_alpha.shape == log_beta.shape == emissions.shape and log_z.shape == (2,)
    assert torch.allclose(log_z, crf.log_partition(emissions, mask))
    for b, n in enumerate(lengths):
        # log Z at every real token, log_beta = end at the last one, -inf on padding.
        assert torch.allclose(torch.logsumexp(log_alpha[b, :n] + log_beta[b, :n], dim=1), log_z[b].expand(n), atol=1e-5)
        end = torch.where(crf.allowed_end, crf.end_transitions, FORBIDDEN).detach()
        assert torch.equal(log_beta[b, n - 1], end)
        assert (log_alpha[b, n:] == FORBIDDEN).all() and (log_beta[b, n:] == FORBIDDEN).all()
        start = torch.where(crf.allowed_start, crf.start_transitions, FORBIDDEN).detach()
        assert torch.allclose(log_alpha[b, 0], start + emissions[b, 0])


def test_kbest_edge_cases():
    crf = make_crf(constrained=True)
    emissions, mask = random_batch([3, 1, 0], crf.num_tags, seed=2)
    paths, scores = crf.kbest(emissions, mask, 40)
    assert paths.shape == (3, 40, 3) and scores.shape == (3, 40)
    # BILUO with one label: 2 sequences of one token (O, U-A), 1 + 1 + ... of three.
    assert torch.isfinite(scores[1]).sum().item() == 2
    assert scores[2].tolist()[:2] == [0.0, -math.inf] and paths[2, 1].tolist() == [-1, -1, -1]
    for b, n in enumerate([3, 1]):
        check_kbest_row(BruteForce(crf, emissions[b, :n]), paths[b, :, :n], scores[b], 40)
    # Past a row's end a path repeats its last tag, like decode.
    best, _ = crf.decode(emissions, mask)
    assert torch.equal(paths[:, 0], best)
    one, one_scores = crf.kbest(emissions, mask, 1)
    assert torch.equal(one[:, 0], best)
    with pytest.raises(ValueError, match="k >= 1"):
        crf.kbest(emissions, mask, 0)


def test_constrained_decoding_keeps_fixed_tags():
    crf = make_crf(constrained=True)
    emissions, mask = random_batch([5], crf.num_tags, seed=4)
    fixed = torch.tensor([[-1, 1, 3, -1, -1]])  # B-A L-A at positions 1-2
    best, _ = crf.decode(emissions, mask, fixed)
    oracle = BruteForce(crf, emissions[0], fixed_tags_mask(fixed, crf.num_tags)[0])
    assert best[0].tolist() == oracle.best()
    assert best[0, 1:3].tolist() == [1, 3]
    # ``tags`` and ``allowed`` combine: O is not allowed at token 4.
    allowed = torch.ones(1, 5, crf.num_tags, dtype=torch.bool)
    allowed[0, 4, 0] = False
    best, _ = crf.decode(emissions, mask, fixed, allowed=allowed)
    oracle = BruteForce(crf, emissions[0], fixed_tags_mask(fixed, crf.num_tags)[0] & allowed[0])
    assert best[0].tolist() == oracle.best()
    with pytest.raises(ValueError, match="-1"):
        crf.decode(emissions, mask, torch.tensor([[-2, 0, 0, 0, 0]]))


def test_padding_does_not_change_results():
    crf = make_crf(constrained=True)
    emissions, mask = random_batch([5, 2], crf.num_tags)
    gold = torch.tensor([[0, 4, 1, 3, 0], [4, 0, 0, 0, 0]])
    batched = crf(emissions, mask, gold)
    alone = crf(emissions[1:, :2], mask[1:, :2], gold[1:, :2])
    assert batched[1].item() == pytest.approx(alone[0].item(), abs=1e-5)
    best, _ = crf.decode(emissions, mask)
    best_alone, _ = crf.decode(emissions[1:, :2], mask[1:, :2])
    assert best[1, :2].tolist() == best_alone[0].tolist()
    assert (best[1, 2:] == best[1, 1]).all()  # padding repeats the last tag
    # Tags on padding are ignored, whatever they hold (-100 is a common "ignore" id).
    ignored = gold.clone()
    ignored[1, 2:] = -100
    assert torch.allclose(crf(emissions, mask, ignored), batched)
    assert torch.equal(crf.decode(emissions, mask, ignored)[0], crf.decode(emissions, mask, gold)[0])
    # Non-finite padding is still an error; anything finite there is ignored.
    emissions[1, 3] = 1.0e30
    assert torch.allclose(crf.marginals(emissions, mask)[1, :2], crf.marginals(emissions[1:, :2], mask[1:, :2])[0])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_emissions(dtype):
    crf = make_crf(constrained=True)
    emissions, mask = random_batch([50, 20], crf.num_tags)
    emissions = emissions * 20  # large scores overflow naive exp in fp16
    gold = torch.zeros(2, 50, dtype=torch.long)
    reference = crf(emissions, mask, gold)
    half = emissions.to(dtype).requires_grad_(True)
    nll = crf(half, mask, gold)
    nll.sum().backward()
    assert nll.dtype == torch.float32
    assert torch.isfinite(nll).all() and torch.isfinite(half.grad).all()
    assert half.grad.dtype == dtype
    rounded = crf(half.detach().float(), mask, gold)
    assert torch.allclose(nll, rounded, rtol=1e-5, atol=1e-3)
    assert torch.allclose(nll, reference, rtol=0.02, atol=1.0)
    assert torch.equal(crf.decode(half, mask)[0], crf.decode(half.detach().float(), mask)[0])
    assert crf.marginals(half, mask).dtype == torch.float32


def test_empty_batch_and_zero_length():
    crf = make_crf()
    for shape in [(2, 0), (0, 3), (0, 0)]:
        emissions = torch.randn(*shape, NUM_TAGS, requires_grad=True)
        mask = torch.zeros(shape, dtype=torch.bool)
        tags = torch.zeros(shape, dtype=torch.long)
        nll = crf(emissions, mask, tags)
        assert nll.tolist() == [0.0] * shape[0]
        nll.sum().backward()
        assert crf.log_partition(emissions, mask).tolist() == [0.0] * shape[0]
        best, score = crf.decode(emissions, mask)
        assert best.shape == shape and score.shape == (shape[0],)
        paths, scores = crf.kbest(emissions, mask, 2)
        assert paths.shape == (shape[0], 2, shape[1]) and scores.tolist() == [[0.0, -math.inf]] * shape[0]
        assert crf.marginals(emissions, mask).shape == emissions.shape
        alpha, beta, log_z = crf.forward_backward(emissions, mask)
        assert alpha.shape == beta.shape == emissions.shape and log_z.tolist() == [0.0] * shape[0]
        assert crf.span_log_probs(emissions, mask, []).shape == (0,)
    # Empty rows next to real ones.
    emissions, mask = random_batch([0, 2], NUM_TAGS)
    assert crf(emissions, mask, torch.zeros(2, 2, dtype=torch.long))[0].item() == 0.0
    assert crf.decode(emissions, mask)[0][0].tolist() == [0, 0]
    assert crf.marginals(emissions, mask)[0].abs().max().item() == 0.0
    check_against_brute(crf, emissions, mask)


def test_single_token_sequences():
    crf = make_crf()
    one = torch.randn(1, 1, NUM_TAGS)
    best, _ = crf.decode(one, torch.ones(1, 1, dtype=torch.bool))
    assert best[0].tolist() == BruteForce(crf, one[0]).best()


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_scores_raise_from_every_entry_point(bad):
    crf = make_crf(constrained=True)
    emissions, mask = random_batch([3, 3, 2], crf.num_tags)
    emissions[2, 1, 3] = bad
    tags = torch.zeros(3, 3, dtype=torch.long)
    calls = [
        lambda: crf(emissions, mask, tags),
        lambda: crf.log_partition(emissions, mask),
        lambda: crf.path_score(emissions, mask, tags),
        lambda: crf.decode(emissions, mask),
        lambda: crf.kbest(emissions, mask, 2),
        lambda: crf.forward_backward(emissions, mask),
        lambda: crf.marginals(emissions, mask),
        lambda: crf.span_log_probs(emissions, mask, [(0, 0, 1, [0])]),
    ]
    for call in calls:
        with pytest.raises(NonFiniteScoresError, match=r"row\(s\) \[2\]"):
            call()
    emissions[2, 1, 3] = 0.0
    with torch.no_grad():
        crf.transitions[0, 0] = bad
    with pytest.raises(NonFiniteScoresError, match="transition"):
        crf.decode(emissions, mask)


def test_inputs_are_validated():
    crf = make_crf()
    emissions, mask = random_batch([3, 2], NUM_TAGS)
    with pytest.raises(ValueError, match="prefix"):
        crf.decode(emissions, torch.tensor([[True, False, True], [True, True, False]]))
    with pytest.raises(ValueError, match="mask"):
        crf.decode(emissions, mask[:, :2])
    with pytest.raises(ValueError, match="allowed"):
        crf.decode(emissions, mask, allowed=torch.ones(2, 3, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="emissions"):
        crf.decode(emissions[:, :, :2], mask)
    with pytest.raises(ValueError, match="needs every tag"):
        crf.path_score(emissions, mask, torch.full((2, 3), -1))


def test_forbidden_is_impossible_and_constraints_validated():
    crf = make_crf(constrained=True)
    assert FORBIDDEN == -math.inf
    emissions, mask = random_batch([2], crf.num_tags)
    # O -> I-A is forbidden: its score is -inf, whatever the emissions.
    emissions[0, 1, 2] = 1.0e8
    assert crf.path_score(emissions, mask, torch.tensor([[0, 2]])).item() == -math.inf
    assert crf.marginals(emissions, mask)[0, 1, 2].item() == 0.0
    with pytest.raises(ValueError, match="shape"):
        crf.set_constraints(torch.ones(2, 2), torch.ones(5), torch.ones(5))
    with pytest.raises(ValueError, match="at least one tag"):
        ConditionalRandomField(0)


def test_state_dict_keys_are_unchanged():
    assert sorted(make_crf().state_dict()) == [
        "allowed_end",
        "allowed_start",
        "allowed_transitions",
        "end_transitions",
        "start_transitions",
        "transitions",
    ]
