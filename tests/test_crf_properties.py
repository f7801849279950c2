"""Property test of the torch CRF: random lattices (tag scheme or random constraints,
random allowed-tag masks, rows of different lengths) against brute-force enumeration."""

import math

import pytest
import torch

from spacy_bilstm_crf.modules.crf import ConditionalRandomField, NoValidPathError
from spacy_bilstm_crf.tag_scheme import allowed_transitions, make_tags

from .crf_oracle import BruteForce, check_kbest_row

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies


@st.composite
def lattices(draw):
    scheme = draw(st.sampled_from(["free", "random", "BILUO", "BIO"]))
    if scheme in ("BILUO", "BIO"):
        labels = ["A"] if scheme == "BILUO" else draw(st.sampled_from([["A"], ["A", "B"]]))
        tags = make_tags(labels, scheme)
        crf = ConditionalRandomField(len(tags))
        crf.set_constraints(*(torch.from_numpy(m) for m in allowed_transitions(tags, scheme)))
    else:
        crf = ConditionalRandomField(draw(st.integers(1, 5)))
    k = crf.num_tags
    seed = draw(st.integers(0, 2**20))
    gen = torch.Generator().manual_seed(seed)
    if scheme == "random":
        crf.set_constraints(
            torch.rand(k, k, generator=gen) < 0.7,
            torch.rand(k, generator=gen) < 0.8,
            torch.rand(k, generator=gen) < 0.8,
        )
    scale = draw(st.sampled_from([0.5, 2.0, 8.0, 150.0]))  # 150: spreads past the fast recursion's range
    with torch.no_grad():
        for param in crf.parameters():
            param.copy_(torch.randn(param.shape, generator=gen) * scale)
    lengths = draw(st.lists(st.integers(0, 5), min_size=1, max_size=4))
    length = max(lengths)
    emissions = torch.randn(len(lengths), length, k, generator=gen) * scale
    mask = torch.arange(length).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    density = draw(st.sampled_from([None, 0.6, 0.9]))
    allowed = None if density is None else torch.rand(emissions.shape, generator=gen) < density
    return crf, emissions, mask, allowed, gen


@hypothesis.settings(max_examples=40, deadline=None, derandomize=True)
@hypothesis.given(lattices())
def test_random_lattices_match_brute_force(lattice):
    crf, emissions, mask, allowed, gen = lattice
    lengths = mask.sum(1).tolist()
    oracles = BruteForce.rows(crf, emissions, lengths, allowed)
    leaf = emissions.clone().requires_grad_(True)
    log_z = crf.log_partition(leaf, mask, allowed=allowed)
    for b, oracle in enumerate(oracles):
        assert log_z[b].item() == pytest.approx(oracle.log_z(), abs=1e-3, rel=1e-5)
    log_z[torch.isfinite(log_z)].sum().backward()
    assert torch.isfinite(leaf.grad).all()
    unknown = torch.full(mask.shape, -1)
    if not all(o.scores for o in oracles):
        for call in (
            lambda: crf.decode(emissions, mask, allowed=allowed),
            lambda: crf.marginals(emissions, mask, allowed=allowed),
            lambda: crf.kbest(emissions, mask, 2, allowed=allowed),
            lambda: crf(emissions, mask, unknown, allowed=allowed),
        ):
            with pytest.raises(NoValidPathError):
                call()
        return
    marginals = crf.marginals(emissions, mask, allowed=allowed)
    best, best_score = crf.decode(emissions, mask, allowed=allowed)
    paths, scores = crf.kbest(emissions, mask, 3, allowed=allowed)
    k = crf.num_tags
    for b, (n, oracle) in enumerate(zip(lengths, oracles)):
        expected = torch.from_numpy(oracle.marginals()).float()
        assert torch.allclose(marginals[b, :n], expected, atol=1e-4)
        assert torch.allclose(leaf.grad[b, :n], expected, atol=1e-4)  # d log Z / d emissions
        assert torch.allclose(marginals[b, :n].sum(1), torch.ones(n), atol=1e-5)
        assert best_score[b].item() == pytest.approx(max(oracle.scores.values()), abs=1e-3, rel=1e-5)
        assert oracle.scores[tuple(best[b, :n].tolist())] == pytest.approx(best_score[b].item(), abs=1e-3, rel=1e-5)
        check_kbest_row(oracle, paths[b, :, :n], scores[b], 3)
    # Span probabilities: spans of the best path and random ones, random follow masks.
    spans, follows, expected_probs = [], [], []
    for b, (n, oracle) in enumerate(zip(lengths, oracles)):
        for _ in range(min(n, 3)):
            s = int(torch.randint(n, (1,), generator=gen))
            e = int(torch.randint(s + 1, n + 1, (1,), generator=gen))
            source = (
                best[b, :n].tolist()
                if torch.rand(1, generator=gen) < 0.6
                else torch.randint(k, (n,), generator=gen).tolist()
            )
            follow = (torch.rand(k, generator=gen) < 0.6).tolist()
            spans.append((b, s, e, source[s:e]))
            follows.append(follow)
            expected_probs.append(oracle.span_prob(s, e, source[s:e], follow))
    if spans:
        probs = crf.span_log_probs(emissions, mask, spans, torch.tensor(follows), allowed=allowed).exp()
        assert torch.allclose(probs.double(), torch.tensor(expected_probs, dtype=torch.float64), atol=1e-4)
    # NLL of partially known gold: the best path with tokens hidden at random.
    partial = torch.where((torch.rand(mask.shape, generator=gen) < 0.5) | ~mask, -1, best)
    nll = crf(emissions, mask, partial, allowed=allowed)
    for b, oracle in enumerate(oracles):
        expected = oracle.log_z() - oracle.log_z(fixed=partial[b, : lengths[b]].tolist())
        assert nll[b].item() == pytest.approx(expected, abs=1e-3, rel=1e-5)
    # Random gold: the oracle's NLL, or an error when it is impossible.
    gold = torch.where(mask, torch.randint(k, mask.shape, generator=gen), -1)
    fixed = [oracle.log_z(fixed=gold[b, : lengths[b]].tolist()) for b, oracle in enumerate(oracles)]
    if all(math.isfinite(f) for f in fixed):
        nll = crf(emissions, mask, gold, allowed=allowed)
        assert nll.tolist() == pytest.approx([o.log_z() - f for o, f in zip(oracles, fixed)], abs=1e-3, rel=1e-5)
    else:
        with pytest.raises(NoValidPathError, match="gold"):
            crf(emissions, mask, gold, allowed=allowed)
