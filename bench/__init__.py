"""Benchmarks for spacy_bilstm_crf (issue 4): ``python bench/run.py [--quick]``."""
