"""Bad records never stop an annotate job: each becomes a reject naming its file,
line (or row) and reason, and the counts add up. Also: duplicate ids are
reported, damaged Parquet input names its file, and what models and records put
in the summary cannot drive the terminal."""

import json
from pathlib import Path
from typing import Any, List

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spacy_bilstm_crf.annotate.inputs import read_shard
from spacy_bilstm_crf.annotate.records import Fields, Record, Reject, Shard
from spacy_bilstm_crf.cli import main
from spacy_bilstm_crf.safe_text import printable

from .annotate_helpers import output_records, rejects, ruler_pipeline, run, write_lines

TERMINAL_TITLE = "\x1b]0;owned\x07"  # sets the terminal's title


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ruler_pipeline(tmp_path_factory.mktemp("ruler") / "pipeline")


def good(record_id: Any, text: str = "Alice lives in Paris") -> bytes:
    return json.dumps({"id": record_id, "text": text}).encode()


def reasons(folder: Path) -> List[Any]:
    return [(reject["line"], reject["reason"]) for reject in rejects(folder)]


# --- each bad record is a reject -------------------------------------------------------------


def test_a_text_over_spacys_max_length_is_a_reject(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # Rejected, not split: a text of over a million characters is rarely one
    # document, and splitting would change what the model sees.
    source = write_lines(tmp_path / "in.jsonl", [good(1), good(2, "x" * 1_000_001), good(3)])
    summary = run(model, source, tmp_path / "out.jsonl")
    assert [record["id"] for record in output_records(tmp_path / "out.jsonl")] == [1, 3]
    assert reasons(tmp_path / "out.jsonl") == [
        (2, "text is 1,000,001 characters, over the pipeline's max_length of 1,000,000 (nlp.max_length)")
    ]
    assert (summary.docs_in, summary.annotated, summary.rejected) == (3, 2, 1)
    code = main(["annotate", str(model), str(source), str(tmp_path / "strict.jsonl"), "--strict"])
    assert code == 1
    assert capsys.readouterr().err.startswith(
        f"spacy-bilstm-crf annotate: error: {source}: line 2: text is 1,000,001 characters"
    )


def test_lone_surrogates_deep_nesting_and_huge_numbers_are_rejects(model: Path, tmp_path: Path) -> None:
    lines = [
        good(1),
        b'{"id": 2, "text": "Alice \\ud800 Paris"}',
        b'{"id": 4, "text": "Alice", "meta": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"id": 5, "text": "Alice", "n": ' + b"7" * 5000 + b"}",
        b'{"id": ' + str(2**63).encode() + b', "text": "Alice"}',
        b'{"id": ' + str(-(2**63) - 1).encode() + b', "text": "Alice"}',
        good(2**63 - 1),
    ]
    source = write_lines(tmp_path / "in.jsonl", lines)
    for output in (tmp_path / "out.parquet", tmp_path / "out.jsonl"):
        summary = run(model, source, output)
        assert [record["id"] for record in output_records(output)] == [1, 2**63 - 1]
        assert reasons(output) == [
            (2, "text field 'text' holds a lone surrogate ('\\ud800' at character 7), which is not text"),
            (3, "invalid JSON: nested too deeply"),
            (4, "invalid JSON: a number of more than 4300 digits"),
            (5, "id field 'id' is 9223372036854775808, outside the 64-bit integers"),
            (6, "id field 'id' is -9223372036854775809, outside the 64-bit integers"),
        ]
        assert (summary.docs_in, summary.annotated, summary.rejected) == (7, 2, 5)
    string_ids = write_lines(tmp_path / "ids.jsonl", [good("a"), b'{"id": "\\udfff", "text": "Alice"}', good("b")])
    run(model, string_ids, tmp_path / "ids.parquet")
    assert [record["id"] for record in output_records(tmp_path / "ids.parquet")] == ["a", "b"]
    assert reasons(tmp_path / "ids.parquet") == [
        (2, "id field 'id' holds a lone surrogate ('\\udfff' at character 1), which is not text")
    ]


def test_a_line_over_the_line_limit_is_rejected_unread(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spacy_bilstm_crf.annotate import inputs

    monkeypatch.setattr(inputs, "MAX_LINE_BYTES", 100)
    source = write_lines(tmp_path / "in.jsonl", [good(1), good(2, "y" * 200), good(3)])
    run(model, source, tmp_path / "out.jsonl", shard_size=2)
    assert [record["id"] for record in output_records(tmp_path / "out.jsonl")] == [1, 3]
    assert reasons(tmp_path / "out.jsonl") == [(2, f"line is {len(good(2, 'y' * 200))} bytes, over the limit of 100")]


@pytest.mark.slow
def test_bad_parquet_values_are_rejects(model: Path, tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    texts = pa.array([b"Alice", b"Paris \xff", b"Alice"], pa.binary()).view(pa.string())  # not UTF-8
    ids = pa.array([1, 2**63, 3], pa.uint64())
    pq.write_table(pa.table({"id": ids, "text": texts}), tmp_path / "in.parquet")
    summary = run(model, tmp_path / "in.parquet", tmp_path / "out.parquet")
    assert [record["id"] for record in output_records(tmp_path / "out.parquet")] == [1, 3]
    assert [(r["row"], r["reason"]) for r in rejects(tmp_path / "out.parquet")] == [
        (1, "id field 'id' is 9223372036854775808, outside the 64-bit integers")
    ]
    assert summary.rejected == 1
    pq.write_table(pa.table({"id": [1, 2], "text": texts[:2]}), tmp_path / "bad_text.parquet")
    run(model, tmp_path / "bad_text.parquet", tmp_path / "out2.jsonl")
    assert [(r["row"], r["reason"]) for r in rejects(tmp_path / "out2.jsonl")] == [(1, "text is not UTF-8 (byte 7)")]


def test_a_corrupt_parquet_file_in_an_input_folder_names_the_file(model: Path, tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    folder = tmp_path / "corpus"
    folder.mkdir()
    pq.write_table(pa.table({"id": [1], "text": ["Alice"]}), folder / "a.parquet")
    (folder / "b.parquet").write_bytes(b"PAR1 this is no Parquet file")
    with pytest.raises(ValueError, match=r"corpus/b.parquet: not a readable Parquet file \(Parquet magic bytes"):
        run(model, folder, tmp_path / "out.jsonl")
    # A file whose footer is fine but whose data is damaged fails its shard,
    # naming the file and its row groups.
    pq.write_table(pa.table({"id": list(range(50)), "text": ["Alice in Paris " * 20] * 50}), folder / "b.parquet")
    data = bytearray((folder / "b.parquet").read_bytes())
    data[40:400] = b"\xff" * 360  # inside the first data page
    (folder / "b.parquet").write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"corpus/b.parquet: row groups 0-0: cannot read"):
        run(model, folder, tmp_path / "out2.jsonl")


# --- duplicates, and what reaches the terminal -------------------------------------------------------


def test_duplicate_ids_are_counted_and_named(model: Path, tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.jsonl", [good(n) for n in (1, 2, 7, 2, 9, 7, 7, -1, -2)])
    summary = run(model, source, tmp_path / "out.jsonl", shard_size=2)
    # -1 and -2 have the same hash(); they are no duplicates.
    assert (summary.duplicate_ids, summary.duplicate_id_examples) == (3, [2, 7])
    assert "  ids:       3 records repeat an earlier id (e.g. 2, 7)" in summary.format().splitlines()
    saved = json.loads((tmp_path / "out.jsonl" / "_summary.json").read_text())
    assert (saved["duplicate_ids"], saved["duplicate_id_examples"]) == (3, [2, 7])
    again = run(model, source, tmp_path / "out.jsonl", shard_size=2)
    assert (again.docs_this_run, again.duplicate_ids) == (0, 3)  # counted over the files of the whole job
    single = write_lines(tmp_path / "single.jsonl", [good(n) for n in range(4)])
    assert "  ids:       all distinct" in run(model, single, tmp_path / "single_out.jsonl").format().splitlines()


def test_duplicate_ids_beyond_the_bound_are_not_checked_and_the_summary_says_so(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spacy_bilstm_crf.annotate import reporting

    monkeypatch.setattr(reporting, "MAX_CHECKED_IDS", 3)
    source = write_lines(tmp_path / "in.jsonl", [good(n) for n in (1, 1, 2, 2, 3)])
    summary = run(model, source, tmp_path / "out.jsonl")
    assert (summary.duplicate_ids, summary.ids_not_checked) == (1, 2)
    assert "  ids:       1 records repeat an earlier id (e.g. 1) (only the first 3 ids checked)" in summary.format()


def test_labels_and_ids_with_control_characters_reach_the_terminal_escaped(tmp_path: Path) -> None:
    model = ruler_pipeline(tmp_path / "pipeline", [(f"PER{TERMINAL_TITLE}", "Alice")])
    source = write_lines(tmp_path / "in.jsonl", [good("a\x1b[2J"), good("a\x1b[2J")])
    text = run(model, source, tmp_path / "out.jsonl").format()
    assert "\x1b" not in text and "\x07" not in text
    assert "PER\\x1b]0;owned\\x07 2" in text and "'a\\x1b[2J'" in text
    assert printable("tab\there \u202e bidi \x9b csi") == "tab\\there \\u202e bidi \\x9b csi"
    assert printable("Zürich 東京 ok") == "Zürich 東京 ok"


# --- fuzz: whatever the input, every record is annotated or rejected ----------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=12,
)
records = st.fixed_dictionaries(
    {},
    optional={"id": json_values | st.integers(min_value=-(2**64), max_value=2**64), "text": json_values | st.text()},
)
raw_lines = st.one_of(
    records.map(lambda value: json.dumps(value).encode()),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.binary(max_size=40).map(lambda data: data.replace(b"\n", b" ")),
    st.integers(min_value=1, max_value=3000).map(
        lambda depth: b'{"id": 1, "text": ' + b"[" * depth + b"]" * depth + b"}"
    ),
    st.integers(min_value=4000, max_value=6000).map(lambda digits: b'{"id": ' + b"9" * digits + b', "text": "x"}'),
    st.sampled_from([b'{"id": 1, "text": "\\ud83d"}', b'{"id": "\\ud800", "text": "Alice"}', b"\xef\xbb\xbf{}"]),
)


@pytest.mark.slow
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(raw_lines, min_size=1, max_size=12))
def test_fuzz_the_readers_yield_one_record_or_reject_per_line(tmp_path: Path, lines: List[bytes]) -> None:
    path = write_lines(tmp_path / "fuzz.jsonl", lines)
    for input_format, id_type in (("jsonl", "int"), ("jsonl", "str"), ("text", "int")):
        shard = Shard(0, str(path), 0, path.stat().st_size, 1, len(lines), 0)
        items = list(read_shard(input_format, shard, Fields(id_type=id_type)))  # type: ignore[arg-type]
        assert [item.location.number for item in items] == list(range(1, len(lines) + 1))
        for item in items:
            assert isinstance(item, (Record, Reject))
            if isinstance(item, Reject):
                assert item.reason and str(item.location).startswith(f"{path}: line ")
            else:
                item.text.encode("utf-8")  # text, no lone surrogate
                assert isinstance(item.id, int) == (id_type == "int")


@pytest.fixture(scope="module")
def fuzz_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.mark.slow
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(raw_lines, min_size=1, max_size=30), output_format=st.sampled_from(["jsonl", "parquet"]))
def test_fuzz_a_job_never_crashes_and_its_counts_add_up(
    model: Path, fuzz_folder: Path, lines: List[bytes], output_format: str
) -> None:
    pytest.importorskip("pyarrow")
    import tempfile

    work = Path(tempfile.mkdtemp(dir=fuzz_folder))
    source = write_lines(work / "in.jsonl", lines)
    summary = run(model, source, work / f"out.{output_format}", shard_size=7)
    records, bad = output_records(work / f"out.{output_format}"), rejects(work / f"out.{output_format}")
    assert summary.docs_in == len(lines) == summary.annotated + summary.rejected
    assert (len(records), len(bad)) == (summary.annotated, summary.rejected)
    assert all(reject["file"] == str(source) and reject["reason"] for reject in bad)
    assert sorted(reject["line"] for reject in bad) == [r["line"] for r in bad]  # in input order
    assert sum(summary.entities.values()) == sum(len(record["entities"]) for record in records)
