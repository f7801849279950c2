"""``spacy-bilstm-crf annotate``: formats, rejects, resuming after kill -9, and
equal output from the local engine (1 and 2 processes) and the Ray engine."""

import importlib.util
import io
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest
import spacy
from spacy.language import Language

from spacy_bilstm_crf.annotate import inputs as inputs_module
from spacy_bilstm_crf.annotate.inputs import line_ranges, read_lines
from spacy_bilstm_crf.annotate.ray_engine import size_workers
from spacy_bilstm_crf.annotate.reporting import Progress
from spacy_bilstm_crf.cli import main

from .annotate_helpers import manifest_entries, output_records, rejects, run, write_lines
from .pipelines import cnn_tok2vec, make_nlp, train

REPO = Path(__file__).resolve().parents[1]
CLI_TIMEOUT = 240
# With this set to 0, Ray takes 127.0.0.1 as the node address instead of the machine's network address.
LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
# The niceness of the local cluster's workers (Ray's default: 15).
NICENESS = "RAY_worker_niceness"

PEOPLE = ["Alice", "Bob", "Carol", "Dave"]
CITIES = ["Paris", "London", "Berlin"]
COMPANIES = ["Google", "Siemens"]
TEMPLATES = ["{PER} lives in {LOC}", "{PER} works at {ORG} in {LOC}", "{ORG} hired {PER}", "Nothing to see here"]

TOK2VEC = cnn_tok2vec()
ENCODER = {"@architectures": "spacy-bilstm-crf.BiLSTMEncoder.v1", "hidden_width": 32, "dropout": 0.0}

# Imported by the test and, through --code, by the annotate command.
CUSTOM_COMPONENTS = '''
import time

from spacy.language import Language
from spacy.tokens import Span, SpanGroup

SCORES = {"PER": 0.9, "LOC": 0.123456789}


@Language.component("annotate_test_slow")
def slow_down(doc):
    """Makes a run slow enough to be killed half-way."""
    time.sleep(0.004)
    return doc


@Language.component("annotate_test_scores")
def score_spans(doc):
    """Scored spans under doc.spans["scored"]: each PER or LOC entity (ORG ones
    get none), and one span that is no entity."""
    spans = [Span(doc, e.start, e.end, label=e.label_) for e in doc.ents if e.label_ in SCORES]
    scores = [SCORES[span.label_] for span in spans]
    spans.append(Span(doc, 0, 1, label="MISC"))
    scores.append(0.5)
    doc.spans["scored"] = SpanGroup(doc, name="scored", spans=spans, attrs={"scores": scores})
    return doc
'''


def sentence(number: int) -> Tuple[str, List[Tuple[int, int, str]]]:
    """The ``number``-th sentence of the tiny corpus, with its entities."""
    names = {"PER": PEOPLE[number % 4], "LOC": CITIES[number % 3], "ORG": COMPANIES[number % 2]}
    text, entities = "", []
    for piece in re.split(r"(\{[A-Z]+\})", TEMPLATES[number % 4]):
        if piece.startswith("{"):
            label = piece[1:-1]
            entities.append((len(text), len(text) + len(names[label]), label))
            piece = names[label]
        text += piece
    return text, entities


def expected_record(number: int, id_field: str = "id", record_id: Any = None) -> Dict[str, Any]:
    """What a pipeline that learned the tiny corpus outputs for a sentence."""
    text, entities = sentence(number)
    found = [{"start": s, "end": e, "label": label, "text": text[s:e]} for s, e, label in entities]
    return {id_field: number if record_id is None else record_id, "entities": found}


# --- fixtures ---------------------------------------------------------------


@pytest.fixture(scope="session")
def custom_code(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("code") / "components.py"
    path.write_text(CUSTOM_COMPONENTS, encoding="utf8")
    spacy.util.import_file("annotate_test_components", path)
    return path


@pytest.fixture(scope="session")
def trained_nlp() -> Language:
    """crf_ner with a tiny tok2vec, trained on 12 sentences until it gets them right."""
    nlp = make_nlp(ENCODER, lang="xx", tok2vec=TOK2VEC)
    train(nlp, 30, data=[sentence(i) for i in range(12)])
    return nlp


@pytest.fixture(scope="session")
def model(trained_nlp: Language, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "pipeline"
    trained_nlp.to_disk(path)
    return path


def _with_component(trained_nlp: Language, component: str, path: Path) -> Path:
    nlp = spacy.blank("xx")
    nlp.add_pipe("crf_ner", source=trained_nlp)
    nlp.add_pipe(component)
    nlp.to_disk(path)
    return path


@pytest.fixture(scope="session")
def slow_model(trained_nlp: Language, custom_code: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _with_component(trained_nlp, "annotate_test_slow", tmp_path_factory.mktemp("slow") / "pipeline")


@pytest.fixture(scope="session")
def scored_model(trained_nlp: Language, custom_code: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _with_component(trained_nlp, "annotate_test_scores", tmp_path_factory.mktemp("scored") / "pipeline")


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    """A local 2-CPU Ray cluster for the test session; its address. Token
    authentication with a fresh token in the environment, which the annotate
    subprocesses inherit."""
    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is not installed (the ray extra)")
    saved = {name: os.environ.get(name) for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", LOOPBACK_ONLY, NICENESS)}
    # Before importing ray: it reads the token once. The cluster, and the
    # annotate processes that join it, use loopback addresses only. Its
    # workers run at the tests' own priority: at Ray's default, niceness 15,
    # other work on the machine leaves them a few percent of a core.
    os.environ.update(
        {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32), LOOPBACK_ONLY: "0", NICENESS: "0"}
    )
    import ray

    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths must fit
    try:
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            object_store_memory=256 * 2**20,
            _temp_dir=temp_dir,
            log_to_driver=False,
        )
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# --- helpers ----------------------------------------------------------------


def write_jsonl(path: Path, numbers: range, id_field: str = "id", text_field: str = "text") -> Path:
    with path.open("w", encoding="utf8") as file:
        for number in numbers:
            file.write(json.dumps({id_field: number, text_field: sentence(number)[0]}) + "\n")
    return path


def cli_env() -> Dict[str, str]:
    """The environment of annotate subprocesses: one torch thread (on a busy
    machine torch's default, a thread per core, makes small batches many times
    slower), and whatever the Ray fixture set."""
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def run_cli(*args: Any, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess:
    """``spacy-bilstm-crf annotate ARGS`` in a subprocess, bounded in time."""
    command = [sys.executable, "-m", "spacy_bilstm_crf", "annotate", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=cli_env())


def kill_after_commits(command: List[str], output: Path, commits: int, timeout: float = CLI_TIMEOUT) -> None:
    """Start ``command``, ``kill -9`` it once ``output`` has ``commits`` commits,
    and check that it had not finished."""
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=cli_env())
    deadline = time.monotonic() + timeout
    try:
        while sum("commit" in entry for entry in manifest_entries(output)) < commits:
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            assert time.monotonic() < deadline, "no commits in time"
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        if process.stderr:
            process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    assert not any(entry.get("finished") for entry in manifest_entries(output))


def annotate_command(*args: Any) -> List[str]:
    return [sys.executable, "-m", "spacy_bilstm_crf", "annotate", *map(str, args)]


# --- formats ----------------------------------------------------------------


def test_jsonl_in_jsonl_out(model: Path, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", range(12))
    summary = run(model, source, tmp_path / "out.jsonl", shard_size=5)
    assert output_records(tmp_path / "out.jsonl") == [expected_record(n) for n in range(12)]
    assert sorted(p.name for p in (tmp_path / "out.jsonl").iterdir()) == [
        "_lock",
        "_manifest.jsonl",
        "_rejects.jsonl",
        "_summary.json",
        "part-000000-000.jsonl",
        "part-000001-000.jsonl",
        "part-000002-000.jsonl",
    ]
    assert rejects(tmp_path / "out.jsonl") == []
    assert (summary.docs_in, summary.annotated, summary.rejected) == (12, 12, 0)
    assert summary.entities == {"LOC": 6, "ORG": 6, "PER": 9}
    saved = json.loads((tmp_path / "out.jsonl" / "_summary.json").read_text())
    assert saved["entities"] == summary.entities and saved["docs_in"] == 12


@pytest.mark.slow
def test_text_in_parquet_out_ids_are_line_numbers(model: Path, tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    texts = [sentence(n)[0] for n in range(5)]
    lines = [texts[0], texts[1], "", texts[2], "   ", texts[3] + "\r", texts[4]]  # a CRLF line end too
    source = tmp_path / "in.txt"
    source.write_bytes("\n".join(lines).encode("utf8") + b"\n\xff\xfe\n")
    summary = run(model, source, tmp_path / "out.parquet")
    assert output_records(tmp_path / "out.parquet") == [
        expected_record(n, record_id=line) for n, line in zip(range(5), [1, 2, 4, 6, 7])
    ]
    assert rejects(tmp_path / "out.parquet") == [
        {"file": str(source), "line": 3, "reason": "empty line"},
        {"file": str(source), "line": 5, "reason": "line is only whitespace"},
        {"file": str(source), "line": 8, "reason": "not UTF-8 (byte 1 of the line is 0xff)"},
    ]
    assert (summary.docs_in, summary.annotated, summary.rejected) == (8, 5, 3)


@pytest.mark.slow
def test_parquet_file_and_folder_in(model: Path, tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    folder = tmp_path / "in"
    folder.mkdir()
    first = {"doc_id": ["a", "b", None, "c", "d"], "body": [sentence(0)[0], sentence(1)[0], "x", None, ""]}
    pq.write_table(pa.table(first), folder / "0.parquet", row_group_size=2)
    pq.write_table(pa.table({"doc_id": ["e"], "body": [sentence(2)[0]]}), folder / "1.parquet")
    settings = {"id_field": "doc_id", "text_field": "body", "shard_size": 1}
    summary = run(model, folder, tmp_path / "out.jsonl", **settings)
    assert output_records(tmp_path / "out.jsonl") == [
        expected_record(0, "doc_id", "a"),
        expected_record(1, "doc_id", "b"),
        expected_record(2, "doc_id", "e"),
    ]
    file = str(folder / "0.parquet")
    assert rejects(tmp_path / "out.jsonl") == [
        {"file": file, "row": 2, "reason": "id field 'doc_id' is null, not a string or an integer"},
        {"file": file, "row": 3, "reason": "text field 'body' is null"},
        {"file": file, "row": 4, "reason": "text field 'body' is empty"},
    ]
    assert (summary.docs_in, summary.rejected) == (6, 3)
    # One shard per row group (shard size 1): 3 + 1 commits.
    assert sum("commit" in entry for entry in manifest_entries(tmp_path / "out.jsonl")) == 4
    run(model, folder / "1.parquet", tmp_path / "one.parquet", **settings)
    assert output_records(tmp_path / "one.parquet") == [expected_record(2, "doc_id", "e")]


def test_parquet_schema_errors_name_the_file(model: Path, tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": [1], "body": ["x"]}), tmp_path / "a.parquet")
    with pytest.raises(ValueError, match=r"a\.parquet: no column 'text' \(columns: id, body\)"):
        run(model, tmp_path / "a.parquet", tmp_path / "out.jsonl")
    pq.write_table(pa.table({"id": [1.5], "text": ["x"]}), tmp_path / "b.parquet")
    with pytest.raises(ValueError, match=r"b\.parquet: id column 'id' is double, not an integer or a string"):
        run(model, tmp_path / "b.parquet", tmp_path / "out2.jsonl")


def test_unknown_suffixes_are_refused(model: Path, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", range(2))
    with pytest.raises(ValueError, match="cannot tell the output format from the suffix '.out'"):
        run(model, source, tmp_path / "annotated.out")
    run(model, source, tmp_path / "annotated.out", output_format="parquet")
    assert len(output_records(tmp_path / "annotated.out")) == 2


# --- bad records --------------------------------------------------------------

BAD_LINES = [
    (b'{"id": 1, "text": "Alice lives in Paris"}', None),  # sentence(0)
    (b'{"id": 2, "text": "Bob lives in London"', "invalid JSON: Expecting ',' delimiter (column 40)"),
    (b'{"id": 3, "text": "Caf\xe9"}', "not UTF-8 (byte 23 of the line is 0xe9)"),
    (b'{"id": 4}', "no text field 'text'"),
    (b'{"id": 5, "text": 42}', "text field 'text' is a number (42), not a string"),
    (b'{"id": 6, "text": ""}', "text field 'text' is empty"),
    (b'{"id": 7, "text": " \\t "}', "text field 'text' is only whitespace"),
    (b'{"text": "no id"}', "no id field 'id'"),
    (b'{"id": true, "text": "a boolean id"}', "id field 'id' is a boolean (true), not a string or an integer"),
    (
        b'{"id": "8", "text": "a string id"}',
        "id field 'id' is a string ('8'), but the input's ids are an integer (its first good record)",
    ),
    (b"[1, 2]", "not a JSON object but list"),
    (b"", "blank line, not a JSON object"),
    (b'{"id": 9, "text": null}', "text field 'text' is null"),
    (b'{"id": 10, "text": "Google hired Carol"}', None),  # sentence(2)
]


def test_bad_records_go_to_rejects_with_line_and_reason(model: Path, tmp_path: Path) -> None:
    source = tmp_path / "bad.jsonl"
    source.write_bytes(b"\n".join(line for line, _ in BAD_LINES))  # no newline at the end
    summary = run(model, source, tmp_path / "out.jsonl", shard_size=4)
    good = [expected_record(0, record_id=1), expected_record(2, record_id=10)]
    assert output_records(tmp_path / "out.jsonl") == good
    assert rejects(tmp_path / "out.jsonl") == [
        {"file": str(source), "line": number, "reason": reason}
        for number, (_, reason) in enumerate(BAD_LINES, start=1)
        if reason
    ]
    assert (summary.docs_in, summary.annotated, summary.rejected) == (14, 2, 12)
    assert "rejected:  12 (see _rejects.jsonl)" in summary.format()


@pytest.mark.slow
def test_strict_stops_at_the_first_bad_record(model: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    source = tmp_path / "bad.jsonl"
    source.write_bytes(b"\n".join(line for line, _ in BAD_LINES))
    code = main(["annotate", str(model), str(source), str(tmp_path / "out.jsonl"), "--strict"])
    assert code == 1
    assert capsys.readouterr().err == (
        f"spacy-bilstm-crf annotate: error: {source}: line 2: invalid JSON: Expecting ',' delimiter (column 40)\n"
    )


@pytest.mark.slow
def test_first_good_record_sets_the_id_type(model: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    rows = [{"id": 1.5, "text": "x"}, {"id": "a", "text": sentence(0)[0]}, {"id": 2, "text": sentence(1)[0]}]
    source.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf8")
    run(model, source, tmp_path / "out.parquet")
    assert output_records(tmp_path / "out.parquet") == [expected_record(0, record_id="a")]
    assert [r["reason"] for r in rejects(tmp_path / "out.parquet")] == [
        "id field 'id' is a number (1.5), not a string or an integer",
        "id field 'id' is a number (2), but the input's ids are a string (its first good record)",
    ]


# --- confidence from scored spans ----------------------------------------------


@pytest.mark.slow
def test_spans_key_adds_confidence(scored_model: Path, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", range(3))
    run(scored_model, source, tmp_path / "out.jsonl", spans_key="scored")
    confidence = {"PER": 0.9, "LOC": 0.123457, "ORG": None}  # no span for ORG entities
    expected = []
    for number in range(3):
        record = expected_record(number)
        for entity in record["entities"]:
            entity["confidence"] = confidence[entity["label"]]
        expected.append(record)
    assert output_records(tmp_path / "out.jsonl") == expected
    run(scored_model, source, tmp_path / "out.parquet", spans_key="scored")
    assert output_records(tmp_path / "out.parquet") == expected
    no_key = r"--spans-key 'sc': the pipeline set no doc.spans\['sc'\] \(keys set: scored\)"
    with pytest.raises(ValueError, match=no_key):
        run(scored_model, source, tmp_path / "other.jsonl", spans_key="sc")


# --- resuming -----------------------------------------------------------------


@pytest.mark.slow
def test_resume_after_kill_9_gives_every_id_once(slow_model: Path, custom_code: Path, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", range(400))
    output = tmp_path / "out.jsonl"
    args = (slow_model, source, output, "--code", custom_code, "--shard-size", 20, "--batch-size", 8)
    kill_after_commits(annotate_command(*args), output, commits=3)
    done = sum(entry["commit"]["annotated"] for entry in manifest_entries(output) if "commit" in entry)
    assert 60 <= done < 400
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    assert f"({400 - done:,} docs in this run)" in result.stdout
    records = output_records(output)
    assert Counter(record["id"] for record in records) == Counter(range(400))
    assert records == [expected_record(n) for n in range(400)]
    assert not list((output / "_staging").glob("*"))


@pytest.mark.slow
def test_a_finished_job_is_not_redone_and_settings_must_match(model: Path, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", range(6))
    first = run(model, source, tmp_path / "out.jsonl", shard_size=2)
    again = run(model, source, tmp_path / "out.jsonl", shard_size=2)
    assert (again.docs_in, again.docs_this_run, again.entities) == (6, 0, first.entities)
    with pytest.raises(ValueError, match=r"holds the output of another job \(shard_size was 2, now 3\)"):
        run(model, source, tmp_path / "out.jsonl", shard_size=3)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="folder is not empty and holds no _manifest.jsonl"):
        run(model, source, tmp_path / "other", output_format="jsonl")


def test_torn_manifest_line_and_uncommitted_parts_are_dropped(model: Path, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", range(6))
    output = tmp_path / "out.jsonl"
    run(model, source, output, shard_size=2)
    # As if killed while committing the last shard: its part is written, its
    # manifest line torn, and the job not finished.
    lines = (output / "_manifest.jsonl").read_text().splitlines()
    (output / "_manifest.jsonl").write_text("\n".join(lines[:-2]) + "\n" + lines[-2][:30])
    (output / "part-000002-000.jsonl").write_text('{"id": 4, "entities": []}\n')
    summary = run(model, source, output, shard_size=2)
    assert summary.docs_this_run == 2
    assert output_records(output) == [expected_record(n) for n in range(6)]


# --- equal output everywhere ----------------------------------------------------


@pytest.mark.slow
def test_same_records_and_rejects_local_two_processes_and_ray(model: Path, ray_cluster: str, tmp_path: Path) -> None:
    # 300 docs with the bad lines spread among them.
    source = tmp_path / "in.jsonl"
    with source.open("wb") as file:
        for number in range(100, 400):
            file.write(json.dumps({"id": number, "text": sentence(number)[0]}).encode() + b"\n")
            if number % 25 == 0:
                file.write(BAD_LINES[(number // 25) % len(BAD_LINES)][0] + b"\n")
    local = run(model, source, tmp_path / "one.jsonl", batch_size=16, shard_size=100)
    expected = output_records(tmp_path / "one.jsonl")
    # BAD_LINES 4 to 13, 0 and 1 went in: 10 rejects, and ids 1 and 10 are good.
    good = [expected_record(0, record_id=1), expected_record(2, record_id=10)]
    assert expected == good + [expected_record(n) for n in range(100, 400)]
    assert (local.docs_in, local.annotated, local.rejected) == (312, 302, 10)

    two = run_cli(model, source, tmp_path / "two.jsonl", "--n-process", 2, "--batch-size", 16, "--shard-size", 100)
    assert two.returncode == 0, two.stderr
    assert output_records(tmp_path / "two.jsonl") == expected
    assert rejects(tmp_path / "two.jsonl") == rejects(tmp_path / "one.jsonl")

    ray_args = ("--engine", "ray", "--address", ray_cluster, "--workers", 2, "--batch-size", 16, "--shard-size", 100)
    on_ray = run_cli(model, source, tmp_path / "ray.parquet", *ray_args)
    assert on_ray.returncode == 0, on_ray.stderr
    assert output_records(tmp_path / "ray.parquet") == expected
    assert rejects(tmp_path / "ray.parquet") == rejects(tmp_path / "one.jsonl")
    assert local.format().splitlines()[1:5] == on_ray.stdout.splitlines()[1:5]  # docs in ... entities


@pytest.mark.slow
def test_ray_strict_stops_naming_file_and_line(model: Path, ray_cluster: str, tmp_path: Path) -> None:
    source = tmp_path / "bad.jsonl"
    source.write_bytes(b"\n".join(line for line, _ in BAD_LINES))
    strict = run_cli(model, source, tmp_path / "strict.jsonl", "--engine", "ray", "--address", ray_cluster, "--strict")
    assert strict.returncode == 1
    assert strict.stderr.splitlines()[-1] == (
        f"spacy-bilstm-crf annotate: error: {source}: line 2: invalid JSON: Expecting ',' delimiter (column 40)"
    )


@pytest.mark.slow
def test_ray_resume_after_kill_9_gives_every_id_once(model: Path, ray_cluster: str, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", range(160))
    output = tmp_path / "out.jsonl"
    # Waves of 4 shards per worker: 2 waves of 80 docs; killed in the second.
    args = (model, source, output, "--engine", "ray", "--address", ray_cluster, "--workers", 1, "--shard-size", 20)
    kill_after_commits(annotate_command(*args), output, commits=1)
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    assert "(80 docs in this run)" in result.stdout
    records = output_records(output)
    assert Counter(record["id"] for record in records) == Counter(range(160))
    assert records == [expected_record(n) for n in range(160)]


HOSTILE_LINES = [
    (
        b'{"id": 500, "text": "' + b"x" * 1_000_001 + b'"}',
        "text is 1,000,001 characters, over the pipeline's max_length of 1,000,000 (nlp.max_length)",
    ),
    (
        b'{"id": 501, "text": "Alice \\ud800"}',
        "text field 'text' holds a lone surrogate ('\\ud800' at character 7), which is not text",
    ),
    (b'{"id": 502, "text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "invalid JSON: nested too deeply"),
    (b'{"id": 503, "n": ' + b"7" * 5000 + b', "text": "a"}', "invalid JSON: a number of more than 4300 digits"),
    (
        b'{"id": 18446744073709551616, "text": "Alice"}',
        "id field 'id' is 18446744073709551616, outside the 64-bit integers",
    ),
]


@pytest.mark.slow
def test_ray_rejects_what_the_local_engine_rejects(model: Path, ray_cluster: str, tmp_path: Path) -> None:
    lines: List[bytes] = []
    for number in range(20):
        lines.append(json.dumps({"id": number, "text": sentence(number)[0]}).encode())
        if number % 4 == 3:
            lines.append(HOSTILE_LINES[number // 4][0])
    source = write_lines(tmp_path / "in.jsonl", lines)
    local = run(model, source, tmp_path / "local.parquet", shard_size=8)
    hostile_line_numbers = [5, 10, 15, 20, 25]  # after sentences 3, 7, 11, 15 and 19
    expected_rejects = [
        {"file": str(source), "line": number, "reason": reason}
        for number, (_, reason) in zip(hostile_line_numbers, HOSTILE_LINES)
    ]
    assert rejects(tmp_path / "local.parquet") == expected_rejects
    assert output_records(tmp_path / "local.parquet") == [expected_record(n) for n in range(20)]
    assert (local.docs_in, local.annotated, local.rejected) == (25, 20, 5)
    ray_args = ("--engine", "ray", "--address", ray_cluster, "--workers", 1, "--shard-size", 8)
    on_ray = run_cli(model, source, tmp_path / "ray.parquet", *ray_args)
    assert on_ray.returncode == 0, on_ray.stderr
    assert output_records(tmp_path / "ray.parquet") == output_records(tmp_path / "local.parquet")
    assert rejects(tmp_path / "ray.parquet") == expected_rejects
    # Under --strict, a text too long for the pipeline (found by a worker, not
    # by a read task) stops the job too. (With several bad records, the one
    # reported is the first that a task met, not always the first of the input.)
    too_long = write_lines(tmp_path / "long.jsonl", lines[:4] + [HOSTILE_LINES[0][0]] + lines[5:9])
    strict = run_cli(model, too_long, tmp_path / "strict.jsonl", *ray_args, "--strict")
    assert strict.returncode == 1
    assert (
        strict.stderr.splitlines()[-1] == f"spacy-bilstm-crf annotate: error: {too_long}: line 5: {HOSTILE_LINES[0][1]}"
    )


# Starts a cluster the way `annotate --engine ray` without --address does, and
# prints the addresses that this process and its children (Ray's GCS, raylet,
# workers) listen on.
LISTENING = r"""
import ipaddress, json, os
from spacy_bilstm_crf.annotate.settings import import_ray
import_ray(starts_cluster=True)
import ray
from spacy_bilstm_crf.annotate.ray_engine import connect
connect(None)
children = {}
for entry in filter(str.isdigit, os.listdir("/proc")):
    try:
        parent = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])
    except OSError:
        continue
    children.setdefault(parent, []).append(int(entry))
tree, todo = [], [os.getpid()]
while todo:
    tree.append(todo.pop())
    todo += children.get(tree[-1], [])
sockets = set()
for pid in tree:
    try:
        links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    except OSError:
        continue
    sockets.update(link[8:-1] for link in links if link.startswith("socket:["))
addresses = []
for table in ("/proc/net/tcp", "/proc/net/tcp6"):
    for row in open(table).read().splitlines()[1:]:
        fields = row.split()
        if fields[3] == "0A" and fields[9] in sockets:  # listening
            raw = fields[1].split(":")[0]
            packed = b"".join(bytes.fromhex(raw[i : i + 8])[::-1] for i in range(0, len(raw), 8))
            address = ipaddress.ip_address(packed)
            addresses.append(str(getattr(address, "ipv4_mapped", None) or address))
print(json.dumps(addresses))
ray.shutdown()
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's /proc")
def test_a_cluster_annotate_starts_listens_on_loopback_only() -> None:
    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is not installed (the ray extra)")
    env = {name: value for name, value in cli_env().items() if name != LOOPBACK_ONLY}
    result = subprocess.run(
        [sys.executable, "-c", LISTENING], capture_output=True, text=True, timeout=CLI_TIMEOUT, cwd=REPO, env=env
    )
    assert result.returncode == 0, result.stderr
    addresses = json.loads(result.stdout.splitlines()[-1])
    assert addresses, "Ray listens nowhere?"
    assert all(ipaddress.ip_address(address).is_loopback for address in addresses), addresses


# --- parts ----------------------------------------------------------------------


@pytest.mark.parametrize("chunk_bytes", [3, 7, 1 << 20])
@pytest.mark.parametrize("ending", [b"", b"\n"])
def test_line_ranges_cover_every_line_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk_bytes: int, ending: bytes
) -> None:
    monkeypatch.setattr(inputs_module, "CHUNK_BYTES", chunk_bytes)
    content = [b"\xef\xbb\xbfone", b"", b"three\r", b"four", b"five"]
    path = tmp_path / "lines.txt"
    path.write_bytes(b"\n".join(content) + ending)
    ranges = line_ranges(path, 2)
    assert [(r.first_line, r.n_lines) for r in ranges] == [(1, 2), (3, 2), (5, 1)]
    read = [line for r in ranges for line in read_lines(path, r.start, r.stop, r.first_line)]
    assert read == [(1, b"one"), (2, b""), (3, b"three"), (4, b"four"), (5, b"five")]
    (tmp_path / "empty.txt").write_bytes(b"")
    assert line_ranges(tmp_path / "empty.txt", 2) == []


def test_workers_leave_room_for_reads_and_writes() -> None:
    two_cores = size_workers(2, 0, workers=2)
    assert (two_cores.workers, two_cores.cpus_per_worker, two_cores.task_cpus) == (2, 0.5, 1.0)
    assert size_workers(2, 0).workers == 1
    one_core = size_workers(1, 0, workers=2)
    assert (one_core.cpus_per_worker, one_core.task_cpus) == (0.25, 0.5)
    big = size_workers(64, 0)
    assert (big.workers, big.cpus_per_worker, big.task_cpus) == (60, 1.0, 3.2)
    gpus = size_workers(16, 4, gpu_per_worker=0.5)
    assert (gpus.workers, gpus.gpus_per_worker, gpus.cpus_per_worker) == (8, 0.5, 1.0)
    with pytest.raises(ValueError, match="needs 6 GPUs; the Ray cluster has 4"):
        size_workers(16, 4, workers=12, gpu_per_worker=0.5)


def test_progress_lines_when_not_on_a_terminal() -> None:
    now = [0.0]
    stream = io.StringIO()
    progress = Progress(1000, stream=stream, bar=False, log_every=10, clock=lambda: now[0])
    now[0] = 5.0
    progress.advance(100)
    now[0] = 20.0
    progress.advance(100)
    now[0] = 25.0
    progress.advance(50)
    progress.close()
    assert stream.getvalue() == "annotate: 200/1,000 docs (20%), 10.0 docs/s, ETA 1 min 20 s\n"


def test_help_does_not_import_the_engines() -> None:
    script = (
        "import sys\n"
        "from spacy_bilstm_crf.cli import main\n"
        "main(['convert', '--help'])\n"
        "main(['annotate', '--help'])\n"
        "heavy = ('torch', 'spacy', 'thinc', 'ray', 'pyarrow', 'spacy_bilstm_crf.annotate')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"
    assert "--gpu-per-worker" in result.stdout
