"""Pure PyTorch modules: the CRF and the context encoders."""
