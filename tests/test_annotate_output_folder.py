"""annotate's output folder is not trusted: symbolic links in it are never
followed, only names the job wrote are touched, the manifest is checked against
the plan and the files, and a resumed job must use the same model and --code."""

import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest

from spacy_bilstm_crf.annotate.annotation import model_fingerprint

from .annotate_helpers import manifest_entries, output_records, ruler_pipeline, run, unfinish, write_manifest

LINK = "is a symbolic link"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ruler_pipeline(tmp_path_factory.mktemp("ruler") / "pipeline")


def six_records(path: Path) -> Path:
    texts = ["Alice lives in Paris", "Bob stays home", "Alice and Alice", "Paris", "nothing", "Alice in Paris"]
    path.write_text("".join(json.dumps({"id": n, "text": t}) + "\n" for n, t in enumerate(texts)), encoding="utf8")
    return path


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return six_records(tmp_path / "in.jsonl")


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A folder of someone else's files that an attack on annotate targets."""
    folder = tmp_path / "victim"
    folder.mkdir()
    (folder / "thesis.tex").write_text("years of work\n")
    (folder / "000000.jsonl").write_text("not annotate's\n")
    return folder


def victim_files(folder: Path) -> Dict[str, str]:
    return {path.name: path.read_text() for path in sorted(folder.iterdir())}


def killed_job(model: Path, source: Path, output: Path, keep_commits: int = 1) -> None:
    """A job of 3 shards, left as if killed after ``keep_commits`` commits."""
    run(model, source, output, shard_size=2)
    unfinish(output, keep_commits)


# --- symbolic links ------------------------------------------------------------------


@pytest.mark.parametrize("folder", ["_committed_rejects", "_staging"])
def test_a_linked_work_folder_is_refused_and_its_target_untouched(
    folder: str, model: Path, source: Path, victim: Path, tmp_path: Path
) -> None:
    """Resume empties _committed_rejects and writes into _staging: through a
    link, it would delete or create files in the link's target."""
    output = tmp_path / "out.jsonl"
    killed_job(model, source, output)
    before = victim_files(victim)
    (output / folder).symlink_to(victim, target_is_directory=True)
    with pytest.raises(ValueError, match=f"{folder}: {LINK}"):
        run(model, source, output, shard_size=2)
    assert victim_files(victim) == before and not [p for p in victim.iterdir() if p.is_dir()]


def test_a_linked_lock_in_an_empty_folder_is_refused_not_truncated(
    model: Path, source: Path, victim: Path, tmp_path: Path
) -> None:
    output = tmp_path / "out.jsonl"
    output.mkdir()
    (output / "_lock").symlink_to(victim / "thesis.tex")
    with pytest.raises(ValueError, match=f"_lock: {LINK}"):
        run(model, source, output)
    assert (victim / "thesis.tex").read_text() == "years of work\n"


def test_a_linked_manifest_is_refused_not_truncated(model: Path, source: Path, victim: Path, tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    output.mkdir()
    (victim / "notes.txt").write_text("first line\nlast line, no newline")
    (output / "_manifest.jsonl").symlink_to(victim / "notes.txt")
    with pytest.raises(ValueError, match=f"_manifest.jsonl: {LINK}"):
        run(model, source, output)
    assert (victim / "notes.txt").read_text() == "first line\nlast line, no newline"
    # A link to nowhere is not followed to create the file either.
    (output / "_manifest.jsonl").unlink()
    (output / "_manifest.jsonl").symlink_to(victim / "created.txt")
    with pytest.raises(ValueError, match=f"_manifest.jsonl: {LINK}"):
        run(model, source, output)
    assert not (victim / "created.txt").exists()


def test_a_hard_linked_manifest_is_not_written_through(model: Path, source: Path, victim: Path, tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    killed_job(model, source, output)
    (victim / "notes.txt").write_text((output / "_manifest.jsonl").read_text() + "torn")
    (output / "_manifest.jsonl").unlink()
    os.link(victim / "notes.txt", output / "_manifest.jsonl")
    with pytest.raises(ValueError, match="_manifest.jsonl: has other hard links"):
        run(model, source, output, shard_size=2)
    assert (victim / "notes.txt").read_text().endswith("torn")


def test_a_linked_part_file_is_refused(model: Path, source: Path, victim: Path, tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    killed_job(model, source, output)
    (output / "part-000000-000.jsonl").unlink()
    (output / "part-000000-000.jsonl").symlink_to(victim / "thesis.tex")
    with pytest.raises(ValueError, match=f"part-000000-000.jsonl: {LINK}"):
        run(model, source, output, shard_size=2)


def test_only_names_annotate_writes_are_removed(model: Path, source: Path, tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    killed_job(model, source, output)
    # A part a killed run moved into place but never committed goes; the
    # files annotate did not write stay.
    (output / "part-000002-000.jsonl").write_text('{"id": 99, "entities": []}\n')
    (output / "part-notes.txt").write_text("mine")
    (output / "_staging").mkdir()
    (output / "_staging" / "README").write_text("mine too")
    summary = run(model, source, output, shard_size=2)
    assert (summary.docs_in, summary.annotated, summary.docs_this_run) == (6, 6, 4)
    assert [record["id"] for record in output_records(output) if record["id"] != 99] == list(range(6))
    assert 99 not in [record["id"] for record in output_records(output)]
    assert (output / "part-notes.txt").read_text() == "mine"
    assert (output / "_staging" / "README").read_text() == "mine too"


# --- the manifest against the plan and the files ------------------------------------------


def forged(output: Path, **changes: Any) -> None:
    """Change the first commit of the manifest."""
    entries = manifest_entries(output)
    entries[1]["commit"].update(changes)
    write_manifest(output, entries)


def test_a_rejects_file_outside_the_folder_is_refused_not_copied(model: Path, source: Path, tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    killed_job(model, source, output, keep_commits=3)
    secret = tmp_path / "secret.txt"
    secret.write_text('{"password": "hunter2"}\n')
    forged(output, rejects_file=str(secret))
    with pytest.raises(ValueError, match=r"_manifest.jsonl: line 2: .*rejects file '/.*secret.txt'"):
        run(model, source, output, shard_size=2)
    assert not (output / "_rejects.jsonl").exists() or "hunter2" not in (output / "_rejects.jsonl").read_text()
    forged(output, rejects_file=None, files=["../../secret.txt"])
    with pytest.raises(ValueError, match=r"line 2: .*part file '../../secret.txt'"):
        run(model, source, output, shard_size=2)


def test_forged_counts_are_not_believed(model: Path, source: Path, tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    run(model, source, output, shard_size=2)
    entries = manifest_entries(output)
    assert entries[1]["commit"]["entities"] == {"LOC": 1, "PER": 1}
    forged(output, entities={"LOC": 1, "PER": 1_000_000})
    with pytest.raises(ValueError, match=r"part-000000-000.jsonl holds 1 PER entities, the manifest \(line 2\) says"):
        run(model, source, output, shard_size=2)
    write_manifest(output, entries)
    forged(output, annotated=1, rejected=1)
    with pytest.raises(ValueError, match=r"line 2: .*1 rejected but no rejects file"):
        run(model, source, output, shard_size=2)
    write_manifest(output, entries)
    forged(output, annotated=3)
    with pytest.raises(ValueError, match=r"line 2: .*3 annotated \+ 0 rejected, but shards 0-0 hold 2 records"):
        run(model, source, output, shard_size=2)
    write_manifest(output, entries)
    part = output / "part-000001-000.jsonl"
    part.write_text(part.read_text().splitlines()[0] + "\n")  # a record removed behind the manifest's back
    with pytest.raises(ValueError, match=r"part-000001-000.jsonl holds 1 records, the manifest \(line 3\) says 2"):
        run(model, source, output, shard_size=2)


def test_overlapping_or_foreign_shards_are_refused(model: Path, source: Path, tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    killed_job(model, source, output, keep_commits=2)
    entries = manifest_entries(output)
    write_manifest(output, entries + [entries[1]])
    with pytest.raises(ValueError, match=r"line 4: shards 0-0 are already done"):
        run(model, source, output, shard_size=2)
    forged(output, first_shard=7, stop_shard=8)
    with pytest.raises(ValueError, match=r"line 2: shards 7-7 are not in the input's 3 shards"):
        run(model, source, output, shard_size=2)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda e: [{"manifest": 2}] + e[1:], r"_manifest.jsonl: line 1: no key 'job'"),
        (lambda e: e[:1] + [{"commit": {**e[1]["commit"], "extra": 1}}] + e[2:], r"line 2: unknown key 'extra'"),
        (lambda e: e[:1] + [{"commit": {**e[1]["commit"], "annotated": "2"}}], r"line 2: 'annotated' is not"),
        (lambda e: e + ["not json"], r"_manifest.jsonl: line 4: not JSON \(Expecting value, column 1\)"),
        (lambda e: e + [[1, 2]], r"line 4: not a JSON object"),
        (lambda e: [{"manifest": 1, "job": e[0]["job"]}] + e[1:], r"line 1: a manifest of version 1"),
    ],
)
def test_a_damaged_manifest_names_the_file_and_line(
    model: Path, source: Path, tmp_path: Path, damage: Any, message: str
) -> None:
    output = tmp_path / "out.jsonl"
    killed_job(model, source, output, keep_commits=2)
    entries: List[Any] = manifest_entries(output)
    damaged = damage(entries)
    lines = [entry if isinstance(entry, str) else json.dumps(entry, sort_keys=True) for entry in damaged]
    (output / "_manifest.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf8")
    with pytest.raises(ValueError, match=message):
        run(model, source, output, shard_size=2)


# --- resuming with the same model and code ---------------------------------------------------


def test_resume_refuses_a_changed_model_naming_the_file(model: Path, source: Path, tmp_path: Path) -> None:
    import shutil

    copy = shutil.copytree(model, tmp_path / "model")
    output = tmp_path / "out.jsonl"
    killed_job(copy, source, output)
    patterns = copy / "entity_ruler" / "patterns.jsonl"
    patterns.write_text(patterns.read_text().replace("Alice", "Bob"))
    (copy / "extra.txt").write_text("new")
    with pytest.raises(ValueError, match=r"the model changed since the job started: entity_ruler/patterns.jsonl"):
        run(copy, source, output, shard_size=2)
    with pytest.raises(ValueError, match=r"extra.txt added"):
        run(copy, source, output, shard_size=2)
    patterns.write_text(patterns.read_text().replace("Bob", "Alice"))
    (copy / "extra.txt").unlink()
    summary = run(copy, source, output, shard_size=2)
    assert summary.docs_this_run == 4


def test_resume_refuses_changed_code(model: Path, source: Path, tmp_path: Path) -> None:
    code = tmp_path / "components.py"
    code.write_text("X = 1\n")
    output = tmp_path / "out.jsonl"
    run(model, source, output, shard_size=2, code=code)
    unfinish(output, 1)
    code.write_text("X = 2\n")
    with pytest.raises(ValueError, match=r"--code .*components.py changed since the job started"):
        run(model, source, output, shard_size=2, code=code)
    with pytest.raises(ValueError, match=r"--code was .*components.py, now none"):
        run(model, source, output, shard_size=2)


def test_the_fingerprint_of_a_package_follows_no_link_and_skips_bytecode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "site" / "my_ner_pipeline"
    (package / "model").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "model" / "weights.bin").write_bytes(b"\x00" * 10)
    (package / "model" / "zeros").symlink_to("/dev/zero")  # following it would never end
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    first = model_fingerprint("my_ner_pipeline")
    assert first["model/zeros"] == "link:/dev/zero"
    assert set(first) == {"__init__.py", "model/weights.bin", "model/zeros"}
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "__init__.cpython-311.pyc").write_bytes(b"compiled")
    assert model_fingerprint("my_ner_pipeline") == first
    (package / "model" / "weights.bin").write_bytes(b"\x01" * 10)
    assert model_fingerprint("my_ner_pipeline")["model/weights.bin"] != first["model/weights.bin"]
    with pytest.raises(ValueError, match="no-such-pipeline: no such pipeline folder or installed package"):
        model_fingerprint("no-such-pipeline")


# --- where the output may be -------------------------------------------------------------------


def test_an_output_folder_inside_the_parquet_input_folder_is_refused(model: Path, tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    folder = tmp_path / "corpus"
    folder.mkdir()
    pq.write_table(pa.table({"id": [1, 2], "text": ["Alice", "Paris"]}), folder / "0.parquet")
    with pytest.raises(ValueError, match=r"corpus/out.parquet is inside the input folder .*corpus"):
        run(model, folder, folder / "out.parquet")
    assert not (folder / "out.parquet").exists()
    with pytest.raises(ValueError, match=r"is inside the output folder"):
        run(model, folder / "0.parquet", folder, output_format="jsonl")
    summary = run(model, folder, tmp_path / "out.parquet")
    assert (summary.docs_in, summary.annotated) == (2, 2)


@pytest.mark.skipif(sys.platform == "win32", reason="symbolic links need privileges on Windows")
def test_a_regular_folder_path_given_by_the_user_may_be_a_link(model: Path, source: Path, tmp_path: Path) -> None:
    # The output folder itself is the user's choice: a link to it is fine.
    (tmp_path / "real.jsonl").mkdir()
    os.symlink(tmp_path / "real.jsonl", tmp_path / "out.jsonl", target_is_directory=True)
    summary = run(model, source, tmp_path / "out.jsonl")
    assert summary.annotated == 6 and len(output_records(tmp_path / "real.jsonl")) == 6
