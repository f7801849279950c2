"""The tests' brute-force CRF oracle: every tag sequence of one doc that the
lattice allows, with its score, by enumeration in float64.

It reads the scores and constraints straight from the torch module
(``modules/crf.py``), or from the module inside a Thinc CRF layer, and shares
no code with the recursions it checks.
"""

import math
from functools import cached_property
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy
import pytest
import torch

from spacy_bilstm_crf.layers.lazy_torch import torch_module
from spacy_bilstm_crf.tag_scheme import tags_to_spans

Span = Tuple[int, int, str]


def _numpy(array: Any, dtype: Any) -> numpy.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    return numpy.asarray(array, dtype=dtype)


class BruteForce:
    """Every allowed path of one doc: ``paths`` (P, T) in ``itertools.product``
    order and their scores ``totals`` (P,).

    ``crf``: a ``ConditionalRandomField`` or a built Thinc CRF layer.
    ``emissions``: (T, K) scores; ``allowed``: optional (T, K) bool mask of the
    tags each token may take.
    """

    def __init__(self, crf: Any, emissions: Any, allowed: Any = None) -> None:
        module = crf if isinstance(crf, torch.nn.Module) else torch_module(crf)
        x = _numpy(emissions, numpy.float64)  # (T, K)
        length, num_tags = x.shape
        self.length, self.num_tags = length, num_tags
        if length == 0:  # one empty path, score 0 (no start or end score)
            self.paths = numpy.zeros((1, 0), dtype=numpy.int64)
            self.totals = numpy.zeros(1)
            return
        trans, start, end = (
            _numpy(p, numpy.float64) for p in (module.transitions, module.start_transitions, module.end_transitions)
        )
        ok_trans, ok_start, ok_end = (
            _numpy(m, bool) for m in (module.allowed_transitions, module.allowed_start, module.allowed_end)
        )
        every = numpy.arange(num_tags**length)
        paths = numpy.stack(numpy.unravel_index(every, (num_tags,) * length), axis=1)  # (K**T, T)
        tokens = numpy.arange(length)
        valid = ok_start[paths[:, 0]] & ok_end[paths[:, -1]] & ok_trans[paths[:, :-1], paths[:, 1:]].all(axis=1)
        if allowed is not None:
            valid &= _numpy(allowed, bool)[tokens, paths].all(axis=1)
        paths = paths[valid]
        self.paths = paths
        self.totals = (
            x[tokens, paths].sum(axis=1)
            + trans[paths[:, :-1], paths[:, 1:]].sum(axis=1)
            + start[paths[:, 0]]
            + end[paths[:, -1]]
        )

    @classmethod
    def rows(cls, crf: Any, emissions: Any, lengths: Sequence[int], allowed: Any = None) -> List["BruteForce"]:
        """One oracle per row of a padded batch: (B, T, K) emissions, optional (B, T, K) allowed tags."""
        return [cls(crf, emissions[b, :n], None if allowed is None else allowed[b, :n]) for b, n in enumerate(lengths)]

    @cached_property
    def scores(self) -> Dict[Tuple[int, ...], float]:
        """Each allowed path (a tuple of tag ids) and its score."""
        return {tuple(path): float(total) for path, total in zip(self.paths.tolist(), self.totals)}

    def log_z(self, fixed: Optional[Sequence[int]] = None) -> float:
        """log of the sum of exp(score) over the paths; with ``fixed`` (a tag or
        -1 per token) over the paths that agree with it. -inf for none."""
        totals = self.totals
        if fixed is not None:
            known = numpy.asarray(fixed) >= 0
            totals = totals[(self.paths[:, known] == numpy.asarray(fixed)[known]).all(axis=1)]
        if not len(totals):
            return -math.inf
        top = totals.max()
        return float(top + numpy.log(numpy.exp(totals - top).sum()))

    def probabilities(self, temperature: float = 1.0) -> numpy.ndarray:
        """(P,) the probability of each path, every score divided by ``temperature``."""
        weights = numpy.exp((self.totals - self.totals.max()) / temperature)
        return weights / weights.sum()

    def best(self) -> List[int]:
        """The highest-scoring path (the first of a tie)."""
        return self.paths[int(numpy.argmax(self.totals))].tolist()

    def top(self, k: int) -> List[float]:
        """The ``k`` highest scores, best first."""
        return sorted(self.totals.tolist(), reverse=True)[:k]

    def ranked(self, k: int, temperature: float = 1.0) -> Tuple[numpy.ndarray, numpy.ndarray]:
        """The ``k`` most probable paths (ties in path order) and their probabilities."""
        probs = self.probabilities(temperature)
        order = numpy.argsort(-probs, kind="stable")[:k]
        return self.paths[order], probs[order]

    def marginals(self, temperature: float = 1.0) -> numpy.ndarray:
        """(T, K) the probability of each tag at each token."""
        probs = self.probabilities(temperature)
        out = numpy.zeros((self.length, self.num_tags))
        for token in range(self.length):
            numpy.add.at(out[token], self.paths[:, token], probs)
        return out

    def span_prob(self, start: int, end: int, tags: Sequence[int], follow: Sequence[bool]) -> float:
        """P(tokens start..end carry ``tags`` and the next tag, if any, is one ``follow`` allows)."""
        inside = (self.paths[:, start:end] == numpy.asarray(list(tags), dtype=numpy.int64)).all(axis=1)
        if end < self.length:
            inside &= numpy.asarray(follow, dtype=bool)[self.paths[:, end]]
        return float(self.probabilities()[inside].sum())

    def entity_probs(self, tags: Sequence[str], scheme: str, temperature: float = 1.0) -> Dict[Span, float]:
        """The probability of every entity (start, end, label) that some path has."""
        out: Dict[Span, float] = {}
        for path, p in zip(self.paths.tolist(), self.probabilities(temperature)):
            for span in tags_to_spans([tags[i] for i in path], scheme):
                out[span] = out.get(span, 0.0) + float(p)
        return out


def check_kbest_row(oracle: BruteForce, paths: torch.Tensor, scores: torch.Tensor, k: int) -> None:
    """Scores equal the oracle's top k; each path is allowed, distinct and scores what it says."""
    top = oracle.top(k)
    expected = top + [-math.inf] * (k - len(top))
    assert scores.tolist() == pytest.approx(expected, abs=1e-4, rel=1e-6)
    assert scores.tolist() == sorted(scores.tolist(), reverse=True)
    valid = [tuple(p) for p, s in zip(paths.tolist(), scores.tolist()) if s > -math.inf]
    assert len(set(valid)) == len(valid) == len(top)
    for path, score in zip(valid, scores.tolist()):
        assert oracle.scores[path] == pytest.approx(score, abs=1e-4, rel=1e-6)
    for path, score in zip(paths.tolist(), scores.tolist()):
        if score == -math.inf:
            assert set(path) <= {-1}
