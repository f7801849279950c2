"""Load pipeline folders that someone else made.

spaCy loads a folder by building its components from ``config.cfg`` and then
calling ``nlp.from_disk``. With a spacy-transformers ``transformer`` in the
pipeline, two things on that path act outside the folder (see SECURITY.md):

* each tokenizer file saved with the transformer is written to
  ``temp_dir / name`` with the name as saved: ``../../x.pth`` or an absolute
  name writes anywhere;
* keyword arguments saved with the tokenizer, and ``trust_remote_code`` set in
  the config, go to ``transformers``' ``AutoTokenizer``, which then imports a
  Python file of the folder.

:func:`check_model_bytes` and :func:`check_config` refuse both before
spacy-transformers sees the data. They read only Thinc's serialization
format (the msgpack of ``Model.to_bytes``) and the tokenizer mapping of the
shims saved in it, no private API. They run

* in every pipeline with a ``crf_ner`` component, loaded in any way: its
  factory calls :func:`guard_loading`, so that this pipeline's ``from_disk``
  and ``from_bytes`` check the saved data first;
* in :func:`load_pipeline`, the command line's loader, for any pipeline folder.

A pipeline *package* (an installed name) is Python code: it runs when it is
installed and imported, and no check here can stop it.
"""

from functools import partial
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Iterable, List, Mapping, Optional, Union

import srsly
from spacy import util
from spacy.language import Language
from thinc.api import Model

# The tokenizer options spacy-transformers saves (``{"use_fast": bool}``);
# any other would reach ``AutoTokenizer.from_pretrained`` from the file.
TOKENIZER_OPTIONS = frozenset({"use_fast"})
PathLike = Union[str, Path]


class UnsafePipelineError(ValueError):
    """Saved pipeline data that would act outside the pipeline when loaded."""


def is_plain_file_name(name: object) -> bool:
    """Whether ``name`` names a file in a folder on every OS: a non-empty
    string with no separator, drive, ``.``/``..``, control character or NUL."""
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and PurePosixPath(name).name == name
        and PureWindowsPath(name).name == name
        and all(ord(ch) >= 32 and ord(ch) != 127 for ch in name)
    )


def check_model_bytes(data: bytes, source: str) -> None:
    """Refuse the bytes of a Thinc model (``Model.to_bytes``, e.g. the file
    ``transformer/model``) whose saved transformer tokenizer holds a file
    name that is not plain, or options other than ``use_fast``. ``source``
    names the data in the error. Data that is not a Thinc model is left to
    its loader, which decodes it as this does and fails on its own."""
    try:
        msg = srsly.msgpack_loads(data)
    except Exception:
        return
    shims = msg.get("shims") if isinstance(msg, dict) else None
    if not isinstance(shims, list):
        return
    for node_shims in shims:
        for shim_bytes in node_shims if isinstance(node_shims, list) else []:
            if isinstance(shim_bytes, bytes):
                _check_shim(shim_bytes, source)


def _check_shim(data: bytes, source: str) -> None:
    try:
        shim = srsly.msgpack_loads(data)
    except Exception:
        return
    if not isinstance(shim, dict) or "tokenizer" not in shim:
        return
    files = shim["tokenizer"]
    if not isinstance(files, dict):
        raise UnsafePipelineError(
            f"{source}: refusing to load: the saved transformer's tokenizer is not a mapping of files."
        )
    for name, value in files.items():
        if name == "kwargs":
            _check_tokenizer_options(value, source)
        elif not is_plain_file_name(name):
            raise UnsafePipelineError(
                f"{source}: refusing to load: the saved transformer's tokenizer file {_shown(name)} is not a plain "
                "file name (spacy-transformers would write it outside its temporary folder)."
            )


def _check_tokenizer_options(options: object, source: str) -> None:
    if not (
        isinstance(options, dict)
        and set(options) <= TOKENIZER_OPTIONS
        and isinstance(options.get("use_fast", True), bool)
    ):
        raise UnsafePipelineError(
            f"{source}: refusing to load: the saved transformer's tokenizer options {_shown(options)} are more "
            "than use_fast (true or false): they would go to transformers' AutoTokenizer, where "
            "trust_remote_code runs Python code from the file."
        )


def _shown(value: object, limit: int = 200) -> str:
    """``repr(value)``, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_config(config: Mapping[str, Any], source: str) -> None:
    """Refuse a pipeline config that sets ``trust_remote_code`` anywhere:
    spacy-transformers passes its tokenizer and transformer settings to
    ``transformers``, which then imports Python code from the pipeline."""
    for key, value in _walk(config, ()):
        if key[-1] == "trust_remote_code" and value not in (False, None):
            raise UnsafePipelineError(
                f"{source}: refusing to load: {'.'.join(key)} = {_shown(value)} would let transformers run "
                "Python code from the pipeline; set it to false."
            )


def _walk(config: Mapping[str, Any], prefix: tuple) -> Iterable[Any]:
    for key, value in config.items():
        if isinstance(value, Mapping):
            yield from _walk(value, (*prefix, str(key)))
        else:
            yield (*prefix, str(key)), value


def _components_with_shims(nlp: Language, exclude: Iterable[str]) -> List[str]:
    """Names of the components whose Thinc model wraps another framework's
    model (a transformer, torch layers): the ones whose saved data a shim reads."""
    skip = {exclude} if isinstance(exclude, str) else set(exclude)
    names = []
    for name, proc in nlp.components:
        model = getattr(proc, "model", None)
        if name not in skip and isinstance(model, Model) and any(node.shims for node in model.walk()):
            names.append(name)
    return names


def guard_loading(nlp: Language) -> None:
    """Make ``nlp.from_disk`` and ``nlp.from_bytes`` (the ones ``spacy.load``
    calls) check the pipeline's config and the saved models of its components
    with :func:`check_config` and :func:`check_model_bytes` before loading.
    Idempotent; the pipeline still pickles."""
    for method, checked in (("from_disk", _checked_from_disk), ("from_bytes", _checked_from_bytes)):
        current = vars(nlp).get(method)
        if not (isinstance(current, partial) and current.func is checked):
            setattr(nlp, method, partial(checked, nlp))


def _checked_from_disk(nlp: Language, path: PathLike, **kwargs: Any) -> Language:
    path = Path(path)
    check_config(nlp.config, f"the config of {path}")
    for name in _components_with_shims(nlp, kwargs.get("exclude", ())):
        model_file = path / name / "model"
        if model_file.is_file():
            check_model_bytes(model_file.read_bytes(), str(model_file))
    return type(nlp).from_disk(nlp, path, **kwargs)


def _checked_from_bytes(nlp: Language, bytes_data: bytes, **kwargs: Any) -> Language:
    check_config(nlp.config, "the pipeline's config")
    try:
        msg = srsly.msgpack_loads(bytes_data)
    except Exception:
        msg = None  # spaCy fails on it in its own way
    if isinstance(msg, dict):
        for name in _components_with_shims(nlp, kwargs.get("exclude", ())):
            try:
                saved = srsly.msgpack_loads(msg[name])
            except Exception:
                continue
            if isinstance(saved, dict) and isinstance(saved.get("model"), bytes):
                check_model_bytes(saved["model"], f"the bytes of component {name!r}")
    return type(nlp).from_bytes(nlp, bytes_data, **kwargs)


def load_pipeline(name: PathLike) -> Language:
    """``spacy.load(name)`` for the command line: a pipeline folder is
    checked as :func:`guard_loading` checks it, whatever its components, and
    a damaged one gets an error naming the file; an installed package name is
    loaded by its own code."""
    path = Path(name)
    if not path.exists():
        import spacy

        return spacy.load(str(name))
    if not path.is_dir():
        raise ValueError(f"{path} is not a pipeline folder.")
    meta = _read(path / "meta.json", util.get_model_meta, path)
    config = _read(path / "config.cfg", util.load_config)
    check_config(config, str(path / "config.cfg"))
    try:
        nlp = util.load_model_from_config(config, meta=meta)
    except UnsafePipelineError:
        raise
    except Exception as exc:  # a factory or architecture refusing its settings
        section = _failing_block(config.get("components", {}), ("components",))
        where = f", [{section}]" if section else ""
        raise ValueError(f"Cannot build the pipeline of {path / 'config.cfg'}{where}: {_describe(exc)}") from None
    guard_loading(nlp)
    try:
        return nlp.from_disk(path)
    except UnsafePipelineError:
        raise
    except Exception as exc:
        if isinstance(exc, (ValueError, OSError)) and str(path) in str(exc):
            raise  # it names the file already
        damaged = _damaged_json(path)
        if damaged is not None:
            raise ValueError(damaged) from None
        raise ValueError(f"Cannot load the pipeline {path}: {_describe(exc)}") from None


def _failing_block(section: Any, key: tuple) -> Optional[str]:
    """The dotted key of the innermost registered-function block under
    ``section`` that fails to build (e.g. a tok2vec with ``depth = -1``), or
    None if each builds on its own. Only run after the pipeline failed to build."""
    if not isinstance(section, Mapping):
        return None
    for name, value in section.items():
        found = _failing_block(value, (*key, str(name)))
        if found:
            return found
    if not any(str(name).startswith("@") for name in section):
        return None
    try:
        util.registry.resolve({"block": dict(section)}, validate=True)
    except Exception:
        return ".".join(key)
    return None


def _read(file: Path, read: Any, *args: Any) -> Any:
    if not file.is_file():
        raise ValueError(f"{file} is missing: {file.parent} is not a spaCy pipeline folder.")
    try:
        return read(*(args or (file,)))
    except Exception as exc:
        raise ValueError(f"{file} cannot be read: {_describe(exc)}") from None


def _damaged_json(path: Path) -> Optional[str]:
    """The first JSON file of the pipeline folder that does not parse, as an
    error message; None if they all do."""
    files = [path / "vocab" / "strings.json", path / "vocab" / "vectors.cfg"]
    files += sorted(path.glob("*/cfg"))
    for file in files:
        if file.is_file():
            try:
                srsly.read_json(file)
            except Exception as exc:
                return f"{file} is damaged: it is not valid JSON ({_describe(exc)})."
    return None


def _describe(exc: BaseException) -> str:
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
