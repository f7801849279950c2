"""Typed specifications of the benchmark: corpora, budgets, systems and cells.

A *cell* is one unit of work whose result is one JSON file: a training run
(corpus, system, head learning-rate setting, seed), the interleaved speed
measurement of a corpus on one device, or a microbenchmark.
"""

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Tuple

# Stages of the benchmark, in the order a full run goes through them.
GRID, MAIN, SPEED, MICRO, ABLATION = "grid", "main", "speed", "micro", "ablation"
STAGES: Tuple[str, ...] = (GRID, MAIN, SPEED, MICRO, ABLATION)
TRAINING_STAGES: Tuple[str, ...] = (GRID, MAIN, ABLATION)


@dataclass(frozen=True)
class Limits:
    """Sentence caps per split (None: all), the MSRA dev fraction and how many
    lines of each corpus file to read (None: all)."""

    train: Optional[int] = None
    dev: Optional[int] = None
    test: Optional[int] = None
    dev_fraction: float = 0.02
    seed: int = 0
    max_lines: Optional[int] = None
    dev_split: str = "block"  # how MSRA's dev is carved from train (``split_dev``)


@dataclass(frozen=True)
class Budget:
    """How long one training cell trains, in training words (MSRA: characters).

    Training goes on for at least ``min_words``; dev F1 is measured every
    ``eval_every`` words and at the end; after ``min_words`` it stops at the
    first evaluation where dev F1 has not improved for ``patience`` of the
    words seen so far, and at ``max_words`` at the latest. The learning-rate
    schedule spans ``max_words`` (the configs' decay to 0 at the cap), or
    with ``constant_rate`` warms up as the configs do and then stays at the
    base rate, so that patience, not the cap, ends training.
    ``min_words == max_words`` is a fixed budget.
    """

    min_words: int
    max_words: int
    eval_every: int
    patience: float = 0.25
    constant_rate: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.min_words <= self.max_words:
            raise ValueError(f"need 0 < min_words <= max_words, got {self.min_words}, {self.max_words}")
        if self.eval_every < 1 or not 0.0 < self.patience <= 1.0:
            raise ValueError(f"bad eval_every {self.eval_every} or patience {self.patience}")


@dataclass(frozen=True)
class BudgetRule:
    """A ``Budget`` in epochs of the corpus's training split."""

    min_epochs: float
    max_epochs: float
    eval_every_epochs: float
    patience: float = 0.25
    constant_rate: bool = False

    def budget(self, epoch_words: int) -> Budget:
        def words(epochs: float) -> int:
            return max(1, int(round(epochs * epoch_words)))

        return Budget(
            words(self.min_epochs),
            words(self.max_epochs),
            words(self.eval_every_epochs),
            self.patience,
            self.constant_rate,
        )


@dataclass(frozen=True)
class CorpusSpec:
    """One corpus: where it comes from, how it is cut, and its budgets."""

    name: str
    lang: str
    unit: str  # what a token is: "words" or "characters"
    limits: Limits
    main: BudgetRule
    grid: BudgetRule
    grid_scales: Tuple[float, ...]  # the head learning-rate choices every fresh-head system gets
    seeds: Tuple[int, ...]
    speed_rounds: int  # interleaved rounds of the speed cell (training and inference)
    speed_steps: int  # training steps per system per round
    speed_words: int  # test words per system per inference round
    grid_systems: Optional[Tuple[str, ...]] = None  # None: every system with a fresh head (--quick: fewer)
    ablation: Optional[BudgetRule] = None  # the feature and recipe ablation's budget (None: no ablation)
    # Issue 27: the base learning rates the grid starts with (empty: the configs' own rate only), and the
    # ladders of rates and head scales it may extend along until the best point has a worse neighbour on
    # every side (empty ladder: no extension along that axis).
    grid_rates: Tuple[float, ...] = ()
    rate_ladder: Tuple[float, ...] = ()
    scale_ladder: Tuple[float, ...] = ()
    extra_seeds: Tuple[int, ...] = ()  # main seeds added for a key pair the corpus's seeds leave undecided

    @property
    def has_grid(self) -> bool:
        """Whether the learning rates are chosen by a grid (more than one point to try)."""
        return len(self.grid_scales) * max(len(self.grid_rates), 1) > 1 or bool(self.rate_ladder or self.scale_ladder)

    def grid_points(self) -> List[Tuple[Optional[float], float]]:
        """The grid's first points, (base rate or None for the configs' own, head scale)."""
        rates: Tuple[Optional[float], ...] = self.grid_rates or (None,)
        return [(rate, scale) for rate in rates for scale in self.grid_scales]


@dataclass(frozen=True)
class SystemSpec:
    """One system of a corpus. ``kind``: "crf_ner", "ner" (spaCy's), "softmax"
    (transformers token classifier) or "encoder" (an encoder alone, a speed
    ceiling). ``base`` names the package config it starts from; ``encoder``
    overrides that config's encoder block (``"sized"``: a residual IDCNN as
    wide as it takes to match the BiLSTM's parameter count)."""

    name: str
    title: str
    kind: str
    base: str = "crf"
    encoder: Optional[Dict[str, Any]] = None
    sized_to: Optional[str] = None
    seeds: Optional[int] = None  # main-stage seeds, when fewer than the corpus's (speed-only variants)
    # Config changes, by dotted path ("components.crf_ner.model.tok2vec"), made before
    # spaCy ``ner`` takes crf_ner's tok2vec: how an ablation row differs from its base.
    overrides: Optional[Dict[str, Any]] = None
    # Epochs of ``spacy pretrain`` (the characters cloze objective) on the training
    # split's text before training; the tok2vec starts from its weights (0: none).
    pretrain_epochs: int = 0

    @property
    def trained(self) -> bool:
        return self.kind != "encoder"


@dataclass(frozen=True, order=True)
class CellKey:
    """The identity of a cell; ``setting`` is the learning-rate setting for
    training cells (``x20``: head scale 20 at the configs' base rate;
    ``x20-lr5e-05``: at base rate 5e-5) and the device for speed and micro cells."""

    corpus: str
    stage: str
    system: str
    setting: str
    seed: int

    @property
    def cell_id(self) -> str:
        return f"{self.corpus}/{self.stage}/{self.system}/{self.setting}/seed{self.seed}"

    @property
    def relpath(self) -> str:
        return f"{self.corpus}/{self.stage}/{self.system}/{self.setting}-seed{self.seed}.json"


RATE_MARK = "-lr"


def scale_setting(scale: float, rate: Optional[float] = None) -> str:
    """The setting name of a head scale and a base learning rate: ``(20.0,
    None)`` -> ``"x20"`` (the configs' own rate), ``(20.0, 5e-05)`` ->
    ``"x20-lr5e-05"``."""
    return f"x{scale:g}" + ("" if rate is None else f"{RATE_MARK}{rate:g}")


def setting_scale(setting: str) -> float:
    """The head learning-rate scale of a setting name."""
    return _parse_setting(setting)[1]


def setting_rate(setting: str) -> Optional[float]:
    """The base learning rate of a setting name; None: the configs' own."""
    return _parse_setting(setting)[0]


def _parse_setting(setting: str) -> Tuple[Optional[float], float]:
    scale, _, rate = setting.partition(RATE_MARK)
    try:
        if not scale.startswith("x"):
            raise ValueError
        return (float(rate) if rate else None), float(scale[1:])
    except ValueError:
        raise ValueError(f"not a learning-rate setting: {setting!r} (expected x20 or x20-lr5e-05)") from None


@dataclass(frozen=True)
class CellSpec:
    """Everything a worker needs to run one cell, as plain data."""

    key: CellKey
    corpus_dir: str
    model_dir: str
    transformer: Optional[str]
    threads: Optional[int]
    budget: Optional[Budget] = None
    head_lr_scale: float = 1.0
    systems: Tuple[str, ...] = ()  # speed and micro cells: the systems measured
    scales: Dict[str, float] = field(default_factory=dict)  # speed cells: each system's chosen scale
    quick: bool = False

    def to_json(self) -> Dict[str, Any]:
        data = asdict(self)
        data["systems"] = list(self.systems)
        return data

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "CellSpec":
        data = dict(data)
        data["key"] = CellKey(**data["key"])
        data["budget"] = Budget(**data["budget"]) if data.get("budget") else None
        data["systems"] = tuple(data.get("systems") or ())
        return cls(**data)
