"""Column-format NER files (``TOKEN TAG`` per line) to spaCy Docs and DocBin.

A sentence is a run of non-blank lines; blank lines (any number) separate
sentences. ``-DOCSTART-`` lines are skipped and end a document group. With
more than two columns (CoNLL ``TOKEN POS CHUNK TAG``) the first column is the
token and the last the tag. Files are read as UTF-8 (a BOM is skipped); CRLF
line ends and trailing whitespace are accepted.
"""

import random
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple, TypeVar, Union

from ..tag_scheme import (
    REPAIR_KINDS,
    Repair,
    Span,
    TagSequenceError,
    count_labels,
    detect_scheme,
    scheme_name,
    spans_to_tags,
    tags_to_spans,
    validate_label,
)

if TYPE_CHECKING:  # spaCy (and with it Thinc and torch) loads only when docs are made
    from spacy.tokens import Doc
    from spacy.vocab import Vocab

PathLike = Union[str, Path]
T = TypeVar("T")

DOCSTART = "-DOCSTART-"
DELIMITERS: Tuple[str, ...] = ("auto", "space", "tab")
NO_SPACE_LANGS = frozenset({"zh"})
_BLANK = " \t\r\n"
_SPACE_RUN = re.compile(r"[ \t]+")


class ConversionError(ValueError):
    """Bad input data. ``str()`` names the file and 1-based line when known."""

    def __init__(
        self,
        detail: str,
        *,
        path: Optional[str] = None,
        line: Optional[int] = None,
        tag: Optional[str] = None,
        kind: Optional[str] = None,
    ) -> None:
        self.detail = detail
        self.path = path
        self.line = line
        self.tag = tag
        self.kind = kind
        where = ""
        if path is not None:
            where = f"{path}, line {line}: " if line is not None else f"{path}: "
        super().__init__(where + detail)


@dataclass
class Sentence:
    """Tokens and entity spans of one sentence; ``line`` is its first line."""

    tokens: List[str]
    spans: List[Span]
    line: int = 0
    doc_id: int = 0


@dataclass
class ColumnCorpus:
    """The sentences of one column file, the scheme read and the repairs made."""

    path: Path
    sentences: List[Sentence]
    scheme: str
    delimiter: str
    detected: bool = False
    repairs: List[Repair] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.sentences)

    def __iter__(self) -> Iterator[Sentence]:
        return iter(self.sentences)

    def __getitem__(self, index: int) -> Sentence:
        return self.sentences[index]

    @property
    def n_tokens(self) -> int:
        return sum(len(s.tokens) for s in self.sentences)

    def entity_counts(self) -> Dict[str, int]:
        counts: Dict[str, int] = {}
        for sentence in self.sentences:
            count_labels(sentence.spans, counts)
        return dict(sorted(counts.items()))

    def repair_counts(self) -> Dict[str, int]:
        return _count_repairs(self.repairs)


@dataclass
class _RawSentence:
    tokens: List[str]
    tags: List[str]
    lines: List[int]
    doc_id: int


def _count_repairs(repairs: Iterable[Repair]) -> Dict[str, int]:
    counts: Dict[str, int] = {}
    for repair in repairs:
        counts[repair.kind] = counts.get(repair.kind, 0) + 1
    order = {kind: i for i, kind in enumerate(REPAIR_KINDS)}
    return dict(sorted(counts.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))


def _check_delimiter(delimiter: str) -> str:
    if delimiter not in DELIMITERS:
        raise ValueError(f"unknown delimiter {delimiter!r}: expected one of {', '.join(DELIMITERS)}")
    return delimiter


def _utf8_error(path: Path, exc: UnicodeDecodeError) -> ConversionError:
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as line_exc:
                return ConversionError(
                    f"not valid UTF-8 ({line_exc.reason} at byte {line_exc.start})",
                    path=str(path),
                    line=lineno,
                )
    return ConversionError(f"not valid UTF-8 ({exc.reason})", path=str(path))


def _read_raw(path: Path, delimiter: str, lenient: bool, repairs: List[Repair]) -> Tuple[List[_RawSentence], str]:
    """Split the file into raw sentences; return them and the delimiter used."""
    raws: List[_RawSentence] = []
    tokens: List[str] = []
    tags: List[str] = []
    lines: List[int] = []
    doc_id = 0
    tab = delimiter == "tab"
    strings: Dict[str, str] = {}
    intern = strings.setdefault

    def end_sentence() -> None:
        nonlocal tokens, tags, lines
        if tokens:
            raws.append(_RawSentence(tokens, tags, lines, doc_id))
            tokens, tags, lines = [], [], []

    try:
        with path.open(encoding="utf-8-sig", newline=None) as f:
            for lineno, line in enumerate(f, 1):
                text = line.strip(_BLANK)
                if not text:
                    end_sentence()
                    continue
                if text.startswith(DOCSTART) and text.split(None, 1)[0] == DOCSTART:
                    end_sentence()
                    doc_id += 1
                    continue
                if delimiter == "auto":
                    tab = "\t" in text
                    delimiter = "tab" if tab else "space"
                if tab:
                    fields = [part.strip(" ") for part in text.split("\t")]
                else:
                    fields = text.split(" ")
                    if "" in fields or "\t" in text:
                        fields = _SPACE_RUN.split(text)
                if len(fields) < 2 or not fields[0] or not fields[-1]:
                    detail = (
                        f"malformed line {text!r}: expected a token and a tag separated by "
                        f"{'a tab' if delimiter == 'tab' else 'spaces'}"
                    )
                    if not lenient:
                        raise ConversionError(detail, path=str(path), line=lineno, tag=text, kind="malformed_line")
                    repairs.append(Repair("malformed_line", text, detail + " (line skipped)", -1, lineno, str(path)))
                    continue
                tokens.append(intern(fields[0], fields[0]))
                tags.append(intern(fields[-1], fields[-1]))
                lines.append(lineno)
    except UnicodeDecodeError as exc:
        raise _utf8_error(path, exc) from None
    end_sentence()
    return raws, "space" if delimiter == "auto" else delimiter


def read_column_file(
    path: PathLike,
    *,
    scheme: str = "auto",
    delimiter: str = "auto",
    lenient: bool = False,
) -> ColumnCorpus:
    """Read a column file into sentences with entity spans.

    ``scheme`` is ``"auto"`` or one of :data:`~spacy_bilstm_crf.tag_scheme.SCHEME_NAMES`;
    ``delimiter`` is ``"auto"`` (tab if the first token line has a tab),
    ``"space"`` (runs of spaces/tabs) or ``"tab"`` (tokens may hold spaces).
    Bad input raises :class:`ConversionError` naming the file and line; with
    ``lenient=True`` it is repaired and recorded in ``corpus.repairs``, except
    a label that :func:`~spacy_bilstm_crf.tag_scheme.validate_label` refuses
    (markup, control characters), which is always an error.
    """
    file = Path(path)
    _check_delimiter(delimiter)
    detected = scheme == "auto"
    name = "" if detected else scheme_name(scheme)
    repairs: List[Repair] = []
    raws, used_delimiter = _read_raw(file, delimiter, lenient, repairs)
    if detected:
        name = detect_scheme([raw.tags for raw in raws])
    sentences: List[Sentence] = []
    valid_labels: Set[str] = set()
    prev_doc, after_entity = -1, None
    for raw in raws:
        if raw.doc_id != prev_doc:
            prev_doc, after_entity = raw.doc_id, None
        found: List[Repair] = []
        try:
            spans = tags_to_spans(raw.tags, name, lenient=lenient, repairs=found, after_entity=after_entity)
        except TagSequenceError as exc:
            line = raw.lines[exc.index]
            raise ConversionError(exc.detail, path=str(file), line=line, tag=exc.tag, kind=exc.kind) from None
        for start, _, label in spans:
            if label not in valid_labels:
                try:
                    valid_labels.add(validate_label(label))
                except ValueError as exc:  # not repaired in lenient mode either: a tag is not data to guess at
                    line, tag = raw.lines[start], raw.tags[start]
                    raise ConversionError(str(exc), path=str(file), line=line, tag=tag, kind="bad_label") from None
        for repair in found:
            repairs.append(replace(repair, line=raw.lines[repair.index], path=str(file)))
        last = raw.tags[-1]
        after_entity = last[2:] if len(last) > 2 and last[1] == "-" else None
        sentences.append(Sentence(raw.tokens, spans, raw.lines[0], raw.doc_id))
    repairs.sort(key=lambda r: r.line)
    return ColumnCorpus(file, sentences, name, used_delimiter, detected, repairs)


def _is_cjk(char: str) -> bool:
    cp = ord(char)
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x3000 <= cp <= 0x303F
        or 0xFF00 <= cp <= 0xFFEF
        or 0xF900 <= cp <= 0xFAFF
        or 0x20000 <= cp <= 0x2FA1F
    )


def guess_lang(sentences: Iterable[Sentence], sample: int = 20000) -> str:
    """``"zh"`` if most of the first ``sample`` tokens are single CJK characters."""
    total = cjk = 0
    for sentence in sentences:
        for token in sentence.tokens:
            total += 1
            cjk += len(token) == 1 and _is_cjk(token)
        if total >= sample:
            break
    return "zh" if total and 2 * cjk > total else "en"


def make_vocab(lang: str) -> "Vocab":
    """The vocab of ``spacy.blank(lang)``."""
    import spacy

    try:
        return spacy.blank(lang).vocab
    except Exception as exc:  # spaCy raises ImportError or ValueError here
        raise ValueError(f"cannot create a blank spaCy pipeline for lang {lang!r}: {exc}") from None


def group_sentences(sentences: Iterable[Sentence], n_sents: int = 1) -> Iterator[List[Sentence]]:
    """Runs of up to ``n_sents`` consecutive sentences of the same document."""
    if n_sents < 1:
        raise ValueError(f"n_sents must be at least 1, got {n_sents}")
    group: List[Sentence] = []
    for sentence in sentences:
        if group and (len(group) >= n_sents or sentence.doc_id != group[-1].doc_id):
            yield group
            group = []
        group.append(sentence)
    if group:
        yield group


def sentences_to_docs(
    sentences: Iterable[Sentence],
    lang: str = "en",
    *,
    n_sents: int = 1,
    vocab: Optional["Vocab"] = None,
    spaces: Optional[bool] = None,
) -> List["Doc"]:
    """One Doc per group of ``n_sents`` sentences, with entities and sentence starts.

    Tokens are joined by spaces unless ``spaces`` is False or (by default)
    ``lang`` is Chinese, where ``doc.text`` is the characters joined.
    """
    from spacy.tokens import Doc
    from spacy.tokens import Span as SpacySpan

    if vocab is None:
        vocab = make_vocab(lang)
    with_spaces = lang not in NO_SPACE_LANGS if spaces is None else spaces
    docs: List[Doc] = []
    for group in group_sentences(sentences, n_sents):
        words: List[str] = []
        sent_starts: List[Union[bool, int, None]] = []
        ents: List[Span] = []
        for sentence in group:
            offset = len(words)
            words.extend(sentence.tokens)
            sent_starts.append(True)
            sent_starts.extend([False] * (len(sentence.tokens) - 1))
            ents.extend((start + offset, end + offset, label) for start, end, label in sentence.spans)
        n = len(words)
        token_spaces = [True] * (n - 1) + [False] if with_spaces else [False] * n
        doc = Doc(vocab, words=words, spaces=token_spaces, sent_starts=sent_starts)
        doc.ents = [SpacySpan(doc, start, end, label=label) for start, end, label in ents]
        docs.append(doc)
    return docs


def docs_to_sentences(docs: Iterable["Doc"]) -> List[Sentence]:
    """Sentences (by ``doc.sents`` when set, else whole docs) with their entities."""
    sentences: List[Sentence] = []
    for doc_id, doc in enumerate(docs):
        parts = list(doc.sents) if doc.has_annotation("SENT_START") else [doc[:]]
        for part in parts:
            spans: List[Span] = []
            for ent in doc.ents:
                if ent.end <= part.start or ent.start >= part.end:
                    continue
                if ent.start < part.start or ent.end > part.end:
                    raise ValueError(f"entity {ent.text!r} crosses a sentence boundary")
                spans.append((ent.start - part.start, ent.end - part.start, ent.label_))
            sentences.append(Sentence([t.text for t in part], spans, 0, doc_id))
    return sentences


def write_column_file(docs: Iterable["Doc"], path: PathLike, scheme: str = "BIO", *, delimiter: str = " ") -> int:
    """Write ``docs`` as ``TOKEN TAG`` lines in ``scheme``; return the sentence count."""
    name = scheme_name(scheme)
    if delimiter not in (" ", "\t"):
        raise ValueError("delimiter must be ' ' or '\\t'")
    out: List[str] = []
    sentences = docs_to_sentences(docs)
    for sentence in sentences:
        tags = spans_to_tags(len(sentence.tokens), sentence.spans, name)
        for token, tag in zip(sentence.tokens, tags):
            if not token.strip() or delimiter in token or (delimiter == " " and "\t" in token):
                raise ValueError(f"token {token!r} cannot be written in a column file")
            out.append(f"{token}{delimiter}{tag}\n")
        out.append("\n")
    Path(path).write_text("".join(out), encoding="utf-8")
    return len(sentences)


DEV_SPLITS = ("block", "random")


def split_dev(items: Sequence[T], fraction: float, seed: int = 0, how: str = "block") -> Tuple[List[T], List[T]]:
    """Split into (rest, dev); each keeps the input order.

    The dev part has ``round(len(items) * fraction)`` items, at least one and
    at most ``len(items) - 1`` when ``fraction > 0``. ``how="block"``: the last
    items, one contiguous block (sentences of one document stay together, so
    dev scores like unseen text); ``"random"``: a shuffle seeded by ``seed``
    (neighbouring sentences of train land in dev, which then scores high).
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"dev fraction must be in [0, 1), got {fraction}")
    if how not in DEV_SPLITS:
        raise ValueError(f"dev split must be one of {', '.join(DEV_SPLITS)}, got {how!r}")
    n = len(items)
    if fraction == 0.0:
        return list(items), []
    if n < 2:
        raise ValueError(f"cannot carve a dev split out of {n} doc(s)")
    n_dev = min(max(round(n * fraction), 1), n - 1)
    if how == "block":
        return list(items[: n - n_dev]), list(items[n - n_dev :])
    order = list(range(n))
    random.Random(seed).shuffle(order)
    dev_ids = set(order[:n_dev])
    rest = [item for i, item in enumerate(items) if i not in dev_ids]
    dev = [item for i, item in enumerate(items) if i in dev_ids]
    return rest, dev


def write_docbin(docs: Iterable["Doc"], path: PathLike) -> Path:
    """Save ``docs`` as a ``.spacy`` DocBin file."""
    from spacy.tokens import DocBin

    out = Path(path)
    DocBin(docs=docs, store_user_data=False).to_disk(out)
    return out


@dataclass
class ConversionSummary:
    """What :func:`convert` read and wrote."""

    input_path: Path
    scheme: str
    lang: str
    sentences: int
    docs: int
    tokens: int
    entities: Dict[str, int]
    repairs: Dict[str, int]
    output_paths: List[Path]
    dev_docs: int = 0
    detected: bool = False
    repair_log: List[Repair] = field(default_factory=list, repr=False)

    @property
    def n_entities(self) -> int:
        return sum(self.entities.values())

    def format(self, verbose: bool = False) -> str:
        """A human-readable report (``verbose`` lists every repair)."""
        ents = ", ".join(f"{label} {n:,}" for label, n in self.entities.items())
        repairs = ", ".join(f"{kind} {n:,}" for kind, n in self.repairs.items())
        outputs = [str(self.output_paths[0]) + f" ({self.docs - self.dev_docs:,} docs)"]
        if len(self.output_paths) > 1:
            outputs.append(str(self.output_paths[1]) + f" ({self.dev_docs:,} docs)")
        lines = [
            f"Converted {self.input_path}",
            f"  scheme: {self.scheme}{' (detected)' if self.detected else ''}, lang: {self.lang}",
            f"  sentences: {self.sentences:,}, docs: {self.docs:,}, tokens: {self.tokens:,}",
            f"  entities: {self.n_entities:,}" + (f" ({ents})" if ents else ""),
            f"  repairs: {sum(self.repairs.values()):,}" + (f" ({repairs})" if repairs else ""),
            f"  wrote: {', '.join(outputs)}",
        ]
        if verbose:
            lines.extend(f"  repaired: {repair}" for repair in self.repair_log)
        elif self.repair_log:
            lines.append("  (--verbose lists each repair)")
        return "\n".join(lines)


def convert(
    input_path: PathLike,
    output_dir: PathLike,
    *,
    scheme: str = "auto",
    delimiter: str = "auto",
    lang: Optional[str] = None,
    n_sents: int = 1,
    dev_fraction: float = 0.0,
    seed: int = 0,
    lenient: bool = False,
    dev_split: str = "block",
) -> ConversionSummary:
    """Convert a column file to ``OUTPUT_DIR/<stem>.spacy`` (and ``dev.spacy``).

    ``lang`` None or ``"auto"`` means ``"zh"`` for character-per-line Chinese
    data, else ``"en"``. With ``dev_fraction > 0`` that fraction of the docs
    goes to ``dev.spacy``: the last ones (``dev_split="block"``) or a seeded
    shuffle's (``"random"``); see ``split_dev``.
    """
    source = Path(input_path)
    out_dir = Path(output_dir)
    if scheme != "auto":
        scheme_name(scheme)
    _check_delimiter(delimiter)
    if n_sents < 1:
        raise ValueError(f"n_sents must be at least 1, got {n_sents}")
    if not 0.0 <= dev_fraction < 1.0:
        raise ValueError(f"dev fraction must be in [0, 1), got {dev_fraction}")
    main_path = out_dir / f"{source.stem}.spacy"
    dev_path = out_dir / "dev.spacy"
    if dev_fraction > 0 and main_path == dev_path:
        raise ValueError(f"{source}: an input named 'dev' cannot also get a dev split")
    corpus = read_column_file(source, scheme=scheme, delimiter=delimiter, lenient=lenient)
    lang_name = guess_lang(corpus.sentences) if lang in (None, "auto") else str(lang)
    docs = sentences_to_docs(corpus.sentences, lang_name, n_sents=n_sents)
    rest, dev = split_dev(docs, dev_fraction, seed, dev_split)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [write_docbin(rest, main_path)]
    if dev_fraction > 0:
        paths.append(write_docbin(dev, dev_path))
    return ConversionSummary(
        input_path=source,
        scheme=corpus.scheme,
        lang=lang_name,
        sentences=len(corpus),
        docs=len(docs),
        tokens=corpus.n_tokens,
        entities=corpus.entity_counts(),
        repairs=corpus.repair_counts(),
        output_paths=paths,
        dev_docs=len(dev),
        detected=corpus.detected,
        repair_log=list(corpus.repairs),
    )
