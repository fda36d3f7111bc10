"""The per-request cost estimate: answer lengths learned from recorded costs, else the
ladder's output_tokens, and the same numbers from the exported graph."""

from __future__ import annotations

import numpy as np

from serve.model.ladder import Ladder, Tier
from serve.model.policy import CostModel, tokens_from_log
from train.fit.export import LENGTHS, check_parity, correctness_to_onnx
from train.fit.heads import ConstantHead
from train.fit.lengths import FALLBACK, LEARNED, LengthModel, implied_output_tokens

LADDER = Ladder(
    (
        Tier("small", input_price=0.2, output_price=0.2, output_tokens=300),
        Tier("large", input_price=10.0, output_price=30.0, output_tokens=300),
    )
)


def _tasks(n: int = 400, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Two task types told apart by the first feature: one-token answers (multiple choice)
    and 400-token answers (code). Recorded costs for the large tier only."""
    rng = np.random.default_rng(seed)
    task = rng.integers(0, 2, size=n)
    x = np.column_stack([task + 0.1 * rng.normal(size=n), rng.normal(size=(n, 3))]).astype(
        np.float32
    )
    n_in = rng.integers(50, 500, size=n).astype(float)
    answer = np.where(task == 1, 400.0, 1.0) * rng.uniform(0.9, 1.1, size=n)
    cost = np.full((n, 2), np.nan)
    cost[:, 1] = (n_in * 10.0 + answer * 30.0) / 1e6
    return x, cost, n_in, answer, task


def test_answer_lengths_are_learned_where_costs_are_recorded_and_fall_back_elsewhere():
    x, cost, n_in, answer, task = _tasks()
    np.testing.assert_allclose(implied_output_tokens(cost, n_in, LADDER)[:, 1], answer)
    model = LengthModel(LADDER).fit(x, cost, n_in)
    assert model.learned == [False, True]
    assert model.sources == [FALLBACK, LEARNED] and model.rows == [0, len(x)]
    tokens = tokens_from_log(model.log_tokens(x))
    np.testing.assert_allclose(tokens[:, 0], 300.0, rtol=1e-9)  # the ladder's output_tokens
    # One-letter answers are priced as one letter, code answers as code (the fixed 300 is off
    # by 300x on the first and 25% on the second).
    assert np.median(tokens[task == 0, 1]) < 10
    assert 300 < np.median(tokens[task == 1, 1]) < 500
    cm = CostModel.from_ladder(LADDER, 512, {"learned": model.learned})
    est = cm.costs(n_in, tokens)
    rel = np.abs(est[:, 1] - cost[:, 1]) / cost[:, 1]
    assert np.median(rel) < 0.1
    oof = tokens_from_log(model.out_of_fold_log_tokens(x, cost, n_in))
    assert np.median(np.abs(oof[:, 1] - answer) / np.maximum(answer, 1)) < 0.5


def test_the_graph_predicts_the_same_lengths(tmp_path):
    x, cost, n_in, _, _ = _tasks(200)
    model = LengthModel(LADDER).fit(x, cost, n_in)
    heads = [ConstantHead(np.array([1, 0, 1])), ConstantHead(np.array([1, 1, 1]))]
    graph = correctness_to_onnx(heads, model.models, x.shape[1])
    assert check_parity(graph, model.log_tokens(x), x, atol=1e-4, output=LENGTHS) < 1e-4


def test_untruncated_token_counts_match_the_tokenizer(tiny_bundles):
    """Counted through the WordPiece shortcut, past the serving cap, any script."""
    from serve.model.runtime import Router
    from train.fit.decision import count_tokens, untruncated_counter

    tok = untruncated_counter(Router.load(tiny_bundles["a"]).embedder.tokenizer)
    texts = ["add 2 and 3", "naïve café 東京 — ΟΔΟΣ", "x\u0898y", "word " * 700, "", "[MASK] me"]
    want = [len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False)]
    assert count_tokens(tok, texts).tolist() == want and want[3] == 700
