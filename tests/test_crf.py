"""The torch CRF against a brute-force oracle that enumerates every sequence."""

from itertools import product

import pytest
import torch

from spacy_bilstm_crf.modules.crf import FORBIDDEN, ConditionalRandomField
from spacy_bilstm_crf.tag_scheme import allowed_transitions, make_tags

NUM_TAGS = 4


def make_crf(constrained: bool = False, seed: int = 0) -> ConditionalRandomField:
    torch.manual_seed(seed)
    if constrained:
        tags = make_tags(["A"], "BILUO")  # O B-A I-A L-A U-A
        crf = ConditionalRandomField(len(tags))
        crf.set_constraints(*(torch.from_numpy(m) for m in allowed_transitions(tags, "BILUO")))
    else:
        crf = ConditionalRandomField(NUM_TAGS)
    with torch.no_grad():
        for param in crf.parameters():
            param.normal_()
    return crf


def sequence_score(crf, emissions, seq):
    """Score of one sequence (1-D emissions of length len(seq)), with constraints."""
    transitions, start, end = crf._scores()
    score = start[seq[0]] + end[seq[-1]] + sum(emissions[t, tag] for t, tag in enumerate(seq))
    return score + sum(transitions[a, b] for a, b in zip(seq, seq[1:]))


@torch.no_grad()
def brute_force(crf, emissions, length, fixed=None):
    """(log partition, best sequence) over all sequences consistent with ``fixed``."""
    scores = {}
    for seq in product(range(crf.num_tags), repeat=length):
        if fixed is not None and any(f >= 0 and f != s for f, s in zip(fixed, seq)):
            continue
        scores[seq] = sequence_score(crf, emissions, seq)
    log_z = torch.logsumexp(torch.stack(list(scores.values())), dim=0)
    best = max(scores, key=lambda s: float(scores[s]))
    return log_z, list(best)


def random_batch(lengths, num_tags, seed=1):
    torch.manual_seed(seed)
    emissions = torch.randn(len(lengths), max(lengths), num_tags)
    mask = torch.arange(max(lengths)).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    return emissions, mask


@pytest.mark.parametrize("constrained", [False, True])
def test_log_partition_and_viterbi_match_brute_force(constrained):
    crf = make_crf(constrained)
    lengths = [4, 1, 3, 2]
    emissions, mask = random_batch(lengths, crf.num_tags)
    log_z = crf.log_partition(emissions, mask)
    best, best_score = crf.decode(emissions, mask)
    for row, length in enumerate(lengths):
        oracle_z, oracle_best = brute_force(crf, emissions[row], length)
        assert log_z[row].item() == pytest.approx(oracle_z.item(), abs=1e-4)
        assert best[row, :length].tolist() == oracle_best
        assert best_score[row].item() == pytest.approx(
            sequence_score(crf, emissions[row], oracle_best).item(), abs=1e-4
        )


def test_constrained_viterbi_never_takes_a_forbidden_step():
    crf = make_crf(constrained=True)
    emissions, mask = random_batch([5] * 8, crf.num_tags, seed=3)
    emissions[:, :, 2] += 5.0  # make I-A (invalid after O/start) very attractive
    best, _ = crf.decode(emissions, mask)
    tags = make_tags(["A"], "BILUO")
    from spacy_bilstm_crf.tag_scheme import is_valid_sequence

    for row in best.tolist():
        assert is_valid_sequence([tags[i] for i in row], "BILUO")


def test_gold_nll_matches_brute_force():
    crf = make_crf()
    lengths = [3, 2]
    emissions, mask = random_batch(lengths, NUM_TAGS)
    gold = torch.tensor([[1, 0, 3], [2, 2, 0]])
    nll = crf(emissions, mask, gold)
    for row, length in enumerate(lengths):
        log_z, _ = brute_force(crf, emissions[row], length)
        gold_score = sequence_score(crf, emissions[row], gold[row, :length].tolist())
        assert nll[row].item() == pytest.approx((log_z - gold_score).item(), abs=1e-4)
        assert nll[row].item() >= 0


def test_partial_gold_marginalises_unknown_tags():
    crf = make_crf(constrained=True)
    emissions, mask = random_batch([4, 3], crf.num_tags)
    gold = torch.tensor([[0, -1, -1, 0], [-1, -1, -1, 0]])
    nll = crf(emissions, mask, gold)
    for row, length in enumerate([4, 3]):
        log_z, _ = brute_force(crf, emissions[row], length)
        log_z_gold, _ = brute_force(crf, emissions[row], length, fixed=gold[row, :length].tolist())
        assert nll[row].item() == pytest.approx((log_z - log_z_gold).item(), abs=1e-4)
    # Nothing known: nothing to learn.
    unknown = torch.full((2, 4), -1)
    assert crf(emissions, mask, unknown).abs().max().item() < 1e-4


def test_constrained_decoding_keeps_fixed_tags():
    crf = make_crf(constrained=True)
    emissions, mask = random_batch([5], crf.num_tags, seed=4)
    fixed = torch.tensor([[-1, 1, 3, -1, -1]])  # B-A L-A at positions 1-2
    best, _ = crf.decode(emissions, mask, fixed)
    _, oracle = brute_force(crf, emissions[0], 5, fixed=fixed[0].tolist())
    assert best[0].tolist() == oracle
    assert best[0, 1:3].tolist() == [1, 3]


def test_gradient_of_log_partition_is_the_marginals():
    """d log Z / d emissions[t, k] = P(tag_t = k): check against enumeration."""
    crf = make_crf(constrained=True)
    emissions, mask = random_batch([3], crf.num_tags)
    emissions.requires_grad_(True)
    crf.log_partition(emissions, mask).sum().backward()
    log_z, _ = brute_force(crf, emissions[0].detach(), 3)
    marginals = torch.zeros(3, crf.num_tags)
    for seq in product(range(crf.num_tags), repeat=3):
        p = torch.exp(sequence_score(crf, emissions[0].detach(), seq) - log_z)
        for t, tag in enumerate(seq):
            marginals[t, tag] += p
    assert torch.allclose(emissions.grad[0], marginals, atol=1e-5)


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


def test_empty_and_single_token_sequences():
    crf = make_crf()
    emissions = torch.randn(2, 0, NUM_TAGS)
    mask = torch.zeros(2, 0, dtype=torch.bool)
    assert crf(emissions, mask, torch.zeros(2, 0, dtype=torch.long)).tolist() == [0.0, 0.0]
    assert crf.decode(emissions, mask)[0].shape == (2, 0)
    one = torch.randn(1, 1, NUM_TAGS)
    best, _ = crf.decode(one, torch.ones(1, 1, dtype=torch.bool))
    _, oracle = brute_force(crf, one[0], 1)
    assert best[0].tolist() == oracle


def test_forbidden_score_is_finite_and_constraints_validated():
    crf = make_crf(constrained=True)
    transitions, _, _ = crf._scores()
    assert transitions.min().item() == pytest.approx(FORBIDDEN, abs=10)
    with pytest.raises(ValueError, match="shape"):
        crf.set_constraints(torch.ones(2, 2), torch.ones(5), torch.ones(5))
    with pytest.raises(ValueError, match="at least one tag"):
        ConditionalRandomField(0)
