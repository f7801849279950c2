"""Inference without torch: what an exported pipeline needs at run time.

Modules here import numpy and the standard library only, so that importing
them (and this package) never loads torch, Thinc or spaCy.
"""
