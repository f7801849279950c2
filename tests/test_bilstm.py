"""The BiLSTM module: the padded, length-grouped computation equals torch's
own bidirectional LSTM on packed sequences, values and gradients."""

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from spacy_bilstm_crf.modules.bilstm import BiLSTM
from spacy_bilstm_crf.runtime.batching import length_groups


def packed_reference(module: BiLSTM, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """torch's bidirectional LSTM over packed sequences, with the same weights."""
    packed = pack_padded_sequence(inputs, lengths, batch_first=True, enforce_sorted=False)
    outputs, _ = module.lstm(packed)
    return pad_packed_sequence(outputs, batch_first=True, total_length=inputs.shape[1])[0]


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("lengths", [[7, 1, 4, 6, 2, 2, 7, 3, 5, 1, 1, 6], [3], [1, 1], [9, 2]])
def test_bilstm_equals_packed_lstm_values_and_gradients(depth, lengths):
    torch.manual_seed(depth)
    module = BiLSTM(input_width=5, hidden_width=4, depth=depth, dropout=0.0).double()
    lengths_t = torch.tensor(lengths)
    inputs = torch.randn(len(lengths), max(lengths) + 2, 5, dtype=torch.double, requires_grad=True)
    outputs = module(inputs, lengths_t)
    expected = packed_reference(module, inputs, lengths_t)
    torch.testing.assert_close(outputs, expected, rtol=0, atol=1e-12)
    weights = torch.randn_like(outputs)
    got = torch.autograd.grad((outputs * weights).sum(), [inputs, *module.parameters()])
    want = torch.autograd.grad((expected * weights).sum(), [inputs, *module.parameters()])
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=0, atol=1e-12)


def test_bilstm_zero_past_each_length_and_rows_independent():
    torch.manual_seed(0)
    module = BiLSTM(input_width=3, hidden_width=2, depth=1, dropout=0.0).eval()
    inputs = torch.randn(3, 6, 3)
    lengths = torch.tensor([6, 2, 4])
    outputs = module(inputs, lengths)
    assert outputs.shape == (3, 6, 4)
    assert bool((outputs[1, 2:] == 0).all()) and bool((outputs[2, 4:] == 0).all())
    alone = module(inputs[1:2, :2], lengths[1:2])
    torch.testing.assert_close(outputs[1:2, :2], alone)


def test_bilstm_state_dict_keeps_nn_lstm_names():
    """Saved pipelines hold nn.LSTM's parameter names; they must not change."""
    module = BiLSTM(input_width=3, hidden_width=2, depth=2, dropout=0.1)
    assert sorted(module.state_dict()) == sorted(
        f"lstm.{kind}_l{layer}{suffix}"
        for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        for layer in (0, 1)
        for suffix in ("", "_reverse")
    )


def brute_force_cost(lengths, row_cost):
    """The cheapest split of sorted rows into contiguous runs, by enumeration."""
    n = len(lengths)
    best = None
    for cuts in itertools.product([False, True], repeat=n - 1):
        starts = [0] + [i + 1 for i, cut in enumerate(cuts) if cut]
        bounds = list(zip(starts, starts[1:] + [n]))
        cost = sum(lengths[s] * (e - s + row_cost) for s, e in bounds)
        best = cost if best is None else min(best, cost)
    return best


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(min_value=1, max_value=12), min_size=1, max_size=9),
    st.sampled_from([0.0, 1.0, 4.0, 100.0]),
)
def test_length_groups_is_optimal_and_covers_every_row(lengths, row_cost):
    lengths = sorted(lengths, reverse=True)
    groups = length_groups(lengths, row_cost)
    assert groups[0][0] == 0 and groups[-1][1] == len(lengths)
    assert all(a[1] == b[0] and a[0] < a[1] for a, b in zip(groups, groups[1:]))
    cost = sum(lengths[s] * (e - s + row_cost) for s, e in groups)
    assert cost == pytest.approx(brute_force_cost(lengths, row_cost))


def test_length_groups_split_only_when_it_pays():
    assert length_groups([10, 10, 10], 4.0) == [(0, 3)]
    assert length_groups([100, 100, 1, 1, 1, 1, 1, 1], 4.0) == [(0, 2), (2, 8)]
    assert length_groups([100, 1], 1000.0) == [(0, 2)]
