"""Plain Thinc layers: over the torch modules (``crf``, ``encoder``), and the
torch-free ones an exported pipeline runs (``crf_numpy``, ``onnx_scorer``,
``char_features``). Import each from its module: this package imports
nothing, so that a torch-free layer never loads torch."""
