"""`rung models promote | rollback` refuse a bundle that fails the serving checks: exit 1."""

from __future__ import annotations

import shutil

import pytest

from serve.model.registry import current_target, set_current
from tests.support.bundles import DAMAGE, broken_copy
from train.cli import main


def _one_line(err: str) -> str:
    assert "Traceback" not in err
    (line,) = err.strip().splitlines()
    return line


@pytest.mark.parametrize("how", ["tampered", "unloadable", "nan"])
def test_promote_refuses_a_broken_bundle_with_exit_1(models_dir, capsys, how):
    broken_copy(models_dir / "a", models_dir / "c", how)
    assert main(["models", "--models-dir", str(models_dir), "promote", "c"]) == 1
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("rung models: error: refused c:") and DAMAGE[how] in line
    assert "current still -> a" in line
    assert current_target(models_dir).name == "a"


def test_rollback_refuses_a_broken_previous_bundle_with_exit_1(models_dir, capsys):
    broken_copy(models_dir / "a", models_dir / "old", "missing")
    set_current(models_dir, "old", check=False)
    assert main(["models", "--models-dir", str(models_dir), "promote", "b"]) == 0
    capsys.readouterr()
    assert main(["models", "--models-dir", str(models_dir), "rollback"]) == 1
    line = _one_line(capsys.readouterr().err)
    assert "refused old:" in line and "is missing" in line and "still -> b" in line
    assert current_target(models_dir).name == "b"


def test_promote_of_a_good_bundle_still_works(models_dir, capsys):
    assert main(["models", "--models-dir", str(models_dir), "promote", "b"]) == 0
    assert "current -> b (was a)" in capsys.readouterr().out


def test_promoting_another_ladder_warns_that_servers_keep_the_old_one(models_dir, capsys):
    from dataclasses import replace

    from serve.model.bundle import read_manifest, write_manifest
    from serve.model.ladder import Ladder, Tier

    shutil.copytree(models_dir / "a", models_dir / "other")
    m = read_manifest(models_dir / "other")
    ladder = Ladder(tuple(Tier(n) for n in ("tiny", "mid", "huge")))
    write_manifest(models_dir / "other", replace(m, name="other", ladder=ladder))
    assert main(["models", "--models-dir", str(models_dir), "promote", "other"]) == 0
    captured = capsys.readouterr()
    assert "current -> other (was a)" in captured.out
    assert (
        "warning: the ladder changes" in captured.err and "RUNG_ALLOW_LADDER_CHANGE" in captured.err
    )
    assert main(["models", "--models-dir", str(models_dir), "promote", "b"]) == 0
    assert "warning" in capsys.readouterr().err  # and back again
