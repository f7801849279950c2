"""Benchmarks for spacy_bilstm_crf: ``python -m bench {run,plan,report,breakdown}`` (see bench/README.md)."""
