"""An output folder: part files, rejects, and the manifest that says which
input shards are done. Every file but the parts starts with ``_``, which readers
of a folder of parts (pyarrow, pandas, Spark, Ray) skip. Work is staged in
``_staging/`` and becomes part of the output only when the manifest records it,
so a killed job leaves nothing half-written behind: opening the folder again
deletes what the manifest does not name.

The manifest holds the job's settings, then one line per commit (a run of
shards whose output files and rejects are complete), then a line when the job
has finished. Lines are appended and fsynced, so a job killed at any point
leaves a manifest that names only complete files; a torn last line is dropped
when the manifest is opened again."""

import json
import os
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Dict, List, Optional, Sequence, Set

from .parts import fsync_path
from .records import Reject, Shard
from .settings import PART_SUFFIX, OutputFormat

STAGING = "_staging"
REJECTS_DIR = "_committed_rejects"
REJECTS_NAME = "_rejects.jsonl"
SUMMARY_NAME = "_summary.json"
LOCK_NAME = "_lock"
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


class OutputFolder:
    """The output folder of one job, locked while a run writes to it."""

    def __init__(self, path: Path, output_format: OutputFormat, job: Dict[str, Any]) -> None:
        self.path = path
        self.output_format = output_format
        self.suffix = PART_SUFFIX[output_format]
        if path.exists() and not path.is_dir():
            raise ValueError(f"{path}: exists and is not a folder (the output is a folder of part files)")
        path.mkdir(parents=True, exist_ok=True)
        if not (path / MANIFEST_NAME).exists() and any(p.name != LOCK_NAME for p in path.iterdir()):
            raise ValueError(f"{path}: folder is not empty and holds no {MANIFEST_NAME}; choose a new output folder")
        self._lock = _lock(path / LOCK_NAME)
        self.run_id = uuid.uuid4().hex[:12]
        try:
            self.manifest = Manifest(path / MANIFEST_NAME, job)
            self._remove_uncommitted()
        except BaseException:
            self._lock.close()
            raise

    @property
    def staging(self) -> Path:
        """This run's own staging folder: a task of a killed run that Ray had not
        stopped yet cannot write into it."""
        folder = self.path / STAGING / self.run_id
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def staged_part(self, shard: Shard) -> Path:
        """Where a run writes the output of one shard before committing it."""
        return self.staging / f"part-{shard.index:06d}{self.suffix}"

    def commit(
        self,
        shards: Sequence[Shard],
        staged: Sequence[Path],
        rejects: Sequence[Reject],
        annotated: int,
        entities: Dict[str, int],
    ) -> Commit:
        """Move the staged part files of a run of consecutive shards into place,
        write their rejects, and record them in the manifest."""
        size = sum(shard.size for shard in shards)
        if annotated + len(rejects) != size:
            raise RuntimeError(
                f"shards {shards[0].index}-{shards[-1].index}: {annotated} annotated + {len(rejects)} rejected "
                f"!= {size} records read"
            )
        first = shards[0]
        files: List[str] = []
        for number, staged_path in enumerate(staged):
            name = f"part-{first.index:06d}-{number:03d}{self.suffix}"
            os.replace(staged_path, self.path / name)
            files.append(name)
        rejects_file = self._write_rejects(first.index, rejects) if rejects else None
        commit = Commit(
            first.index,
            shards[-1].index + 1,
            first.first_position,
            shards[-1].first_position + shards[-1].size,
            files,
            rejects_file,
            annotated,
            len(rejects),
            dict(sorted(entities.items())),
        )
        self.manifest.add_commit(commit)
        return commit

    def finalize(self, summary: Dict[str, Any]) -> None:
        """Gather the rejects into _rejects.jsonl, write _summary.json and mark the
        job finished."""
        if not self.manifest.finished:
            temporary = self.staging / REJECTS_NAME
            with temporary.open("w", encoding="utf8") as rejects:
                for commit in sorted(self.manifest.commits, key=lambda c: c.first_shard):
                    if commit.rejects_file:
                        with (self.path / commit.rejects_file).open(encoding="utf8") as part:
                            shutil.copyfileobj(part, rejects)
            fsync_path(temporary)
            os.replace(temporary, self.path / REJECTS_NAME)
            _write_json(self.path / SUMMARY_NAME, summary)
            self.manifest.mark_finished()
        shutil.rmtree(self.path / REJECTS_DIR, ignore_errors=True)
        shutil.rmtree(self.path / STAGING, ignore_errors=True)

    def close(self) -> None:
        self._lock.close()

    def _write_rejects(self, first_shard: int, rejects: Sequence[Reject]) -> str:
        name = f"{REJECTS_DIR}/{first_shard:06d}.jsonl"
        temporary = self.staging / f"rejects-{first_shard:06d}.jsonl"
        with temporary.open("w", encoding="utf8") as file:
            for reject in sorted(rejects, key=lambda r: r.position):
                file.write(json.dumps(reject.to_json(), ensure_ascii=False) + "\n")
        fsync_path(temporary)
        (self.path / REJECTS_DIR).mkdir(exist_ok=True)
        os.replace(temporary, self.path / name)
        return name

    def _remove_uncommitted(self) -> None:
        """Delete staged work and part or rejects files no commit names; stop if
        a file a commit names is missing."""
        shutil.rmtree(self.path / STAGING, ignore_errors=True)
        named = {name for commit in self.manifest.commits for name in commit.files}
        if not self.manifest.finished:
            named |= {c.rejects_file for c in self.manifest.commits if c.rejects_file}
        missing = sorted(name for name in named if not (self.path / name).exists())
        if missing:
            raise ValueError(f"{self.path}: the manifest names files that are missing: {', '.join(missing[:5])}")
        leftovers = list(self.path.glob("part-*")) + list((self.path / REJECTS_DIR).glob("*"))
        for leftover in leftovers:
            if leftover.relative_to(self.path).as_posix() not in named:
                leftover.unlink()


def _lock(path: Path) -> IO[str]:
    """An exclusive lock on ``path``, held until the returned file is closed."""
    file = path.open("w")
    try:
        import fcntl
    except ImportError:  # not on Windows: no lock
        return file
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        file.close()
        raise ValueError(f"{path.parent}: another annotate run is writing to this folder") from exc
    return file


def _write_json(path: Path, value: Optional[Dict[str, Any]]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(value, ensure_ascii=False, indent=2) + "\n", encoding="utf8")
    os.replace(temporary, path)
