"""Fitting: per-tier heads, the calibrated threshold, ONNX export, the pipeline that writes a
bundle, and batch prediction with a built bundle."""
