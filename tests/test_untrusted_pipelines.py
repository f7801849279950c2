"""Pipeline folders from someone else: loading one does no more than load a model.

Each attack is a pipeline crafted as a hostile model author would: a saved
transformer whose tokenizer files escape spacy-transformers' temporary folder
or bring ``trust_remote_code``, a config asking for remote code, torch weights
that are a pickle payload, and settings files that are not what they claim.
"""

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict

import pytest
import spacy
import srsly
import torch
from spacy.language import Language
from spacy.training import Example

from spacy_bilstm_crf.cli import main
from spacy_bilstm_crf.loading import UnsafePipelineError, check_model_bytes, is_plain_file_name, load_pipeline

from .pipelines import listener_nlp, transformer_model

LEGACY = Path(__file__).parent / "data" / "legacy-0.1.0" / "bilstm-biluo"
NO_ENCODER = {"@architectures": "spacy-bilstm-crf.NoEncoder.v1"}
TEXT = "alice went to paris"
ROOT = Path(__file__).parent.parent


def initialized(nlp: Language) -> Language:
    doc = nlp.make_doc(TEXT)
    example = Example.from_dict(doc, {"entities": [(0, 5, "PER"), (14, 19, "LOC")]})
    nlp.initialize(lambda: [example])
    return nlp


@pytest.fixture(scope="module")
def saved_trf(tiny_bert, tmp_path_factory) -> Path:
    """A transformer + crf_ner pipeline, saved."""
    path = tmp_path_factory.mktemp("trf") / "pipeline"
    initialized(listener_nlp(tiny_bert, NO_ENCODER)).to_disk(path)
    return path


@pytest.fixture(scope="module")
def saved_trf_only(tiny_bert, tmp_path_factory) -> Path:
    """A pipeline with a transformer and no crf_ner: not ours, but our CLI loads it."""
    path = tmp_path_factory.mktemp("trf-only") / "pipeline"
    nlp = spacy.blank("xx")
    nlp.add_pipe("transformer", config={"model": transformer_model(tiny_bert)})
    initialized(nlp).to_disk(path)
    return path


def tamper_tokenizer(model_bytes: bytes, change: Callable[[Dict[str, Any]], None]) -> bytes:
    """The Thinc model bytes with ``change`` applied to each saved HF tokenizer (file name -> bytes)."""
    msg = srsly.msgpack_loads(model_bytes)
    changed = 0
    for node_shims in msg["shims"]:
        for i, shim_bytes in enumerate(node_shims):
            shim = srsly.msgpack_loads(shim_bytes)
            if "tokenizer" in shim:
                change(shim["tokenizer"])
                node_shims[i] = srsly.msgpack_dumps(shim)
                changed += 1
    assert changed == 1
    return srsly.msgpack_dumps(msg)


def crafted_copy(saved: Path, dest: Path, change: Callable[[Dict[str, Any]], None]) -> Path:
    shutil.copytree(saved, dest)
    model = dest / "transformer" / "model"
    model.write_bytes(tamper_tokenizer(model.read_bytes(), change))
    return dest


def escaping_names(target: Path) -> Dict[str, str]:
    """Tokenizer entry names that land on ``target``, from any temporary folder."""
    return {"relative": "../" * 30 + str(target).lstrip("/"), "absolute": str(target)}


@pytest.mark.parametrize("form", ["relative", "absolute"])
def test_tokenizer_file_outside_the_temp_folder_is_refused(saved_trf, tmp_path, form):
    target = tmp_path / "outside" / "evil.pth"
    target.parent.mkdir()
    bad = escaping_names(target)[form]
    path = crafted_copy(saved_trf, tmp_path / "crafted", lambda tok: tok.update({bad: b"import os\n"}))
    with pytest.raises(UnsafePipelineError) as error:
        spacy.load(path)  # the crf_ner factory guards this pipeline
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"{path / 'transformer' / 'model'}: refusing to load")
    assert repr(bad) in message
    assert not target.exists() and list(target.parent.iterdir()) == []


def test_cli_refuses_a_crafted_transformer_in_a_pipeline_without_crf_ner(saved_trf_only, tmp_path, capsys):
    target = tmp_path / "evil.pth"
    bad = escaping_names(target)["relative"]
    path = crafted_copy(saved_trf_only, tmp_path / "crafted", lambda tok: tok.update({bad: b"import os\n"}))
    assert main(["predict", str(path), TEXT]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and str(path / "transformer" / "model") in err and repr(bad) in err
    assert not target.exists()


EVIL_TOKENIZER = """
from pathlib import Path
Path({marker!r}).write_text("code ran")
from transformers import BertTokenizerFast
class EvilTokenizer(BertTokenizerFast):
    pass
"""


def remote_code(marker: Path) -> Callable[[Dict[str, Any]], None]:
    """Make a saved tokenizer load its class from a Python file saved beside it."""

    def change(tok: Dict[str, Any]) -> None:
        config = json.loads(tok["tokenizer_config.json"])
        config.update(auto_map={"AutoTokenizer": [None, "evil_tok.EvilTokenizer"]}, tokenizer_class="EvilTokenizer")
        tok["tokenizer_config.json"] = json.dumps(config).encode()
        tok["evil_tok.py"] = EVIL_TOKENIZER.format(marker=str(marker)).encode()
        tok["kwargs"] = {"use_fast": True, "trust_remote_code": True}

    return change


def test_saved_tokenizer_options_cannot_ask_for_remote_code(saved_trf, tmp_path):
    marker = tmp_path / "ran.txt"
    path = crafted_copy(saved_trf, tmp_path / "crafted", remote_code(marker))
    with pytest.raises(UnsafePipelineError, match="trust_remote_code") as error:
        spacy.load(path)
    assert str(path / "transformer" / "model") in str(error.value)
    assert not marker.exists()


def test_config_cannot_ask_for_remote_code(saved_trf, tiny_bert, tmp_path):
    """spacy-transformers' v1.0 layout (transformer/model a folder of HF
    files) loads that folder with the tokenizer settings of the config."""
    marker = tmp_path / "ran.txt"
    path = tmp_path / "crafted"
    shutil.copytree(saved_trf, path)
    model = path / "transformer" / "model"
    model.unlink()
    shutil.copytree(tiny_bert, model)
    tok = {name: (model / name).read_bytes() for name in ("tokenizer_config.json",)}
    remote_code(marker)(tok)
    for name in ("tokenizer_config.json", "evil_tok.py"):
        (model / name).write_bytes(tok[name])
    config = (path / "config.cfg").read_text(encoding="utf8")
    section = "[components.transformer.model.tokenizer_config]\n"
    assert section in config
    (path / "config.cfg").write_text(config.replace(section, section + "trust_remote_code = true\n"), encoding="utf8")
    with pytest.raises(UnsafePipelineError) as error:
        spacy.load(path)
    assert "components.transformer.model.tokenizer_config.trust_remote_code = True" in str(error.value)
    with pytest.raises(UnsafePipelineError) as error:
        load_pipeline(path)
    assert str(error.value).startswith(f"{path / 'config.cfg'}: refusing to load")
    assert not marker.exists()


def test_from_bytes_is_checked_too(saved_trf, tmp_path):
    nlp = spacy.load(saved_trf)
    target = tmp_path / "evil.pth"
    msg = srsly.msgpack_loads(nlp.to_bytes())
    component = srsly.msgpack_loads(msg["transformer"])
    bad = escaping_names(target)["absolute"]
    component["model"] = tamper_tokenizer(component["model"], lambda tok: tok.update({bad: b"x"}))
    msg["transformer"] = srsly.msgpack_dumps(component)
    with pytest.raises(UnsafePipelineError, match="component 'transformer'"):
        nlp.from_bytes(srsly.msgpack_dumps(msg))
    assert not target.exists()


def test_a_sound_transformer_pipeline_loads_as_before(saved_trf):
    expected = [(e.start_char, e.end_char, e.label_) for e in spacy.load(saved_trf)(TEXT).ents]
    nlp = load_pipeline(saved_trf)
    assert [(e.start_char, e.end_char, e.label_) for e in nlp(TEXT).ents] == expected


@pytest.mark.parametrize(
    "name,plain",
    [
        ("vocab.txt", True),
        ("tokenizer_config.json", True),
        ("kwargs", True),
        ("..", False),
        (".", False),
        ("", False),
        ("../x.pth", False),
        ("a/b", False),
        ("a\\b", False),
        ("/etc/x", False),
        ("C:x", False),
        ("x\x00y", False),
        ("x\ny", False),
        (5, False),
        (b"vocab.txt", False),
    ],
)
def test_plain_file_names(name, plain):
    assert is_plain_file_name(name) is plain


def test_check_model_bytes_leaves_other_data_to_its_loader():
    check_model_bytes(b"not msgpack \xc1", "x")
    check_model_bytes(srsly.msgpack_dumps({"shims": [[b"\xc1", srsly.msgpack_dumps({"state": b""})]]}), "x")
    with pytest.raises(UnsafePipelineError, match="not a mapping"):
        check_model_bytes(srsly.msgpack_dumps({"shims": [[srsly.msgpack_dumps({"tokenizer": []})]]}), "x")


@pytest.mark.slow
def test_guarded_pipeline_still_pickles_and_the_guard_is_installed_once(saved_trf):
    import copy
    import pickle

    nlp = spacy.load(LEGACY)
    guard = nlp.from_disk
    nlp.add_pipe("crf_ner", name="second")  # the factory runs again
    assert nlp.from_disk is guard and guard.args == (nlp,)
    for copied in (pickle.loads(pickle.dumps(nlp)), copy.deepcopy(nlp)):
        assert copied.from_disk.args == (copied,) and copied.from_bytes.args == (copied,)


# --- torch weights that are a pickle payload -----------------------------------------


class Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('code ran')",))


def with_pickled_weights(dest: Path, marker: Path) -> Path:
    """The legacy pipeline with each torch layer's weights replaced by a pickle that writes ``marker``."""
    shutil.copytree(LEGACY, dest)
    model = dest / "crf_ner" / "model"
    msg = srsly.msgpack_loads(model.read_bytes())
    replaced = 0
    for node_shims in msg["shims"]:
        for i, shim_bytes in enumerate(node_shims):
            shim = srsly.msgpack_loads(shim_bytes)
            buffer = io.BytesIO()
            torch.save({"weight": Payload(marker)}, buffer)
            shim["state"] = buffer.getvalue()
            node_shims[i] = srsly.msgpack_dumps(shim)
            replaced += 1
    assert replaced == 2  # the CRF and the BiLSTM
    model.write_bytes(srsly.msgpack_dumps(msg))
    return dest


@pytest.mark.slow
def test_pickled_weights_are_refused_even_with_the_old_torch_default(tmp_path):
    marker = tmp_path / "ran.txt"
    path = with_pickled_weights(tmp_path / "crafted", marker)
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "spacy_bilstm_crf", "predict", str(path), "Alice lives in Paris"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 1 and done.stdout == ""
    error = [line for line in done.stderr.splitlines() if line.startswith("spacy-bilstm-crf predict: error:")]
    assert len(error) == 1
    assert f"from {path / 'crf_ner' / 'model'}: its torch weights hold pickled objects" in error[0]
    assert "GLOBAL exec" in error[0]
    assert not marker.exists()


def test_pickled_weights_are_refused_in_process(tmp_path):
    marker = tmp_path / "ran.txt"
    path = with_pickled_weights(tmp_path / "crafted", marker)
    with pytest.raises(ValueError, match="pickled objects other than tensors") as error:
        spacy.load(path)
    assert str(path / "crf_ner" / "model") in str(error.value)
    assert not marker.exists()


# --- settings files that are not what they claim ---------------------------------------


def with_cfg(tmp_path: Path, change: Callable[[Any], Any]) -> Path:
    path = tmp_path / "pipeline"
    shutil.copytree(LEGACY, path)
    cfg_file = path / "crf_ner" / "cfg"
    cfg_file.write_text(json.dumps(change(json.loads(cfg_file.read_text(encoding="utf8")))), encoding="utf8")
    return path


def cfg_error(tmp_path: Path, change: Callable[[Any], Any]) -> str:
    path = with_cfg(tmp_path, change)
    with pytest.raises(ValueError) as error:
        spacy.load(path)
    message = str(error.value)
    assert message.startswith(f"Cannot load component 'crf_ner': {path / 'crf_ner' / 'cfg'}: ")
    return message[len(f"Cannot load component 'crf_ner': {path / 'crf_ner' / 'cfg'}: ") :]


def test_cfg_that_is_a_list(tmp_path):
    assert cfg_error(tmp_path, lambda cfg: cfg["labels"]) == "expected a JSON object of settings, got list."


def test_cfg_labels_that_are_numbers(tmp_path):
    message = cfg_error(tmp_path, lambda cfg: {**cfg, "labels": [1, 2, 3]})
    assert message == "key 'labels', item 0: Entity labels must be non-empty strings, got 1."


@pytest.mark.parametrize("label", ["<svg/onload=document.title='X'>", "PER\x1b]0;owned\x07", "PER\u202e"])
def test_cfg_labels_that_are_not_safe(tmp_path, label):
    message = cfg_error(tmp_path, lambda cfg: {**cfg, "labels": ["LOC", "ORG", label]})
    assert message.startswith(f"key 'labels', item 2: Entity label {label!r} holds")


@pytest.mark.parametrize(
    "key,value,expected",
    [
        ("labels", "LOC", "key 'labels': expected a list of labels, got 'LOC'."),
        ("labels", ["LOC", "LOC", "PER"], "key 'labels': a label is listed twice in ['LOC', 'LOC', 'PER']."),
        ("scheme", "IOB1", "key 'scheme': expected one of BILUO, BIO, BIOES, BMES, got 'IOB1'."),
        ("scheme", 3, "key 'scheme': expected one of BILUO, BIO, BIOES, BMES, got 3."),
        ("overwrite_ents", "no", "key 'overwrite_ents': expected true or false, got 'no'."),
        ("head_lr_scale", -1, "key 'head_lr_scale': must be positive, got -1."),
        (
            "torch_layer_dims",
            [{"nO": "13"}],
            "key 'torch_layer_dims': expected a list of {dim: size} objects, got [{'nO': '13'}].",
        ),
    ],
)
def test_cfg_values_of_the_wrong_kind(tmp_path, key, value, expected):
    assert cfg_error(tmp_path, lambda cfg: {**cfg, key: value}) == expected


def test_cfg_scheme_spelling_is_read_as_its_canonical_name(tmp_path):
    path = with_cfg(tmp_path, lambda cfg: {**cfg, "scheme": "bilou"})
    assert spacy.load(path).get_pipe("crf_ner").scheme == "BILUO"
