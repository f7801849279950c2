"""The manifest of an output folder: the job's settings, then one line per
commit (a run of shards whose output files and rejects are complete), then a
line when the job has finished. Lines are appended and fsynced, so a job killed
at any point leaves a manifest that names only complete files; a torn last line
is dropped when the manifest is opened again."""

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Set

MANIFEST_NAME = "_manifest.jsonl"
MANIFEST_VERSION = 1


@dataclass
class Commit:
    """Shards ``first_shard`` to ``stop_shard - 1`` (input positions
    ``first_position`` to ``stop_position - 1``) are done: their output is in
    ``files`` and their rejects in ``rejects_file`` (names relative to the
    output folder)."""

    first_shard: int
    stop_shard: int
    first_position: int
    stop_position: int
    files: List[str]
    rejects_file: Optional[str]
    annotated: int
    rejected: int
    entities: Dict[str, int] = field(default_factory=dict)

    @property
    def shards(self) -> range:
        return range(self.first_shard, self.stop_shard)


class Manifest:
    """An output folder's manifest, read on open and appended to."""

    def __init__(self, path: Path, job: Dict[str, Any]) -> None:
        self.path = path
        self.job = job
        self.commits: List[Commit] = []
        self.finished = False
        if path.exists():
            self._read()
        else:
            self._append({"manifest": MANIFEST_VERSION, "job": job})

    @property
    def done_shards(self) -> Set[int]:
        return {index for commit in self.commits for index in commit.shards}

    def add_commit(self, commit: Commit) -> None:
        """Record ``commit``; its files must be complete and in place."""
        self._append({"commit": asdict(commit)})
        self.commits.append(commit)

    def mark_finished(self) -> None:
        self._append({"finished": True})
        self.finished = True

    def _append(self, entry: Dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf8") as file:
            file.write(json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n")
            file.flush()
            os.fsync(file.fileno())

    def _read(self) -> None:
        data = self.path.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]
        if len(complete) < len(data):  # a torn last line: the run died while appending it
            with self.path.open("r+b") as file:
                file.truncate(len(complete))
        lines = complete.decode("utf8").splitlines()
        if not lines:
            raise ValueError(f"{self.path}: empty manifest; delete the output folder and start again")
        header = json.loads(lines[0])
        if header.get("manifest") != MANIFEST_VERSION:
            raise ValueError(f"{self.path}: not a manifest of version {MANIFEST_VERSION}")
        _check_same_job(self.path, header["job"], self.job)
        for number, line in enumerate(lines[1:], start=2):
            entry = json.loads(line)
            if "commit" in entry:
                self.commits.append(Commit(**entry["commit"]))
            elif entry.get("finished"):
                self.finished = True
            else:
                raise ValueError(f"{self.path}: line {number}: unknown entry {line[:80]}")


def _check_same_job(path: Path, found: Dict[str, Any], wanted: Dict[str, Any]) -> None:
    differences = [
        f"{key} was {found.get(key)!r}, now {wanted.get(key)!r}"
        for key in sorted(set(found) | set(wanted))
        if found.get(key) != wanted.get(key)
    ]
    if differences:
        raise ValueError(
            f"{path.parent} holds the output of another job ({'; '.join(differences)}): "
            "resume with the same input and settings, or choose a new output folder"
        )
