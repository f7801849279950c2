"""The tag-scheme module: names, inventories, transitions, spans <-> tags.

The transition masks and strict reading are checked against each other by
exhaustive enumeration, and spans -> tags -> spans by property tests.
"""

import sys
from itertools import product
from typing import List, Optional, Sequence, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spacy_bilstm_crf.tag_scheme import (
    SCHEME_NAMES,
    TagSequenceError,
    allowed_transitions,
    continuation_tags,
    convert_biluo,
    get_scheme,
    make_tags,
    scheme_name,
    spans_to_tags,
    tags_to_spans,
    validate_label,
)

LABELS = ("A", "B")


def test_inventory_order_is_stable():
    """Saved pipelines index tags by position: this order must never change."""
    assert make_tags(["LOC", "PER"], "BILUO") == ["O", "B-LOC", "I-LOC", "L-LOC", "U-LOC"] + [
        "B-PER",
        "I-PER",
        "L-PER",
        "U-PER",
    ]
    assert make_tags(["PER"], "BIO") == ["O", "B-PER", "I-PER"]
    assert make_tags(["PER"], "BMES") == ["O", "B-PER", "M-PER", "E-PER", "S-PER"]


@pytest.mark.parametrize(
    "spelling,name",
    [("bio", "BIO"), ("IOB2", "BIO"), ("iob1", "IOB1"), ("bilou", "BILUO"), ("Biluo", "BILUO"), ("iobes", "BIOES")],
)
def test_scheme_spellings(spelling, name):
    assert scheme_name(spelling) == name
    assert get_scheme(spelling) is get_scheme(name)


def test_unknown_scheme_names_the_valid_ones():
    with pytest.raises(ValueError, match="Unknown tag scheme 'BIOLU': expected one of BIO, IOB1, BILUO, BIOES, BMES"):
        make_tags(["PER"], "BIOLU")


@pytest.mark.parametrize("label", ["", " ", " PER", "PER X", 3])
def test_bad_labels_are_rejected(label):
    with pytest.raises(ValueError):
        validate_label(label)


def _first_violation(ids: Sequence[int], masks) -> Optional[int]:
    """The position a strict reader must name: the first step the masks forbid."""
    transitions, start, end = masks
    if not start[ids[0]]:
        return 0
    for i in range(1, len(ids)):
        if not transitions[ids[i - 1], ids[i]]:
            return i
    return None if end[ids[-1]] else len(ids) - 1


@pytest.mark.parametrize("scheme", SCHEME_NAMES)
def test_transitions_and_strict_reading_agree(scheme):
    """Every sequence the masks accept reads as spans and re-encodes to itself;
    every sequence they reject is rejected by strict reading, at the position
    of its first forbidden step. Exhaustive up to length 4 over two labels."""
    tags = make_tags(LABELS, scheme)
    masks = allowed_transitions(tags, scheme)
    accepted = rejected = 0
    for length in range(1, 5):
        for ids in product(range(len(tags)), repeat=length):
            seq = [tags[i] for i in ids]
            violation = _first_violation(ids, masks)
            if violation is None:
                spans = tags_to_spans(seq, scheme)
                assert spans_to_tags(length, spans, scheme) == seq, seq
                accepted += 1
            else:
                with pytest.raises(TagSequenceError) as info:
                    tags_to_spans(seq, scheme)
                assert info.value.index == violation, (seq, str(info.value))
                assert str(info.value).startswith(f"position {violation}: ")
                rejected += 1
    assert accepted and rejected


@st.composite
def span_sets(draw, max_length: int = 12) -> Tuple[int, List[Tuple[int, int, str]]]:
    """A length and a random set of non-overlapping spans inside it."""
    length = draw(st.integers(min_value=0, max_value=max_length))
    cuts = sorted(draw(st.sets(st.integers(min_value=0, max_value=length), max_size=2 * max_length)))
    spans = []
    for start, end in zip(cuts[::2], cuts[1::2]):
        if draw(st.booleans()):
            spans.append((start, end, draw(st.sampled_from(["A", "B", "LONG-LABEL"]))))
    return length, spans


@pytest.mark.parametrize("scheme", SCHEME_NAMES)
@settings(max_examples=60, deadline=None)
@given(case=span_sets())
def test_spans_to_tags_to_spans_is_the_identity(scheme, case):
    length, spans = case
    tags = spans_to_tags(length, spans, scheme)
    assert len(tags) == length
    assert tags_to_spans(tags, scheme) == spans


@pytest.mark.parametrize("scheme", SCHEME_NAMES)
def test_lenient_reading_repairs_what_strict_reading_rejects(scheme):
    tags = ["O", "I-A", "X-B", "O"] if scheme != "BMES" else ["O", "M-A", "X-B", "O"]
    with pytest.raises(TagSequenceError):
        tags_to_spans(tags, scheme)
    repairs: list = []
    spans = tags_to_spans(tags, scheme, lenient=True, repairs=repairs)
    assert spans == [(1, 2, "A")]
    kinds = [repair.kind for repair in repairs]
    assert "unknown_tag" in kinds and repairs[kinds.index("unknown_tag")].index == 2


def test_spans_to_tags_rejects_bad_spans():
    with pytest.raises(ValueError, match="overlaps"):
        spans_to_tags(5, [(0, 3, "A"), (2, 4, "B")], "BILUO")
    with pytest.raises(ValueError, match="outside 0..3"):
        spans_to_tags(3, [(2, 4, "A")], "BIO")
    with pytest.raises(ValueError, match="whitespace"):
        spans_to_tags(3, [(0, 1, "A B")], "BIO")


@pytest.mark.parametrize(
    "scheme,expected",
    [
        ("BILUO", ["B-X", "I-X", "L-X", "U-Y", None, "O", "U-Y", "U-Y"]),
        ("BIO", ["B-X", "I-X", "I-X", "B-Y", None, "O", "B-Y", "B-Y"]),
        ("BIOES", ["B-X", "I-X", "E-X", "S-Y", None, "O", "S-Y", "S-Y"]),
        ("BMES", ["B-X", "M-X", "E-X", "S-Y", None, "O", "S-Y", "S-Y"]),
        ("IOB1", ["I-X", "I-X", "I-X", "I-Y", None, "O", "I-Y", "B-Y"]),
    ],
)
def test_convert_biluo(scheme, expected):
    biluo = ["B-X", "I-X", "L-X", "U-Y", "-", "O", "U-Y", "U-Y"]
    assert convert_biluo(biluo, scheme) == expected


@pytest.mark.parametrize("scheme", ["BILUO", "BIO", "BMES"])
def test_continuation_tags(scheme):
    tags = make_tags(["A"], scheme)
    continuing = [tag for tag, flag in zip(tags, continuation_tags(tags, scheme)) if flag]
    expected = {"BILUO": ["I-A", "L-A"], "BIO": ["I-A"], "BMES": ["M-A", "E-A"]}[scheme]
    assert continuing == expected


def test_module_is_torch_free():
    import subprocess

    code = (
        "import sys, spacy_bilstm_crf.tag_scheme;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'thinc', 'spacy')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
