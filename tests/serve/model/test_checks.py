"""Promotion runs the serving checks: a bundle a server would refuse never becomes current."""

from __future__ import annotations

import pytest

from serve.model.checks import BundleRefused, check_bundle
from serve.model.registry import (
    current_target,
    fallback_candidates,
    history,
    pointer_folder,
    rollback,
    set_current,
)
from tests.support.bundles import DAMAGE, broken_copy


def test_a_good_bundle_passes_and_answers_the_smoke_query(models_dir):
    router = check_bundle(models_dir / "a")
    assert router.tier_names == ["small", "medium", "large"]


@pytest.mark.parametrize("how", sorted(DAMAGE))
def test_promotion_refuses_a_damaged_bundle_and_leaves_the_pointer(models_dir, how):
    broken_copy(models_dir / "a", models_dir / "bad", how)
    before = history(models_dir)
    with pytest.raises(BundleRefused, match=DAMAGE[how]):
        set_current(models_dir, "bad")
    assert current_target(models_dir) == (models_dir / "a").resolve()
    assert history(models_dir) == before  # a refused promotion is not a switch


def test_rollback_refuses_a_previous_bundle_that_went_bad(models_dir):
    broken_copy(models_dir / "a", models_dir / "old", "tampered")
    set_current(models_dir, "old", check=False)  # promoted before it was damaged
    set_current(models_dir, "b")
    with pytest.raises(BundleRefused, match="sha256"):
        rollback(models_dir)
    assert current_target(models_dir) == (models_dir / "b").resolve()


def test_fallback_candidates_are_the_pointer_history_newest_first(models_dir):
    broken_copy(models_dir / "a", models_dir / "bad", "tampered")
    set_current(models_dir, "b")
    set_current(models_dir, "a")
    set_current(models_dir, "bad", check=False)
    assert fallback_candidates(models_dir, exclude="bad") == ["a", "b"]
    (models_dir / "b" / "manifest.json").unlink()  # deleted bundles are skipped
    assert fallback_candidates(models_dir, exclude="bad") == ["a"]
    assert pointer_folder(models_dir / "current") == models_dir
    assert pointer_folder(models_dir / "a") is None
