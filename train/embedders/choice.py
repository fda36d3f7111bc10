"""From the `--embedder` choice to a built training embedder."""

from __future__ import annotations

from pathlib import Path

from train.embedders.base import EmbedderChoice, TrainingEmbedder, minilm_path
from train.embedders.static import static_embedder
from train.embedders.transformer import transformer_embedder


def build_embedder(
    choice: EmbedderChoice,
    model_path: Path | None = None,
    progress: bool = True,
    work_dir: Path | None = None,
) -> TrainingEmbedder:
    if choice is EmbedderChoice.STATIC:
        return static_embedder(model_path, progress=progress)
    return transformer_embedder(model_path or minilm_path(), progress=progress, work_dir=work_dir)
