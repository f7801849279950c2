"""The thread policy (spacy_bilstm_crf/threads.py): importing the package
changes nothing in the process; a running crf_ner component makes forked
children (nlp.pipe(n_process=N) workers) run torch on one thread."""

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import os
    import torch

    torch.set_num_threads(3)


    def threads_in_a_forked_child():
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.write(write, str(torch.get_num_threads()).encode())
            os._exit(0)
        os.waitpid(pid, 0)
        return int(os.read(read, 16))


    import spacy
    import spacy_bilstm_crf
    import spacy_bilstm_crf.cli
    import spacy_bilstm_crf.explain
    import spacy_bilstm_crf.layers
    import spacy_bilstm_crf.models
    import spacy_bilstm_crf.pipeline.crf_ner
    from spacy.training import Example

    nlp = spacy.blank("xx")
    tok2vec = {
        "@architectures": "spacy.HashEmbedCNN.v2", "pretrained_vectors": None, "width": 16, "depth": 1,
        "embed_size": 100, "window_size": 1, "maxout_pieces": 2, "subword_features": False,
    }
    model = {"@architectures": "spacy-bilstm-crf.CRFTagger.v1", "tok2vec": tok2vec,
             "encoder": {"@architectures": "spacy-bilstm-crf.BiLSTMEncoder.v1", "hidden_width": 4}}
    nlp.add_pipe("crf_ner", config={"model": model})
    print("built", torch.get_num_threads(), threads_in_a_forked_child())
    example = Example.from_dict(nlp.make_doc("Alice lives in Paris"), {"entities": [(0, 5, "PER")]})
    nlp.initialize(lambda: [example])
    nlp("Alice lives in Paris")
    print("ran", torch.get_num_threads(), threads_in_a_forked_child())
    """
)


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_import_changes_nothing_until_a_pipeline_runs():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split("\n")
    assert "built 3 3" in lines  # imports and building a pipeline: no thread count set, no fork hook
    assert "ran 3 1" in lines  # after a run: this process keeps its threads, forked children get one
