"""The embedded labelled set in data/queries: format, coverage and near-duplicates."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from serve.model.ladder import default_ladder
from tests.support.paths import QUERIES
from train.data.load import load_dataset
from train.data.types import split_holdout

MIN_ROWS = 1500
MIN_FAMILIES = 20
MIN_PER_FAMILY = 70
NEAR_DUPLICATE_COSINE = 0.95
MAX_NEAR_DUPLICATE_SHARE = 0.02


@pytest.fixture(scope="module")
def dataset():
    return load_dataset([QUERIES], default_ladder())


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _normalise(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


def test_every_line_parses_and_is_usable(dataset):
    assert dataset.problems == []
    lines = sum(1 for f in QUERIES.glob("*.jsonl") for line in _lines(f))
    assert len(dataset) == lines >= MIN_ROWS


def test_ids_are_unique_and_families_match_files(dataset):
    assert len(set(dataset.ids)) == len(dataset.ids)
    for f in QUERIES.glob("*.jsonl"):
        for line in _lines(f):
            row = json.loads(line)
            assert row["family"] == f.stem and row["id"].startswith(f.stem + "-")


def test_families_and_tiers_cover_the_ground(dataset):
    families = Counter(dataset.groups)
    assert len(families) >= MIN_FAMILIES
    assert min(families.values()) >= MIN_PER_FAMILY
    tiers = dataset.rows_per_tier()
    assert min(tiers.values()) >= 0.15 * len(dataset), tiers


def test_lengths_run_from_a_few_words_to_pasted_documents(dataset):
    words = np.array([len(t.split()) for t in dataset.texts])
    assert words.min() <= 3
    assert words.max() >= 400
    assert (words >= 150).sum() >= 100


def test_length_does_not_decide_the_label(dataset):
    words = np.array([len(t.split()) for t in dataset.texts])
    labels = dataset.labels
    assert ((words >= 150) & (labels == 0)).sum() >= 20  # long but easy
    assert ((words <= 20) & (labels == 2)).sum() >= 20  # short but hard


def test_held_out_split_covers_every_family(dataset):
    held = split_holdout(dataset.ids)
    assert 0.15 < held.mean() < 0.25
    held_families = {g for g, h in zip(dataset.groups, held, strict=True) if h}
    assert held_families == set(dataset.groups)


def test_exact_near_duplicates_are_rare(dataset):
    counts = Counter(_normalise(t) for t in dataset.texts)
    duplicates = sum(c - 1 for c in counts.values() if c > 1)
    assert duplicates / len(dataset) < MAX_NEAR_DUPLICATE_SHARE


@pytest.mark.slow
def test_embedding_near_duplicates_are_rare(dataset):
    """Rows with another row at cosine > 0.95 under all-MiniLM-L6-v2.

    Texts are cut at 64 tokens: a near-duplicate shows in its opening, and the cut can only
    make rows look more alike, so the check stays conservative at half the cost. (The static
    embedding is too coarse for this: pasted JSON or SQL of unrelated tasks reach 0.97.)
    """
    from sentence_transformers import SentenceTransformer

    from train.embedders.base import minilm_path

    model = SentenceTransformer(str(minilm_path()), device="cpu")
    model.max_seq_length = 64
    vectors = model.encode(dataset.texts, batch_size=64, normalize_embeddings=True)
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -1.0)
    share = (sims.max(axis=1) > NEAR_DUPLICATE_COSINE).mean()
    assert share < MAX_NEAR_DUPLICATE_SHARE, f"{share:.1%} of rows have a near-duplicate"
