"""Which cells a run consists of, and each system's head learning-rate choice.

Stages: ``grid`` (every system with a fresh head, at each scale of the
corpus's grid, seed 0, short budget), ``main`` (every trained system at its
chosen scale, the corpus's seeds, the convergence budget), ``ablation``
(MSRA: one feature or recipe change per row of the default BiLSTM-CRF, one
seed, the default three), ``speed`` (one
interleaved speed cell per corpus and device) and ``micro`` (the CRF alone
against length, and the heads alone per corpus).
"""

from typing import Dict, List, Optional, Sequence

from .cells import CellStore
from .specs import ABLATION, GRID, MAIN, MICRO, SPEED, CellKey, CorpusSpec, scale_setting
from .stats import choose_scale
from .systems import ABLATIONS, SYSTEMS, trained_systems


class MissingGridError(RuntimeError):
    pass


def grid_systems(corpus: CorpusSpec) -> List[str]:
    """The systems the grid covers: all trained ones (each has a fresh head)."""
    wanted = corpus.grid_systems
    return [name for name in trained_systems(corpus.name) if wanted is None or name in wanted]


def grid_keys(corpus: CorpusSpec) -> List[CellKey]:
    if not corpus.has_grid:
        return []
    return [
        CellKey(corpus.name, GRID, name, scale_setting(scale), 0)
        for name in grid_systems(corpus)
        for scale in corpus.grid_scales
    ]


def grid_results(corpus: CorpusSpec, store: CellStore, package_hash: str) -> Dict[str, Dict[float, float]]:
    """Dev F1 per scale per system from the grid cells of this package hash."""
    out: Dict[str, Dict[float, float]] = {}
    for key in grid_keys(corpus):
        cell = store.load(key)
        if cell is not None and cell.get("package_hash") == package_hash:
            out.setdefault(key.system, {})[float(cell["head_lr_scale"])] = float(cell["dev_f1_best"])
    return out


def chosen_scales(corpus: CorpusSpec, store: CellStore, package_hash: str) -> Dict[str, float]:
    """Each trained system's head learning-rate scale: the grid's choice, or
    the only scale when the corpus's grid has one (or the system is not in
    a ``--quick`` grid). Raises ``MissingGridError`` naming the missing cells."""
    default = corpus.grid_scales[0]
    if not corpus.has_grid:
        return {name: default for name in trained_systems(corpus.name)}
    results = grid_results(corpus, store, package_hash)
    missing = [key.cell_id for key in grid_keys(corpus) if float(key.setting[1:]) not in results.get(key.system, {})]
    if missing:
        raise MissingGridError(
            f"{corpus.name}: the main stage needs the grid's choice; run the grid cells first: " + ", ".join(missing)
        )
    chosen = {name: default for name in trained_systems(corpus.name)}
    for name, by_scale in results.items():
        chosen[name] = choose_scale(sorted(by_scale.items()))
    return chosen


def main_keys(corpus: CorpusSpec, scales: Dict[str, float]) -> List[CellKey]:
    keys = []
    for name in trained_systems(corpus.name):
        spec = SYSTEMS[corpus.name][name]
        seeds = corpus.seeds[: spec.seeds] if spec.seeds else corpus.seeds
        keys += [CellKey(corpus.name, MAIN, name, scale_setting(scales[name]), seed) for seed in seeds]
    return keys


def ablation_keys(corpus: CorpusSpec) -> List[CellKey]:
    """The ablation rows of ``corpus``: one seed each, the default row its ``seeds``."""
    if corpus.ablation is None:
        return []
    keys = []
    for name, spec in ABLATIONS.get(corpus.name, {}).items():
        seeds = corpus.seeds[: spec.seeds or 1]
        keys += [CellKey(corpus.name, ABLATION, name, scale_setting(corpus.grid_scales[0]), seed) for seed in seeds]
    return keys


def speed_keys(corpus: CorpusSpec, device: str) -> List[CellKey]:
    return [CellKey(corpus.name, SPEED, "all", device, 0)]


def micro_keys(corpora: Sequence[str], device: str) -> List[CellKey]:
    keys = [CellKey("any", MICRO, "crf_scaling", device, 0)]
    return keys + [CellKey(name, MICRO, "heads", device, 0) for name in corpora]


def planned_keys(
    corpora: Sequence[CorpusSpec],
    stages: Sequence[str],
    store: CellStore,
    package_hash: str,
    device: str,
    scales: Optional[Dict[str, Dict[str, float]]] = None,
) -> List[CellKey]:
    """The cells of ``stages`` for ``corpora``, in the order a run does them.
    The main stage reads the grid's choices from ``store`` (or ``scales``)."""
    keys: List[CellKey] = []
    for corpus in corpora:
        if GRID in stages:
            keys += grid_keys(corpus)
        if MAIN in stages:
            chosen = (scales or {}).get(corpus.name) or chosen_scales(corpus, store, package_hash)
            keys += main_keys(corpus, chosen)
        if SPEED in stages:
            keys += speed_keys(corpus, device)
        if ABLATION in stages:
            keys += ablation_keys(corpus)
    if MICRO in stages:
        keys += micro_keys([c.name for c in corpora], device)
    return keys
