"""Cells on disk: one JSON file per cell under ``bench/results/cells/``,
written as soon as the cell finishes; a rerun skips the cells whose file
exists for the same package hash, and reading them back refuses to mix
package hashes unless told to."""

import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

from .common import log, read_json, write_json
from .specs import TRAINING_STAGES, CellKey, CellSpec

# Every cell has these; training cells (grid and main) have the TRAINING_KEYS too.
COMMON_KEYS = (
    "cell_id",
    "corpus",
    "stage",
    "system",
    "setting",
    "seed",
    "device",
    "package_hash",
    "commit",
    "machine",
    "loadavg_before",
    "loadavg_after",
)
TRAINING_KEYS = (
    "head_lr_scale",
    "words_seen",
    "train_seconds",
    "dev_f1_best",
    "f1",
    "precision",
    "recall",
    "learning_curve",
    "sentence_counts",
    "test_fingerprint",
)


class CellError(ValueError):
    pass


class MixedHashError(ValueError):
    pass


def validate_cell(cell: Dict[str, Any]) -> None:
    """Raise ``CellError`` naming every required key that is missing or null."""
    keys = COMMON_KEYS + (TRAINING_KEYS if cell.get("stage") in TRAINING_STAGES else ())
    missing = [key for key in keys if cell.get(key) is None]
    if missing:
        raise CellError(f"cell {cell.get('cell_id', '?')} lacks {', '.join(missing)}")


def key_of(cell: Dict[str, Any]) -> CellKey:
    return CellKey(cell["corpus"], cell["stage"], cell["system"], cell["setting"], int(cell["seed"]))


class CellStore:
    """The cells under one folder, addressed by ``CellKey``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, key: CellKey) -> Path:
        return self.root / key.relpath

    def load(self, key: CellKey) -> Optional[Dict[str, Any]]:
        path = self.path(key)
        return read_json(path) if path.exists() else None

    def is_done(self, key: CellKey, package_hash: str) -> bool:
        cell = self.load(key)
        return cell is not None and cell.get("package_hash") == package_hash

    def write(self, cell: Dict[str, Any]) -> Path:
        validate_cell(cell)
        return write_json(self.path(key_of(cell)), cell)

    def cells(self) -> List[Dict[str, Any]]:
        """Every cell under the folder, in path order."""
        return [read_json(path) for path in sorted(self.root.rglob("*.json"))]


def load_cells(root: Path, allow_mixed: bool = False) -> List[Dict[str, Any]]:
    """The cells under ``root``; raise ``MixedHashError`` if they ran on
    different package code, unless ``allow_mixed``."""
    cells = CellStore(root).cells()
    if not cells:
        raise CellError(f"no cells under {root}")
    for cell in cells:
        validate_cell(cell)
    hashes: Dict[str, List[str]] = {}
    for cell in cells:
        hashes.setdefault(cell["package_hash"], []).append(cell["cell_id"])
    if len(hashes) > 1 and not allow_mixed:
        lines = [f"{h[:12]}: {len(ids)} cells, e.g. {ids[0]}" for h, ids in sorted(hashes.items())]
        raise MixedHashError(
            "the cells ran on different package code (rerun the stale ones, or pass --allow-mixed):\n  "
            + "\n  ".join(lines)
        )
    return cells


def run_cells(
    specs: Sequence[CellSpec],
    store: CellStore,
    package_hash: str,
    runner: Callable[[CellSpec], Dict[str, Any]],
    keep_going: bool = True,
) -> Dict[str, List[str]]:
    """Run each cell whose file is missing or from other package code, and
    write its file as soon as it finishes. Returns the ids ran, skipped, failed."""
    done: Dict[str, List[str]] = {"ran": [], "skipped": [], "failed": []}
    for spec in specs:
        key = spec.key
        if store.is_done(key, package_hash):
            done["skipped"].append(key.cell_id)
            continue
        stale = store.load(key)
        if stale is not None:
            log(f"{key.cell_id}: rerun (its file is from package {str(stale.get('package_hash'))[:12]})")
        try:
            cell = runner(spec)
            if cell.get("package_hash") != package_hash:
                raise CellError(f"{key.cell_id} ran on package {cell.get('package_hash')}, expected {package_hash}")
            store.write(cell)
            done["ran"].append(key.cell_id)
        except Exception as exc:
            if not keep_going:
                raise
            log(f"FAILED {key.cell_id}: {exc}\n{traceback.format_exc()}")
            done["failed"].append(f"{key.cell_id}: {exc}")
    return done


def select(keys: Iterable[CellKey], patterns: Optional[Sequence[str]]) -> List[CellKey]:
    """The keys whose cell id matches one of the glob ``patterns`` (all if none)."""
    from fnmatch import fnmatchcase

    keys = list(keys)
    if not patterns:
        return keys
    return [key for key in keys if any(fnmatchcase(key.cell_id, p) for p in patterns)]


def spec_json(spec: CellSpec) -> Dict[str, Any]:
    data = spec.to_json()
    data["key"] = asdict(spec.key)
    return data
