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
when the manifest is opened again.

The folder may be on shared storage, so nothing in it is trusted: no symbolic
link in it is followed (``safe_files``), only names the job itself generates
are touched, every commit must match the plan of the input, and the counts of
every commit are checked against its files before they are reported."""

import json
import os
import re
import shutil
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Set, Tuple

from ..safe_text import printable
from .parts import read_part
from .records import Plan, RecordId, Reject, Shard
from .safe_files import (
    fsync_file,
    kind,
    link_error,
    make_folder,
    open_binary,
    open_file,
    open_text,
    remove_file,
    remove_folder,
)
from .settings import PART_SUFFIX, OutputFormat

STAGING = "_staging"
REJECTS_DIR = "_committed_rejects"
REJECTS_NAME = "_rejects.jsonl"
SUMMARY_NAME = "_summary.json"
LOCK_NAME = "_lock"
MANIFEST_NAME = "_manifest.jsonl"
MANIFEST_VERSION = 2
# The names annotate generates, and the only ones it ever deletes.
PART_NAME = re.compile(r"part-\d{6,}-\d{3,}\.(jsonl|parquet)")
COMMITTED_REJECTS_NAME = re.compile(r"\d{6,}\.jsonl")
RUN_ID = re.compile(r"[0-9a-f]{12}")
NOT_ANNOTATES = "annotate did not write this: delete the output folder or choose a new one"


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


COMMIT_KEYS = [item.name for item in fields(Commit)]


class Manifest:
    """An output folder's manifest, read on open and appended to. Every line is
    checked for shape; ``commit_lines`` holds the line of each commit."""

    def __init__(self, path: Path, job: Dict[str, Any]) -> None:
        self.path = path
        self.job = job
        self.commits: List[Commit] = []
        self.commit_lines: List[int] = []
        self.lines = 0
        self.finished = False
        found = kind(path)
        if found == "missing":
            self._append({"manifest": MANIFEST_VERSION, "job": job})
        elif found == "link":
            raise link_error(path)
        else:
            self._read()

    @property
    def done_shards(self) -> Set[int]:
        return {index for commit in self.commits for index in commit.shards}

    def add_commit(self, commit: Commit) -> None:
        """Record ``commit``; its files must be complete and in place."""
        self._append({"commit": asdict(commit)})
        self.commits.append(commit)
        self.commit_lines.append(self.lines)

    def mark_finished(self) -> None:
        self._append({"finished": True})
        self.finished = True

    def error(self, line: int, problem: str) -> ValueError:
        return ValueError(f"{self.path}: line {line}: {problem}; {NOT_ANNOTATES}")

    def _append(self, entry: Dict[str, Any]) -> None:
        with open_text(self.path, "a") as file:
            file.write(json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n")
            file.flush()
            os.fsync(file.fileno())
        self.lines += 1

    def _read(self) -> None:
        with open_binary(self.path, "r") as file:
            data = file.read()
        complete = data[: data.rfind(b"\n") + 1]
        if len(complete) < len(data):  # a torn last line: the run died while appending it
            with open_binary(self.path, "r+") as file:
                file.truncate(len(complete))
        try:
            lines = complete.decode("utf8").splitlines()
        except UnicodeDecodeError as exc:
            raise ValueError(f"{self.path}: not UTF-8 (byte {exc.start + 1}); {NOT_ANNOTATES}") from None
        if not lines:
            raise ValueError(f"{self.path}: empty manifest; delete the output folder and start again")
        self.lines = len(lines)
        header = self._entry(1, lines[0])
        version = header.get("manifest")
        if version != MANIFEST_VERSION:
            if isinstance(version, int) and not isinstance(version, bool):
                raise self.error(1, f"a manifest of version {version}, this annotate reads version {MANIFEST_VERSION}")
            raise self.error(1, f"not an annotate manifest (no 'manifest': {MANIFEST_VERSION})")
        _check_keys(self, 1, header, ["job", "manifest"])
        if not isinstance(header["job"], dict):
            raise self.error(1, "'job' is not an object")
        _check_same_job(self.path, header["job"], self.job)
        for number, line in enumerate(lines[1:], start=2):
            entry = self._entry(number, line)
            if self.finished:
                raise self.error(number, "an entry after the line that marks the job finished")
            if "commit" in entry:
                _check_keys(self, number, entry, ["commit"])
                self.commits.append(_commit(self, number, entry["commit"]))
                self.commit_lines.append(number)
            elif entry == {"finished": True}:
                self.finished = True
            else:
                raise self.error(number, f"unknown entry {printable(line[:80])}")

    def _entry(self, number: int, line: str) -> Dict[str, Any]:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise self.error(number, f"not JSON ({exc.msg}, column {exc.colno})") from None
        except (RecursionError, ValueError):
            raise self.error(number, "not JSON") from None
        if not isinstance(entry, dict):
            raise self.error(number, "not a JSON object")
        return entry


def _check_keys(manifest: Manifest, number: int, entry: Dict[str, Any], keys: List[str]) -> None:
    for key in keys:
        if key not in entry:
            raise manifest.error(number, f"no key {key!r}")
    for key in entry:
        if key not in keys:
            raise manifest.error(number, f"unknown key {str(key)!r}")


def _commit(manifest: Manifest, number: int, value: Any) -> Commit:
    """A commit line's value as a ``Commit``, if every key is there with its type."""
    if not isinstance(value, dict):
        raise manifest.error(number, "'commit' is not an object")
    _check_keys(manifest, number, value, COMMIT_KEYS)
    for key in ("first_shard", "stop_shard", "first_position", "stop_position", "annotated", "rejected"):
        if not _is_count(value[key]):
            raise manifest.error(number, f"{key!r} is not a non-negative integer")
    if not (isinstance(value["files"], list) and all(isinstance(name, str) for name in value["files"])):
        raise manifest.error(number, "'files' is not a list of names")
    if value["rejects_file"] is not None and not isinstance(value["rejects_file"], str):
        raise manifest.error(number, "'rejects_file' is not a name or null")
    entities = value["entities"]
    if not (isinstance(entities, dict) and all(_is_count(count) for count in entities.values())):
        raise manifest.error(number, "'entities' is not an object of counts")
    return Commit(**value)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_same_job(path: Path, found: Dict[str, Any], wanted: Dict[str, Any]) -> None:
    differences = []
    for key in sorted(set(found) | set(wanted)):
        before, now = found.get(key), wanted.get(key)
        if before == now:
            continue
        if key == "model_files":
            differences.append(f"the model changed since the job started: {_changed_files(before, now)}")
        elif key == "code":
            differences.append(f"--code was {before or 'none'}, now {now or 'none'}")
        elif key == "code_sha256":
            if found.get("code") == wanted.get("code"):
                differences.append(f"--code {wanted.get('code')} changed since the job started")
        else:
            differences.append(f"{key} was {before!r}, now {now!r}")
    if differences:
        raise ValueError(
            f"{path.parent} holds the output of another job ({printable('; '.join(differences))}): "
            "resume with the same input, model and settings, or choose a new output folder"
        )


def _changed_files(before: Any, now: Any) -> str:
    before = before if isinstance(before, dict) else {}
    now = now if isinstance(now, dict) else {}
    changes = []
    for name in sorted(set(before) | set(now)):
        if name not in before:
            changes.append(f"{name} added")
        elif name not in now:
            changes.append(f"{name} removed")
        elif before[name] != now[name]:
            changes.append(f"{name} changed")
    return ", ".join(changes[:10]) + (f" and {len(changes) - 10} more" if len(changes) > 10 else "")


class OutputFolder:
    """The output folder of one job (the plan ``plan``), locked while a run
    writes to it."""

    def __init__(self, path: Path, output_format: OutputFormat, job: Dict[str, Any], plan: Plan) -> None:
        self.path = path
        self.output_format = output_format
        self.suffix = PART_SUFFIX[output_format]
        self.plan = plan
        if path.exists() and not path.is_dir():
            raise ValueError(f"{path}: exists and is not a folder (the output is a folder of part files)")
        path.mkdir(parents=True, exist_ok=True)
        if kind(path / MANIFEST_NAME) == "missing" and any(p.name != LOCK_NAME for p in path.iterdir()):
            raise ValueError(f"{path}: folder is not empty and holds no {MANIFEST_NAME}; choose a new output folder")
        self._lock = _lock(path / LOCK_NAME)
        self.run_id = uuid.uuid4().hex[:12]
        self._staging: Optional[Path] = None
        try:
            self.manifest = Manifest(path / MANIFEST_NAME, job)
            self._check_commits()
            self._remove_uncommitted()
        except BaseException:
            os.close(self._lock)
            raise

    @property
    def staging(self) -> Path:
        """This run's own staging folder: a task of a killed run that Ray had not
        stopped yet cannot write into it."""
        if self._staging is None:
            folder = make_folder(self.path / STAGING) / self.run_id
            os.mkdir(folder)
            self._staging = folder
        return self._staging

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
            name = _part_name(first.index, number, self.suffix)
            os.replace(staged_path, self.path / name)  # a link at the name is replaced, not followed
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

    def check_files(self, each_id: Callable[[RecordId], None]) -> None:
        """Check the counts of every commit against its files: the records and
        entities of its parts, the lines of its rejects. ``each_id`` gets the id
        of every output record, in the order of the input's shards."""
        for commit, line in self._commits_in_order():
            labels: Counter = Counter()
            records = 0
            for name in commit.files:
                ids, part_labels = read_part(self.path / name, self.output_format, self.plan.fields.id)
                records += len(ids)
                labels.update(part_labels)
                for record_id in ids:
                    each_id(record_id)
            where = self._describe_files(commit.files)
            if records != commit.annotated:
                raise self._mismatch(where, f"{records:,} records", line, f"{commit.annotated:,}")
            for label in sorted(set(labels) | set(commit.entities)):
                if labels[label] != commit.entities.get(label, 0):
                    described = f"{labels[label]:,} {printable(label)} entities"
                    raise self._mismatch(where, described, line, f"{commit.entities.get(label, 0):,}")
            if commit.rejects_file and not self.manifest.finished:
                found = _count_lines(self.path / commit.rejects_file)
                if found != commit.rejected:
                    raise self._mismatch(
                        self.path / commit.rejects_file, f"{found:,} rejects", line, f"{commit.rejected:,}"
                    )
        if self.manifest.finished:
            found, wanted = _count_lines(self.path / REJECTS_NAME), sum(c.rejected for c in self.manifest.commits)
            if found != wanted:
                raise ValueError(f"{self.path / REJECTS_NAME} holds {found:,} rejects, the manifest says {wanted:,}")

    def output_ids(self) -> Iterator[RecordId]:
        """The id of every output record, in the order ``check_files`` gives them."""
        for commit, _ in self._commits_in_order():
            for name in commit.files:
                yield from read_part(self.path / name, self.output_format, self.plan.fields.id)[0]

    def finalize(self, summary: Dict[str, Any]) -> None:
        """Gather the rejects into _rejects.jsonl, write _summary.json and mark the
        job finished; then remove the staging and committed rejects folders."""
        if not self.manifest.finished:
            temporary = self.staging / REJECTS_NAME
            with open_text(temporary, "x") as rejects:
                for commit, _ in self._commits_in_order():
                    if commit.rejects_file:
                        with open_text(self.path / commit.rejects_file, "r") as part:
                            shutil.copyfileobj(part, rejects)
            fsync_file(temporary)
            os.replace(temporary, self.path / REJECTS_NAME)
            temporary = self.staging / SUMMARY_NAME
            with open_text(temporary, "x") as file:
                file.write(json.dumps(summary, ensure_ascii=False, indent=2) + "\n")
            os.replace(temporary, self.path / SUMMARY_NAME)
            self.manifest.mark_finished()
        self._remove_committed_rejects()
        self._remove_staging()

    def close(self) -> None:
        os.close(self._lock)

    def _commits_in_order(self) -> List[Tuple[Commit, int]]:
        """(commit, its manifest line) in the order of the input's shards."""
        pairs = zip(self.manifest.commits, self.manifest.commit_lines)
        return sorted(pairs, key=lambda pair: pair[0].first_shard)

    def _describe_files(self, names: List[str]) -> str:
        if len(names) == 1:
            return f"{self.path / names[0]} holds"
        return f"{self.path}: {', '.join(names) or 'no part file'} hold"

    def _mismatch(self, where: Any, found: str, line: int, wanted: str) -> ValueError:
        where = where if isinstance(where, str) else f"{where} holds"
        return ValueError(f"{where} {found}, the manifest (line {line}) says {wanted}; {NOT_ANNOTATES}")

    def _check_commits(self) -> None:
        """Every commit names shards of this input, positions and counts that
        match them, no shard another commit has, and the file names annotate
        generates for it; a finished job has every shard done."""
        shards = self.plan.shards
        done: Set[int] = set()
        for commit, number in zip(self.manifest.commits, self.manifest.commit_lines):
            span = f"shards {commit.first_shard}-{commit.stop_shard - 1}"
            if not commit.first_shard < commit.stop_shard <= len(shards):
                raise self.manifest.error(number, f"{span} are not in the input's {len(shards)} shards")
            if done.intersection(commit.shards):
                raise self.manifest.error(number, f"{span} are already done (by an earlier commit)")
            done.update(commit.shards)
            first, last = shards[commit.first_shard], shards[commit.stop_shard - 1]
            size = last.first_position + last.size - first.first_position
            if (commit.first_position, commit.stop_position) != (first.first_position, first.first_position + size):
                raise self.manifest.error(number, f"the positions of {span} are not the input's")
            if commit.annotated + commit.rejected != size:
                raise self.manifest.error(
                    number, f"{commit.annotated} annotated + {commit.rejected} rejected, but {span} hold {size} records"
                )
            expected = [_part_name(commit.first_shard, n, self.suffix) for n in range(len(commit.files))]
            for name, wanted in zip(commit.files, expected):
                if name != wanted:
                    raise self.manifest.error(number, f"part file {name!r} is not the one annotate writes ({wanted})")
            rejects_name = _rejects_name(commit.first_shard)
            if commit.rejects_file not in (None, rejects_name):
                raise self.manifest.error(
                    number,
                    f"rejects file {commit.rejects_file!r} is not the one annotate writes ({rejects_name})",
                )
            if commit.rejected and commit.rejects_file is None:
                raise self.manifest.error(number, f"{commit.rejected} rejected but no rejects file")
            if commit.rejects_file and not commit.rejected:
                raise self.manifest.error(number, "a rejects file but no record rejected")
        if self.manifest.finished and len(done) != len(shards):
            raise ValueError(
                f"{self.manifest.path}: the job is marked finished but not every shard is done; {NOT_ANNOTATES}"
            )

    def _remove_uncommitted(self) -> None:
        """Delete staged work, and the part and committed rejects files of a
        killed run that no commit names; stop if a file a commit names is missing
        or not a regular file. Only names annotate generates are deleted."""
        self._remove_staging()
        rejects_folder = self._rejects_folder()
        named = {name for commit in self.manifest.commits for name in commit.files}
        if not self.manifest.finished:
            named |= {c.rejects_file for c in self.manifest.commits if c.rejects_file}
        missing = []
        for name in sorted(named):
            found = kind(self.path / name)
            if found == "missing":
                missing.append(name)
            elif found == "link":
                raise link_error(self.path / name)
            elif found != "file":
                raise ValueError(f"{self.path / name}: is not a regular file; {NOT_ANNOTATES}")
        if missing:
            raise ValueError(f"{self.path}: the manifest names files that are missing: {', '.join(missing[:5])}")
        for entry in os.scandir(self.path):
            if PART_NAME.fullmatch(entry.name) and entry.name not in named:
                remove_file(self.path / entry.name)
        if rejects_folder:
            for entry in os.scandir(rejects_folder):
                if COMMITTED_REJECTS_NAME.fullmatch(entry.name) and f"{REJECTS_DIR}/{entry.name}" not in named:
                    remove_file(rejects_folder / entry.name)

    def _rejects_folder(self) -> Optional[Path]:
        """The committed rejects folder, if there is one; a link there is refused."""
        folder = self.path / REJECTS_DIR
        found = kind(folder)
        if found == "link":
            raise link_error(folder)
        if found not in ("missing", "folder"):
            raise ValueError(f"{folder}: is not a folder; {NOT_ANNOTATES}")
        return folder if found == "folder" else None

    def _write_rejects(self, first_shard: int, rejects: Sequence[Reject]) -> str:
        name = _rejects_name(first_shard)
        temporary = self.staging / f"rejects-{first_shard:06d}.jsonl"
        with open_text(temporary, "x") as file:
            for reject in sorted(rejects, key=lambda r: r.position):
                file.write(json.dumps(reject.to_json(), ensure_ascii=False) + "\n")
        fsync_file(temporary)
        make_folder(self.path / REJECTS_DIR)
        os.replace(temporary, self.path / name)
        return name

    def _remove_committed_rejects(self) -> None:
        folder = self._rejects_folder()
        if folder is None:
            return
        for entry in os.scandir(folder):
            if COMMITTED_REJECTS_NAME.fullmatch(entry.name):
                remove_file(folder / entry.name)
        _remove_if_empty(folder)

    def _remove_staging(self) -> None:
        """Delete the staging folders of this run and killed ones (their names
        are run ids); anything else in ``_staging`` is left alone."""
        staging = self.path / STAGING
        found = kind(staging)
        if found == "link":
            raise link_error(staging)
        if found != "folder":
            return
        for entry in os.scandir(staging):
            if RUN_ID.fullmatch(entry.name):
                if entry.is_dir(follow_symlinks=False):
                    remove_folder(staging / entry.name)
                else:
                    remove_file(staging / entry.name)
        self._staging = None
        _remove_if_empty(staging)


def _part_name(first_shard: int, number: int, suffix: str) -> str:
    return f"part-{first_shard:06d}-{number:03d}{suffix}"


def _rejects_name(first_shard: int) -> str:
    return f"{REJECTS_DIR}/{first_shard:06d}.jsonl"


def _count_lines(path: Path) -> int:
    lines = 0
    with open_binary(path, "r") as file:
        while True:
            chunk = file.read(1 << 20)
            if not chunk:
                return lines
            lines += chunk.count(b"\n")


def _remove_if_empty(folder: Path) -> None:
    try:
        os.rmdir(folder)
    except OSError:  # not empty: it holds files annotate did not write
        pass


def _lock(path: Path) -> int:
    """An exclusive lock on ``path`` (created if missing, never truncated, never
    through a link), held until the returned file descriptor is closed."""
    fd = open_file(path, os.O_WRONLY | os.O_CREAT)
    try:
        import fcntl
    except ImportError:  # not on Windows: no lock
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(fd)
        raise ValueError(f"{path.parent}: another annotate run is writing to this folder") from exc
    return fd
