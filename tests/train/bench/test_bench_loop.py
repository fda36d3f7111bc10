"""`rung bench loop`: the retraining-loop benchmark is a subcommand, not a library script."""

from __future__ import annotations

from train.cli import main


def test_bench_loop_without_outcome_data_says_so_in_one_line(tmp_path, capsys):
    assert main(["bench", "loop", "--shared", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"rung bench: error: no RouterBench data under {tmp_path}; pass --shared"]


def test_bench_loop_dispatches_with_its_defaults(monkeypatch):
    import train.bench.loop as loop

    seen = []
    monkeypatch.setattr(loop, "run", lambda args: seen.append(args) or 0)
    assert main(["bench", "loop", "--salts", "0", "1"]) == 0
    args = seen[0]
    assert (args.salts, args.explore, str(args.out)) == ([0, 1], [0.0, 0.1], "reports/loop")
