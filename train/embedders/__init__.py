"""Training embedders: the static MiniLM distillation (`static`), the int8 ONNX transformer
(`transformer`), what they share (`base`) and the `--embedder` choice (`choice`)."""
