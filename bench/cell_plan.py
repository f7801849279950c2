"""Which cells a run consists of, and each system's learning-rate choice.

Stages: ``grid`` (every trained system at the corpus's first grid points,
seed 0, short budget, then the untried neighbours of its best point until
that point is an interior optimum or at a ladder's end), ``main`` (every
trained system at its chosen setting, the corpus's seeds, the convergence
budget), ``ablation``
(MSRA: one feature or recipe change per row of the default BiLSTM-CRF, one
seed, the default three), ``speed`` (one
interleaved speed cell per corpus and device) and ``micro`` (the CRF alone
against length, and the heads alone per corpus).
"""

from typing import Any, Dict, List, Optional, Sequence, Tuple

from .cells import CellStore
from .specs import ABLATION, GRID, MAIN, MICRO, SPEED, CellKey, CorpusSpec, scale_setting, setting_rate, setting_scale
from .stats import GridPoint, choose_point, excludes_zero, grid_extension
from .systems import ABLATIONS, SYSTEMS, trained_systems


class MissingGridError(RuntimeError):
    pass


def grid_systems(corpus: CorpusSpec) -> List[str]:
    """The systems the grid covers: all trained ones (each has a fresh head)."""
    wanted = corpus.grid_systems
    return [name for name in trained_systems(corpus.name) if wanted is None or name in wanted]


def grid_keys(
    corpus: CorpusSpec, store: Optional[CellStore] = None, package_hash: Optional[str] = None
) -> List[CellKey]:
    """The grid cells: every system at the corpus's first points, and (from
    the grid cells of ``package_hash`` in ``store``) the untried neighbours
    of each system's best point along the rate and scale ladders. Planned
    again after each round of cells, the grid grows until every system's
    best point has a worse neighbour, or a ladder's end, on every side."""
    if not corpus.has_grid:
        return []
    results = grid_results(corpus, store, package_hash) if store is not None and package_hash else {}
    first = [setting_of(point) for point in corpus.grid_points()]
    keys = []
    for name in grid_systems(corpus):
        tried = results.get(name, {})
        done = {setting_of(point) for point in tried}
        # The first points, those an earlier round added, then the neighbours the best point still lacks.
        settings = first + [setting_of(p) for p in sorted(tried, key=lambda p: (p[0] or 0.0, p[1]))]
        settings = list(dict.fromkeys(settings))
        if done >= set(first):
            settings += [setting_of(p) for p in grid_extension(tried, corpus.rate_ladder, corpus.scale_ladder)]
        keys += [CellKey(corpus.name, GRID, name, setting, 0) for setting in settings]
    return keys


def setting_of(point: GridPoint) -> str:
    rate, scale = point
    return scale_setting(scale, rate)


def grid_results(
    corpus: CorpusSpec, store: Optional[CellStore], package_hash: Optional[str]
) -> Dict[str, Dict[GridPoint, float]]:
    """Best dev F1 per grid point per system, from the grid cells of this package hash."""
    out: Dict[str, Dict[GridPoint, float]] = {}
    for cell in store.cells() if store is not None else []:
        if cell.get("corpus") != corpus.name or cell.get("stage") != GRID or cell.get("package_hash") != package_hash:
            continue
        point = (setting_rate(cell["setting"]), setting_scale(cell["setting"]))
        out.setdefault(cell["system"], {})[point] = float(cell["dev_f1_best"])
    return out


def first_point_settings(corpus: CorpusSpec) -> Dict[str, str]:
    """Each trained system at the corpus's first grid point."""
    first = setting_of(corpus.grid_points()[0])
    return {name: first for name in trained_systems(corpus.name)}


def chosen_settings(corpus: CorpusSpec, store: CellStore, package_hash: str) -> Dict[str, str]:
    """Each trained system's learning-rate setting (``x20`` or
    ``x20-lr5e-05``): its grid's best point once the grid is complete, or
    the corpus's first point when it has no grid (or the system is not in a
    ``--quick`` grid). Raises ``MissingGridError`` naming the cells to run."""
    chosen = first_point_settings(corpus)
    if not corpus.has_grid:
        return chosen
    missing = [key.cell_id for key in grid_keys(corpus, store, package_hash) if not store.is_done(key, package_hash)]
    if missing:
        raise MissingGridError(
            f"{corpus.name}: the main stage needs the grid's choice; run the grid cells first: " + ", ".join(missing)
        )
    for name, results in grid_results(corpus, store, package_hash).items():
        if name in chosen:
            chosen[name] = setting_of(choose_point(results))
    return chosen


def main_keys(
    corpus: CorpusSpec,
    settings: Dict[str, str],
    store: Optional[CellStore] = None,
    package_hash: Optional[str] = None,
) -> List[CellKey]:
    """Every trained system at its setting on the corpus's seeds; and, once
    those cells are done (in ``store``, of ``package_hash``), the corpus's
    ``extra_seeds`` for both systems of each key pair that they leave
    undecided (``undecided_pairs``)."""
    keys = []
    for name in trained_systems(corpus.name):
        spec = SYSTEMS[corpus.name][name]
        seeds = corpus.seeds[: spec.seeds] if spec.seeds else corpus.seeds
        keys += [CellKey(corpus.name, MAIN, name, settings[name], seed) for seed in seeds]
    if corpus.extra_seeds and store is not None and package_hash is not None:
        if all(store.is_done(key, package_hash) for key in keys):
            for name in sorted({n for pair in undecided_pairs(corpus, keys, store) for n in pair}):
                keys += [CellKey(corpus.name, MAIN, name, settings[name], seed) for seed in corpus.extra_seeds]
    return keys


def undecided_pairs(corpus: CorpusSpec, keys: Sequence[CellKey], store: CellStore) -> List[Tuple[str, str]]:
    """The key pairs (``KEY_PAIRS``) whose interval over seeds and test items,
    from the cells of ``keys``, includes 0."""
    from .aggregate import KEY_PAIRS, comparisons

    main: Dict[str, List[Dict[str, Any]]] = {}
    for key in keys:
        cell = store.load(key)
        if cell is not None:
            main.setdefault(key.system, []).append(cell)
    pairs = [(a, b) for a, b in KEY_PAIRS if a in main and b in main]
    return [(c["a"], c["b"]) for c in comparisons({corpus.name: main}, pairs) if not excludes_zero(c)]


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
    settings: Optional[Dict[str, Dict[str, str]]] = None,
) -> List[CellKey]:
    """The cells of ``stages`` for ``corpora``, in the order a run does them.
    The grid's extension and the main stage's settings are read from
    ``store`` (the main stage's from ``settings`` where given)."""
    keys: List[CellKey] = []
    for corpus in corpora:
        if GRID in stages:
            keys += grid_keys(corpus, store, package_hash)
        if MAIN in stages:
            chosen = (settings or {}).get(corpus.name) or chosen_settings(corpus, store, package_hash)
            keys += main_keys(corpus, chosen, store, package_hash)
        if SPEED in stages:
            keys += speed_keys(corpus, device)
        if ABLATION in stages:
            keys += ablation_keys(corpus)
    if MICRO in stages:
        keys += micro_keys([c.name for c in corpora], device)
    return keys
