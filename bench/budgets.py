"""The two corpora and their budgets, for the full benchmark and for ``--quick``.

Full run: CoNLL-2003 on MiniLM trains every system for at least one epoch
and until dev F1 has not improved for 25% of the words seen (at most three
epochs, where the learning-rate schedule ends), evaluating on the whole dev
set every quarter epoch. MSRA trains every system for a fixed three epochs
at the configs' constant learning rate, evaluating every eighth of an epoch,
and tests the best dev checkpoint. Its dev split is the last 5% of train.txt,
one contiguous block (issue 25: a random 2% split shared documents with train
and scored about 0.90 where test scored 0.84). The 2% split (1,006 sentences)
was small and dev F1 swung by up to two points between evaluations,
so the patience rule stopped on noise: one BiLSTM-CRF seed at 1.4 epochs
(dev F1 85.8) while another still improved at 3 epochs (89.8). Those
superseded cells are in git history (commits 6cd116a to 27edcd1).
MSRA's ablation (issue 25) trains each row a fixed two epochs, the configs'
schedule decaying to 0 at the end, dev F1 every quarter epoch.
The head learning-rate grid runs on CoNLL only, on the whole dev set, for
0.3 epoch (about the old single-seed budget): on MSRA every parameter is
fresh and all systems learn at the configs' one rate.
"""

from typing import Dict

from .specs import BudgetRule, CorpusSpec, Limits

FULL: Dict[str, CorpusSpec] = {
    "conll2003": CorpusSpec(
        name="conll2003",
        lang="en",
        unit="words",
        limits=Limits(),
        main=BudgetRule(min_epochs=1.0, max_epochs=3.0, eval_every_epochs=0.25),
        grid=BudgetRule(min_epochs=0.3, max_epochs=0.3, eval_every_epochs=0.3),
        grid_scales=(1.0, 5.0, 20.0),
        seeds=(0, 1, 2),
        speed_rounds=5,
        speed_steps=10,
        speed_words=4000,
    ),
    "msra": CorpusSpec(
        name="msra",
        lang="zh",
        unit="characters",
        limits=Limits(dev_fraction=0.05),
        main=BudgetRule(min_epochs=3.0, max_epochs=3.0, eval_every_epochs=0.125),
        ablation=BudgetRule(min_epochs=2.0, max_epochs=2.0, eval_every_epochs=0.25),
        grid=BudgetRule(min_epochs=0.3, max_epochs=0.3, eval_every_epochs=0.3),
        grid_scales=(1.0,),
        seeds=(0, 1, 2),
        speed_rounds=5,
        speed_steps=10,
        speed_words=30000,
    ),
}

# --quick: a smoke run of every stage on tiny samples (or bench/tiny.py) and
# a tiny random BERT; its figures mean nothing.
QUICK: Dict[str, CorpusSpec] = {
    "conll2003": CorpusSpec(
        name="conll2003",
        lang="en",
        unit="words",
        limits=Limits(train=200, dev=20, test=40, max_lines=6000),
        main=BudgetRule(min_epochs=0.1, max_epochs=0.2, eval_every_epochs=0.05),
        grid=BudgetRule(min_epochs=0.05, max_epochs=0.05, eval_every_epochs=0.05),
        grid_scales=(1.0, 20.0),
        seeds=(0,),
        speed_rounds=2,
        speed_steps=1,
        speed_words=100,
        grid_systems=("bilstm_crf", "spacy_ner", "softmax"),
    ),
    "msra": CorpusSpec(
        name="msra",
        lang="zh",
        unit="characters",
        limits=Limits(train=200, dev=20, test=40, dev_fraction=0.1, max_lines=12000),
        main=BudgetRule(min_epochs=0.1, max_epochs=0.2, eval_every_epochs=0.05),
        ablation=BudgetRule(min_epochs=0.1, max_epochs=0.1, eval_every_epochs=0.05),
        grid=BudgetRule(min_epochs=0.05, max_epochs=0.05, eval_every_epochs=0.05),
        grid_scales=(1.0,),
        seeds=(0,),
        speed_rounds=2,
        speed_steps=1,
        speed_words=400,
    ),
}


def corpus_spec(name: str, quick: bool) -> CorpusSpec:
    table = QUICK if quick else FULL
    if name not in table:
        raise ValueError(f"unknown corpus {name!r}: choose from {sorted(table)}")
    return table[name]


# What a token of each corpus is, for axis labels and units on the page.
UNITS: Dict[str, str] = {name: spec.unit for name, spec in FULL.items()}
