"""The ``crf_ner`` pipeline component: a CRF entity recognizer."""

from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple, cast

import numpy
import srsly
from spacy import util
from spacy.attrs import IS_SPACE, SENT_START
from spacy.errors import Errors
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.pipeline.ner import ner_score
from spacy.tokens import Doc, Span, SpanGroup
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.vocab import Vocab
from thinc.api import Config, Model, Optimizer, set_dropout_rate
from thinc.types import Floats1d, Floats2d, Ints1d, Ints2d

from ..layers.crf_numpy import CRFStateError, ScoredSpan, has_crf, is_numpy_crf
from ..layers.lazy_torch import (
    UnsafeWeightsError,
    build_lazy_layers,
    describe_lazy_layers,
    describe_saved_lazy_layers,
    lazy_layer_dims,
)
from ..layers.onnx_scorer import OnnxGraphError
from ..loading import guard_loading
from ..optim import finish_update_scaled
from ..runtime.numpy_crf import NonFiniteScoresError, NoValidPathError
from ..tag_scheme import (
    OUTSIDE,
    continuation_tags,
    convert_biluo,
    make_tags,
    scheme_name,
    spans_to_tags,
    split_tag,
    tag_index,
    tags_to_spans,
    validate_label,
)
from ..tag_scheme import (
    Span as EntitySpan,
)
from ..threads import apply_thread_policy

UNKNOWN_TAG = -1
# Tag schemes the CRF can tag in. IOB1 is a reading format only: whether its
# B- opens an entity depends on the entity before it.
TAGGING_SCHEMES = ("BILUO", "BIO", "BIOES", "BMES")
INIT_SAMPLE_SIZE = 10
# The most analyses ``kbest`` gives: its time and memory grow with k (k = 1000
# on a 512-token doc with 13 tags: 0.7 s and 107 MB; k = 10**7 was killed at 24 GB).
MAX_KBEST = 1000

# Only what differs from the registered functions' defaults is set here; the
# encoder's settings are BiLSTMEncoder.v1's defaults.
DEFAULT_CRF_NER_MODEL = """
[model]
@architectures = "spacy-bilstm-crf.CRFTagger.v1"

[model.tok2vec]
@architectures = "spacy.HashEmbedCNN.v2"
pretrained_vectors = null
width = 96
depth = 4
embed_size = 2000
window_size = 1
maxout_pieces = 3
subword_features = true

[model.encoder]
@architectures = "spacy-bilstm-crf.BiLSTMEncoder.v1"
"""
DEFAULT_MODEL = Config().from_str(DEFAULT_CRF_NER_MODEL)["model"]


@Language.factory(
    "crf_ner",
    assigns=["doc.ents", "token.ent_iob", "token.ent_type"],
    default_config={
        "model": DEFAULT_MODEL,
        "scheme": "BILUO",
        "overwrite_ents": False,
        "head_lr_scale": 1.0,
        "scorer": {"@scorers": "spacy.ner_scorer.v1"},
        "spans_key": None,
        "threshold": 0.5,
        "temperature": 1.0,
    },
    default_score_weights={"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None},
)
def make_crf_ner(
    nlp: Language,
    name: str,
    model: Model[List[Doc], List[Floats2d]],
    scheme: str,
    overwrite_ents: bool,
    head_lr_scale: float,
    scorer: Optional[Callable],
    spans_key: Optional[str] = None,
    threshold: float = 0.5,
    temperature: float = 1.0,
) -> "CRFEntityRecognizer":
    """Create a CRF entity recognizer.

    model (Model[List[Doc], List[Floats2d]]): A CRF tagger
        (``spacy-bilstm-crf.CRFTagger.v1``).
    scheme (str): Tag scheme of the CRF: "BILUO" (default), "BIO", "BIOES" or "BMES".
    overwrite_ents (bool): Replace entities already set on the doc instead of
        keeping them and predicting around them.
    head_lr_scale (float): Factor on the optimizer's learning rate for this
        component's own layers (encoder, emissions, CRF); the tok2vec keeps
        the optimizer's rate.
    scorer (Optional[Callable]): The scoring method.
    spans_key (Optional[str]): With a key, ``doc.spans[spans_key]`` holds the
        entities with their probabilities under the CRF in
        ``doc.spans[spans_key].attrs["scores"]``, and the other spans whose
        probability is at least ``threshold``. None (the default): off, no cost.
    threshold (float): The probability from which a span that is not a
        predicted entity goes into ``doc.spans[spans_key]`` (0 < threshold <= 1).
    temperature (float): The CRF's scores are divided by it before the
        probabilities are computed (temperature scaling, for calibration);
        decoding does not change.

    Loading a pipeline with this component also checks the saved
    transformer of the pipeline before spacy-transformers reads it (see
    :func:`spacy_bilstm_crf.loading.guard_loading`).
    """
    guard_loading(nlp)
    return CRFEntityRecognizer(
        nlp.vocab,
        model,
        name,
        scheme=scheme,
        overwrite_ents=overwrite_ents,
        head_lr_scale=head_lr_scale,
        scorer=scorer,
        spans_key=spans_key,
        threshold=threshold,
        temperature=temperature,
    )


@dataclass(frozen=True)
class EmissionScores:
    """What the CRF decodes for a batch of docs, as the component sees it.

    scores: per doc its emission scores (T_i, K), one row per token, one
        column per tag of ``CRFEntityRecognizer.tags``.
    allowed: per doc a (T_i, K) bool mask of the tags each token may take
        (whitespace outside entities, no entity across a sentence start,
        entities already on the doc fixed unless ``overwrite_ents``), or
        None when no doc of the batch restricts any token.
    kept: per doc the entities already on it that prediction keeps, as
        (start, end, label); empty lists with ``overwrite_ents``.
    """

    scores: List[Floats2d]
    allowed: Optional[List[numpy.ndarray]]
    kept: List[List[EntitySpan]]


class CRFPrediction(NamedTuple):
    """What ``predict`` returns, with or without ``spans_key``: per doc the
    tag ids of its best valid tag sequence, and its scored spans (the
    entities, then the other spans whose probability reaches ``threshold``,
    with their probabilities; empty lists when ``spans_key`` is None)."""

    tag_ids: List[Ints1d]
    scored_spans: List[List[ScoredSpan]]


def _check_confidence_settings(spans_key: Optional[str], threshold: float, temperature: float) -> None:
    if spans_key is not None and (not isinstance(spans_key, str) or not spans_key):
        raise ValueError(f"spans_key must be a non-empty string or None, got {spans_key!r}.")
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}.")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}.")


class CRFEntityRecognizer(TrainablePipe):
    """Named entity recognizer with a linear-chain CRF over entity tags.

    Training: the loss is the CRF negative log-likelihood of the gold tags.
    Tokens whose gold annotation is missing (no entity information, or an
    entity that cannot be aligned to the predicted tokenization) are
    marginalised out, so they add no loss; they are never taken as ``O``.

    Prediction: Viterbi decoding restricted to well-formed tag sequences, and
    to these rules, as spaCy's ``ner`` keeps them: no entity starts, ends or
    lies on a whitespace-only token, and none crosses a sentence boundary
    when the doc has sentence starts. In training the same rules shape the
    CRF's lattice wherever the gold annotation agrees with them. Entities
    already on the doc are kept and predicted around (their tokens keep their
    tags, and the next token does not continue them), unless
    ``overwrite_ents`` is set.

    Confidence: with ``spans_key`` set, each predicted entity gets its
    probability under the CRF (the total probability of the valid paths in
    which exactly this span is an entity of this label) in
    ``doc.spans[spans_key]``, with the other spans whose probability reaches
    ``threshold``; ``doc.ents`` is the same either way. ``kbest`` gives the
    most probable analyses of a doc.
    """

    def __init__(
        self,
        vocab: Vocab,
        model: Model[List[Doc], List[Floats2d]],
        name: str = "crf_ner",
        *,
        scheme: str = "BILUO",
        overwrite_ents: bool = False,
        head_lr_scale: float = 1.0,
        scorer: Optional[Callable] = ner_score,
        spans_key: Optional[str] = None,
        threshold: float = 0.5,
        temperature: float = 1.0,
    ) -> None:
        scheme = scheme_name(scheme)
        if scheme not in TAGGING_SCHEMES:
            raise ValueError(
                f"Component {name!r} cannot tag in {scheme}: choose one of {', '.join(TAGGING_SCHEMES)} "
                "(IOB1 data can be converted with `spacy-bilstm-crf convert`)."
            )
        if not head_lr_scale > 0:
            raise ValueError(f"head_lr_scale must be positive, got {head_lr_scale}.")
        _check_confidence_settings(spans_key, threshold, temperature)
        self.vocab = vocab
        self.model = model
        self.name = name
        self.scorer = scorer
        self._rehearsal_model: Optional[Model] = None
        self.cfg: Dict[str, Any] = {
            "labels": [],
            "scheme": scheme,
            "overwrite_ents": overwrite_ents,
            "head_lr_scale": head_lr_scale,
            "torch_layer_dims": [],
            "spans_key": spans_key,
            "threshold": threshold,
            "temperature": temperature,
        }

    @property
    def labels(self) -> Tuple[str, ...]:
        """The entity labels, in the order of the tag inventory."""
        return tuple(self.cfg["labels"])

    @property
    def label_data(self) -> List[str]:
        return list(self.labels)

    @property
    def scheme(self) -> str:
        return self.cfg["scheme"]

    @property
    def tags(self) -> List[str]:
        """The CRF's tags: ``O``, then a tag per prefix of the scheme per label."""
        return make_tags(self.labels, self.scheme)

    @property
    def spans_key(self) -> Optional[str]:
        """Where the entities' probabilities go (``doc.spans[spans_key]``); None: off."""
        return self.cfg.get("spans_key")

    @spans_key.setter
    def spans_key(self, value: Optional[str]) -> None:
        _check_confidence_settings(value, self.threshold, self.temperature)
        self.cfg["spans_key"] = value

    @property
    def threshold(self) -> float:
        """The probability from which other spans join the entities in ``doc.spans[spans_key]``."""
        return float(self.cfg.get("threshold", 0.5))

    @threshold.setter
    def threshold(self, value: float) -> None:
        _check_confidence_settings(self.spans_key, value, self.temperature)
        self.cfg["threshold"] = float(value)

    @property
    def temperature(self) -> float:
        """The CRF's scores are divided by it for the probabilities (not for decoding)."""
        return float(self.cfg.get("temperature", 1.0))

    @temperature.setter
    def temperature(self, value: float) -> None:
        _check_confidence_settings(self.spans_key, self.threshold, value)
        self.cfg["temperature"] = float(value)

    @property
    def is_initialized(self) -> bool:
        crf = get_crf(self.model)
        return has_crf(crf) if is_numpy_crf(crf) else bool(crf.layers)

    @property
    def is_exported(self) -> bool:
        """Whether the model is an exported one (ONNX and numpy, no torch), which predicts only."""
        return is_numpy_crf(get_crf(self.model))

    @property
    def _crf(self) -> ModuleType:
        return crf_functions(get_crf(self.model))

    def _check_trainable(self, method: str) -> None:
        if self.is_exported:
            raise ValueError(
                f"Component {self.name!r} runs an exported (ONNX) model, which predicts only: {method} needs "
                "the torch pipeline it was exported from (train that one, then export it again)."
            )

    def add_label(self, label: str) -> int:
        """Add an entity label; 1 if it is new, 0 if it was there."""
        return self._add_label_from(label, "")

    def _add_label_from(self, label: str, source: str) -> int:
        try:
            validate_label(label)
        except ValueError as exc:
            where = f" in {source}" if source else ""
            raise ValueError(f"Component {self.name!r}{where}: {exc}") from None
        if label in self.labels:
            return 0
        if self.is_initialized:
            raise ValueError(
                f"Cannot add label {label!r} to component {self.name!r}: it is already "
                "initialized and its CRF cannot grow. Give all labels before initialize()."
            )
        self.cfg["labels"].append(label)
        self.vocab.strings.add(label)
        return 1

    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp: Optional[Language] = None,
        labels: Optional[Iterable[str]] = None,
    ) -> None:
        """Set the labels (given, or found in the examples) and initialize the
        model on a sample of the examples that hold tokens."""
        self._check_trainable("initialize")
        validate_get_examples(get_examples, "CRFEntityRecognizer.initialize")
        apply_thread_policy()
        if labels is not None:
            if isinstance(labels, (str, bytes)):
                raise ValueError(f"Component {self.name!r}: labels must be a list of labels, got {labels!r}.")
            for label in labels:
                self.add_label(label)
        else:
            found = {ent.label_ for eg in get_examples() for ent in eg.reference.ents}
            for label in sorted(found):
                self._add_label_from(label, "the training examples")
        if not self.labels:
            raise ValueError(
                f"Component {self.name!r} has no entity labels: the training examples hold "
                "no entities and no labels were given to initialize()."
            )
        n_tags = len(self.tags)
        if self.model.has_dim("nO") and self.model.get_dim("nO") != n_tags:
            raise ValueError(
                f"Component {self.name!r}: the model's nO is {self.model.get_dim('nO')}, but "
                f"{len(self.labels)} labels in the {self.scheme} scheme make {n_tags} tags. "
                "Leave nO unset in the config; it is inferred from the labels."
            )
        doc_sample = self._init_sample(get_examples)
        self._crf.set_tag_scheme(get_crf(self.model), self.tags, self.scheme)
        label_sample = [self.model.ops.alloc2f(len(doc), n_tags) for doc in doc_sample]
        self.model.initialize(X=doc_sample, Y=label_sample)
        self.cfg["torch_layer_dims"] = lazy_layer_dims(self.model)
        if nlp is not None:
            _require_torch_extra(nlp)

    def _init_sample(self, get_examples: Callable[[], Iterable[Example]]) -> List[Doc]:
        sample: List[Doc] = []
        for eg in get_examples():
            if len(eg.x):
                sample.append(eg.x)
                if len(sample) == INIT_SAMPLE_SIZE:
                    break
        if not sample:
            raise ValueError(Errors.E923.format(name=self.name) + " Every example's doc is empty.")
        return sample

    # --- inference ---------------------------------------------------------
    # One seam for everything that predicts: emission_scores gives the CRF's
    # input for a batch of docs, and decode, marginals, entity_probs and
    # kbest_paths work on it. predict, kbest, explain and the benchmarks all
    # go through these.

    def emission_scores(self, docs: Sequence[Doc]) -> EmissionScores:
        """The model's emission scores for ``docs``, with the constraints
        that prediction decodes within."""
        docs = list(docs)
        apply_thread_policy()
        if any(len(doc) for doc in docs):
            scores = self.model.predict(docs)
        else:
            scores = [self.model.ops.alloc2f(len(doc), len(self.tags)) for doc in docs]
        return self.constrain(docs, scores)

    def constrain(self, docs: Sequence[Doc], scores: Sequence[Floats2d]) -> EmissionScores:
        """``scores`` (per doc (T_i, K), e.g. the emission layer's output) with
        the constraints of ``docs``."""
        if len(scores) != len(docs):
            raise ValueError(f"Component {self.name!r} got {len(docs)} docs but {len(scores)} score arrays.")
        kept = [[] if self.cfg["overwrite_ents"] else [(e.start, e.end, e.label_) for e in doc.ents] for doc in docs]
        return EmissionScores(list(scores), self.decoding_constraints(docs), kept)

    def decode(self, emissions: EmissionScores) -> List[Ints1d]:
        """The tag ids of the best valid tag sequence of each doc (Viterbi)."""
        return self._viterbi(self.model, emissions.scores, emissions.allowed)

    def marginals(self, emissions: EmissionScores, *, temperature: Optional[float] = None) -> List[Floats2d]:
        """Per doc (T_i, K): each tag's probability at each token under the
        CRF (at ``temperature``, by default the component's); rows sum to 1."""
        temperature = self.temperature if temperature is None else temperature
        with self._decoding():
            return self._crf.crf_marginals(
                get_crf(self.model), emissions.scores, emissions.allowed, temperature=temperature
            )

    def entity_probs(
        self,
        emissions: EmissionScores,
        entities: Sequence[Sequence[EntitySpan]],
        *,
        threshold: Optional[float] = None,
        temperature: Optional[float] = None,
    ) -> List[List[ScoredSpan]]:
        """Per doc, the probability under the CRF that each of its ``entities``
        (start, end, label) is an entity; with ``threshold``, every other
        span of at least that probability follows, sorted. The entities kept
        from the doc whose label the CRF does not know come last with
        probability 1 (known ones are fixed, so the CRF gives them 1)."""
        temperature = self.temperature if temperature is None else temperature
        with self._decoding():
            scored = self._crf.crf_span_probs(
                get_crf(self.model),
                emissions.scores,
                entities,
                emissions.allowed,
                threshold=threshold,
                temperature=temperature,
            )
        for doc_scored, kept in zip(scored, emissions.kept):
            found = {span[:3] for span in doc_scored}
            doc_scored.extend(
                (start, end, label, 1.0) for start, end, label in kept if (start, end, label) not in found
            )
        return scored

    def kbest_paths(
        self, emissions: EmissionScores, k: int, *, temperature: Optional[float] = None
    ) -> List[Tuple[Ints2d, Floats1d]]:
        """Per doc its ``k`` most probable valid tag sequences (exact k-best
        Viterbi), best first: tag ids (n, T_i) and log-probabilities (n,) at
        ``temperature`` (by default the component's); n < k if the doc has
        fewer sequences. The first is the one ``decode`` gives. ``k`` is at
        most ``MAX_KBEST``."""
        self._check_k(k)
        temperature = self.temperature if temperature is None else temperature
        with self._decoding():
            return self._crf.crf_kbest(
                get_crf(self.model), emissions.scores, k, emissions.allowed, temperature=temperature
            )

    def transition_scores(self) -> Dict[str, numpy.ndarray]:
        """The CRF's learned scores and constraints as numpy arrays:
        ``transitions`` (K, K) (row: previous tag), ``start`` (K,), ``end``
        (K,), and the bool masks ``allowed_transitions``, ``allowed_start``
        and ``allowed_end``."""
        return self._crf.crf_transition_scores(get_crf(self.model))

    def tag_spans(self, tag_ids: Ints1d) -> List[EntitySpan]:
        """The entities (start, end, label) that a sequence of tag ids encodes."""
        tags = self.tags
        return tags_to_spans([tags[i] for i in tag_ids.tolist()], self.scheme)

    def predict(self, docs: Iterable[Doc]) -> CRFPrediction:
        """The best valid tag sequence of each doc and, with ``spans_key``
        set, the probabilities of its entities and other likely spans."""
        docs = list(docs)
        emissions = self.emission_scores(docs)
        tag_ids = self.decode(emissions)
        if self.spans_key is None:
            return CRFPrediction(tag_ids, [[] for _ in docs])
        entities = [self.tag_spans(ids) for ids in tag_ids]
        return CRFPrediction(tag_ids, self.entity_probs(emissions, entities, threshold=self.threshold))

    def kbest(self, doc: Doc, k: int = 5) -> List[Tuple[List[EntitySpan], float]]:
        """The ``k`` most probable analyses of ``doc`` (exact k-best Viterbi
        over the valid tag sequences), best first: each a list of entities
        (start token, end token, label) and its probability under the CRF
        (with ``temperature``). Fewer than ``k`` if the doc has fewer.

        Give the doc as this component would receive it: processed by the
        components before it, e.g. ``nlp(text, disable=["crf_ner"])``. As in
        prediction, entities already on the doc are kept and fixed unless
        ``overwrite_ents`` is set, and the first analysis is the one that
        prediction gives.
        """
        self._check_k(k)
        if len(doc) == 0:
            return [([], 1.0)]
        emissions = self.emission_scores([doc])
        paths, log_probs = self.kbest_paths(emissions, k)[0]
        kept = set(emissions.kept[0])
        return [
            (sorted(set(self.tag_spans(path)) | kept), float(numpy.exp(log_prob)))
            for path, log_prob in zip(paths, log_probs.tolist())
        ]

    def _check_k(self, k: Any) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_KBEST:
            raise ValueError(f"Component {self.name!r}: kbest needs 1 <= k <= {MAX_KBEST}, got k={k!r}.")

    def _viterbi(
        self, model: Model, scores: Sequence[Floats2d], allowed: Optional[List[numpy.ndarray]]
    ) -> List[Ints1d]:
        with self._decoding():
            return crf_functions(get_crf(model)).crf_decode(get_crf(model), scores, allowed)

    @contextmanager
    def _decoding(self) -> Iterator[None]:
        """Turn the CRF's error for NaN or infinite scores into one that names the component."""
        try:
            yield
        except NonFiniteScoresError as exc:
            raise ValueError(
                f"Component {self.name!r} cannot decode: {exc} The model's weights have probably "
                "diverged (NaN or infinite emission scores); check the training loss."
            ) from None

    def set_annotations(self, docs: Iterable[Doc], prediction: CRFPrediction) -> None:
        """Set ``doc.ents`` from the predicted tag ids (tokens outside entities
        get ``O``) and, with ``spans_key`` set, ``doc.spans[spans_key]``."""
        docs = list(docs)
        for doc, ids in zip(docs, prediction.tag_ids):
            ents = [Span(doc, start, end, label=label) for start, end, label in self.tag_spans(ids)]
            if not self.cfg["overwrite_ents"]:
                preset = list(doc.ents)
                seen = {(e.start, e.end, e.label_) for e in preset}
                ents = preset + [e for e in ents if (e.start, e.end, e.label_) not in seen]
            doc.set_ents(ents, default="outside")
        if self.spans_key is not None:
            for doc, scored in zip(docs, prediction.scored_spans):
                self._set_scored_spans(doc, scored)

    def _set_scored_spans(self, doc: Doc, scored: List[ScoredSpan]) -> None:
        """``doc.spans[spans_key]``: the scored spans, sorted, with their
        probabilities in ``attrs["scores"]``."""
        probs = {(start, end, label): prob for start, end, label, prob in scored}
        ordered = sorted(probs)
        spans = [Span(doc, start, end, label=label) for start, end, label in ordered]
        scores = numpy.asarray([probs[span] for span in ordered], dtype="float32")
        doc.spans[cast(str, self.spans_key)] = SpanGroup(
            doc, name=cast(str, self.spans_key), spans=spans, attrs={"scores": scores}
        )

    # --- training ----------------------------------------------------------

    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Optional[Optimizer] = None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        """Learn from a batch of examples: the CRF negative log-likelihood of
        their gold tags, backpropagated through the CRF and the model."""
        examples = list(examples)
        self._check_trainable("update")
        validate_examples(examples, "CRFEntityRecognizer.update")
        return self._learn(examples, drop, sgd, losses, self._gold_and_allowed)

    def get_loss(self, examples: Iterable[Example], scores: List[Floats2d]) -> Tuple[float, List[Floats2d]]:
        """CRF negative log-likelihood of the gold tags, summed over the batch,
        and its gradient with respect to the emission scores. Pure: it
        changes no gradient of the model (``update`` trains the CRF)."""
        examples = list(examples)
        self._check_trainable("get_loss")
        validate_examples(examples, "CRFEntityRecognizer.get_loss")
        gold, allowed = self._gold_and_allowed(examples)
        with self._training_errors():
            nll, d_scores = self._crf.crf_nll(get_crf(self.model), scores, gold, allowed)
        return self._checked_loss(nll), d_scores

    def _gold_and_allowed(self, examples: List[Example]) -> Tuple[List[Ints1d], Optional[List[numpy.ndarray]]]:
        gold = [self._gold_tags(eg, i) for i, eg in enumerate(examples)]
        return gold, self._allowed_tags([eg.predicted for eg in examples], presets=False, gold=gold)

    def _train_crf(
        self, scores: List[Floats2d], gold: List[Ints1d], allowed: Optional[List[numpy.ndarray]]
    ) -> Tuple[float, List[Floats2d]]:
        """The CRF layer's forward and backward pass: the loss and the
        gradient of the scores; the CRF's own gradients accumulate for the
        next ``finish_update``. Only ``update`` and ``rehearse`` (through ``_learn``) call it."""
        with self._training_errors():
            nll, backprop = get_crf(self.model).begin_update((scores, gold, allowed))
        loss = self._checked_loss(nll)
        d_scores = backprop(self.model.ops.xp.ones(len(nll), dtype="f"))
        return loss, cast(List[Floats2d], d_scores)

    def _checked_loss(self, nll: Floats1d) -> float:
        loss = float(nll.sum(keepdims=False))
        if not numpy.isfinite(loss):
            raise ValueError(Errors.E910.format(name=self.name))
        return loss

    @contextmanager
    def _training_errors(self) -> Iterator[None]:
        """Name the component in the CRF's errors for diverged scores and impossible gold tags."""
        try:
            yield
        except NonFiniteScoresError as exc:
            raise ValueError(f"{Errors.E910.format(name=self.name)} {exc}") from None
        except NoValidPathError as exc:
            raise ValueError(
                f"Component {self.name!r}: the gold tags of a training doc form no well-formed "
                f"{self.scheme} sequence ({exc})."
            ) from None

    def rehearse(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Optional[Optimizer] = None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        """Rehearsal update: the CRF loss of the tags that the model had when
        ``nlp.resume_training()`` was called (its Viterbi paths on these docs),
        so that training on new data does not make it forget them."""
        if self._rehearsal_model is None:
            raise ValueError(
                f"Component {self.name!r} has no model to rehearse: call nlp.resume_training() "
                "before nlp.rehearse(), so that it keeps a copy of the current model."
            )
        examples = list(examples)
        self._check_trainable("rehearse")
        validate_examples(examples, "CRFEntityRecognizer.rehearse")
        if sgd not in (None, False) and not isinstance(sgd, Optimizer):
            sgd = cast(Optimizer, _GradientCollector(sgd))  # Language.rehearse's collector, see _GradientCollector
        return self._learn(examples, drop, sgd, losses, self._teacher_tags)

    def _teacher_tags(self, examples: List[Example]) -> Tuple[List[Ints1d], Optional[List[numpy.ndarray]]]:
        """The rehearsal model's Viterbi tags of the examples' docs, and the constraints they were decoded within."""
        teacher = cast(Model, self._rehearsal_model)
        docs = [eg.predicted for eg in examples]
        allowed = self._allowed_tags(docs, presets=False)
        return self._viterbi(teacher, teacher.predict(docs), allowed), allowed

    def _learn(
        self,
        examples: List[Example],
        drop: float,
        sgd: Optional[Optimizer],
        losses: Optional[Dict[str, float]],
        targets: Callable[[List[Example]], Tuple[List[Ints1d], Optional[List[numpy.ndarray]]]],
    ) -> Dict[str, float]:
        """One training step on the CRF loss of ``targets(examples)`` (tag ids
        per doc and the constraints they satisfy): the CRF's and the model's
        backward passes, then ``finish_update``. Batches without tokens teach
        nothing and change nothing, as in spaCy's tagger."""
        if losses is None:
            losses = {}
        losses.setdefault(self.name, 0.0)
        if not any(len(eg.predicted) for eg in examples):
            return losses
        apply_thread_policy()
        tags, allowed = targets(examples)
        set_dropout_rate(self.model, drop)
        scores, backprop_scores = self.model.begin_update([eg.predicted for eg in examples])
        loss, d_scores = self._train_crf(scores, tags, allowed)
        backprop_scores(d_scores)
        if sgd not in (None, False):
            self.finish_update(cast(Optimizer, sgd))
        losses[self.name] += loss
        return losses

    def finish_update(self, sgd: Optimizer) -> None:
        """Update the weights, the head's at ``head_lr_scale`` times the rate."""
        finish_update_scaled(self.model, sgd, self.cfg["head_lr_scale"], unscaled=self.model.get_ref("tok2vec"))

    # --- constraints -------------------------------------------------------

    def decoding_constraints(self, docs: Sequence[Doc]) -> Optional[List[numpy.ndarray]]:
        """The allowed-tag masks ``predict`` decodes within: per doc a (T, K)
        bool array (whitespace tokens outside entities, no entity across a
        sentence start, preset entities fixed unless ``overwrite_ents``), or
        None when no doc of the batch restricts any token."""
        return self._allowed_tags(docs, presets=not self.cfg["overwrite_ents"])

    def _allowed_tags(
        self, docs: Sequence[Doc], *, presets: bool, gold: Optional[Sequence[Ints1d]] = None
    ) -> Optional[List[numpy.ndarray]]:
        """Per doc a (T, K) bool mask of the tags each token may take, or None
        for the whole batch when no doc restricts any token. With ``gold``, the
        rules hold only where the gold tag is known and agrees with them: a
        known gold tag is always allowed, and a token without gold annotation
        may take any tag (so a gold entity around it stays possible)."""
        masks = [self._doc_allowed_tags(doc, presets) for doc in docs]
        if all(mask is None for mask in masks):
            return None
        n_tags = len(self.tags)
        out: List[numpy.ndarray] = []
        for i, (doc, mask) in enumerate(zip(docs, masks)):
            if mask is None:
                mask = numpy.ones((len(doc), n_tags), dtype=bool)
            if gold is not None:
                ids = numpy.asarray(gold[i])
                known = ids >= 0
                mask[~known] = True
                mask[known, ids[known]] = True
            out.append(mask)
        return out

    def _doc_allowed_tags(self, doc: Doc, presets: bool) -> Optional[numpy.ndarray]:
        n_tokens = len(doc)
        if n_tokens == 0:
            return None
        columns = doc.to_array([IS_SPACE, SENT_START]).reshape(n_tokens, 2)
        space = columns[:, 0].astype(bool)
        starts = numpy.nonzero(columns[:, 1] == 1)[0]
        starts = starts[starts > 0]
        fixed = presets and len(doc.ents) > 0
        if not space.any() and not len(starts) and not fixed:
            return None
        continuing = continuation_tags(self.tags, self.scheme)  # (K,)
        mask = numpy.ones((n_tokens, len(continuing)), dtype=bool)
        mask[space] = False
        mask[space, 0] = True  # whitespace tokens are outside every entity
        mask[numpy.ix_(starts, continuing)] = False  # no entity crosses a sentence start
        if fixed:
            self._fix_preset_entities(doc, mask, continuing)
        return mask

    def _fix_preset_entities(self, doc: Doc, mask: numpy.ndarray, continuing: numpy.ndarray) -> None:
        """Tokens of entities already on the doc keep their tags (those of
        unknown labels stay outside), and the token after one does not continue it."""
        index = tag_index(self.labels, self.scheme)
        for ent in doc.ents:
            mask[ent.start : ent.end] = False
            if ent.label_ in self.labels:
                tags = spans_to_tags(len(ent), [(0, len(ent), ent.label_)], self.scheme)
                mask[numpy.arange(ent.start, ent.end), [index[tag] for tag in tags]] = True
            else:
                mask[ent.start : ent.end, index[OUTSIDE]] = True
            if ent.end < len(doc):
                mask[ent.end, continuing] = False

    def _gold_tags(self, example: Example, position: int) -> Ints1d:
        """Gold tag id per predicted token; -1 where the annotation is missing."""
        aligned = example.get_aligned_ner()
        tags = aligned if scheme_name(self.scheme) == "BILUO" else convert_biluo(aligned, self.scheme)
        ids = _gold_tag_ids(tuple(self.labels), self.scheme)
        try:
            gold = numpy.fromiter((ids[tag] for tag in tags), dtype="int32", count=len(tags))
        except KeyError:
            raise self._bad_gold_tag(example, position, convert_biluo(aligned, self.scheme)) from None
        return self.model.ops.asarray1i(cast(Ints1d, gold))

    def _bad_gold_tag(self, example: Example, position: int, tags: Sequence[Optional[str]]) -> ValueError:
        """The error for a gold tag outside the component's tags (its label is unknown)."""
        known = tag_index(tuple(self.labels), self.scheme)
        bad = next(tag for tag in tags if tag is not None and tag not in known)
        label = split_tag(bad)[1]
        return ValueError(
            f"Training example {position} ({example.reference.text[:60]!r}) has an entity "
            f"labelled {label!r}, which is not a label of component {self.name!r} "
            f"{list(self.labels)}. Initialize the component with the labels of the data."
        )

    # --- serialization -----------------------------------------------------

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = tuple()) -> "CRFEntityRecognizer":
        self._validate_serialization_attrs()
        deserializers = {
            "cfg": lambda b: self._set_cfg(b, "the cfg bytes"),
            "vocab": lambda b: self.vocab.from_bytes(b, exclude=exclude),
            "model": lambda b: self._load_model(b, "the model bytes", "the cfg bytes"),
        }
        util.from_bytes(bytes_data, deserializers, exclude)
        return self

    def from_disk(self, path: Path, *, exclude: Iterable[str] = tuple()) -> "CRFEntityRecognizer":
        self._validate_serialization_attrs()
        path = Path(path)
        deserializers: Dict[str, Callable[[Path], Any]] = {
            "cfg": self._load_cfg,
            "vocab": lambda p: self.vocab.from_disk(p, exclude=exclude),
            "model": lambda p: self._load_model(self._read(Path(p)), str(p), str(path / "cfg")),
        }
        util.from_disk(path, deserializers, exclude)
        return self

    def _read(self, path: Path) -> bytes:
        if not path.is_file():
            raise ValueError(f"Cannot load component {self.name!r}: {path} is missing.")
        return path.read_bytes()

    def _load_cfg(self, path: Path) -> None:
        self._set_cfg(self._read(Path(path)), str(path))

    def _set_cfg(self, data: bytes, source: str) -> None:
        """Read saved settings: a JSON object whose known keys are checked
        (the labels as :func:`validate_label` checks them)."""
        try:
            cfg = srsly.json_loads(data)
        except ValueError as exc:
            raise ValueError(f"Cannot load component {self.name!r}: {source} is not valid JSON ({exc}).") from None
        try:
            _check_cfg(cfg)
        except ValueError as exc:
            raise ValueError(f"Cannot load component {self.name!r}: {source}: {exc}") from None
        self.cfg.update(cfg)

    def _load_model(self, data: bytes, source: str, cfg_source: str) -> None:
        """Build the torch layers from the saved sizes (cfg is read first),
        then load the weights; a damaged or mismatched file gets an error that
        names the component and the file."""
        where = f"component {self.name!r} from {source}"
        built = describe_lazy_layers(self.model)  # before loading renames and overwrites
        try:
            build_lazy_layers(self.model, self.cfg["torch_layer_dims"])
            self.model.from_bytes(data)
        except AttributeError:
            raise ValueError(Errors.E149) from None
        except (UnsafeWeightsError, OnnxGraphError, CRFStateError) as exc:
            raise ValueError(f"Cannot load {where}: {exc}") from None
        except Exception as exc:  # msgpack, Thinc and torch raise many kinds here
            raise ValueError(f"Cannot load {where}: {_load_failure(data, built, exc)}") from None
        if self.is_initialized:
            crf = get_crf(self.model)
            if crf.get_dim("nO") != len(self.tags):
                raise ValueError(
                    f"Cannot load {where}: {cfg_source} names {len(self.labels)} labels "
                    f"({len(self.tags)} {self.scheme} tags) but the saved CRF has {crf.get_dim('nO')} tags."
                )
            try:
                self._crf.set_tag_scheme(crf, self.tags, self.scheme)
                if self.is_exported:
                    self._check_exported_widths()
            except ValueError as exc:
                raise ValueError(f"Cannot load {where}: {exc}") from None

    def _check_exported_widths(self) -> None:
        """An exported model's graph must give a score per tag from the tok2vec's vectors."""
        scorer, tok2vec = self.model.get_ref("scorer"), self.model.get_ref("tok2vec")
        if not scorer.has_dim("nO"):
            raise ValueError("it has no ONNX graph.")
        if scorer.get_dim("nO") != len(self.tags):
            raise ValueError(
                f"its ONNX graph gives {scorer.get_dim('nO')} scores per token but the CRF has {len(self.tags)} tags."
            )
        if tok2vec.has_dim("nO") and tok2vec.get_dim("nO") != scorer.get_dim("nI"):
            raise ValueError(
                f"its ONNX graph takes vectors of width {scorer.get_dim('nI')} but the tok2vec gives "
                f"{tok2vec.get_dim('nO')}."
            )


def _require_torch_extra(nlp: Language) -> None:
    """List ``spacy-bilstm-crf[torch]`` in the pipeline's requirements (torch
    is an extra), so that a ``spacy package`` wheel of it brings torch along;
    ``export`` replaces it with the ``[onnx]`` extra."""
    from .. import __version__

    requirements = nlp.meta.setdefault("requirements", [])
    if not any(util.split_requirement(req)[0] == "spacy-bilstm-crf" for req in requirements):
        requirements.append(f"spacy-bilstm-crf[torch]>={__version__}")


def get_crf(model: Model) -> Model:
    """The CRF layer of a CRF tagger: the torch one, or an exported pipeline's numpy one."""
    return model.get_ref("crf")


def crf_functions(crf: Model) -> ModuleType:
    """The module of inference functions for the CRF layer ``crf``:
    ``layers.crf`` (torch, loaded only here) or ``layers.crf_numpy``, which
    give the same functions under the same names."""
    if is_numpy_crf(crf):
        from ..layers import crf_numpy

        return crf_numpy
    from ..layers import crf as torch_crf

    return torch_crf


def _check_cfg(cfg: Any) -> None:
    """Raise a ValueError naming the key if saved settings cannot be this
    component's; the scheme is set to its canonical name."""
    if not isinstance(cfg, dict):
        raise ValueError(f"expected a JSON object of settings, got {type(cfg).__name__}.")
    labels = cfg.get("labels", [])
    if not isinstance(labels, list):
        raise ValueError(f"key 'labels': expected a list of labels, got {labels!r}.")
    for n, label in enumerate(labels):
        try:
            validate_label(label)
        except ValueError as exc:
            raise ValueError(f"key 'labels', item {n}: {exc}") from None
    if len(set(labels)) != len(labels):
        raise ValueError(f"key 'labels': a label is listed twice in {labels!r}.")
    if "scheme" in cfg:
        try:
            cfg["scheme"] = scheme_name(cfg["scheme"])
        except ValueError:
            pass
        if cfg["scheme"] not in TAGGING_SCHEMES:
            raise ValueError(f"key 'scheme': expected one of {', '.join(TAGGING_SCHEMES)}, got {cfg['scheme']!r}.")
    if not isinstance(cfg.get("overwrite_ents", False), bool):
        raise ValueError(f"key 'overwrite_ents': expected true or false, got {cfg['overwrite_ents']!r}.")
    for key in ("head_lr_scale", "threshold", "temperature"):
        value = cfg.get(key, 1.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"key {key!r}: expected a number, got {value!r}.")
    if not cfg.get("head_lr_scale", 1.0) > 0:
        raise ValueError(f"key 'head_lr_scale': must be positive, got {cfg['head_lr_scale']!r}.")
    _check_confidence_settings(cfg.get("spans_key"), cfg.get("threshold", 0.5), cfg.get("temperature", 1.0))
    dims = cfg.get("torch_layer_dims", [])
    if not isinstance(dims, list) or not all(
        isinstance(layer, dict)
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in layer.values())
        for layer in dims
    ):
        raise ValueError(f"key 'torch_layer_dims': expected a list of {{dim: size}} objects, got {dims!r}.")


@lru_cache(maxsize=16)
def _gold_tag_ids(labels: Tuple[str, ...], scheme: str) -> Dict[Optional[str], int]:
    """Gold tag -> tag id, with the marks of missing annotation -> UNKNOWN_TAG."""
    ids: Dict[Optional[str], int] = {None: UNKNOWN_TAG, "": UNKNOWN_TAG, "-": UNKNOWN_TAG}
    ids.update(tag_index(labels, scheme))
    return ids


class _GradientCollector:
    """Adapts the function that ``Language.rehearse`` passes as ``sgd``: it
    collects each (weights, gradient) and applies the optimizer to them once
    every component has run. It gets a copy of each gradient, as torch layers
    zero theirs as soon as they hand them over, and the layer's own gradient is
    spent as an optimizer spends it. It takes no learning-rate scale, so
    ``head_lr_scale`` does not apply in ``nlp.rehearse``."""

    def __init__(self, collect: Callable) -> None:
        self.collect = collect

    def __call__(self, key: Tuple[int, str], weights: Any, gradient: Any, *, lr_scale: float = 1.0) -> Tuple[Any, Any]:
        collected = gradient.copy()
        gradient *= 0
        return self.collect(key, weights, collected)


def _load_failure(data: bytes, built: List[str], exc: Exception) -> str:
    """Why saved model bytes could not be loaded into a model whose torch layers are ``built``."""
    try:
        saved = describe_saved_lazy_layers(data)
    except Exception:
        return f"the file is damaged (truncated or overwritten): it cannot be decoded ({type(exc).__name__}: {exc})."
    if saved != built:
        return (
            f"it was saved with the torch layers [{', '.join(saved)}] but the config builds "
            f"[{', '.join(built)}]. Load it with the config it was saved with."
        )
    return (
        "the file is damaged or was saved with a different config (model architecture, encoder or labels). "
        f"{type(exc).__name__}: {exc}"
    )
