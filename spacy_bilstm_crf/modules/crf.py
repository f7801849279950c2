"""A linear-chain conditional random field in PyTorch, with hard constraints.

Batched over padded sequences: the only Python loop is over time steps, and
everything is linear in their number. Scores are taken in float32 (float64
if the emissions or the parameters are float64) whatever the dtype of the
emissions, the forward-backward recursions run in float64 (float32 on MPS)
and matrix products are kept out of autocast, so the module is safe under
float16/bfloat16 autocast; results are float32 (or float64) on the
emissions' device.

Public API: ``forward`` (NLL, with a hand-written backward), ``log_partition``,
``path_score``, ``decode`` (Viterbi), ``kbest`` (exact k-best Viterbi),
``forward_backward``, ``marginals`` and ``span_log_probs`` (entity
confidence); ``fixed_tags_mask`` turns fixed tag ids into an ``allowed`` mask.

The lattice of a row is the set of tag sequences that every constraint
allows: the tag scheme's transitions (``set_constraints``) and, optionally,
per-token masks of allowed tags (``allowed``, (B, T, K) bool). A forbidden
step is impossible, not penalised: its score is ``FORBIDDEN`` (minus
infinity), every sum and maximum runs over the allowed lattice only, and the
gradients are computed by hand so that no ``-inf`` turns into a NaN. No
emission score, however large, makes an ill-formed path win.

Forward-backward conventions, for a row of length L and 0 <= t < L:

- ``log_alpha[b, t, k]``: log-sum-exp of the scores of the prefixes
  ``y_0..y_t`` with ``y_t = k``: the start score, emissions ``0..t`` and the
  transitions between them.
- ``log_beta[b, t, k]``: log-sum-exp of the scores of the suffixes
  ``y_t..y_{L-1}`` with ``y_t = k``, emission ``t`` excluded: transitions
  from ``t`` on, emissions ``t+1..L-1`` and the end score.

So ``log_alpha + log_beta - log_z`` is the log token marginal, and
``log_beta[b, L-1] = end``. Both are ``-inf`` on padding.
"""

from typing import Any, List, Optional, Sequence, Tuple, cast

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

# One pair of errors for both CRFs, defined where torch is not needed.
from ..runtime.numpy_crf import NonFiniteScoresError, NoValidPathError

# The score of a forbidden transition, start, end or tag: impossible, not a
# penalty. Sums over forbidden paths are exactly zero, maxima never pick one.
FORBIDDEN = float("-inf")

# The pairwise marginals are summed over blocks of time steps holding at most
# this many (batch x steps x K x K) entries, to bound the backward's memory.
_PAIRWISE_BLOCK = 1 << 20

# (row, start token, end token exclusive, tag id of each token start..end-1)
Span = Tuple[int, int, int, Sequence[int]]

# Emissions (B, T, K), transitions (K, K), start (K,), end (K,) with FORBIDDEN
# wherever the lattice forbids, and the (B, T) bool mask of real tokens.
Lattice = Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]


def fixed_tags_mask(tags: Tensor, num_tags: int) -> Tensor:
    """(B, T, K) bool allowed-tags mask from (B, T) tags: only ``tags[b, t]``
    where it is >= 0, every tag where it is -1."""
    if tags.numel() and bool(((tags < -1) | (tags >= num_tags)).any()):
        raise ValueError(
            f"Tag ids must be -1 (unknown) or in [0, {num_tags}), got values from "
            f"{int(tags.min())} to {int(tags.max())}."
        )
    one_hot = nn.functional.one_hot(tags.long().clamp(min=0), num_tags).bool()  # (B, T, K)
    return one_hot | (tags < 0).unsqueeze(2)


class ConditionalRandomField(nn.Module):
    """Linear-chain CRF with learned transition, start and end scores.

    Tags are integers ``0 <= tag < num_tags``. ``transitions[i, j]`` scores
    tag ``j`` following tag ``i``. Constraints (see ``set_constraints``) mark
    the transitions, first and last tags that no valid sequence takes; every
    method also takes ``allowed`` (B, T, K) bool, the tags each token may
    take. Inputs: ``emissions`` (B, T, K) scores, ``mask`` (B, T) bool, True
    on real tokens, each row a prefix of True. Rows may be empty.

    Methods that return a distribution or a path raise ``NoValidPathError``
    for a non-empty row whose lattice holds no path; every method raises
    ``NonFiniteScoresError`` if the scores hold NaN or +-inf.
    """

    allowed_transitions: Tensor  # (K, K) bool buffer
    allowed_start: Tensor  # (K,) bool buffer
    allowed_end: Tensor  # (K,) bool buffer

    def __init__(self, num_tags: int) -> None:
        super().__init__()
        if num_tags < 1:
            raise ValueError(f"A CRF needs at least one tag, got num_tags={num_tags}.")
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.zeros(num_tags, num_tags))
        self.start_transitions = nn.Parameter(torch.zeros(num_tags))
        self.end_transitions = nn.Parameter(torch.zeros(num_tags))
        self.register_buffer("allowed_transitions", torch.ones(num_tags, num_tags, dtype=torch.bool))
        self.register_buffer("allowed_start", torch.ones(num_tags, dtype=torch.bool))
        self.register_buffer("allowed_end", torch.ones(num_tags, dtype=torch.bool))

    def set_constraints(self, transitions: Tensor, start: Tensor, end: Tensor) -> None:
        """Set boolean masks of allowed transitions, shapes (K, K), (K,), (K,)."""
        k = self.num_tags
        for name, mask, shape in (
            ("transitions", transitions, (k, k)),
            ("start", start, (k,)),
            ("end", end, (k,)),
        ):
            if tuple(mask.shape) != shape:
                raise ValueError(f"Constraint mask {name!r} has shape {tuple(mask.shape)}, expected {shape}.")
        self.allowed_transitions.copy_(transitions.to(torch.bool))
        self.allowed_start.copy_(start.to(torch.bool))
        self.allowed_end.copy_(end.to(torch.bool))

    # ------------------------------------------------------------------ training

    def forward(self, emissions: Tensor, mask: Tensor, tags: Tensor, *, allowed: Optional[Tensor] = None) -> Tensor:
        """Negative log-likelihood of ``tags`` per sequence, (B,).

        ``tags`` (B, T) long: the gold tag of each token, or -1 where it is
        unknown. Unknown tags are marginalised out: the likelihood is that of
        the set of allowed sequences consistent with the known tags, so the
        NLL is ``log Z(lattice) - log Z(lattice and known tags)``, both by
        forward-backward with a hand-written backward (a single path score
        when every tag is known). 0 for empty rows. Raises
        ``NoValidPathError`` naming the row where the gold tags are impossible
        under the lattice (the NLL would be +inf).
        """
        em, transitions, start, end, mask = self._lattice(emissions, mask, allowed)
        tags = self._check_tags(tags, mask)
        batch_size = em.shape[0]
        if bool(((tags >= 0) | ~mask).all()):
            log_z = _log_partition(em, transitions, start, end, mask)
            gold = _path_score(em, transitions, start, end, mask, tags)
        else:
            # Both partitions in one pass over time: the gold lattice as extra rows.
            gold_em = torch.where(fixed_tags_mask(tags, self.num_tags), em, FORBIDDEN)  # (B, T, K)
            both = _log_partition(torch.cat([em, gold_em]), transitions, start, end, torch.cat([mask, mask]))  # (2B,)
            log_z, gold = both[:batch_size], both[batch_size:]
        if not bool((torch.isfinite(log_z) & torch.isfinite(gold)).all()):
            _raise_if_no_path(log_z, mask)
            rows = _rows(~torch.isfinite(gold))
            raise NoValidPathError(
                f"The gold tags of row(s) {rows} of the batch are impossible under the CRF's "
                "constraints and allowed tags: their likelihood is zero."
            )
        return log_z - gold

    def log_partition(self, emissions: Tensor, mask: Tensor, *, allowed: Optional[Tensor] = None) -> Tensor:
        """log Z, the log-sum-exp of the scores of all allowed sequences, (B,).

        Differentiable (the gradient is the marginals); 0 for empty rows,
        ``-inf`` for rows with no allowed sequence (whose gradient is zero).
        """
        return _log_partition(*self._lattice(emissions, mask, allowed))

    def path_score(self, emissions: Tensor, mask: Tensor, tags: Tensor, *, allowed: Optional[Tensor] = None) -> Tensor:
        """Score of the given, fully known, tag sequences, (B,); ``-inf`` for
        a sequence the lattice forbids. ``score - log_partition`` is its
        log-probability."""
        em, transitions, start, end, mask = self._lattice(emissions, mask, allowed)
        tags = self._check_tags(tags, mask)
        if not bool(((tags >= 0) | ~mask).all()):
            raise ValueError(f"path_score needs every tag, but row(s) {_rows(((tags < 0) & mask).any(1))} hold -1.")
        return _path_score(em, transitions, start, end, mask, tags)

    # ---------------------------------------------------------------- inference

    @torch.no_grad()
    def decode(
        self, emissions: Tensor, mask: Tensor, tags: Optional[Tensor] = None, *, allowed: Optional[Tensor] = None
    ) -> Tuple[Tensor, Tensor]:
        """Viterbi decoding: the best allowed tag sequence per row.

        ``tags`` (B, T), optional, fixes the tag of tokens where it is >= 0
        (a shorthand for ``allowed``; both may be given). Returns
        ``(best_tags, best_scores)`` of shapes (B, T) long and (B,);
        positions past the end of a row repeat its last tag, empty rows get
        tag 0 and score 0.
        """
        em, transitions, start, end, mask = self._lattice(emissions, mask, self._with_fixed(allowed, tags, mask))
        batch_size, length, num_tags = em.shape
        if batch_size == 0 or length == 0:
            return torch.zeros((batch_size, length), dtype=torch.long, device=em.device), em.new_zeros(batch_size)
        steps = em.unbind(1)  # T x (B, K)
        score = start + steps[0]  # (B, K)
        scores, backpointers = [score], []
        for emitted in steps[1:]:
            # (B, K, 1) + (K, K) -> (B, K, K); best previous tag for each tag.
            best_prev_score, best_prev = (score.unsqueeze(2) + transitions).max(dim=1)
            score = best_prev_score.add_(emitted)
            scores.append(score)
            backpointers.append(best_prev)
        # Each row ends at its own last token; past it, the rows hold values of no meaning.
        last = (mask.sum(1) - 1).clamp(min=0)  # (B,)
        final = torch.stack(scores, dim=1)[torch.arange(batch_size, device=em.device), last] + end  # (B, K)
        best_scores, last_tag = final.max(dim=1)  # (B,), (B,)
        best_scores = torch.where(mask[:, 0], best_scores, 0.0)
        _raise_if_no_path(best_scores, mask)
        path = [last_tag]
        if backpointers:
            # Padding steps point to the same tag: past its end a row repeats its last tag.
            identity = torch.arange(num_tags, device=em.device).view(1, 1, num_tags)
            pointers = torch.where(mask[:, 1:].unsqueeze(2), torch.stack(backpointers, dim=1), identity)  # (B, T-1, K)
            for step in reversed(pointers.unbind(1)):
                path.append(step.gather(1, path[-1].unsqueeze(1)).squeeze(1))
        path.reverse()
        best_tags = torch.where(mask[:, :1], torch.stack(path, dim=1), 0)  # (B, T)
        return best_tags, best_scores

    @torch.no_grad()
    def kbest(
        self, emissions: Tensor, mask: Tensor, k: int, *, allowed: Optional[Tensor] = None
    ) -> Tuple[Tensor, Tensor]:
        """The ``k`` best allowed tag sequences per row, exactly.

        Returns ``(paths, scores)``, (B, k, T) long and (B, k), best first;
        ``scores - log_partition`` are their log-probabilities. A row with
        fewer than ``k`` allowed sequences is padded with score ``-inf`` and
        paths of -1. Past a row's end a path repeats its last tag; an empty
        row has one (empty) path of score 0. Each step keeps, for each tag,
        the ``k`` best prefixes ending in it: (B, K, k) scores.
        """
        if k < 1:
            raise ValueError(f"k-best decoding needs k >= 1, got k={k}.")
        em, transitions, start, end, mask = self._lattice(emissions, mask, allowed)
        batch_size, length, num_tags = em.shape
        device = em.device
        if batch_size == 0 or length == 0:
            scores = em.new_full((batch_size, k), FORBIDDEN)
            scores[:, 0] = 0.0
            paths = torch.full((batch_size, k, length), -1, dtype=torch.long, device=device)
            return paths, scores
        # score[b, j, r]: the r-th best score of a prefix ending in tag j.
        score = em.new_full((batch_size, num_tags, k), FORBIDDEN)
        score[:, :, 0] = start + em[:, 0]
        incoming = transitions.t().reshape(1, num_tags, num_tags, 1)  # (1, K next, K prev, 1)
        # Flat index ``tag * k + rank`` of each prefix; kept as is on padding.
        keep = torch.arange(num_tags * k, device=device).view(1, num_tags, k).expand(batch_size, num_tags, k)
        backpointers = []
        for t in range(1, length):
            # (B, 1, K prev, k) + (1, K next, K prev, 1) -> (B, K next, K prev * k)
            candidates = (score.unsqueeze(1) + incoming).reshape(batch_size, num_tags, num_tags * k)
            best, best_prev = candidates.topk(k, dim=2)  # (B, K, k), flat previous (tag, rank)
            step_mask = mask[:, t, None, None]  # (B, 1, 1)
            score = torch.where(step_mask, best + em[:, t].unsqueeze(2), score)
            backpointers.append(torch.where(step_mask, best_prev, keep).reshape(batch_size, num_tags * k))
        final = (score + end.unsqueeze(1)).reshape(batch_size, num_tags * k)
        scores, cursor = final.topk(k, dim=1)  # (B, k), (B, k)
        nonempty = mask[:, 0]
        scores[:, 0] = torch.where(nonempty, scores[:, 0], 0.0)
        scores[:, 1:] = torch.where(nonempty.unsqueeze(1), scores[:, 1:], FORBIDDEN)
        _raise_if_no_path(scores[:, 0], mask)
        path = [cursor // k]
        for pointers in reversed(backpointers):
            cursor = pointers.gather(1, cursor)
            path.append(cursor // k)
        path.reverse()
        paths = torch.stack(path, dim=2)  # (B, k, T)
        paths = torch.where(nonempty.view(-1, 1, 1), paths, 0)
        paths = torch.where(torch.isfinite(scores).unsqueeze(2), paths, -1)
        return paths, scores

    # ---------------------------------------------------------------- marginals

    @torch.no_grad()
    def forward_backward(
        self, emissions: Tensor, mask: Tensor, *, allowed: Optional[Tensor] = None
    ) -> Tuple[Tensor, Tensor, Tensor]:
        """``(log_alpha, log_beta, log_z)``, (B, T, K), (B, T, K), (B,).

        See the module docstring for the conventions; both are ``-inf`` on
        padding, ``log_z`` is 0 for empty rows and ``-inf`` for rows with no
        allowed path. No gradient flows through them.
        """
        em, transitions, start, end, mask = self._lattice(emissions, mask, allowed)
        log_alpha, log_beta, log_z = _forward_backward(em, transitions, start, end, mask)
        return log_alpha.to(em.dtype), log_beta.to(em.dtype), log_z.to(em.dtype)

    @torch.no_grad()
    def marginals(self, emissions: Tensor, mask: Tensor, *, allowed: Optional[Tensor] = None) -> Tensor:
        """Token marginals ``p(y_t = k)`` under the lattice, (B, T, K): each
        real token's row sums to 1, padding is 0."""
        em, transitions, start, end, mask = self._lattice(emissions, mask, allowed)
        log_alpha, log_beta, log_z = _forward_backward(em, transitions, start, end, mask)
        _raise_if_no_path(log_z, mask)
        return (log_alpha + log_beta - log_z[:, None, None]).exp().to(em.dtype)

    @torch.no_grad()
    def span_log_probs(
        self,
        emissions: Tensor,
        mask: Tensor,
        spans: Sequence[Span],
        follow: Optional[Tensor] = None,
        *,
        allowed: Optional[Tensor] = None,
        alpha_beta: Optional[Tuple[Tensor, Tensor, Tensor]] = None,
    ) -> Tensor:
        """Log-probability of each span, (N,): ``log p(y_s..y_{e-1} = tags, y_e in follow)``.

        ``spans[n] = (b, s, e, tags)``: row b, tokens ``s..e-1`` (``0 <= s <
        e <= length_b``) and their tag ids. ``follow`` (N, K) bool: the tags
        allowed at token e, which says where the entity ends (in BIO, every
        tag but ``I-LABEL``); ignored when e is the row's end, None allows
        every tag. Computed from alpha and beta in O(e - s) per span; pass
        ``alpha_beta = forward_backward(...)`` to share one pass among calls.

        Why not the product of the token marginals: the tags of neighbouring
        tokens are dependent, and most so under constraints. If ``B-X L-X``
        and ``U-Y U-Y`` each have probability 0.5, the marginals of ``B-X``
        and ``L-X`` are 0.5 each and their product 0.25, but the span's
        probability is 0.5; the product also ignores how the span ends.
        """
        em, transitions, start, end, mask = self._lattice(emissions, mask, allowed)
        batch_size, length, num_tags = em.shape
        count = len(spans)
        if follow is not None and tuple(follow.shape) != (count, num_tags):
            raise ValueError(f"follow has shape {tuple(follow.shape)}, expected ({count}, {num_tags}).")
        if count == 0:
            return em.new_zeros(0)
        dtype = em.dtype
        if alpha_beta is None:
            log_alpha, log_beta, log_z = _forward_backward(em, transitions, start, end, mask)
        else:
            log_alpha, log_beta, log_z = _to_work_dtype(*(x.to(em.device) for x in alpha_beta))
            if log_alpha.shape != em.shape or log_beta.shape != em.shape or log_z.shape != (batch_size,):
                raise ValueError("alpha_beta does not match the shapes of the emissions: pass forward_backward(...).")
        em, transitions = _to_work_dtype(em, transitions)
        lengths: List[int] = mask.sum(1).tolist()
        width = max(1, *(span[2] - span[1] for span in spans))
        columns: Tuple[List[int], List[int], List[int]] = ([], [], [])
        padded_tags = []
        for i, (b, s, e, tags) in enumerate(spans):
            if not (0 <= b < batch_size and 0 <= s < e <= lengths[b]):
                raise ValueError(f"Span {i} {(b, s, e)} is not within a row of the batch (lengths {lengths}).")
            if len(tags) != e - s or not all(0 <= tag < num_tags for tag in tags):
                raise ValueError(f"Span {i} needs {e - s} tag ids in [0, {num_tags}), got {list(tags)}.")
            for column, value in zip(columns, (b, s, e)):
                column.append(value)
            padded_tags.append(list(tags) + [0] * (width - len(tags)))
        device = em.device
        row, first, stop = (torch.tensor(column, device=device) for column in columns)  # (N,) each
        span_tags = torch.tensor(padded_tags, dtype=torch.long, device=device)  # (N, W)
        used = torch.zeros(batch_size, dtype=torch.bool, device=device)
        _raise_if_no_path(torch.where(used.index_fill_(0, row, True), log_z, 0.0), mask)
        offsets = torch.arange(width, device=device)
        inside = offsets < (stop - first).unsqueeze(1)  # (N, W)
        positions = (first.unsqueeze(1) + offsets).clamp(max=length - 1)  # (N, W)
        emitted = em[row.unsqueeze(1), positions, span_tags]  # (N, W)
        stepped = transitions[span_tags[:, :-1], span_tags[:, 1:]]  # (N, W - 1)
        # Everything up to the first token, then the span's own steps.
        score = log_alpha[row, first, span_tags[:, 0]]  # (N,)
        score = score + torch.where(inside[:, 1:], emitted[:, 1:] + stepped, 0.0).sum(1)
        last_tag = span_tags.gather(1, (stop - first - 1).unsqueeze(1)).squeeze(1)  # (N,)
        # At the row's end: the end score, which is log_beta of the last token.
        closed = log_beta[row, stop - 1, last_tag]  # (N,)
        # Otherwise: the log-sum over the tags allowed at token e and all that follows.
        after = stop.clamp(max=length - 1)  # (N,)
        following = transitions[last_tag] + em[row, after] + log_beta[row, after]  # (N, K)
        if follow is not None:
            following = torch.where(follow.to(device=device, dtype=torch.bool), following, FORBIDDEN)
        tail = torch.where(stop == mask.sum(1)[row], closed, torch.logsumexp(following, dim=1))
        return (score + tail - log_z[row]).clamp(max=0.0).to(dtype)

    # ------------------------------------------------------------------ helpers

    def _lattice(self, emissions: Tensor, mask: Tensor, allowed: Optional[Tensor]) -> Lattice:
        """Check the inputs; the scores in the compute dtype, FORBIDDEN where the lattice forbids."""
        k = self.num_tags
        if emissions.dim() != 3 or emissions.shape[2] != k or not emissions.is_floating_point():
            raise ValueError(f"CRF over {k} tags needs float emissions (B, T, {k}), got {tuple(emissions.shape)}.")
        if tuple(mask.shape) != tuple(emissions.shape[:2]):
            raise ValueError(f"mask has shape {tuple(mask.shape)}, expected {tuple(emissions.shape[:2])}.")
        if allowed is not None and tuple(allowed.shape) != tuple(emissions.shape):
            raise ValueError(f"allowed has shape {tuple(allowed.shape)}, expected {tuple(emissions.shape)}.")
        device = emissions.device
        mask = mask.to(device=device, dtype=torch.bool)
        params = (self.transitions, self.start_transitions, self.end_transitions)
        # One check (one device sync) for every input; the diagnosis only on failure.
        prefix = torch.arange(mask.shape[1], device=device) < mask.sum(1, keepdim=True)  # (B, T)
        ok = torch.isfinite(emissions).all() & (prefix == mask).all()
        for param in params:
            ok = ok & torch.isfinite(param).all().to(device)
        if not bool(ok):
            nonfinite = ~torch.isfinite(emissions).flatten(1).all(1)  # (B,)
            if bool(nonfinite.any()):
                raise NonFiniteScoresError(
                    f"The CRF's emission scores hold NaN or infinite values in row(s) {_rows(nonfinite)} "
                    f"of the batch of {emissions.shape[0]}: the model has probably diverged."
                )
            if not all(bool(torch.isfinite(p).all()) for p in params):
                raise NonFiniteScoresError("The CRF's transition, start or end scores hold NaN or infinite values.")
            raise ValueError(f"mask row(s) {_rows((prefix != mask).any(1))} are not a prefix of True values.")
        dtype = torch.promote_types(torch.promote_types(emissions.dtype, self.transitions.dtype), torch.float32)
        em = emissions.to(dtype)
        if allowed is not None:
            em = torch.where(allowed.to(device=device, dtype=torch.bool), em, FORBIDDEN)
        transitions, start, end = (
            torch.where(allowed.to(device), param.to(device=device, dtype=dtype), FORBIDDEN)
            for allowed, param in zip((self.allowed_transitions, self.allowed_start, self.allowed_end), params)
        )
        return em, transitions, start, end, mask

    def _check_tags(self, tags: Tensor, mask: Tensor) -> Tensor:
        """Gold tags as long on the mask's device; raise if a shape or an id is wrong."""
        if tuple(tags.shape) != tuple(mask.shape):
            raise ValueError(f"tags have shape {tuple(tags.shape)}, expected {tuple(mask.shape)}.")
        tags = tags.to(device=mask.device, dtype=torch.long)
        bad = mask & ((tags < -1) | (tags >= self.num_tags))
        if bool(bad.any()):
            raise ValueError(f"Tag ids must be -1 (unknown) or in [0, {self.num_tags}): row(s) {_rows(bad.any(1))}.")
        return torch.where(mask, tags, -1)  # padding may hold anything

    def _with_fixed(self, allowed: Optional[Tensor], tags: Optional[Tensor], mask: Tensor) -> Optional[Tensor]:
        """``allowed`` further restricted to the tags fixed by ``tags`` (>= 0) on real tokens."""
        if tags is None:
            return allowed
        fixed = fixed_tags_mask(self._check_tags(tags, mask.to(device=tags.device, dtype=torch.bool)), self.num_tags)
        return fixed if allowed is None else fixed.to(allowed.device) & allowed.bool()


class _LogPartition(torch.autograd.Function):
    """log Z per row by the alpha recursion, with no autograd graph; the
    backward runs the beta recursion and returns the exact gradient: token
    marginals for the emissions, summed pairwise marginals for the
    transitions, first and last token marginals for start and end."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, emissions: Tensor, transitions: Tensor, start: Tensor, end: Tensor, mask: Tensor
    ) -> Tensor:
        # emissions (B, T, K), transitions (K, K), start/end (K,) with -inf where forbidden; mask (B, T).
        ctx.empty = emissions.shape[0] == 0 or emissions.shape[1] == 0
        if ctx.empty:
            ctx.save_for_backward(emissions, transitions, start, end)
            return emissions.new_zeros(emissions.shape[0])
        em, trans, start_w, end_w = _to_work_dtype(emissions, transitions, start, end)
        log_alpha, ctx.alpha_fast = _alpha_recursion(em, trans, start_w, mask)  # (B, T, K)
        log_z = _log_z(log_alpha, end_w, mask)  # (B,)
        ctx.save_for_backward(em, trans, end_w, mask, log_alpha, log_z)
        return log_z.to(emissions.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> Tuple[Optional[Tensor], ...]:  # type: ignore[override]
        if ctx.empty:
            return tuple(torch.zeros_like(x) for x in ctx.saved_tensors) + (None,)
        emissions, transitions, end, mask, log_alpha, log_z = ctx.saved_tensors
        batch_size = emissions.shape[0]
        log_beta, _ = _beta_recursion(emissions, transitions, end, mask)  # (B, T, K)
        # Rows without an allowed path (log Z = -inf) get no gradient, not NaN.
        has_path = torch.isfinite(log_z)  # (B,)
        weight = torch.where(has_path, grad.to(log_z.dtype), 0.0)  # (B,)
        log_z = torch.where(has_path, log_z, 0.0)
        # Token marginals, 0 on padding: exp(-inf), never exp(-inf - -inf).
        log_unary = torch.where(mask.unsqueeze(2), log_alpha + log_beta - log_z[:, None, None], FORBIDDEN)
        d_emissions = log_unary.exp_().mul_(weight[:, None, None])  # (B, T, K)
        d_start = d_emissions[:, 0].sum(0)  # (K,)
        last = (mask.sum(1) - 1).clamp(min=0)  # (B,)
        d_end = d_emissions[torch.arange(batch_size, device=last.device), last].sum(0)  # (K,)
        pairwise = _pairwise_fast if ctx.alpha_fast else _pairwise_exact
        d_transitions = pairwise(
            emissions, transitions, mask & has_path.unsqueeze(1), log_alpha, log_beta, log_z, weight
        )
        dtype = grad.dtype
        return d_emissions.to(dtype), d_transitions.to(dtype), d_start.to(dtype), d_end.to(dtype), None


def _log_partition(emissions: Tensor, transitions: Tensor, start: Tensor, end: Tensor, mask: Tensor) -> Tensor:
    return cast(Tensor, _LogPartition.apply(emissions, transitions, start, end, mask))


# The recursions run in float64 (float32 where the device has no float64) in
# scaled probability space, as in HMMs: each step is a matrix product with
# exp(transitions - c) and a product with exp(emissions - shift), rescaled to
# a maximum of 1, the logs of the scales summed after the loop. Four small ops
# a step instead of a logsumexp over (B, K, K); about three times faster on a
# CPU. It is exact unless a value underflows: a step's output is at least
# exp(-(spread of its input + spread of the transitions + spread of the
# emissions)), each spread over the finite scores of one token, so the sum of
# the spreads is checked after the loop (one sync) and, if it is too wide for
# the dtype's exp, that direction is recomputed by the log-space recursion.
_SAFE_SPREAD = {torch.float64: 600.0, torch.float32: 60.0}


def _work_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


def _to_work_dtype(*scores: Tensor) -> Tuple[Tensor, ...]:
    return tuple(x.to(_work_dtype(x.device)) for x in scores)


def _spread(scores: Tensor, mask: Tensor) -> Tensor:
    """Largest spread (max - min) of the finite scores of one real token, scalar; -inf if none.

    scores (B, T, K) with no NaN or +inf, mask (B, T)."""
    if scores.numel() == 0 or mask.numel() == 0:
        return scores.new_tensor(FORBIDDEN)
    high = torch.where(mask, scores.amax(2), FORBIDDEN)  # (B, T)
    low = scores.masked_fill(scores == FORBIDDEN, -FORBIDDEN).amin(2)  # (B, T)
    return (high - low).amax()


def _exp_transitions(transitions: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """``(exp(transitions - c), c, spread)``: c is the largest finite transition score."""
    finite = torch.isfinite(transitions)
    high = torch.where(finite, transitions, FORBIDDEN).amax()
    low = torch.where(finite, transitions, -FORBIDDEN).amin()
    c = torch.where(torch.isfinite(high), high, 0.0)
    return (transitions - c).exp(), c, torch.where(torch.isfinite(high), high - low, 0.0)


def _exp_scores(scores: Tensor, dim: int) -> Tuple[Tensor, Tensor]:
    """``(exp(scores - shift), shift)``, shift the maximum along ``dim`` (lowest float if all -inf)."""
    shift = scores.amax(dim, keepdim=True).clamp_(min=torch.finfo(scores.dtype).min)
    return (scores - shift).exp_(), shift


def _from_scaled(scaled: List[Tensor], log_scales: Tensor) -> Tensor:
    """log of ``scaled`` (T x (B, K)) plus cumulated log scales (B, T, 1); rows
    that died (no allowed prefix) hold 0/0 = NaN in ``scaled``: -inf."""
    log_values = torch.stack(scaled, dim=1).log_().add_(log_scales.cumsum(1))
    return log_values.nan_to_num_(nan=FORBIDDEN, neginf=FORBIDDEN)


def _alpha_recursion(emissions: Tensor, transitions: Tensor, start: Tensor, mask: Tensor) -> Tuple[Tensor, bool]:
    """log alpha (B, T, K), unmasked: past a row's end it holds values of no
    meaning (never NaN); and whether the fast recursion was exact (else the
    log-space one ran)."""
    with _no_autocast(emissions):
        exp_transitions, c, spread = _exp_transitions(transitions)
        probs, shifts = _exp_scores(emissions, 2)  # (B, T, K) <= 1, (B, T, 1)
        scaled, shift = _exp_scores(start + emissions[:, 0], 1)  # (B, K) <= 1, (B, 1)
        alphas, norms = [scaled], [shift.unsqueeze(1)]
        for emitted in probs.unbind(1)[1:]:
            # (B, K prev) @ (K prev, K) -> (B, K): sum out the previous tag; rescale to a maximum of 1.
            scaled = torch.mm(scaled, exp_transitions).mul_(emitted)
            norm = scaled.amax(1, keepdim=True)  # (B, 1)
            scaled = scaled.div_(norm)
            alphas.append(scaled)
            norms.append(norm.unsqueeze(1))
        # log alpha[t] = log scaled[t] + log norm[0..t] summed (+ c and the emission shift for t >= 1).
        log_scales = torch.cat(norms, dim=1)  # (B, T, 1)
        log_scales[:, 1:] = log_scales[:, 1:].log() + shifts[:, 1:] + c
        log_alpha = _from_scaled(alphas, log_scales)
    # The spread of the first step's input is that of its true scores, not of the rescaled ones.
    first = start + emissions[:, :1]  # (B, 1, K)
    inputs = torch.maximum(_spread(first, mask[:, 1:2]), _spread(log_alpha[:, :-1], mask[:, 1:]))
    if float(inputs + _spread(emissions[:, 1:], mask[:, 1:]) + spread) < _SAFE_SPREAD[emissions.dtype]:
        return log_alpha, True
    alpha = start + emissions[:, 0]
    alphas = [alpha]
    for emitted in emissions.unbind(1)[1:]:
        # (B, K, 1) + (K, K) -> (B, K, K), sum out the previous tag.
        alpha = torch.logsumexp(alpha.unsqueeze(2) + transitions, dim=1) + emitted
        alphas.append(alpha)
    return torch.stack(alphas, dim=1), False


def _beta_recursion(emissions: Tensor, transitions: Tensor, end: Tensor, mask: Tensor) -> Tuple[Tensor, bool]:
    """log beta (B, T, K), unmasked: past a row's end it holds values of no
    meaning (never NaN); and whether the fast recursion was exact (else the
    log-space one ran). The rows are right-aligned for the recursion, so that
    every row starts from ``end`` at the last step, with no mask per step."""
    batch_size, length, num_tags = emissions.shape
    positions = torch.arange(length, device=mask.device)
    offset = length - mask.sum(1, keepdim=True)  # (B, 1) padding steps of each row
    right = (positions - offset).clamp(min=0).unsqueeze(2).expand(-1, -1, num_tags)  # (B, T, K)
    aligned = emissions.gather(1, right)  # (B, T, K): row b's last token at step T - 1
    # The recursion yields beta[T-1], ..., beta[0] of the aligned rows: index T-1 - t - offset is token t.
    back = (length - 1 - positions - offset).clamp(min=0).unsqueeze(2).expand(-1, -1, num_tags)  # (B, T, K)
    with _no_autocast(emissions):
        exp_transitions, c, spread = _exp_transitions(transitions)
        probs, shifts = _exp_scores(aligned, 2)  # (B, T, K) <= 1, (B, T, 1)
        scaled, shift = _exp_scores(end.expand(batch_size, -1), 1)  # (B, K), (B, 1)
        betas, norms = [scaled], [shift.unsqueeze(1)]
        exp_transitions = exp_transitions.t().contiguous()  # (K next, K)
        for emitted in probs.unbind(1)[:0:-1]:
            # (B, K next) @ (K next, K) -> (B, K): sum out the next tag; rescale to a maximum of 1.
            scaled = torch.mm(scaled * emitted, exp_transitions)
            norm = scaled.amax(1, keepdim=True)  # (B, 1)
            scaled = scaled.div_(norm)
            betas.append(scaled)
            norms.append(norm.unsqueeze(1))
        log_scales = torch.cat(norms, dim=1)  # (B, T, 1), from the last step back
        log_scales[:, 1:] = log_scales[:, 1:].log() + shifts[:, 1:].flip(1) + c
        log_beta = _from_scaled(betas, log_scales).gather(1, back)  # (B, T, K), left-aligned again
    # The spread of the last step's input is that of the true end scores, not of the rescaled ones.
    last = end.expand(batch_size, 1, -1)  # (B, 1, K)
    inputs = torch.maximum(_spread(last, mask[:, 1:2]), _spread(log_beta[:, 1:], mask[:, 1:]))
    if float(inputs + _spread(emissions[:, 1:], mask[:, 1:]) + spread) < _SAFE_SPREAD[emissions.dtype]:
        return log_beta, True
    beta = end.expand(batch_size, -1)
    betas = [beta]
    for emitted in aligned.unbind(1)[:0:-1]:
        # (K, K) + (B, 1, K) -> (B, K, K), sum out the next tag.
        beta = torch.logsumexp(transitions + (emitted + beta).unsqueeze(1), dim=2)
        betas.append(beta)
    return torch.stack(betas, dim=1).gather(1, back), False


def _pairwise_fast(
    emissions: Tensor,
    transitions: Tensor,
    mask: Tensor,
    log_alpha: Tensor,
    log_beta: Tensor,
    log_z: Tensor,
    weight: Tensor,
) -> Tensor:
    """Pairwise marginals summed over steps and rows (weighted), (K, K), as one
    matrix product: p(y_{t-1} = i, y_t = j) = a[t, i] * exp(transitions[i, j] - c) * w[t, j]
    with a = exp(alpha[t-1] - shift) <= 1 and w = p(y_t = j) / (a @ exp(transitions - c))[j],
    bounded as the fast alpha recursion was exact. ``mask``: real tokens of rows with a path."""
    num_tags = emissions.shape[2]
    with _no_autocast(emissions):
        exp_transitions, c, _ = _exp_transitions(transitions)
        previous = log_alpha[:, :-1]  # (B, T-1, K)
        shift = previous.amax(2, keepdim=True).clamp_(min=torch.finfo(previous.dtype).min)  # (B, T-1, 1)
        outgoing = (previous - shift).exp_()  # (B, T-1, K)
        # Tags reachable at a real step t: a[t - 1] @ exp(transitions - c) > 0 there.
        keep = mask[:, 1:].unsqueeze(2) & torch.isfinite(log_alpha[:, 1:])  # (B, T-1, K)
        log_incoming = emissions[:, 1:] + log_beta[:, 1:] + (shift + c - log_z[:, None, None])
        incoming = torch.where(keep, log_incoming, FORBIDDEN).exp_().mul_(weight[:, None, None])  # (B, T-1, K)
        # (K, N) @ (N, K), N = B (T-1): sum over rows and steps.
        summed = outgoing.reshape(-1, num_tags).t() @ incoming.reshape(-1, num_tags)
        return torch.where(exp_transitions > 0, summed * exp_transitions, 0.0)


def _pairwise_exact(
    emissions: Tensor,
    transitions: Tensor,
    mask: Tensor,
    log_alpha: Tensor,
    log_beta: Tensor,
    log_z: Tensor,
    weight: Tensor,
) -> Tensor:
    """As ``_pairwise_fast``, in log space over blocks of steps: (B, S, K, K)."""
    batch_size, length, num_tags = emissions.shape
    # log p(y_{t-1} = i, y_t = j) = alpha[t-1, i] + transitions[i, j] + emissions[t, j] + beta[t, j] - log Z.
    incoming = torch.where(
        mask[:, 1:].unsqueeze(2), emissions[:, 1:] + log_beta[:, 1:] - log_z[:, None, None], FORBIDDEN
    )  # (B, T-1, K)
    outgoing = log_alpha[:, :-1]  # (B, T-1, K)
    summed = torch.zeros_like(transitions)
    block = max(1, _PAIRWISE_BLOCK // (batch_size * num_tags * num_tags))
    for t in range(0, length - 1, block):
        # (B, S, K, 1) + (B, S, 1, K) + (K, K) -> (B, S, K, K)
        pairwise = outgoing[:, t : t + block].unsqueeze(3) + incoming[:, t : t + block].unsqueeze(2)
        pairwise = pairwise.add_(transitions).exp_().sum(1)  # (B, K, K)
        summed += (pairwise * weight[:, None, None]).sum(0)
    return summed


def _no_autocast(like: Tensor) -> torch.autocast:
    """Keep the matrix products in the work dtype under autocast."""
    return torch.autocast(device_type=like.device.type, enabled=False)


def _log_z(log_alpha: Tensor, end: Tensor, mask: Tensor) -> Tensor:
    """log Z from the alpha of each row's last token: (B,), 0 for empty rows."""
    last = (mask.sum(1) - 1).clamp(min=0)  # (B,)
    final = log_alpha[torch.arange(log_alpha.shape[0], device=last.device), last]  # (B, K)
    return torch.where(mask[:, 0], torch.logsumexp(final + end, dim=1), 0.0)


def _forward_backward(
    emissions: Tensor, transitions: Tensor, start: Tensor, end: Tensor, mask: Tensor
) -> Tuple[Tensor, Tensor, Tensor]:
    """``(log_alpha, log_beta, log_z)`` in the work dtype, -inf on padding."""
    emissions, transitions, start, end = _to_work_dtype(emissions, transitions, start, end)
    batch_size, length, _ = emissions.shape
    if batch_size == 0 or length == 0:
        padding = torch.full_like(emissions, FORBIDDEN)
        return padding, padding.clone(), emissions.new_zeros(batch_size)
    log_alpha, _ = _alpha_recursion(emissions, transitions, start, mask)
    log_z = _log_z(log_alpha, end, mask)
    log_beta, _ = _beta_recursion(emissions, transitions, end, mask)
    padding = ~mask.unsqueeze(2)  # (B, T, 1)
    return log_alpha.masked_fill(padding, FORBIDDEN), log_beta.masked_fill(padding, FORBIDDEN), log_z


def _path_score(
    emissions: Tensor, transitions: Tensor, start: Tensor, end: Tensor, mask: Tensor, tags: Tensor
) -> Tensor:
    """Score of fully known paths, (B,): -inf where they take a forbidden step."""
    batch_size, length, _ = emissions.shape
    if length == 0:
        return emissions.new_zeros(batch_size)
    tags = tags.clamp(min=0)  # (B, T); padding may hold -1
    emitted = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)  # (B, T)
    # torch.where, not a product with the mask: padding may score -inf.
    score = torch.where(mask, emitted, 0.0).sum(dim=1)
    score = score + torch.where(mask[:, 1:], transitions[tags[:, :-1], tags[:, 1:]], 0.0).sum(dim=1)
    last = (mask.sum(dim=1) - 1).clamp(min=0)  # (B,)
    last_tags = tags.gather(1, last.unsqueeze(1)).squeeze(1)  # (B,)
    score = score + start[tags[:, 0]] + end[last_tags]
    return torch.where(mask[:, 0], score, 0.0)


def _rows(flags: Tensor) -> List[int]:
    """Indices of the True entries of a (B,) bool tensor."""
    return cast(List[int], flags.nonzero().flatten().tolist())


def _raise_if_no_path(log_scores: Tensor, mask: Tensor) -> None:
    """Raise NoValidPathError for the non-empty rows whose score is -inf."""
    if mask.shape[1] == 0:
        return
    impossible = ~torch.isfinite(log_scores) & mask[:, 0]  # (B,)
    if bool(impossible.any()):
        raise NoValidPathError(
            f"Row(s) {_rows(impossible)} of the batch have no tag sequence that the CRF's constraints "
            "and allowed tags permit."
        )
