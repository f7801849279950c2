"""A linear-chain conditional random field in PyTorch.

Batched over padded sequences: the only Python loop is over time steps.
Scores are computed in float32 whatever the dtype of the emissions, so the
module is safe under float16/bfloat16 autocast.
"""

from typing import Optional, Tuple

import torch
from torch import Tensor, nn

# Score added to a forbidden transition or tag. Finite, so that log-sum-exp
# over a set of forbidden paths stays finite and its gradient well defined.
FORBIDDEN = -1.0e4


class NonFiniteScoresError(ValueError):
    """Emission scores hold NaN or infinite values."""


def _check_finite(emissions: Tensor) -> None:
    if not bool(torch.isfinite(emissions).all()):
        rows = (~torch.isfinite(emissions)).flatten(1).any(1).nonzero().flatten().tolist()
        raise NonFiniteScoresError(f"CRF emission scores hold NaN or infinite values (batch rows {rows}).")


class ConditionalRandomField(nn.Module):
    """Linear-chain CRF with learned transition, start and end scores.

    Tags are integers ``0 <= tag < num_tags``. ``transitions[i, j]`` scores
    tag ``j`` following tag ``i``. Constraints (see ``set_constraints``) mark
    transitions that no valid sequence takes; they get the score ``FORBIDDEN``
    in training and decoding alike.
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

    def forward(self, emissions: Tensor, mask: Tensor, tags: Tensor, allowed: Optional[Tensor] = None) -> Tensor:
        """Negative log-likelihood of ``tags`` per sequence.

        emissions: (B, T, K) scores. mask: (B, T) bool, True on real tokens;
        every row a prefix of True. tags: (B, T) long, the gold tag of each
        token or -1 where it is unknown. Unknown tags are marginalised out:
        the likelihood is that of the set of sequences consistent with the
        known tags. Returns (B,) float32; 0 for empty sequences.
        """
        _check_finite(emissions)
        if allowed is not None:
            emissions = self._allow(emissions, allowed)
        log_z = self.log_partition(emissions, mask)
        if bool(((tags >= 0) | ~mask).all()):
            gold = self.path_score(emissions, mask, tags)
        else:
            gold = self.log_partition(self._restrict(emissions, tags), mask)
        return log_z - gold

    def log_partition(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """Log-sum-exp of the scores of all tag sequences, (B,) float32."""
        emissions = emissions.float()  # (B, T, K)
        if emissions.shape[1] == 0:
            return emissions.new_zeros(emissions.shape[0])
        transitions, start, end = self._scores()
        # One unbind, not T slices: the backward of each slice ``emissions[:, t]``
        # would allocate a (B, T, K) gradient, making the backward pass O(T^2).
        steps = emissions.unbind(1)  # T x (B, K)
        step_masks = mask.unsqueeze(2).unbind(1)  # T x (B, 1)
        alpha = start + steps[0]  # (B, K)
        for emitted, step_mask in zip(steps[1:], step_masks[1:]):
            # (B, K, 1) + (K, K) + (B, 1, K) -> (B, K, K), sum out the previous tag.
            step = alpha.unsqueeze(2) + transitions + emitted.unsqueeze(1)
            alpha = torch.where(step_mask, torch.logsumexp(step, dim=1), alpha)
        log_z = torch.logsumexp(alpha + end, dim=1)  # (B,)
        return torch.where(mask[:, 0], log_z, torch.zeros_like(log_z))

    def path_score(self, emissions: Tensor, mask: Tensor, tags: Tensor) -> Tensor:
        """Score of the given (fully known) tag sequences, (B,) float32."""
        emissions = emissions.float()
        if emissions.shape[1] == 0:
            return emissions.new_zeros(emissions.shape[0])
        transitions, start, end = self._scores()
        maskf = mask.float()  # (B, T)
        tags = tags.clamp(min=0)  # padding positions may hold -1
        emitted = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)  # (B, T)
        score = (emitted * maskf).sum(dim=1)
        score = score + (transitions[tags[:, :-1], tags[:, 1:]] * maskf[:, 1:]).sum(dim=1)
        last = (mask.sum(dim=1) - 1).clamp(min=0)  # (B,)
        last_tags = tags.gather(1, last.unsqueeze(1)).squeeze(1)  # (B,)
        score = score + start[tags[:, 0]] + end[last_tags]
        return torch.where(mask[:, 0], score, torch.zeros_like(score))

    @torch.no_grad()
    def decode(
        self, emissions: Tensor, mask: Tensor, tags: Optional[Tensor] = None, allowed: Optional[Tensor] = None
    ) -> Tuple[Tensor, Tensor]:
        """Viterbi decoding: the best allowed tag sequence per row.

        ``tags`` (B, T), optional, fixes the tag of tokens where it is >= 0.
        Returns ``(best_tags, best_scores)`` of shapes (B, T) and (B,);
        positions past the end of a row repeat its last tag.
        """
        _check_finite(emissions)
        if tags is not None:
            emissions = self._restrict(emissions, tags)
        if allowed is not None:
            emissions = self._allow(emissions, allowed)
        emissions = emissions.float()
        transitions, start, end = self._scores()
        batch_size, length, num_tags = emissions.shape
        if length == 0:
            return emissions.new_zeros((batch_size, 0), dtype=torch.long), emissions.new_zeros(batch_size)
        identity = torch.arange(num_tags, device=emissions.device).expand(batch_size, num_tags)
        steps = emissions.unbind(1)  # T x (B, K)
        step_masks = mask.unsqueeze(2).unbind(1)  # T x (B, 1)
        score = start + steps[0]  # (B, K)
        backpointers = []
        for emitted, step_mask in zip(steps[1:], step_masks[1:]):
            # (B, K, 1) + (K, K) -> (B, K, K); best previous tag for each tag.
            best_prev_score, best_prev = (score.unsqueeze(2) + transitions).max(dim=1)
            score = torch.where(step_mask, best_prev_score + emitted, score)
            backpointers.append(torch.where(step_mask, best_prev, identity))
        score = score + end
        best_scores, last_tag = score.max(dim=1)  # (B,), (B,)
        path = [last_tag]
        for pointers in reversed(backpointers):
            path.append(pointers.gather(1, path[-1].unsqueeze(1)).squeeze(1))
        path.reverse()
        return torch.stack(path, dim=1), best_scores

    def _scores(self) -> Tuple[Tensor, Tensor, Tensor]:
        """Transition, start and end scores with constraints applied, float32."""
        forbidden = torch.tensor(FORBIDDEN, device=self.transitions.device)
        return (
            torch.where(self.allowed_transitions, self.transitions.float(), forbidden),
            torch.where(self.allowed_start, self.start_transitions.float(), forbidden),
            torch.where(self.allowed_end, self.end_transitions.float(), forbidden),
        )

    def _allow(self, emissions: Tensor, allowed: Tensor) -> Tensor:
        return torch.where(allowed, emissions.float(), torch.full_like(emissions, FORBIDDEN, dtype=torch.float32))

    def _restrict(self, emissions: Tensor, tags: Tensor) -> Tensor:
        """Forbid every tag but the given one where ``tags >= 0``."""
        known = (tags >= 0).unsqueeze(2)  # (B, T, 1)
        one_hot = nn.functional.one_hot(tags.clamp(min=0), self.num_tags).bool()  # (B, T, K)
        allowed = ~known | one_hot
        return torch.where(allowed, emissions.float(), torch.full_like(emissions, FORBIDDEN, dtype=torch.float32))
