"""The console script's own contract: what happens around every subcommand."""

from __future__ import annotations

import subprocess
import sys

from tests.support.paths import ROOT

MODELS = ROOT / "models"  # the shipped default bundle


def test_a_closed_pipe_ends_quietly_not_with_a_traceback():
    """`rung models list | head -1`: the reader stops early; rung stops without a word."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "train.cli", "models", "--models-dir", str(MODELS), "list"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # the reader is gone before rung writes
    stderr = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 141
    assert stderr == "", stderr
