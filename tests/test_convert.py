"""Tests of the column-format converter (spacy_bilstm_crf.convert and the CLI)."""

import os
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Dict, List, Sequence

import pytest
import spacy
from spacy.tokens import Doc, DocBin
from spacy.vocab import Vocab

from spacy_bilstm_crf.cli import main
from spacy_bilstm_crf.convert import (
    SCHEME_NAMES,
    ConversionError,
    Sentence,
    TagSequenceError,
    convert,
    detect_scheme,
    docs_to_sentences,
    read_column_file,
    sentences_to_docs,
    spans_to_tags,
    split_dev,
    tags_to_spans,
    write_column_file,
)

REPO = Path(__file__).parents[1]
DATA = Path(__file__).parents[1].parent / "shared" / "data"


def write(tmp_path: Path, text: str, name: str = "data.txt") -> Path:
    """Write ``text`` byte for byte (CRLF and BOM kept)."""
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def column_text(sentences: Sequence[Sequence[str]], sep: str = " ") -> str:
    """Sentences given as lists of ``"TOKEN TAG"`` strings, as a column file."""
    return "".join("".join(f"{t.replace(' ', sep)}\n" for t in s) + "\n" for s in sentences)


@cache
def blank_vocab(lang: str) -> Vocab:
    """A vocab to read DocBins with, built once per language (building an English tokenizer takes 0.1 s)."""
    return spacy.blank(lang).vocab


def load_docs(path: Path, lang: str = "en") -> List[Doc]:
    return list(DocBin().from_disk(path).get_docs(blank_vocab(lang)))


def ents(doc: Doc) -> List[tuple]:
    return [(e.start, e.end, e.label_, e.text) for e in doc.ents]


# --- tag schemes -----------------------------------------------------------

SCHEME_CASES = {
    "BIO": (
        ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "B-ORG-X"],
        [(0, 2, "PER"), (3, 4, "LOC"), (4, 6, "LOC"), (6, 7, "ORG-X")],
    ),
    "IOB1": (
        ["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-ORG", "I-ORG"],
        [(0, 2, "PER"), (3, 4, "LOC"), (4, 5, "LOC"), (5, 7, "ORG")],
    ),
    "BIOES": (
        ["B-PER", "I-PER", "E-PER", "S-LOC", "O", "B-ORG", "E-ORG", "S-ORG"],
        [(0, 3, "PER"), (3, 4, "LOC"), (5, 7, "ORG"), (7, 8, "ORG")],
    ),
    "BILUO": (
        ["U-PER", "B-LOC", "I-LOC", "L-LOC", "O", "U-PER", "U-PER"],
        [(0, 1, "PER"), (1, 4, "LOC"), (5, 6, "PER"), (6, 7, "PER")],
    ),
    "BMES": (
        ["B-ORG", "M-ORG", "M-ORG", "E-ORG", "S-PER", "O", "B-LOC", "E-LOC"],
        [(0, 4, "ORG"), (4, 5, "PER"), (6, 8, "LOC")],
    ),
}


@pytest.mark.parametrize("scheme", SCHEME_NAMES)
def test_tags_to_spans_every_scheme(scheme: str) -> None:
    tags, spans = SCHEME_CASES[scheme]
    assert tags_to_spans(tags, scheme) == spans
    assert spans_to_tags(len(tags), spans, scheme) == tags
    assert tags_to_spans([], scheme) == []
    assert tags_to_spans(["O", "O"], scheme) == []
    assert spans_to_tags(2, [], scheme) == ["O", "O"]


def test_bilou_and_bioes_accept_each_others_end_and_single_prefixes() -> None:
    assert tags_to_spans(["B-X", "L-X", "S-Y"], "bioes") == [(0, 2, "X"), (2, 3, "Y")]
    assert tags_to_spans(["B-X", "E-X", "U-Y"], "bilou") == [(0, 2, "X"), (2, 3, "Y")]


def test_iob1_reading() -> None:
    tags = ["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-ORG", "I-MISC", "I-MISC"]
    spans = [(0, 2, "PER"), (2, 3, "PER"), (4, 5, "LOC"), (5, 6, "ORG"), (6, 8, "MISC")]
    assert tags_to_spans(tags, "iob1") == spans
    # Canonical IOB1 writes B- only between adjacent entities of one label.
    assert spans_to_tags(8, spans, "iob1") == tags
    with pytest.raises(TagSequenceError) as info:
        tags_to_spans(tags, "bio")
    assert info.value.index == 0 and info.value.kind == "orphan_continuation"
    repairs: list = []
    assert tags_to_spans(tags, "bio", lenient=True, repairs=repairs) == spans
    assert [(r.kind, r.index, r.tag) for r in repairs] == [
        ("orphan_continuation", 0, "I-PER"),
        ("orphan_continuation", 4, "I-LOC"),
        ("orphan_continuation", 5, "I-ORG"),
        ("orphan_continuation", 6, "I-MISC"),
    ]


def test_iob1_begin_only_after_an_entity_of_its_label() -> None:
    tags = ["O", "B-PER", "I-ORG", "B-LOC"]
    with pytest.raises(TagSequenceError) as info:
        tags_to_spans(tags, "IOB1")
    assert (info.value.index, info.value.kind, info.value.tag) == (1, "misplaced_begin", "B-PER")
    repairs: list = []
    assert tags_to_spans(tags, "IOB1", lenient=True, repairs=repairs) == [(1, 2, "PER"), (2, 3, "ORG"), (3, 4, "LOC")]
    assert [(r.kind, r.index) for r in repairs] == [("misplaced_begin", 1), ("misplaced_begin", 3)]


@pytest.mark.parametrize(
    "sentences,expected",
    [
        ([["O", "O"]], "BIO"),
        ([["B-PER", "I-PER"], ["B-LOC", "B-LOC"]], "BIO"),
        # IOB2 with IOB1 leftovers is BIO: strict reading reports the leftovers.
        ([["B-PER", "I-PER"], ["O", "I-LOC"]], "BIO"),
        ([["I-PER", "O"]], "IOB1"),
        ([["I-PER", "I-PER", "I-LOC", "B-LOC"]], "IOB1"),
        ([["B-PER", "I-PER", "E-PER"], ["S-LOC"]], "BIOES"),
        ([["B-PER", "I-PER", "L-PER"], ["U-LOC"]], "BILUO"),
        ([["B-PER", "L-PER", "S-LOC"]], "BIOES"),
        ([["B-PER", "M-PER", "E-PER", "I-PER"]], "BMES"),
        ([["B-PER", "E-PER"], ["O", "I-X"]], "BIOES"),
        (["I-PER", "I-PER", "O", "I-LOC"], "IOB1"),  # one flat sentence
    ],
)
def test_detect_scheme(sentences: list, expected: str) -> None:
    assert detect_scheme(sentences) == expected


def test_spans_to_tags_rejects_bad_spans() -> None:
    with pytest.raises(ValueError):
        spans_to_tags(3, [(0, 2, "X"), (1, 3, "Y")], "bio")
    with pytest.raises(ValueError):
        spans_to_tags(3, [(2, 4, "X")], "bio")
    with pytest.raises(ValueError):
        spans_to_tags(3, [(0, 1, "X")], "nope")


# --- reading files ---------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEME_NAMES)
def test_read_every_scheme_from_file(tmp_path: Path, scheme: str) -> None:
    tags, spans = SCHEME_CASES[scheme]
    words = [f"w{i}" for i in range(len(tags))]
    text = column_text([[f"{w} {t}" for w, t in zip(words, tags)], ["end O"]])
    path = write(tmp_path, text)
    corpus = read_column_file(path)
    assert corpus.scheme == scheme and corpus.detected
    assert [s.tokens for s in corpus] == [words, ["end"]]
    assert [s.spans for s in corpus] == [spans, []]
    assert [s.line for s in corpus] == [1, len(tags) + 2]
    explicit = read_column_file(path, scheme=scheme)
    assert explicit.scheme == scheme and not explicit.detected
    assert [s.spans for s in explicit] == [spans, []]


def test_conll_style_iob2_with_iob1_leftovers(tmp_path: Path) -> None:
    text = column_text(
        [
            ["EU B-ORG", "rejects O", "German I-MISC", "call O"],
            ["Peter B-PER", "Blackburn I-PER"],
            ["Japan I-LOC", "China B-LOC", "beat O"],
        ]
    )
    path = write(tmp_path, text)
    with pytest.raises(ConversionError, match=r"data\.txt, line 3: 'I-MISC' does not continue an entity"):
        read_column_file(path)
    corpus = read_column_file(path, lenient=True)  # the leftovers read as B-, and counted
    assert corpus.scheme == "BIO" and corpus.repair_counts() == {"orphan_continuation": 2}
    assert [s.spans for s in corpus] == [
        [(0, 1, "ORG"), (2, 3, "MISC")],
        [(0, 2, "PER")],
        [(0, 1, "LOC"), (1, 2, "LOC")],
    ]


def test_crlf_bom_tabs_and_trailing_blanks(tmp_path: Path) -> None:
    text = (
        "\ufeffJohn\tB-PER \r\n"
        "Smith\tI-PER\t\r\n"
        "\r\n\r\n  \r\n"
        "New York\tB-LOC\r\n"  # tab-separated tokens may hold a space
        "is\tO   \r\n"
        "\r\n"
        "Bye\tO\r\n"  # last sentence without a trailing blank line
    )
    path = write(tmp_path, text)
    corpus = read_column_file(path)
    assert corpus.delimiter == "tab"
    assert [s.tokens for s in corpus] == [["John", "Smith"], ["New York", "is"], ["Bye"]]
    assert [s.spans for s in corpus] == [[(0, 2, "PER")], [(0, 1, "LOC")], []]
    assert [s.line for s in corpus] == [1, 6, 9]
    # Space-separated columns, with runs of blanks and CRLF.
    spaced = write(tmp_path, "\ufeffJohn  B-PER\r\nSmith \t I-PER  \r\n\r\n", "spaced.txt")
    corpus = read_column_file(spaced, delimiter="space")
    assert [s.tokens for s in corpus] == [["John", "Smith"]]
    assert [s.spans for s in corpus] == [[(0, 2, "PER")]]


def test_docstart_and_four_columns(tmp_path: Path) -> None:
    text = (
        "-DOCSTART- -X- -X- O\n\n"
        "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n"
        "Peter NNP B-NP B-PER\n\n"
        "-DOCSTART- -X- -X- O\n"  # no blank line around it
        "Bonn NNP B-NP B-LOC\n"
        "-DOCSTART- O\n\n\n"
    )
    corpus = read_column_file(write(tmp_path, text))
    assert [s.tokens for s in corpus] == [["EU", "rejects"], ["Peter"], ["Bonn"]]
    assert [s.spans for s in corpus] == [[(0, 1, "ORG")], [(0, 1, "PER")], [(0, 1, "LOC")]]
    assert [s.line for s in corpus] == [3, 6, 9]
    assert corpus[0].doc_id == corpus[1].doc_id != corpus[2].doc_id


# --- docs ------------------------------------------------------------------

ZH = column_text(
    [
        ["我 O", "爱 O", "北 B-LOC", "京 M-LOC", "市 E-LOC", "。 O"],
        ["张 B-PER", "三 E-PER", "在 O", "沪 S-LOC"],
    ]
)


def test_chinese_docs_have_no_spaces(tmp_path: Path) -> None:
    summary = convert(write(tmp_path, ZH), tmp_path / "out")
    assert summary.lang == "zh" and summary.scheme == "BMES"
    assert summary.entities == {"LOC": 2, "PER": 1}
    docs = load_docs(tmp_path / "out" / "data.spacy", "zh")
    assert [d.text for d in docs] == ["我爱北京市。", "张三在沪"]
    assert [ents(d) for d in docs] == [[(2, 5, "LOC", "北京市")], [(0, 2, "PER", "张三"), (3, 4, "LOC", "沪")]]
    assert all(t.whitespace_ == "" for d in docs for t in d)
    # An explicit --lang overrides the guess.
    english = convert(write(tmp_path, ZH), tmp_path / "en", lang="en")
    assert english.lang == "en"
    assert load_docs(tmp_path / "en" / "data.spacy")[0].text == "我 爱 北 京 市 。"


def test_english_docs_have_spaces(tmp_path: Path) -> None:
    text = column_text([["John B-PER", "lives O", "in O", "New B-LOC", "York I-LOC", ". O"]])
    summary = convert(write(tmp_path, text), tmp_path)
    assert summary.lang == "en"
    (doc,) = load_docs(tmp_path / "data.spacy")
    assert doc.text == "John lives in New York ."
    assert [t.whitespace_ for t in doc] == [" "] * 5 + [""]
    assert ents(doc) == [(0, 1, "PER", "John"), (3, 5, "LOC", "New York")]
    assert [t.ent_iob_ for t in doc] == ["B", "O", "O", "B", "I", "O"]


def test_n_sents_grouping_keeps_sentence_starts(tmp_path: Path) -> None:
    sentences = [[f"s{i}a O", f"s{i}b B-X"] for i in range(5)]
    text = column_text(sentences[:3]) + "-DOCSTART- O\n\n" + column_text(sentences[3:])
    summary = convert(write(tmp_path, text), tmp_path, n_sents=2)
    assert (summary.sentences, summary.docs, summary.tokens) == (5, 3, 10)
    docs = load_docs(tmp_path / "data.spacy")
    # Groups do not cross the -DOCSTART- boundary: 2 + 1 | 2 sentences.
    assert [len(list(d.sents)) for d in docs] == [2, 1, 2]
    assert [[s.text for s in d.sents] for d in docs][0] == ["s0a s0b", "s1a s1b"]
    assert [t.is_sent_start for t in docs[0]] == [True, False, True, False]
    assert [e.text for e in docs[0].ents] == ["s0b", "s1b"]
    assert [s.tokens for s in docs_to_sentences(docs)] == [[f"s{i}a", f"s{i}b"] for i in range(5)]


def test_dev_split_is_the_last_block_by_default(tmp_path: Path) -> None:
    text = column_text([[f"t{i} O", f"u{i} B-X"] for i in range(20)])
    path = write(tmp_path, text, "train.txt")
    summary = convert(path, tmp_path / "out", dev_fraction=0.25, seed=3)
    assert summary.dev_docs == 5
    assert [d.text for d in load_docs(tmp_path / "out" / "dev.spacy")] == [f"t{i} u{i}" for i in range(15, 20)]
    assert [d.text for d in load_docs(tmp_path / "out" / "train.spacy")] == [f"t{i} u{i}" for i in range(15)]
    assert split_dev(list(range(10)), 0.3) == (list(range(7)), [7, 8, 9])
    with pytest.raises(ValueError, match="dev split must be one of block, random, got 'shuffle'"):
        split_dev(list(range(10)), 0.3, how="shuffle")


def test_random_dev_split_is_seeded_and_sized(tmp_path: Path) -> None:
    text = column_text([[f"t{i} O", f"u{i} B-X"] for i in range(20)])
    path = write(tmp_path, text, "train.txt")
    runs: Dict[int, List[List[str]]] = {}
    for seed, out in ((1, "a"), (1, "b"), (2, "c")):
        summary = convert(path, tmp_path / out, dev_fraction=0.25, seed=seed, dev_split="random")
        assert summary.output_paths == [tmp_path / out / "train.spacy", tmp_path / out / "dev.spacy"]
        assert (summary.docs, summary.dev_docs) == (20, 5)
        train = [d.text for d in load_docs(tmp_path / out / "train.spacy")]
        dev = [d.text for d in load_docs(tmp_path / out / "dev.spacy")]
        assert (len(train), len(dev)) == (15, 5)
        assert sorted(train + dev) == sorted(f"t{i} u{i}" for i in range(20))
        runs.setdefault(seed, []).append(dev)
    assert runs[1][0] == runs[1][1] != runs[2][0]
    assert split_dev(list(range(10)), 0.3, seed=7, how="random") == split_dev(list(range(10)), 0.3, 7, "random")
    assert split_dev(list(range(3)), 0.01)[1] != []  # at least one dev item
    with pytest.raises(ValueError):
        split_dev([1], 0.5)
    with pytest.raises(ValueError, match="dev"):
        convert(write(tmp_path, text, "dev.txt"), tmp_path, dev_fraction=0.5)


# --- malformed input -------------------------------------------------------

BAD_CASES = [
    # (id, text, scheme, line, tag, kind, lenient spans per sentence, repairs)
    ("one_column", "John B-PER\nSmith\n", "auto", 2, "Smith", "malformed_line", [[(0, 1, "PER")]], None),
    ("empty_token", "John\tB-PER\n\tI-PER\n", "auto", 2, "I-PER", "malformed_line", [[(0, 1, "PER")]], None),
    ("unknown_prefix", "John B-PER\nSmith X-PER\n", "auto", 2, "X-PER", "unknown_tag", [[(0, 1, "PER")]], None),
    ("no_prefix", "John PER\n", "auto", 1, "PER", "unknown_tag", [[]], None),
    ("bmes_prefix_in_bio", "A B-X\nB M-X\n", "bio", 2, "M-X", "unknown_tag", [[(0, 1, "X")]], None),
    ("orphan_end", "John O\nSmith E-PER\n", "auto", 2, "E-PER", "orphan_continuation", [[(1, 2, "PER")]], None),
    (
        "type_change",
        "A B-PER\nB M-LOC\nC E-LOC\n",
        "bmes",
        2,
        "M-LOC",
        "unclosed_entity",
        [[(0, 1, "PER"), (1, 3, "LOC")]],
        {"orphan_continuation": 1, "unclosed_entity": 1},
    ),
    ("b_then_o", "A B-PER\nB O\n", "bioes", 2, "'O'", "unclosed_entity", [[(0, 1, "PER")]], None),
    (
        "b_then_b",
        "A B-PER\nB M-PER\nC B-PER\nD E-PER\n",
        "bmes",
        3,
        "B-PER",
        "unclosed_entity",
        [[(0, 2, "PER"), (2, 4, "PER")]],
        None,
    ),
    ("open_at_end", "A B-PER\nB M-PER\n\nC O\n", "auto", 2, "M-PER", "unclosed_entity", [[(0, 2, "PER")], []], None),
    ("bio_orphan", "A O\nB I-PER\nC I-PER\n", "bio", 2, "I-PER", "orphan_continuation", [[(1, 3, "PER")]], None),
]


@pytest.mark.parametrize("case", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_malformed_input_names_file_line_and_tag(tmp_path: Path, case: tuple) -> None:
    name, text, scheme, line, tag, kind, spans, repairs = case
    path = write(tmp_path, text, f"bad_{name}.txt")
    with pytest.raises(ConversionError) as info:
        read_column_file(path, scheme=scheme)
    message = str(info.value)
    assert f"bad_{name}.txt" in message
    assert f"line {line}:" in message
    assert tag in message
    assert info.value.kind == kind and info.value.line == line
    corpus = read_column_file(path, scheme=scheme, lenient=True)
    assert [s.spans for s in corpus] == spans
    assert corpus.repair_counts() == (repairs or {kind: 1})
    assert corpus.repairs[0].line == line


def test_lenient_repairs_are_counted_and_reported(tmp_path: Path, capsys) -> None:
    text = column_text(
        [
            ["A B-PER", "B O", "C E-LOC"],  # unclosed B-PER, orphan E-LOC
            ["D S-ORG", "E Y-ORG", "lonely"],  # unknown tag, malformed line
            ["F B-PER", "G I-PER"],  # open at the sentence end
        ]
    )
    path = write(tmp_path, text)
    summary = convert(path, tmp_path / "out", lenient=True)
    assert summary.repairs == {
        "malformed_line": 1,
        "unknown_tag": 1,
        "orphan_continuation": 1,
        "unclosed_entity": 2,
    }
    assert summary.entities == {"LOC": 1, "ORG": 1, "PER": 2}
    assert summary.tokens == 7  # the malformed line is skipped, and counted
    assert [r.line for r in summary.repair_log] == [2, 3, 6, 7, 10]
    report = summary.format(verbose=True)
    assert "repairs: 5" in report and "unclosed_entity 2" in report and "line 7" in report
    assert main(["convert", str(path), str(tmp_path / "cli"), "--lenient"]) == 0
    assert "repairs: 5 (malformed_line 1, unknown_tag 1" in capsys.readouterr().out


def test_split_entity_tail(tmp_path: Path) -> None:
    # A sentence split cut 梁庆庭 (PER): the head was retagged S-PER, the tail not.
    text = column_text([["说 O", "梁 S-PER"], ["庆 M-PER", "庭 E-PER", "说 O", "深 S-ORG"]])
    path = write(tmp_path, text)
    with pytest.raises(ConversionError) as info:
        read_column_file(path)
    assert "line 4:" in str(info.value) and "M-PER" in str(info.value)
    assert "tail" in str(info.value)
    corpus = read_column_file(path, lenient=True)
    assert [s.spans for s in corpus] == [[(1, 2, "PER")], [(3, 4, "ORG")]]
    assert corpus.repair_counts() == {"split_entity_tail": 1}
    # Across a -DOCSTART- the run is an ordinary orphan: it starts an entity.
    parts = text.split("\n\n")
    path = write(tmp_path, parts[0] + "\n\n-DOCSTART- O\n\n" + parts[1] + "\n", "doc.txt")
    corpus = read_column_file(path, lenient=True)
    assert [s.spans for s in corpus] == [[(1, 2, "PER")], [(0, 2, "PER"), (3, 4, "ORG")]]
    assert corpus.repair_counts() == {"orphan_continuation": 1}


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin.txt"
    path.write_bytes("a O\n\nb\xe9 O\n".encode("latin-1"))
    with pytest.raises(ConversionError, match=r"latin\.txt, line 3: not valid UTF-8"):
        read_column_file(path)


# --- round trip ------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEME_NAMES)
@pytest.mark.parametrize("n_sents", [1, 2])
def test_round_trip_through_docbin(tmp_path: Path, scheme: str, n_sents: int) -> None:
    tags, _ = SCHEME_CASES[scheme]
    sentences = [
        [f"w{i} {t}" for i, t in enumerate(tags)],
        ["x O", "y O"],
        [f"v{i} {t}" for i, t in enumerate(reversed(tags))],
    ]
    path = write(tmp_path, column_text(sentences))
    corpus = read_column_file(path, scheme=scheme, lenient=True)
    convert(path, tmp_path, scheme=scheme, n_sents=n_sents, lenient=True)
    back = docs_to_sentences(load_docs(tmp_path / "data.spacy"))
    assert [s.tokens for s in back] == [s.tokens for s in corpus]
    # Tags rebuilt from the stored entities equal the normalised input tags.
    expected = [spans_to_tags(len(s.tokens), s.spans, scheme) for s in corpus]
    assert [spans_to_tags(len(s.tokens), s.spans, scheme) for s in back] == expected
    assert expected[0] == tags  # the first sentence is already normal
    # write_column_file produces a file that reads back to the same sentences.
    out = tmp_path / "back.txt"
    assert write_column_file(load_docs(tmp_path / "data.spacy"), out, scheme) == 3
    again = read_column_file(out, scheme=scheme)
    assert [(s.tokens, s.spans) for s in again] == [(s.tokens, s.spans) for s in corpus]


def test_sentences_to_docs_directly() -> None:
    sentences = [Sentence(["a", "b"], [(1, 2, "X")], 1), Sentence(["c"], [], 4)]
    docs = sentences_to_docs(sentences, "en", n_sents=5)
    assert len(docs) == 1 and docs[0].text == "a b c"
    assert [t.is_sent_start for t in docs[0]] == [True, False, True]
    assert ents(docs[0]) == [(1, 2, "X", "b")]


# --- command line ----------------------------------------------------------


def test_cli_main(tmp_path: Path, capsys) -> None:
    a = write(tmp_path, column_text([["John B-PER", "runs O"]] * 4), "a.txt")
    b = write(tmp_path, ZH, "b.txt")
    assert main(["convert", str(a), str(b), str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "a.spacy").exists() and (tmp_path / "out" / "b.spacy").exists()
    out = capsys.readouterr().out
    assert "sentences: 4" in out and "scheme: BIO (detected)" in out and "lang: zh" in out
    args = [
        "convert",
        str(a),
        str(tmp_path / "opts"),
        "--scheme",
        "bio",
        "--delimiter",
        "space",
        "--lang",
        "en",
        "--n-sents",
        "2",
        "--dev-fraction",
        "0.5",
        "--seed",
        "3",
        "--lenient",
    ]
    assert main(args) == 0
    assert len(load_docs(tmp_path / "opts" / "a.spacy")) == 1
    assert len(load_docs(tmp_path / "opts" / "dev.spacy")) == 1
    assert main(["convert", str(a)]) == 2  # usage error
    assert main(["convert", str(a), str(tmp_path), "--dev-fraction", "1.5"]) == 2
    capsys.readouterr()


def test_cli_main_bad_file(tmp_path: Path, capsys) -> None:
    bad = write(tmp_path, "John B-PER\nSmith E-PER\n", "bad.txt")
    assert main(["convert", str(bad), str(tmp_path / "out"), "--scheme", "bio"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "bad.txt, line 2:" in err and "E-PER" in err
    assert not (tmp_path / "out" / "bad.spacy").exists()
    missing = tmp_path / "missing.txt"
    assert main(["convert", str(missing), str(tmp_path / "out")]) == 1
    assert "missing.txt" in capsys.readouterr().err


def run_module(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "spacy_bilstm_crf", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_cli_subprocess(tmp_path: Path) -> None:
    good = write(tmp_path, column_text([["John B-PER", "runs O"]]), "good.txt")
    bad = write(tmp_path, "John B-PER\nSmith X-PER\n", "bad.txt")
    done = run_module("convert", str(good), str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "good.spacy").exists()
    failed = run_module("convert", str(bad), str(tmp_path / "out"))
    assert failed.returncode != 0
    assert "Traceback" not in failed.stderr
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and "bad.txt, line 2:" in lines[0] and "X-PER" in lines[0]


# --- real corpora ----------------------------------------------------------

REAL = [
    # (file, sentences, entities, lenient, scheme, repairs)
    # CoNLL-2003 here is IOB2 with IOB1 leftovers (an I-X opening an entity).
    ("conll2003/train.txt", 14041, 23501, True, "BIO", {"orphan_continuation": 267}),
    ("conll2003/dev.txt", 3250, 5942, True, "BIO", {"orphan_continuation": 56}),
    ("conll2003/test.txt", 3453, 5651, True, "BIO", {"orphan_continuation": 53}),
    # MSRA sentences were cut at 100 characters; a few cut entities leave a
    # sentence opening with M-/E- tags: lenient mode reads those tails as O.
    ("msra/train.txt", 50289, 74438, True, "BMES", {"split_entity_tail": 6}),
    ("msra/test.txt", 5000, 6446, True, "BMES", {"split_entity_tail": 11}),
]


@pytest.mark.slow
@pytest.mark.skipif(not DATA.is_dir(), reason="shared data not available")
@pytest.mark.parametrize("case", REAL, ids=[c[0] for c in REAL])
def test_real_corpus_counts(case: tuple) -> None:
    name, n_sents, n_ents, lenient, scheme, repairs = case
    corpus = read_column_file(DATA / name, lenient=lenient)
    assert corpus.scheme == scheme
    assert len(corpus) == n_sents
    assert sum(corpus.entity_counts().values()) == n_ents
    assert corpus.repair_counts() == repairs


@pytest.mark.slow
@pytest.mark.skipif(not DATA.is_dir(), reason="shared data not available")
def test_real_corpus_strict_errors_and_conversion(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match=r"test\.txt, line 45869: 'M-PER'"):
        read_column_file(DATA / "msra" / "test.txt")
    with pytest.raises(ConversionError, match=r"test\.txt, line 2568: 'I-MISC'"):
        read_column_file(DATA / "conll2003" / "test.txt")
    summary = convert(DATA / "conll2003" / "test.txt", tmp_path, lenient=True)
    assert (summary.sentences, summary.docs, summary.n_entities) == (3453, 3453, 5651)
    docs = load_docs(tmp_path / "test.spacy")
    assert len(docs) == 3453 and sum(len(d.ents) for d in docs) == 5651
    grouped = convert(DATA / "conll2003" / "test.txt", tmp_path / "g", n_sents=10, lenient=True)
    assert grouped.docs < 3453 and grouped.n_entities == 5651
