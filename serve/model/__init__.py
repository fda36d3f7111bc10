"""The model: a bundle folder (manifest, ladder, ONNX graph, embedding, tokenizer) and the
runtime that turns text into per-tier probabilities. Imports nothing else of rung."""
