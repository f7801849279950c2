"""Tag inventories, allowed transitions and span conversion."""

from itertools import product

import pytest

from spacy_bilstm_crf.tag_scheme import (
    allowed_transitions,
    biluo_to_scheme,
    is_valid_sequence,
    make_tags,
    spans_to_tags,
    tags_to_spans,
    validate_label,
)


def test_make_tags_orders_outside_first():
    assert make_tags(["LOC", "PER"], "BILUO") == [
        "O",
        "B-LOC",
        "I-LOC",
        "L-LOC",
        "U-LOC",
        "B-PER",
        "I-PER",
        "L-PER",
        "U-PER",
    ]
    assert make_tags(["PER"], "BIO") == ["O", "B-PER", "I-PER"]


def test_unknown_scheme_names_the_valid_ones():
    with pytest.raises(ValueError, match="Unknown tag scheme 'IOBES'.*BILUO, BIO"):
        make_tags(["PER"], "IOBES")


@pytest.mark.parametrize("label", ["", " ", " PER", 3])
def test_bad_labels_are_rejected(label):
    with pytest.raises(ValueError):
        validate_label(label)


@pytest.mark.parametrize("scheme", ["BILUO", "BIO"])
def test_transition_masks_agree_with_sequence_validity(scheme):
    """A sequence is valid exactly when every step it takes is allowed."""
    tags = make_tags(["A", "B"], scheme)
    transitions, start, end = allowed_transitions(tags, scheme)
    index = {tag: i for i, tag in enumerate(tags)}
    for length in (1, 2, 3):
        for seq in product(tags, repeat=length):
            ids = [index[t] for t in seq]
            by_mask = bool(start[ids[0]] and end[ids[-1]]) and all(transitions[a, b] for a, b in zip(ids, ids[1:]))
            assert by_mask == is_valid_sequence(seq, scheme), seq


def test_specific_forbidden_transitions():
    tags = make_tags(["PER", "ORG"], "BILUO")
    transitions, start, end = allowed_transitions(tags, "BILUO")
    i = {tag: n for n, tag in enumerate(tags)}
    assert not transitions[i["O"], i["I-PER"]]
    assert not transitions[i["B-PER"], i["L-ORG"]]
    assert not transitions[i["B-PER"], i["O"]]
    assert transitions[i["B-PER"], i["L-PER"]]
    assert not start[i["I-PER"]] and not start[i["L-PER"]] and start[i["U-PER"]]
    assert not end[i["B-PER"]] and end[i["L-PER"]]


@pytest.mark.parametrize("scheme", ["BILUO", "BIO"])
def test_spans_round_trip(scheme):
    spans = [(0, 1, "PER"), (1, 3, "ORG"), (4, 7, "PER")]
    tags = spans_to_tags(8, spans, scheme)
    assert is_valid_sequence(tags, scheme)
    assert tags_to_spans(tags, scheme) == spans


def test_bio_tags_and_conversion():
    assert spans_to_tags(4, [(0, 2, "PER"), (2, 3, "PER")], "BIO") == ["B-PER", "I-PER", "B-PER", "O"]
    assert [biluo_to_scheme(t, "BIO") for t in ["B-X", "I-X", "L-X", "U-Y", "O"]] == ["B-X", "I-X", "I-X", "B-Y", "O"]


def test_ill_formed_sequences_raise():
    with pytest.raises(ValueError, match="Ill-formed BILUO"):
        tags_to_spans(["O", "I-PER", "L-PER"], "BILUO")
    with pytest.raises(ValueError, match="Overlapping"):
        spans_to_tags(5, [(0, 3, "A"), (2, 4, "B")], "BILUO")
