"""The serving shortcuts give exactly what the reference paths give."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from serve.model.fasttok import PY_SPACES, WordPieceShortcut
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


def random_unicode(rng: random.Random, n: int) -> str:
    """Text mixing ASCII words with accents, CJK, Cyrillic, Arabic, symbols, combining and
    control characters, unusual spaces and the characters str.split and BERT disagree on."""
    pools = [
        "abcdefghij ABCDEFG 0123 .,;:!?'\"()-",
        "éèêëÉÀçñÑüÜößẞİıŁłØøÅåǅ",
        "東京中文字漢字日本語한국어ひらがなカタカナ",
        "привет мир ПРИВЕТ ΟΔΟΣ Σίσυφος",
        "مرحبا بالعالم עברית",
        "£€¥©®™°±×÷…—–‘’“”«»¿¡§¶•⎯",
        "\u0301\u0308\u0903\u200b\u200d\ufeff\ufffd\x00\x0b\x0c\x1c\x85\xa0\u2003\u3000",
        "🎉👍🏽‍♀️",
    ]
    out = []
    while len(out) < n:
        pool = rng.choice(pools)
        out.append(rng.choice(pool) if rng.random() < 0.7 else chr(rng.randrange(0x20, 0x3000)))
        if rng.random() < 0.2:
            out.append(" ")
    return "".join(out)


def test_py_spaces_is_what_str_split_splits_on():
    import sys

    assert sorted(PY_SPACES) == [c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace()]


def test_the_shortcut_matches_the_tokenizer_exactly(router):
    embedder = router.embedder
    assert isinstance(embedder, StaticEmbedder) and embedder.shortcut is not None
    fast, tok = embedder.shortcut, embedder.tokenizer
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
            assert list(got) == want, text
    assert shortcut > 5000  # the shortcut really ran, and special tokens did not
    assert fast.ids("say [MASK] now") is None


def test_the_shortcut_matches_the_tokenizer_on_any_script(tiny_bundles):
    fast = Router.load(tiny_bundles["a"]).embedder.shortcut
    tok = fast.tokenizer
    rng = random.Random(2)
    texts = ODD + [random_unicode(rng, rng.randrange(1, 120)) for _ in range(3000)]
    texts += ["ΟΔΟΣ ΣΟΦΟΣ", "İstanbul ıi", "e\u0301 vs é", "a\x0bb c\x1cd e\x85f", "中文，句子。"]
    single = [fast.ids(t) for t in texts]
    batch = fast.ids_batch(texts)  # words the single pass learnt, and new ones
    fresh = Router.load(tiny_bundles["a"]).embedder.shortcut.ids_batch(texts)  # cold caches
    shortcut = 0
    for text, one, many, cold in zip(texts, single, batch, fresh, strict=True):
        want = tok.encode(text, add_special_tokens=False).ids
        for got in (one, many, cold):
            if got is not None:
                shortcut += 1
                assert list(got) == want, repr(text)
    assert shortcut > 2 * len(texts)  # most texts take the shortcut on every path
    assert fast.ids("naïve café") is not None and fast.ids("ΟΔΟΣ") is not None


def test_characters_the_table_cannot_reproduce_go_to_the_tokenizer(router):
    fast = router.embedder.shortcut
    # U+0898 keeps a nonzero combining class through BERT's normalizer (its accent stripping
    # predates the character), so NFD could reorder it against a neighbour.
    for text in ["x\u0898y", "a\ud800b"]:  # and a lone surrogate, which cannot be encoded
        assert fast.ids(text) is None and fast.ids_batch([text, "plain"])[0] is None
    assert "\u0898" in fast.unsafe
    mark = "x\u0898y and more"
    assert router.embedder.embed([mark, "plain"])[1][0] == len(
        fast.tokenizer.encode(mark, add_special_tokens=False).ids
    )


def test_a_text_of_unseen_words_learns_a_few_and_falls_back(tiny_bundles):
    from serve.model.fasttok import MISS_BUDGET

    fast = Router.load(tiny_bundles["a"]).embedder.shortcut
    text = " ".join(f"zq{i}xv" for i in range(3 * MISS_BUDGET))
    assert fast.ids(text) is None  # too many new words: the real tokenizer decides
    assert len(fast.cache) == MISS_BUDGET
    for _ in range(3):
        fast.ids(text)
    want = fast.tokenizer.encode(text, add_special_tokens=False).ids
    assert list(fast.ids(text)) == want and len(fast.cache) == 3 * MISS_BUDGET


def test_a_lowered_token_cap_applies_to_the_shortcut(router, tiny_bundles):
    from serve.api.state import apply_token_cap

    capped = Router.load(tiny_bundles["a"])
    assert apply_token_cap(capped, 5) == 5
    text = "one two three four five six seven eight"
    assert (
        list(capped.embedder.shortcut.ids(text))
        == capped.embedder.tokenizer.encode(text, add_special_tokens=False).ids
    )
    assert len(capped.embedder.shortcut.ids(text)) == 5


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
    assert WordPieceShortcut.for_tokenizer(plain) is None


@pytest.mark.parametrize("collide", [False, True])
def test_the_batch_path_handles_separators_special_tokens_and_the_cap(tiny_bundles, collide):
    """A batch is joined with a separator chunk; a text holding that chunk alone sends the
    batch text by text. Either way: the cap, special tokens and empty texts as one by one."""
    from serve.api.state import apply_token_cap

    router = Router.load(tiny_bundles["a"])
    apply_token_cap(router, 5)
    fast, tok = router.embedder.shortcut, router.embedder.tokenizer
    texts = ["one two three four five six seven", "x[MASK]y", "", "\ue000a b\ue000", "ok"]
    texts += ["a \ue000 b"] if collide else []
    if not collide:
        fast._ids_one_by_one = None  # the joined path must not need it
    got = fast.ids_batch(texts)
    assert got[1] is None  # the special token: the real tokenizer decides
    for text, ids in zip(texts, got, strict=True):
        if ids is not None:
            assert list(ids) == tok.encode(text, add_special_tokens=False).ids, repr(text)
    assert len(got[0]) == 5 and len(got[2]) == 0
