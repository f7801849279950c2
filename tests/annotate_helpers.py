"""Helpers shared by the annotate tests: running annotate quietly, reading an
output folder back, and a tiny rule-based pipeline that loads in a blink."""

import io
import json
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import spacy

from spacy_bilstm_crf.annotate import AnnotateSettings, Summary, annotate

# "Alice" is a PER, "Paris" a LOC, whatever the text around them.
RULER_PATTERNS = (("PER", "Alice"), ("LOC", "Paris"))


def ruler_pipeline(path: Path, patterns: Sequence[Tuple[str, str]] = RULER_PATTERNS) -> Path:
    """A blank English pipeline whose entity_ruler tags each (label, word) pattern,
    saved to ``path``."""
    nlp = spacy.blank("xx")
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns([{"label": label, "pattern": word} for label, word in patterns])  # type: ignore[attr-defined]
    nlp.to_disk(path)
    return path


def run(model: Path, source: Path, output: Path, **settings: Any) -> Summary:
    """Annotate in this process, progress discarded; the summary."""
    return annotate(AnnotateSettings(str(model), source, output, **settings), stream=io.StringIO())


def write_lines(path: Path, lines: Sequence[bytes]) -> Path:
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def output_records(folder: Path) -> List[Dict[str, Any]]:
    """The records of every part file of an output folder, sorted by id."""
    records: List[Dict[str, Any]] = []
    for part in sorted(folder.glob("part-*")):
        if part.suffix not in (".jsonl", ".parquet"):
            continue
        if part.suffix == ".parquet":
            import pyarrow.parquet as pq

            records.extend(pq.read_table(part).to_pylist())
        else:
            records.extend(json.loads(line) for line in part.read_text(encoding="utf8").splitlines())
    return sorted(records, key=lambda record: record[next(iter(record))])


def rejects(folder: Path) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in (folder / "_rejects.jsonl").read_text(encoding="utf8").splitlines()]


def manifest_entries(folder: Path) -> List[Dict[str, Any]]:
    path = folder / "_manifest.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf8").splitlines() if line.endswith("}")]


def write_manifest(folder: Path, entries: List[Dict[str, Any]]) -> None:
    """Replace an output folder's manifest (to forge or damage it)."""
    text = "".join(json.dumps(entry, sort_keys=True) + "\n" for entry in entries)
    (folder / "_manifest.jsonl").write_text(text, encoding="utf8")


def unfinish(folder: Path, keep_commits: int) -> None:
    """Make a finished job look killed after ``keep_commits`` commits: the later
    commits and the finished line are dropped from its manifest."""
    entries = manifest_entries(folder)
    commits = [entry for entry in entries if "commit" in entry]
    write_manifest(folder, entries[:1] + commits[:keep_commits])
