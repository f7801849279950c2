"""Linear-chain CRF inference in numpy: the torch CRF's, without torch.

:class:`NumpyCRF` reproduces the inference of
:class:`spacy_bilstm_crf.modules.crf.ConditionalRandomField` on numpy arrays,
with the same inputs, outputs, conventions and errors (see that module's
docstring): ``decode`` (Viterbi), ``kbest`` (exact k-best Viterbi),
``log_partition``, ``path_score``, ``forward_backward``, ``marginals`` and
``span_log_probs``. The arithmetic is the same too. Scores are taken in
float32 (float64 if the emissions or the CRF's scores are float64) and
Viterbi and k-best add and compare them in the same order, so their scores
equal the torch module's bit for bit. The forward-backward recursions run in
float64 by the same scaled recursion, with the same check of the score
spread and the same fall-back to log space, so they agree to rounding.

A forbidden step scores ``FORBIDDEN`` (minus infinity), every sum and
maximum runs over the allowed lattice only, and no ``-inf`` turns into a
NaN (nor a floating-point warning) on the way.

Where it differs from the torch module:

- ``kbest`` orders paths of exactly equal score by their tags read from the
  last token back, smallest first, so ``kbest(k=1)`` is ``decode`` (whose
  ties go to the first tag, as torch's ``max`` does). ``torch.topk`` leaves
  the order of ties unspecified, so the torch module's ``kbest`` may order
  (and, at the k-th place, choose) tied paths otherwise. Scores are the same.
- The CRF's scores are checked (finite, float32 or float64) when it is
  built, not at each call; a ``NumpyCRF`` is immutable.
- The methods that the CRF layer tempers (``layers/crf.py``) take a
  ``temperature``: emissions and CRF scores are divided by it, as there,
  but in their own dtype (the layer's tempered copy is float32 always).

Its state is six plain arrays (``to_arrays``, ``to_bytes``); ``from_arrays``
and ``from_bytes`` check them, as a pipeline folder is untrusted input.
"""

import io
import math
import zipfile
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy

# The score of a forbidden transition, start, end or tag: impossible, not a penalty.
FORBIDDEN = float("-inf")

# (row, start token, end token exclusive, tag id of each token start..end-1)
Span = Tuple[int, int, int, Sequence[int]]

# The arrays of a CRF's state, the names ``layers.crf.crf_transition_scores`` gives them.
STATE_KEYS = ("transitions", "start", "end", "allowed_transitions", "allowed_start", "allowed_end")

# ``from_bytes`` refuses a state whose arrays would take more memory than this.
MAX_STATE_BYTES = 1 << 26

# The scaled recursion is exact while the spreads of the scores it meets sum
# to less than this (float64's exp underflows below about -745).
_SAFE_SPREAD = 600.0

_SCORE_DTYPES = (numpy.dtype(numpy.float32), numpy.dtype(numpy.float64))

# Emissions (B, T, K), transitions (K, K), start (K,), end (K,) with FORBIDDEN
# wherever the lattice forbids, and the (B, T) bool mask of real tokens.
Lattice = Tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray, numpy.ndarray, numpy.ndarray]
AlphaBeta = Tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]


class NonFiniteScoresError(ValueError):
    """The CRF's scores hold NaN or infinite values (a diverged model)."""


class NoValidPathError(ValueError):
    """No tag sequence of a row satisfies the constraints (or the gold tags)."""


def fixed_tags_mask(tags: Any, num_tags: int) -> numpy.ndarray:
    """(B, T, K) bool allowed-tags mask from (B, T) integer tags: only
    ``tags[b, t]`` where it is >= 0, every tag where it is -1."""
    tags = numpy.asarray(tags)
    if not numpy.issubdtype(tags.dtype, numpy.integer):
        raise ValueError(f"tags must hold integer tag ids, got dtype {tags.dtype}.")
    if tags.size and bool(((tags < -1) | (tags >= num_tags)).any()):
        raise ValueError(
            f"Tag ids must be -1 (unknown) or in [0, {num_tags}), got values from {tags.min()} to {tags.max()}."
        )
    one_hot = numpy.maximum(tags, 0)[..., None] == numpy.arange(num_tags)  # (B, T, K)
    return one_hot | (tags < 0)[..., None]


class NumpyCRF:
    """Linear-chain CRF inference over ``K`` tags, on numpy arrays.

    ``transitions[i, j]`` (K, K) scores tag ``j`` following tag ``i``;
    ``start`` and ``end`` (K,) score the first and last tag. The bool masks
    ``allowed_transitions`` (K, K), ``allowed_start`` and ``allowed_end``
    (K,) mark what a valid sequence may take (None: everything). Inputs of
    every method: ``emissions`` (B, T, K) float scores, ``mask`` (B, T) bool,
    True on real tokens, each row a prefix of True, and optionally
    ``allowed`` (B, T, K) bool, the tags each token may take.

    Methods that return a distribution or a path raise ``NoValidPathError``
    for a non-empty row whose lattice holds no path; every method raises
    ``NonFiniteScoresError`` if the emissions hold NaN or +-inf.
    """

    def __init__(
        self,
        transitions: Any,
        start: Any,
        end: Any,
        allowed_transitions: Any = None,
        allowed_start: Any = None,
        allowed_end: Any = None,
    ) -> None:
        scores = {"transitions": numpy.asarray(transitions), "start": numpy.asarray(start), "end": numpy.asarray(end)}
        shape = scores["transitions"].shape
        if len(shape) != 2 or shape[0] != shape[1] or shape[0] < 1:
            raise ValueError(f"transitions has shape {shape}, expected (K, K) with K >= 1 tags.")
        num_tags = shape[0]
        shapes = {
            "transitions": (num_tags, num_tags),
            "start": (num_tags,),
            "end": (num_tags,),
            "allowed_transitions": (num_tags, num_tags),
            "allowed_start": (num_tags,),
            "allowed_end": (num_tags,),
        }
        for name, array in scores.items():
            if array.shape != shapes[name]:
                raise ValueError(f"{name} has shape {array.shape}, expected {shapes[name]}.")
            if array.dtype not in _SCORE_DTYPES:
                raise ValueError(f"{name} has dtype {array.dtype}, expected float32 or float64.")
            if not numpy.isfinite(array).all():
                raise NonFiniteScoresError("The CRF's transition, start or end scores hold NaN or infinite values.")
        dtype = numpy.result_type(*scores.values())
        given = {"allowed_transitions": allowed_transitions, "allowed_start": allowed_start, "allowed_end": allowed_end}
        masks = {}
        for name, value in given.items():
            mask = numpy.ones(shapes[name], dtype=bool) if value is None else numpy.asarray(value)
            if mask.shape != shapes[name]:
                raise ValueError(f"{name} has shape {mask.shape}, expected {shapes[name]}.")
            if mask.dtype != numpy.bool_:
                raise ValueError(f"{name} has dtype {mask.dtype}, expected bool.")
            masks[name] = mask
        self._state: Dict[str, numpy.ndarray] = {name: array.astype(dtype) for name, array in scores.items()}
        self._state.update((name, mask.copy()) for name, mask in masks.items())
        for array in self._state.values():
            array.setflags(write=False)

    @property
    def num_tags(self) -> int:
        """K, the number of tags."""
        return int(self._state["transitions"].shape[0])

    @property
    def dtype(self) -> numpy.dtype:
        """The dtype of the CRF's scores: float32 or float64."""
        return self._state["transitions"].dtype

    # ------------------------------------------------------------------ state

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, Any]) -> "NumpyCRF":
        """A CRF from the six arrays of ``STATE_KEYS`` (``to_arrays``, or
        ``crf_transition_scores`` of a CRF layer), checked."""
        missing = [name for name in STATE_KEYS if name not in arrays]
        unexpected = sorted(str(name) for name in arrays if name not in STATE_KEYS)
        if missing or unexpected:
            raise ValueError(
                f"A CRF state needs the arrays {list(STATE_KEYS)}: missing {missing}, unexpected {unexpected}."
            )
        return cls(**{name: arrays[name] for name in STATE_KEYS})

    def to_arrays(self) -> Dict[str, numpy.ndarray]:
        """The CRF's state: copies of its six arrays, named as in ``STATE_KEYS``."""
        return {name: self._state[name].copy() for name in STATE_KEYS}

    def to_bytes(self) -> bytes:
        """The state as the bytes of a ``.npz`` file (``numpy.savez``)."""
        buffer = io.BytesIO()
        arrays: Dict[str, Any] = self.to_arrays()
        numpy.savez(buffer, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "NumpyCRF":
        """A CRF from ``to_bytes`` output, read as untrusted input: no pickles,
        at most ``MAX_STATE_BYTES`` of arrays (each no larger than its data in
        the file, checked before it is read), every shape and dtype checked.
        Raises a one-line ValueError saying what is wrong."""
        expected = sorted(f"{name}.npy" for name in STATE_KEYS)
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                names = sorted(archive.namelist())
                if names != expected:
                    raise ValueError(f"it holds {names}, expected {expected}")
                size = sum(info.file_size for info in archive.infolist())
                if size > MAX_STATE_BYTES:
                    raise ValueError(f"its arrays take {size} bytes, more than the {MAX_STATE_BYTES} allowed")
                for info in archive.infolist():
                    _check_npy_header(archive, info)
            with numpy.load(io.BytesIO(data), allow_pickle=False) as loaded:
                arrays = {name: loaded[name] for name in STATE_KEYS}
            return cls.from_arrays(arrays)
        except Exception as exc:  # whatever damaged bytes raise: zipfile, zlib, numpy's header parser
            raise ValueError(f"Not a valid CRF state: {_one_line(exc)}") from None

    def tempered(self, temperature: float) -> "NumpyCRF":
        """This CRF, or a copy with its scores divided by ``temperature``
        (the emissions must be divided by it too)."""
        if not temperature > 0:
            raise ValueError(f"The temperature must be positive, got {temperature}.")
        if temperature == 1.0:
            return self
        state = self._state
        with numpy.errstate(over="ignore"):  # an overflow to inf is reported as such
            transitions, start, end = (state[name] / temperature for name in ("transitions", "start", "end"))
        masks = (state["allowed_transitions"], state["allowed_start"], state["allowed_end"])
        return NumpyCRF(transitions, start, end, *masks)

    # -------------------------------------------------------------- inference

    def log_partition(
        self, emissions: Any, mask: Any, *, allowed: Any = None, temperature: float = 1.0
    ) -> numpy.ndarray:
        """log Z, the log-sum-exp of the scores of all allowed sequences, (B,):
        0 for empty rows, ``-inf`` for rows with no allowed sequence."""
        em, transitions, start, end, mask = self._lattice(emissions, mask, allowed, temperature)
        batch_size, length, _ = em.shape
        if batch_size == 0 or length == 0:
            return numpy.zeros(batch_size, dtype=em.dtype)
        em_w, transitions_w, start_w, end_w = _to_work_dtype(em, transitions, start, end)
        log_alpha, _ = _alpha_recursion(em_w, transitions_w, start_w, mask)  # (B, T, K)
        return _log_z(log_alpha, end_w, mask).astype(em.dtype)

    def path_score(self, emissions: Any, mask: Any, tags: Any, *, allowed: Any = None) -> numpy.ndarray:
        """Score of the given, fully known, tag sequences (B, T), (B,); ``-inf``
        for a sequence the lattice forbids."""
        em, transitions, start, end, mask = self._lattice(emissions, mask, allowed)
        tags = self._check_tags(tags, mask)
        if not bool(((tags >= 0) | ~mask).all()):
            raise ValueError(f"path_score needs every tag, but row(s) {_rows(((tags < 0) & mask).any(1))} hold -1.")
        batch_size, length, _ = em.shape
        if length == 0:
            return numpy.zeros(batch_size, dtype=em.dtype)
        tags = numpy.maximum(tags, 0)  # (B, T); padding holds -1
        emitted = numpy.take_along_axis(em, tags[:, :, None], axis=2)[:, :, 0]  # (B, T)
        score = numpy.where(mask, emitted, 0.0).sum(axis=1)  # (B,)
        score = score + numpy.where(mask[:, 1:], transitions[tags[:, :-1], tags[:, 1:]], 0.0).sum(axis=1)
        last = numpy.maximum(mask.sum(axis=1) - 1, 0)  # (B,)
        last_tags = tags[numpy.arange(batch_size), last]  # (B,)
        score = score + start[tags[:, 0]] + end[last_tags]
        return numpy.where(mask[:, 0], score, 0.0)

    def decode(
        self, emissions: Any, mask: Any, tags: Any = None, *, allowed: Any = None
    ) -> Tuple[numpy.ndarray, numpy.ndarray]:
        """Viterbi decoding: the best allowed tag sequence per row.

        ``tags`` (B, T), optional, fixes the tag of tokens where it is >= 0.
        Returns ``(best_tags, best_scores)``, (B, T) int64 and (B,); past the
        end of a row its last tag repeats, empty rows get tag 0 and score 0.
        Of equal scores, the first previous tag (and last tag) wins.
        """
        em, transitions, start, end, mask = self._lattice(emissions, mask, allowed)
        if tags is not None:
            em = numpy.where(fixed_tags_mask(self._check_tags(tags, mask), self.num_tags), em, FORBIDDEN)
        batch_size, length, num_tags = em.shape
        if batch_size == 0 or length == 0:
            return numpy.zeros((batch_size, length), dtype=numpy.int64), numpy.zeros(batch_size, dtype=em.dtype)
        score = start + em[:, 0]  # (B, K)
        scores, backpointers = [score], []
        for t in range(1, length):
            # (B, K prev, 1) + (K prev, K) -> (B, K prev, K); best previous tag for each tag.
            candidates = score[:, :, None] + transitions
            backpointers.append(candidates.argmax(axis=1))  # (B, K)
            score = candidates.max(axis=1) + em[:, t]
            scores.append(score)
        rows = numpy.arange(batch_size)
        # Each row ends at its own last token; past it, the rows hold values of no meaning.
        last = numpy.maximum(mask.sum(axis=1) - 1, 0)  # (B,)
        final = numpy.stack(scores, axis=1)[rows, last] + end  # (B, K)
        best_scores = numpy.where(mask[:, 0], final.max(axis=1), 0.0)  # (B,)
        _raise_if_no_path(best_scores, mask)
        tag = final.argmax(axis=1)  # (B,)
        path = [tag]
        if backpointers:
            # Padding steps point to the same tag: past its end a row repeats its last tag.
            identity = numpy.arange(num_tags)
            pointers = numpy.where(mask[:, 1:, None], numpy.stack(backpointers, axis=1), identity)  # (B, T-1, K)
            for t in range(length - 2, -1, -1):
                tag = pointers[rows, t, tag]
                path.append(tag)
        path.reverse()
        best_tags = numpy.where(mask[:, :1], numpy.stack(path, axis=1), 0)  # (B, T)
        return best_tags.astype(numpy.int64), best_scores

    def kbest(
        self, emissions: Any, mask: Any, k: int, *, allowed: Any = None, temperature: float = 1.0
    ) -> Tuple[numpy.ndarray, numpy.ndarray]:
        """The ``k`` best allowed tag sequences per row, exactly.

        Returns ``(paths, scores)``, (B, k, T) int64 and (B, k), best first,
        ties in the order of the tags read from the last token back. A row
        with fewer than ``k`` allowed sequences is padded with score ``-inf``
        and paths of -1. Past a row's end a path repeats its last tag; an
        empty row has one (empty) path of score 0. Each step keeps, for each
        tag, the ``k`` best prefixes ending in it: (B, K, k) scores.
        """
        if k < 1:
            raise ValueError(f"k-best decoding needs k >= 1, got k={k}.")
        em, transitions, start, end, mask = self._lattice(emissions, mask, allowed, temperature)
        batch_size, length, num_tags = em.shape
        if batch_size == 0 or length == 0:
            scores = numpy.full((batch_size, k), FORBIDDEN, dtype=em.dtype)
            scores[:, 0] = 0.0
            return numpy.full((batch_size, k, length), -1, dtype=numpy.int64), scores
        # score[b, j, r]: the r-th best score of a prefix ending in tag j.
        score = numpy.full((batch_size, num_tags, k), FORBIDDEN, dtype=em.dtype)
        score[:, :, 0] = start + em[:, 0]
        incoming = transitions.T[None, :, :, None]  # (1, K next, K prev, 1)
        # Flat index ``tag * k + rank`` of each prefix; kept as is on padding.
        keep = numpy.broadcast_to(numpy.arange(num_tags * k).reshape(1, num_tags, k), score.shape)
        backpointers = []
        for t in range(1, length):
            # (B, 1, K prev, k) + (1, K next, K prev, 1) -> (B, K next, K prev * k)
            candidates = (score[:, None] + incoming).reshape(batch_size, num_tags, num_tags * k)
            best, best_prev = _top(candidates, k)  # (B, K, k), flat previous (tag, rank)
            step_mask = mask[:, t, None, None]  # (B, 1, 1)
            score = numpy.where(step_mask, best + em[:, t, :, None], score)
            backpointers.append(numpy.where(step_mask, best_prev, keep).reshape(batch_size, num_tags * k))
        final = (score + end[None, :, None]).reshape(batch_size, num_tags * k)
        scores, cursor = _top(final, k)  # (B, k), (B, k)
        nonempty = mask[:, 0]
        scores[:, 0] = numpy.where(nonempty, scores[:, 0], 0.0)
        scores[:, 1:] = numpy.where(nonempty[:, None], scores[:, 1:], FORBIDDEN)
        _raise_if_no_path(scores[:, 0], mask)
        path = [cursor // k]
        for pointers in reversed(backpointers):
            cursor = numpy.take_along_axis(pointers, cursor, axis=1)
            path.append(cursor // k)
        path.reverse()
        paths = numpy.stack(path, axis=2)  # (B, k, T)
        paths = numpy.where(nonempty[:, None, None], paths, 0)
        paths = numpy.where(numpy.isfinite(scores)[:, :, None], paths, -1)
        return paths.astype(numpy.int64), scores

    def forward_backward(
        self, emissions: Any, mask: Any, *, allowed: Any = None, temperature: float = 1.0
    ) -> AlphaBeta:
        """``(log_alpha, log_beta, log_z)``, (B, T, K), (B, T, K), (B,), in the
        scores' dtype (computed in float64). Conventions as in
        ``modules/crf.py``: both are ``-inf`` on padding, ``log_z`` is 0 for
        empty rows and ``-inf`` for rows with no allowed path."""
        em, transitions, start, end, mask = self._lattice(emissions, mask, allowed, temperature)
        log_alpha, log_beta, log_z = _forward_backward(em, transitions, start, end, mask)
        return log_alpha.astype(em.dtype), log_beta.astype(em.dtype), log_z.astype(em.dtype)

    def marginals(self, emissions: Any, mask: Any, *, allowed: Any = None, temperature: float = 1.0) -> numpy.ndarray:
        """Token marginals ``p(y_t = k)`` under the lattice, (B, T, K): each
        real token's row sums to 1, padding is 0."""
        em, transitions, start, end, mask = self._lattice(emissions, mask, allowed, temperature)
        log_alpha, log_beta, log_z = _forward_backward(em, transitions, start, end, mask)
        _raise_if_no_path(log_z, mask)
        return numpy.exp(log_alpha + log_beta - log_z[:, None, None]).astype(em.dtype)

    def span_log_probs(
        self,
        emissions: Any,
        mask: Any,
        spans: Sequence[Span],
        follow: Any = None,
        *,
        allowed: Any = None,
        alpha_beta: Optional[AlphaBeta] = None,
        temperature: float = 1.0,
    ) -> numpy.ndarray:
        """Log-probability of each span, (N,): ``log p(y_s..y_{e-1} = tags, y_e in follow)``.

        ``spans[n] = (b, s, e, tags)``: row b, tokens ``s..e-1`` (``0 <= s <
        e <= length_b``) and their tag ids. ``follow`` (N, K) bool: the tags
        allowed at token e (ignored when e is the row's end; None: every
        tag). Pass ``alpha_beta = forward_backward(...)`` (at the same
        temperature) to share one pass among calls.
        """
        em, transitions, start, end, mask = self._lattice(emissions, mask, allowed, temperature)
        batch_size, length, num_tags = em.shape
        count = len(spans)
        if follow is not None:
            follow = _flags("follow", follow, (count, num_tags))
        if count == 0:
            return numpy.zeros(0, dtype=em.dtype)
        dtype = em.dtype
        if alpha_beta is None:
            log_alpha, log_beta, log_z = _forward_backward(em, transitions, start, end, mask)
        else:
            log_alpha, log_beta, log_z = (numpy.asarray(x, dtype=numpy.float64) for x in alpha_beta)
            if log_alpha.shape != em.shape or log_beta.shape != em.shape or log_z.shape != (batch_size,):
                raise ValueError(
                    f"alpha_beta has shapes {log_alpha.shape}, {log_beta.shape}, {log_z.shape}, expected "
                    f"{em.shape}, {em.shape}, {(batch_size,)}: pass forward_backward(...)."
                )
        em, transitions = _to_work_dtype(em, transitions)
        lengths: List[int] = mask.sum(axis=1).tolist()
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
        row, first, stop = (numpy.array(column, dtype=numpy.int64) for column in columns)  # (N,) each
        span_tags = numpy.array(padded_tags, dtype=numpy.int64)  # (N, W)
        used = numpy.zeros(batch_size, dtype=bool)
        used[row] = True
        _raise_if_no_path(numpy.where(used, log_z, 0.0), mask)
        offsets = numpy.arange(width)
        inside = offsets < (stop - first)[:, None]  # (N, W)
        positions = numpy.minimum(first[:, None] + offsets, length - 1)  # (N, W)
        emitted = em[row[:, None], positions, span_tags]  # (N, W)
        stepped = transitions[span_tags[:, :-1], span_tags[:, 1:]]  # (N, W - 1)
        # Everything up to the first token, then the span's own steps.
        score = log_alpha[row, first, span_tags[:, 0]]  # (N,)
        score = score + numpy.where(inside[:, 1:], emitted[:, 1:] + stepped, 0.0).sum(axis=1)
        last_tag = span_tags[numpy.arange(count), stop - first - 1]  # (N,)
        # At the row's end: the end score, which is log_beta of the last token.
        closed = log_beta[row, stop - 1, last_tag]  # (N,)
        # Otherwise: the log-sum over the tags allowed at token e and all that follows.
        after = numpy.minimum(stop, length - 1)  # (N,)
        following = transitions[last_tag] + em[row, after] + log_beta[row, after]  # (N, K)
        if follow is not None:
            following = numpy.where(follow, following, FORBIDDEN)
        tail = numpy.where(stop == numpy.asarray(lengths)[row], closed, _logsumexp(following, axis=1))
        return numpy.minimum(score + tail - log_z[row], 0.0).astype(dtype)

    # ---------------------------------------------------------------- helpers

    def _lattice(self, emissions: Any, mask: Any, allowed: Any, temperature: float = 1.0) -> Lattice:
        """Check the inputs; the (tempered) scores in the compute dtype, FORBIDDEN where the lattice forbids."""
        crf = self.tempered(temperature)
        num_tags = self.num_tags
        scores = numpy.asarray(emissions)
        if scores.ndim != 3 or scores.shape[2] != num_tags or not numpy.issubdtype(scores.dtype, numpy.floating):
            raise ValueError(
                f"CRF over {num_tags} tags needs float emissions (B, T, {num_tags}), "
                f"got {scores.dtype} of shape {scores.shape}."
            )
        flags = _flags("mask", mask, scores.shape[:2])  # (B, T)
        allowed_tags = None if allowed is None else _flags("allowed", allowed, scores.shape)  # (B, T, K)
        if temperature != 1.0:
            with numpy.errstate(over="ignore"):  # an overflow to inf is reported below
                scores = scores / temperature
        finite = numpy.isfinite(scores).all(axis=(1, 2))  # (B,)
        if not finite.all():
            raise NonFiniteScoresError(
                f"The CRF's emission scores hold NaN or infinite values in row(s) {_rows(~finite)} "
                f"of the batch of {scores.shape[0]}: the model has probably diverged."
            )
        prefix = numpy.arange(flags.shape[1]) < flags.sum(axis=1, keepdims=True)  # (B, T)
        if not numpy.array_equal(prefix, flags):
            raise ValueError(f"mask row(s) {_rows((prefix != flags).any(axis=1))} are not a prefix of True values.")
        dtype = numpy.result_type(scores.dtype, self.dtype, numpy.float32)
        em = scores.astype(dtype)
        if allowed_tags is not None:
            em = numpy.where(allowed_tags, em, FORBIDDEN)
        state = crf._state
        transitions, start, end = (
            numpy.where(state[f"allowed_{name}"], state[name].astype(dtype), FORBIDDEN)
            for name in ("transitions", "start", "end")
        )
        return em, transitions, start, end, flags

    def _check_tags(self, tags: Any, mask: numpy.ndarray) -> numpy.ndarray:
        """Gold or fixed tags as int64, -1 on padding; raise if a shape or an id is wrong."""
        array = numpy.asarray(tags)
        if array.shape != mask.shape:
            raise ValueError(f"tags have shape {array.shape}, expected {mask.shape}.")
        if not numpy.issubdtype(array.dtype, numpy.integer):
            raise ValueError(f"tags must hold integer tag ids, got dtype {array.dtype}.")
        bad = mask & ((array < -1) | (array >= self.num_tags))
        if bad.any():
            raise ValueError(f"Tag ids must be -1 (unknown) or in [0, {self.num_tags}): row(s) {_rows(bad.any(1))}.")
        return numpy.where(mask, array, -1).astype(numpy.int64)  # padding may hold anything


def _flags(name: str, value: Any, shape: Sequence[int]) -> numpy.ndarray:
    """``value`` as a bool array of ``shape`` (integers: nonzero is True); ValueError naming ``name`` otherwise."""
    array = numpy.asarray(value)
    if array.shape != tuple(shape):
        raise ValueError(f"{name} has shape {array.shape}, expected {tuple(shape)}.")
    if array.dtype == numpy.bool_:
        return array
    if numpy.issubdtype(array.dtype, numpy.integer):
        return array != 0
    raise ValueError(f"{name} must be a bool (or integer 0/1) array, got dtype {array.dtype}.")


def _check_npy_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    """Refuse an array of the archive whose header declares objects or more
    data than the file holds, before numpy allocates it."""
    with archive.open(info) as member:
        version = numpy.lib.format.read_magic(member)
        if version == (1, 0):
            shape, _, dtype = numpy.lib.format.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, _, dtype = numpy.lib.format.read_array_header_2_0(member)
        else:
            raise ValueError(f"{info.filename} is in .npy format {version}, expected 1.0 or 2.0")
    if dtype.hasobject:
        raise ValueError(f"{info.filename} holds Python objects")
    declared = math.prod(shape) * dtype.itemsize
    if declared > info.file_size:
        raise ValueError(f"{info.filename} declares {declared} bytes of data ({dtype} {shape}) in {info.file_size}")


def _rows(flags: Any) -> List[int]:
    """Indices of the True entries of a (B,) bool array."""
    return [int(i) for i in numpy.flatnonzero(flags)]


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def _raise_if_no_path(log_scores: numpy.ndarray, mask: numpy.ndarray) -> None:
    """Raise NoValidPathError for the non-empty rows whose score is -inf."""
    if mask.shape[1] == 0:
        return
    impossible = ~numpy.isfinite(log_scores) & mask[:, 0]  # (B,)
    if impossible.any():
        raise NoValidPathError(
            f"Row(s) {_rows(impossible)} of the batch have no tag sequence that the CRF's constraints "
            "and allowed tags permit."
        )


def _top(values: numpy.ndarray, k: int) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """The ``k`` largest values along the last axis and their indices, largest
    first, of equal values the lower index first: k passes of argmax, ten
    times faster than a stable sort here. Once only -inf is left, an index
    may repeat with the value -inf: an impossible prefix, never followed."""
    remaining = values.copy()
    top_values, top_indices = [], []
    for _ in range(k):
        best = remaining.argmax(axis=-1)[..., None]  # the first of the largest
        top_values.append(numpy.take_along_axis(remaining, best, axis=-1))
        top_indices.append(best)
        numpy.put_along_axis(remaining, best, FORBIDDEN, axis=-1)
    return numpy.concatenate(top_values, axis=-1), numpy.concatenate(top_indices, axis=-1)


# ---------------------------------------------------------------- forward-backward
#
# As in modules/crf.py: the recursions run in float64, in scaled probability
# space (a matrix product with exp(transitions - c) and a product with
# exp(emissions - shift) a step, rescaled to a maximum of 1, the logs of the
# scales summed after the loop). That is exact unless a value underflows,
# which the sum of the spreads of the scores bounds; if it is too wide, that
# direction is recomputed in log space. A row that dies (no allowed prefix)
# keeps a scale of 1 and a log scale of -inf, rather than 0/0.


def _to_work_dtype(*scores: numpy.ndarray) -> Tuple[numpy.ndarray, ...]:
    return tuple(x.astype(numpy.float64) for x in scores)


def _logsumexp(values: numpy.ndarray, axis: int) -> numpy.ndarray:
    """log-sum-exp along ``axis``, -inf where every value is -inf (no NaN, no warning)."""
    high = values.max(axis=axis, keepdims=True)
    shift = numpy.where(high > FORBIDDEN, high, 0.0)
    total = numpy.exp(values - shift).sum(axis=axis, keepdims=True)
    log_total = numpy.log(total, out=numpy.full_like(total, FORBIDDEN), where=total > 0)
    return numpy.squeeze(log_total + shift, axis=axis)


def _spread(scores: numpy.ndarray, mask: numpy.ndarray) -> float:
    """Largest spread (max - min) of the finite scores of one real token; -inf if none.

    scores (B, T, K) with no NaN or +inf, mask (B, T)."""
    if scores.size == 0 or mask.size == 0:
        return FORBIDDEN
    high = numpy.where(mask, scores.max(axis=2), FORBIDDEN)  # (B, T)
    low = numpy.where(scores == FORBIDDEN, -FORBIDDEN, scores).min(axis=2)  # (B, T)
    return float((high - low).max())


def _exp_transitions(transitions: numpy.ndarray) -> Tuple[numpy.ndarray, float, float]:
    """``(exp(transitions - c), c, spread)``: c is the largest finite transition score."""
    finite = transitions[numpy.isfinite(transitions)]
    if finite.size == 0:
        return numpy.zeros_like(transitions), 0.0, 0.0
    high, low = float(finite.max()), float(finite.min())
    return numpy.exp(transitions - high), high, high - low


def _exp_scores(scores: numpy.ndarray, axis: int) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """``(exp(scores - shift), log_shift)``: shift the maximum along ``axis``
    (kept), 0 where every score is -inf (whose log_shift is -inf)."""
    high = scores.max(axis=axis, keepdims=True)
    return numpy.exp(scores - numpy.where(high > FORBIDDEN, high, 0.0)), high


def _rescaled(values: numpy.ndarray) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """(B, K) values divided by their row maximum, and its log (B, 1); a dead
    row (all 0) stays 0 with a log scale of -inf."""
    norm = values.max(axis=1, keepdims=True)  # (B, 1)
    alive = norm > 0
    safe = numpy.where(alive, norm, 1.0)
    return values / safe, numpy.where(alive, numpy.log(safe), FORBIDDEN)


def _log_values(scaled: List[numpy.ndarray], log_scales: List[numpy.ndarray]) -> numpy.ndarray:
    """log of ``scaled`` (T x (B, K)) plus the cumulated log scales (T x (B, 1)): (B, T, K)."""
    values = numpy.stack(scaled, axis=1)  # (B, T, K)
    logs = numpy.log(values, out=numpy.full_like(values, FORBIDDEN), where=values > 0)
    return logs + numpy.cumsum(numpy.stack(log_scales, axis=1), axis=1)


def _alpha_recursion(
    emissions: numpy.ndarray, transitions: numpy.ndarray, start: numpy.ndarray, mask: numpy.ndarray
) -> Tuple[numpy.ndarray, bool]:
    """log alpha (B, T, K), unmasked: past a row's end it holds values of no
    meaning (never NaN); and whether the scaled recursion was exact (else the
    log-space one ran)."""
    length = emissions.shape[1]
    exp_transitions, c, spread = _exp_transitions(transitions)
    probs, log_shifts = _exp_scores(emissions, 2)  # (B, T, K) <= 1, (B, T, 1)
    scaled, log_shift = _exp_scores(start + emissions[:, 0], 1)  # (B, K) <= 1, (B, 1)
    alphas, log_scales = [scaled], [log_shift]
    for t in range(1, length):
        # (B, K prev) @ (K prev, K) -> (B, K): sum out the previous tag; rescale to a maximum of 1.
        scaled, log_norm = _rescaled((scaled @ exp_transitions) * probs[:, t])
        alphas.append(scaled)
        log_scales.append(log_norm + log_shifts[:, t] + c)
    log_alpha = _log_values(alphas, log_scales)
    # The spread of the first step's input is that of its true scores, not of the rescaled ones.
    first = start + emissions[:, :1]  # (B, 1, K)
    inputs = max(_spread(first, mask[:, 1:2]), _spread(log_alpha[:, :-1], mask[:, 1:]))
    if inputs + _spread(emissions[:, 1:], mask[:, 1:]) + spread < _SAFE_SPREAD:
        return log_alpha, True
    alpha = start + emissions[:, 0]  # (B, K)
    log_alphas = [alpha]
    for t in range(1, length):
        # (B, K, 1) + (K, K) -> (B, K, K), sum out the previous tag.
        alpha = _logsumexp(alpha[:, :, None] + transitions, axis=1) + emissions[:, t]
        log_alphas.append(alpha)
    return numpy.stack(log_alphas, axis=1), False


def _beta_recursion(
    emissions: numpy.ndarray, transitions: numpy.ndarray, end: numpy.ndarray, mask: numpy.ndarray
) -> Tuple[numpy.ndarray, bool]:
    """log beta (B, T, K), unmasked, and whether the scaled recursion was
    exact. The rows are right-aligned for the recursion, so that every row
    starts from ``end`` at the last step, with no mask per step."""
    batch_size, length, num_tags = emissions.shape
    rows = numpy.arange(batch_size)[:, None]  # (B, 1)
    positions = numpy.arange(length)
    offset = length - mask.sum(axis=1, keepdims=True)  # (B, 1) padding steps of each row
    aligned = emissions[rows, numpy.maximum(positions - offset, 0)]  # (B, T, K): row b's last token at T - 1
    # The recursion yields beta[T-1], ..., beta[0] of the aligned rows: index T-1 - t - offset is token t.
    back = numpy.maximum(length - 1 - positions - offset, 0)  # (B, T)
    ends = numpy.broadcast_to(end, (batch_size, num_tags))  # (B, K)
    exp_transitions, c, spread = _exp_transitions(transitions)
    probs, log_shifts = _exp_scores(aligned, 2)  # (B, T, K) <= 1, (B, T, 1)
    scaled, log_shift = _exp_scores(ends, 1)  # (B, K), (B, 1)
    betas, log_scales = [scaled], [log_shift]
    exp_incoming = exp_transitions.T  # (K next, K)
    for t in range(length - 1, 0, -1):
        # (B, K next) @ (K next, K) -> (B, K): sum out the next tag; rescale to a maximum of 1.
        scaled, log_norm = _rescaled((scaled * probs[:, t]) @ exp_incoming)
        betas.append(scaled)
        log_scales.append(log_norm + log_shifts[:, t] + c)
    log_beta = _log_values(betas, log_scales)[rows, back]  # (B, T, K), left-aligned again
    # The spread of the last step's input is that of the true end scores, not of the rescaled ones.
    inputs = max(_spread(ends[:, None], mask[:, 1:2]), _spread(log_beta[:, 1:], mask[:, 1:]))
    if inputs + _spread(emissions[:, 1:], mask[:, 1:]) + spread < _SAFE_SPREAD:
        return log_beta, True
    beta = ends
    log_betas = [beta]
    for t in range(length - 1, 0, -1):
        # (K, K) + (B, 1, K) -> (B, K, K), sum out the next tag.
        beta = _logsumexp(transitions + (aligned[:, t] + beta)[:, None, :], axis=2)
        log_betas.append(beta)
    return numpy.stack(log_betas, axis=1)[rows, back], False


def _log_z(log_alpha: numpy.ndarray, end: numpy.ndarray, mask: numpy.ndarray) -> numpy.ndarray:
    """log Z from the alpha of each row's last token: (B,), 0 for empty rows."""
    last = numpy.maximum(mask.sum(axis=1) - 1, 0)  # (B,)
    final = log_alpha[numpy.arange(log_alpha.shape[0]), last]  # (B, K)
    return numpy.where(mask[:, 0], _logsumexp(final + end, axis=1), 0.0)


def _forward_backward(
    emissions: numpy.ndarray, transitions: numpy.ndarray, start: numpy.ndarray, end: numpy.ndarray, mask: numpy.ndarray
) -> AlphaBeta:
    """``(log_alpha, log_beta, log_z)`` in float64, -inf on padding."""
    emissions, transitions, start, end = _to_work_dtype(emissions, transitions, start, end)
    batch_size, length, _ = emissions.shape
    if batch_size == 0 or length == 0:
        padding = numpy.full_like(emissions, FORBIDDEN)
        return padding, padding.copy(), numpy.zeros(batch_size)
    log_alpha, _ = _alpha_recursion(emissions, transitions, start, mask)
    log_z = _log_z(log_alpha, end, mask)
    log_beta, _ = _beta_recursion(emissions, transitions, end, mask)
    padding = ~mask[:, :, None]  # (B, T, 1)
    return numpy.where(padding, FORBIDDEN, log_alpha), numpy.where(padding, FORBIDDEN, log_beta), log_z
