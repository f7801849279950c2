"""The command line on bad input: one line on stderr naming the file (and
line or key), a non-zero exit status, a traceback only with ``--verbose``;
and nothing it prints can drive the terminal."""

import json
import shutil
from pathlib import Path
from typing import Callable, List

import pytest
import spacy

from spacy_bilstm_crf import cli, tag_scheme
from spacy_bilstm_crf.cli import MAX_EXPLAIN_K, main
from spacy_bilstm_crf.pipeline import crf_ner
from spacy_bilstm_crf.pipeline.crf_ner import MAX_KBEST
from spacy_bilstm_crf.safe_text import printable

LEGACY = Path(__file__).parent / "data" / "legacy-0.1.0" / "bilstm-biluo"
TEXT = "Alice lives in Paris"


def damaged(tmp_path: Path, change: Callable[[Path], None]) -> Path:
    path = tmp_path / "pipeline"
    shutil.copytree(LEGACY, path)
    change(path)
    return path


def one_line_error(capsys, argv: List[str], command: str = "predict") -> str:
    """Run the CLI expecting a failure; return its error message."""
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert out == "" or command == "explain"
    assert err.count("\n") == 1 and "Traceback" not in err, err
    prefix = f"spacy-bilstm-crf {command}: error: "
    assert err.startswith(prefix)
    return err[len(prefix) : -1]


def write(relative: str, text: str) -> Callable[[Path], None]:
    return lambda path: (path / relative).write_text(text, encoding="utf8")


@pytest.mark.parametrize(
    "relative,text,expected",
    [
        ("meta.json", "{", "meta.json cannot be read: ValueError: "),
        ("vocab/strings.json", '["PER",', "vocab/strings.json is damaged: it is not valid JSON"),
        ("config.cfg", "[nlp\n", "config.cfg cannot be read: ConfigValidationError: "),
        ("crf_ner/cfg", "[1, 2]", "crf_ner/cfg: expected a JSON object of settings, got list."),
        ("crf_ner/cfg", "", "crf_ner/cfg is not valid JSON"),
    ],
)
def test_damaged_pipeline_file_is_named(tmp_path, capsys, relative, text, expected):
    path = damaged(tmp_path, write(relative, text))
    message = one_line_error(capsys, ["predict", str(path), TEXT])
    assert f"{path}/{expected}" in message


def test_a_tok2vec_that_cannot_be_built_is_named(tmp_path, capsys):
    def negative_depth(path: Path) -> None:
        config = (path / "config.cfg").read_text(encoding="utf8")
        section = config.index("[components.crf_ner.model.tok2vec]")
        depth = config.index("depth = 1", section)
        (path / "config.cfg").write_text(config[:depth] + "depth = -1" + config[depth + 9 :], encoding="utf8")

    path = damaged(tmp_path, negative_depth)
    message = one_line_error(capsys, ["predict", str(path), TEXT])
    assert message.startswith(
        f"Cannot build the pipeline of {path / 'config.cfg'}, [components.crf_ner.model.tok2vec]: TypeError: "
    )


def test_a_missing_pipeline(tmp_path, capsys):
    message = one_line_error(capsys, ["predict", str(tmp_path / "nowhere"), TEXT])
    assert "nowhere" in message


def test_explain_names_an_unknown_component(capsys):
    message = one_line_error(capsys, ["explain", str(LEGACY), TEXT, "--component", "nope"], "explain")
    assert message == "The pipeline has no component 'nope'; its components: crf_ner."


def test_explain_k_is_bounded(capsys):
    assert main(["explain", str(LEGACY), TEXT, "--k", "10000000"]) == 2
    assert f"argument --k: must be at most {MAX_EXPLAIN_K}, got 10000000" in capsys.readouterr().err


@pytest.mark.parametrize("k", [0, MAX_KBEST + 1, 10_000_000, True, 2.0])
def test_kbest_k_is_bounded(k):
    nlp = spacy.load(LEGACY)
    doc = nlp(TEXT, disable=["crf_ner"])
    with pytest.raises(ValueError, match=f"kbest needs 1 <= k <= {MAX_KBEST}, got k="):
        nlp.get_pipe("crf_ner").kbest(doc, k=k)


def test_kbest_at_the_bound_works():
    nlp = spacy.load(LEGACY)
    analyses = nlp.get_pipe("crf_ner").kbest(nlp(TEXT, disable=["crf_ner"]), k=MAX_KBEST)
    assert 1 < len(analyses) <= MAX_KBEST


def test_an_unexpected_error_is_one_line_and_verbose_shows_the_traceback(monkeypatch, capsys):
    def broken(args):
        raise KeyError("job")

    monkeypatch.setattr(cli, "_run_predict", broken)
    message = one_line_error(capsys, ["predict", "model", TEXT])
    assert message == "KeyError: 'job' (--verbose shows the traceback)"
    assert main(["predict", "model", TEXT, "--verbose"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert err.endswith("spacy-bilstm-crf predict: error: KeyError: 'job'\n")


# --- terminal escapes ------------------------------------------------------------------

TITLE_ESCAPE = "\x1b]0;owned\x07"


@pytest.fixture
def hostile_label_pipeline(tmp_path, monkeypatch) -> Path:
    """The legacy pipeline whose PER label holds a terminal escape, label checks off."""
    for module in (tag_scheme, crf_ner):
        monkeypatch.setattr(module, "validate_label", lambda label: label)
    path = tmp_path / "pipeline"
    shutil.copytree(LEGACY, path)
    cfg = json.loads((path / "crf_ner" / "cfg").read_text(encoding="utf8"))
    cfg["labels"][cfg["labels"].index("PER")] = f"PER{TITLE_ESCAPE}"
    (path / "crf_ner" / "cfg").write_text(json.dumps(cfg), encoding="utf8")
    return path


def test_predict_escapes_control_characters(hostile_label_pipeline, capsys):
    text = f"Bob{TITLE_ESCAPE} works\u202e"
    assert main(["predict", str(hostile_label_pipeline), TEXT, text]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    first, second = out.split("\n")[:2], out.split("\n")[2:4]
    assert first == [TEXT, "  -> Alice [PER\\x1b]0;owned\\x07]"]
    assert second[0] == "Bob\\x1b]0;owned\\x07 works\\u202e"


def test_explain_escapes_control_characters(hostile_label_pipeline, capsys):
    assert main(["explain", str(hostile_label_pipeline), TEXT, "--k", "5"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "PER\\x1b]0;owned\\x07" in out


def test_errors_escape_control_characters(tmp_path, capsys):
    path = tmp_path / f"model{TITLE_ESCAPE}"
    message = one_line_error(capsys, ["predict", str(path), TEXT])
    assert "\x1b" not in message and "model\\x1b]0;owned\\x07" in message


@pytest.mark.parametrize(
    "text,shown",
    [
        ("plain text, 人名", "plain text, 人名"),
        ("a\x1b[2Jb", "a\\x1b[2Jb"),
        ("tab\tand\nline", "tab\\tand\\nline"),
        ("bidi\u202eok\u2066", "bidi\\u202eok\\u2066"),
        ("c1\x9bcsi", "c1\\x9bcsi"),
        ("zwj\u200dkept", "zwj\u200dkept"),
        ("lone\ud800", "lone\\ud800"),
    ],
)
def test_printable(text, shown):
    assert printable(text) == shown
    assert printable(shown) == shown
