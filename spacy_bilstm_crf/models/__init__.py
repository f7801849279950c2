"""Registered architectures: the CRF tagger, its context encoders, the Chinese
character features and the exported (ONNX) tagger. Import each from its
module: this package imports nothing, so that the torch-free ones never load torch."""
