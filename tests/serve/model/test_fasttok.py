"""The serving shortcuts give exactly what the reference paths give."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from serve.model.fasttok import AsciiWordPiece
from serve.model.runtime import Router, StaticEmbedder
from tests.support.tiny_data import LARGE, MEDIUM, SMALL

ODD = [
    "",
    "   \t\n ",
    "hello [MASK] world",
    "x[SEP]y and [CLS]",
    "[mask] is not special in lower case",
    "naïve café, 東京 and emoji 🎉",
    "tabs\tand\r\nnewlines\x0bvertical\x0cfeed\x1cfile\x7fdel\x00nul",
    "a" * 150 + " " + "b" * 99,
    "e.g. U.S.A. -- 3.14159; x+=1 && y||z ~/path/to_file.py:42 #tag @user $5 50% {a:[1,2]}",
    "don't won't can't, it's O'Brien's",
]


def random_ascii(rng: random.Random, n: int) -> str:
    common = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJ 0123456789 .,;:!?'\"()-_[]{}<>/\\@#$%^&*+=~`|"
    return "".join(
        chr(rng.randrange(128)) if rng.random() < 0.2 else rng.choice(common) for _ in range(n)
    )


@pytest.fixture(scope="module")
def router(tiny_bundles: dict[str, Path]) -> Router:
    return Router.load(tiny_bundles["a"])


def test_ascii_wordpiece_matches_the_tokenizer_exactly(router):
    embedder = router.embedder
    assert isinstance(embedder, StaticEmbedder) and embedder.ascii is not None
    fast, tok = embedder.ascii, embedder.tokenizer
    rng = random.Random(0)
    texts = (
        ODD + SMALL + MEDIUM + LARGE + [random_ascii(rng, rng.randrange(80)) for _ in range(3000)]
    )
    texts.append(" ".join(SMALL + MEDIUM + LARGE) * 3)  # past the 512-token cap
    shortcut = 0
    for text in texts * 2:  # the second pass finds the words the first one learnt
        got = fast.ids(text)
        want = tok.encode(text, add_special_tokens=False).ids
        if got is not None:
            shortcut += 1
            assert got == want, text
    assert shortcut > 5000  # the shortcut really ran, and non-ASCII / special tokens did not
    assert fast.ids("naïve") is None and fast.ids("say [MASK] now") is None


def test_a_text_of_unseen_words_learns_a_few_and_falls_back(tiny_bundles):
    from serve.model.fasttok import MISS_BUDGET

    fast = Router.load(tiny_bundles["a"]).embedder.ascii
    text = " ".join(f"zq{i}xv" for i in range(3 * MISS_BUDGET))
    assert fast.ids(text) is None  # too many new words: the real tokenizer decides
    assert len(fast.cache) == MISS_BUDGET
    for _ in range(3):
        fast.ids(text)
    want = fast.tokenizer.encode(text, add_special_tokens=False).ids
    assert fast.ids(text) == want and len(fast.cache) == 3 * MISS_BUDGET


def test_a_lowered_token_cap_applies_to_the_shortcut(router, tiny_bundles):
    from serve.api.state import apply_token_cap

    capped = Router.load(tiny_bundles["a"])
    assert apply_token_cap(capped, 5) == 5
    text = "one two three four five six seven eight"
    assert (
        capped.embedder.ascii.ids(text)
        == capped.embedder.tokenizer.encode(text, add_special_tokens=False).ids
    )
    assert len(capped.embedder.ascii.ids(text)) == 5


def test_the_single_text_path_equals_the_batch_path(router):
    rng = random.Random(1)
    texts = ODD + SMALL + LARGE + [random_ascii(rng, rng.randrange(200)) for _ in range(200)]
    for text in texts:
        np.testing.assert_allclose(
            router.p_sufficient_one(text), router.p_sufficient([text])[0], atol=1e-6
        )


def test_other_tokenizer_setups_do_not_get_the_shortcut(router):
    from tokenizers import Tokenizer, models, pre_tokenizers

    plain = Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]"))
    plain.pre_tokenizer = pre_tokenizers.Whitespace()
    assert AsciiWordPiece.for_tokenizer(plain) is None
