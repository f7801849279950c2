"""Batches of sequences of unequal length, run in groups of similar length.

A recurrent pass over a padded batch steps through every row's padding; rows
sorted by length and run in groups step through little of it, at a fixed
cost per group. The torch BiLSTM and the ONNX scorer of an exported
pipeline both group their rows with :func:`length_groups`.
"""

import math
from typing import List, Sequence, Tuple


def length_groups(lengths: Sequence[int], row_cost_of_a_group: float) -> List[Tuple[int, int]]:
    """Split rows sorted by length (longest first) into runs ``[start, end)``
    that minimise the LSTM's work: a run costs its first (longest) length
    times its row count plus ``row_cost_of_a_group`` (a call's fixed cost,
    in rows).

    Exact dynamic programme over the D distinct lengths, O(D^2): rows of
    equal length can always share a run (moving them all to the later of two
    runs never costs more), so runs start where the length changes."""
    starts = [i for i in range(len(lengths)) if i == 0 or lengths[i] != lengths[i - 1]] + [len(lengths)]
    n_starts = len(starts) - 1
    best = [0.0] + [math.inf] * n_starts  # best[j]: cost of rows [0, starts[j])
    cut = [0] * (n_starts + 1)
    for j in range(1, n_starts + 1):
        end = starts[j]
        for i in range(j):
            cost = best[i] + lengths[starts[i]] * (end - starts[i] + row_cost_of_a_group)
            if cost < best[j]:
                best[j], cut[j] = cost, i
    groups: List[Tuple[int, int]] = []
    j = n_starts
    while j > 0:
        groups.append((starts[cut[j]], starts[j]))
        j = cut[j]
    return groups[::-1]
