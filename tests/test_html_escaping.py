"""Entity labels are a model author's data: they are checked where they enter
(convert, add_label, initialize, a saved cfg), and whatever reaches an HTML
page is escaped, displaCy's part included, so that a label cannot run script
in the pages of ``explain --html`` and ``render``."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import spacy
from spacy import displacy
from spacy.language import Language
from spacy.tokens import Doc, DocBin, Span
from spacy.training import Example

from spacy_bilstm_crf import loading, tag_scheme
from spacy_bilstm_crf.cli import main
from spacy_bilstm_crf.explain import explain, render_html
from spacy_bilstm_crf.explain.html import displacy_entities
from spacy_bilstm_crf.pipeline import crf_ner
from spacy_bilstm_crf.tag_scheme import validate_label

LEGACY = Path(__file__).parent / "data" / "legacy-0.1.0" / "bilstm-biluo"
SCRIPT_LABEL = "<svg/onload=document.title='X'>"
HOSTILE = [
    SCRIPT_LABEL,
    "<img src=x onerror=document.title='X'>",
    'PER"><script>document.title="X"</script>',
    "PER&amp;",
    "PER'",
    "PER`",
    "PER\x1b]0;owned\x07",
    "PER\x00",
    "PER\u202eREP",
    "PER\u200b",
    "\ud800",
]
chromium = pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium")


@pytest.mark.parametrize("label", HOSTILE)
def test_validate_label_refuses_markup_and_control_characters(label):
    with pytest.raises(ValueError, match="Entity label .* holds"):
        validate_label(label)


@pytest.mark.parametrize("label", ["PER", "WORK_OF_ART", "B-ORG", "人名", "GPE.city", "ORG/GOV", "Loc:1"])
def test_validate_label_keeps_ordinary_labels(label):
    assert validate_label(label) == label


def test_convert_refuses_a_script_tag(tmp_path, capsys):
    data = tmp_path / "train.txt"
    data.write_text("Alice O\nlives O\nin O\nParis B-<svg/onload=alert(1)>\n\nBob B-PER\n", encoding="utf8")
    for lenient in ([], ["--lenient"]):
        assert main(["convert", str(data), str(tmp_path / "out"), *lenient]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"spacy-bilstm-crf convert: error: {data}, line 4: Entity label '<svg/onload=alert(1)>'")
        assert err.count("\n") == 1
    assert not (tmp_path / "out" / "train.spacy").exists()


def blank_crf_nlp() -> Language:
    nlp = spacy.blank("xx")
    nlp.add_pipe("crf_ner")
    return nlp


def test_add_label_and_initialize_refuse_a_script_label():
    ner = blank_crf_nlp().get_pipe("crf_ner")
    with pytest.raises(ValueError, match="holds the character '<'"):
        ner.add_label(SCRIPT_LABEL)
    nlp = blank_crf_nlp()
    sample = [Example.from_dict(nlp.make_doc("Paris"), {})]
    with pytest.raises(ValueError, match="holds the character '<'"):
        nlp.get_pipe("crf_ner").initialize(lambda: sample, labels=[SCRIPT_LABEL])
    doc = nlp.make_doc("Alice lives in Paris")
    example = Example.from_dict(doc, {"entities": [(15, 20, SCRIPT_LABEL)]})
    with pytest.raises(ValueError, match="in the training examples: Entity label") as error:
        nlp.initialize(lambda: [example])
    assert "\n" not in str(error.value)
    assert nlp.get_pipe("crf_ner").labels == ()


@pytest.fixture
def unchecked_labels(monkeypatch):
    """Label checks off, as a gap in them would leave it: the pages must be safe on their own."""
    for module in (tag_scheme, crf_ner):
        monkeypatch.setattr(module, "validate_label", lambda label: label)


def saved_with_label(tmp_path: Path, old: str, new: str) -> Path:
    """The legacy pipeline, its label ``old`` renamed ``new`` in its saved cfg."""
    path = tmp_path / "pipeline"
    shutil.copytree(LEGACY, path)
    cfg_file = path / "crf_ner" / "cfg"
    cfg = json.loads(cfg_file.read_text(encoding="utf8"))
    cfg["labels"][cfg["labels"].index(old)] = new
    cfg_file.write_text(json.dumps(cfg), encoding="utf8")
    return path


def head_title(dom: str) -> str:
    found = re.search(r"<head>.*?<title>(.*?)</title>", dom, re.S)
    assert found, dom[:500]
    return found.group(1)


def assert_no_event_handlers(dom: str) -> None:
    """No element of the page got an ``on...=`` attribute (as an injected ``<svg/onload=...>`` would)."""
    assert re.search(r"<[a-z][^<>]*\son\w+\s*=", dom, re.I) is None


def chromium_dom(page: Path) -> str:
    done = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.startswith("<!DOCTYPE html>"), done.stderr[-2000:]
    return done.stdout


@pytest.mark.slow
@chromium
def test_explain_page_shows_a_script_label_as_text(tmp_path, monkeypatch, capsys, unchecked_labels):
    nlp = spacy.load(saved_with_label(tmp_path, "PER", SCRIPT_LABEL))
    assert [e.label_ for e in nlp("Alice lives in Paris").ents] == [SCRIPT_LABEL]
    monkeypatch.setattr(loading, "load_pipeline", lambda name: nlp)
    page = tmp_path / "trace.html"
    assert main(["explain", "a model", "Alice lives in Paris", "--html", str(page)]) == 0
    html = page.read_text(encoding="utf8")
    assert SCRIPT_LABEL not in html and "<svg/" not in html
    dom = chromium_dom(page)
    assert head_title(dom) == "crf_ner: Alice lives in Paris"
    assert_no_event_handlers(dom)
    assert dom.count("&lt;svg/onload=document.title='X'&gt;") >= 3  # displaCy, the tables, the text
    capsys.readouterr()


@pytest.mark.slow
@chromium
def test_render_page_shows_a_script_label_as_text(tmp_path, monkeypatch, capsys, unchecked_labels):
    nlp = spacy.load(saved_with_label(tmp_path, "PER", SCRIPT_LABEL))
    monkeypatch.setattr(loading, "load_pipeline", lambda name: nlp)
    data = tmp_path / "dev.spacy"
    texts = ["Alice lives in Paris", "Bob works at Google"]
    DocBin(docs=[nlp.make_doc(text) for text in texts]).to_disk(data)
    n_entities = sum(len(doc.ents) for doc in nlp.pipe(texts))
    n_script = sum(e.label_ == SCRIPT_LABEL for doc in nlp.pipe(texts) for e in doc.ents)
    assert n_script >= 1
    page = tmp_path / "render.html"
    assert main(["render", "a model", str(data), str(page)]) == 0
    assert capsys.readouterr().out == f"wrote {page} (2 docs)\n"
    dom = chromium_dom(page)
    assert head_title(dom) == "displaCy"
    assert dom.count("&lt;svg/onload=document.title='X'&gt;") == n_script
    assert_no_event_handlers(dom)
    assert dom.count("<mark") == n_entities  # the entities are still drawn


def test_displacy_entities_escapes_what_displacy_does_not():
    doc = Doc(spacy.blank("en").vocab, words=["<b>Alice</b>", "lives"])
    doc.ents = [Span(doc, 0, 1, label=SCRIPT_LABEL, kb_id="Q<1>")]
    doc.user_data["title"] = "<script>alert(1)</script>"
    parsed = displacy.parse_ents(doc, {"kb_url_template": "javascript:alert('{}')"})
    assert SCRIPT_LABEL in displacy.render(parsed, style="ent", manual=True, jupyter=False)  # displaCy as it is
    html = displacy_entities([parsed], page=True, colors={SCRIPT_LABEL: "#abc"})
    for raw in (SCRIPT_LABEL, "<script>", "<b>", "javascript:", "Q<1>"):
        assert raw not in html
    assert "&lt;svg/onload=document.title=&#x27;X&#x27;&gt;" in html and "&lt;b&gt;Alice&lt;/b&gt;" in html
    assert "background: #abc" in html  # the colour found its escaped label


def test_explain_page_escapes_every_label(tmp_path, unchecked_labels):
    nlp = spacy.load(saved_with_label(tmp_path, "PER", SCRIPT_LABEL))
    html = render_html(explain(nlp, "Alice lives in Paris"))
    assert SCRIPT_LABEL not in html and "<svg/onload" not in html
