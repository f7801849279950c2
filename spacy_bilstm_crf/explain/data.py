"""The data of a trace: one dataclass per stage, JSON-able through ``Trace.to_dict``."""

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Tuple


@dataclass
class TokenInfo:
    """A spaCy token of the text."""

    i: int
    text: str
    whitespace: str
    is_space: bool
    sent_start: bool


@dataclass
class Window:
    """One window of a transformer: tokens ``start..end-1`` and their wordpieces."""

    start: int
    end: int
    wordpieces: List[str]


@dataclass
class TransformerStage:
    """Stage 2: what the transformer saw and gave."""

    kind: str  # "listener" (a transformer component upstream) or "inline"
    name: str  # the Hugging Face model name or path
    windows: List[Window]
    alignment: List[List[Tuple[int, int]]]  # per token: (window, wordpiece position) pairs
    output_shape: List[int]  # (windows, wordpieces per window, width)


@dataclass
class VectorStage:
    """Stage 3: the token vectors, after pooling for a transformer."""

    architecture: str
    shape: List[int]
    context: str  # how far a token vector looks
    preview: List[List[float]]  # the first values of each token's vector


@dataclass
class EncoderStage:
    """Stage 4: the BiLSTM, IDCNN or no encoder."""

    architecture: str
    settings: Dict[str, Any]
    shape: List[int]
    receptive_field: Optional[int]  # tokens one output sees (IDCNN); None: the whole doc or no encoder
    computation: str


@dataclass
class EmissionStage:
    """Stage 5: the emission scores, tokens x tags."""

    tags: List[str]
    scores: List[List[float]]  # (T, K)
    top: List[List[Tuple[str, float]]]  # per token, its 3 best tags
    argmax: List[str]  # per-token argmax, what a softmax tagger would output
    argmax_problem: Optional[str]  # why that sequence is ill-formed, or None


@dataclass
class TransitionStage:
    """Stage 6: the learned transition, start and end scores and the constraints."""

    tags: List[str]
    scores: List[List[float]]  # (K, K), row = previous tag
    start: List[float]
    end: List[float]
    allowed: List[List[bool]]
    allowed_start: List[bool]
    allowed_end: List[bool]
    forbidden: List[Tuple[str, str]]  # (previous, next), "<start>" and "<end>" included
    strongest: List[Tuple[str, str, float]]  # the highest-scoring allowed transitions
    weakest: List[Tuple[str, str, float]]  # the lowest-scoring allowed transitions


@dataclass
class PathInfo:
    """A tag sequence with its score, probability and entities."""

    tags: List[str]
    score: float  # sum of its emission, transition, start and end scores
    probability: float
    entities: List[Tuple[int, int, str]]
    differs_at: List[int]  # tokens where it differs from the best path


@dataclass
class PathStage:
    """Stage 7: Viterbi and the next-best paths."""

    log_z: float  # log of the sum of exp(score / temperature) over all valid paths
    temperature: float
    paths: List[PathInfo]  # best first; paths[0] is the Viterbi path
    viterbi_marginals: List[float]  # per token, the probability of its Viterbi tag


@dataclass
class EntityInfo:
    """Stage 8: an entity or a likely span, with its probability."""

    start: int
    end: int
    label: str
    text: str
    start_char: int
    end_char: int
    probability: float
    predicted: bool  # in doc.ents (else: another span above the threshold)
    preset: bool  # set on the doc before the component


@dataclass
class Trace:
    """Everything ``explain`` found for one text."""

    text: str
    lang: str
    component: str
    scheme: str
    labels: List[str]
    tokens: List[TokenInfo]
    transformer: Optional[TransformerStage]
    vectors: VectorStage
    encoder: EncoderStage
    emissions: EmissionStage
    transitions: TransitionStage
    paths: PathStage
    entities: List[EntityInfo]
    threshold: float
    marginals: List[List[float]] = field(default_factory=list)  # (T, K) token marginals

    def to_dict(self) -> Dict[str, Any]:
        """The trace as plain JSON-able values (tuples become lists)."""
        return asdict(self)
