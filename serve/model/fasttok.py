"""An exact shortcut for BERT WordPiece on ASCII text, for the single-text hot path.

The tokenizers library spends about a microsecond per word building an `Encoding` (offsets,
masks, token strings) that serving never reads: ~200 us of a ~250 us decision on 150 words.
For ASCII input, BertNormalizer (clean_text, lowercase) and BertPreTokenizer reduce to: drop
control characters, turn tab / CR / LF into spaces, lowercase, and split into runs of
`[a-z0-9]` and single punctuation characters. WordPiece is context-free per word, so each
word's ids come from the real tokenizer once and are cached. Anything else (non-ASCII text, a
special token such as `[MASK]` written in the text, a tokenizer configured differently) goes
to the real tokenizer; tests compare both on fuzzed and real text.

Tokenizing a word alone costs a few microseconds, so a text with many unseen words would be
slower word by word than in one call: each text learns at most `MISS_BUDGET` new words and
hands the rest to the real tokenizer, which bounds the worst case (every word new) at about
the old cost plus those few words, while the cache fills with the vocabulary traffic uses.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tokenizers import Tokenizer

MAX_CACHED_WORDS = 50_000  # ~7 MB at most; words beyond it are tokenized each time
MISS_BUDGET = 8  # unseen words one text may tokenize one by one

# ASCII control characters other than tab, LF, CR are dropped; those three become spaces.
_CLEAN = str.maketrans(
    {**{c: None for c in [*range(0, 9), 11, 12, *range(14, 32), 127]}, 9: " ", 10: " ", 13: " "}
)
# After cleaning and lowercasing, every printable non-alphanumeric ASCII character is
# punctuation for BertPreTokenizer and stands alone.
_WORDS = re.compile(r"[a-z0-9]+|[^a-z0-9 ]")


class AsciiWordPiece:
    """Token ids identical to `tokenizer.encode(text, add_special_tokens=False).ids`."""

    def __init__(self, tokenizer: Tokenizer, added: list[str]) -> None:
        self.tokenizer = tokenizer
        self.added = added  # special tokens are matched in the raw text: fall back on them
        self.cache: dict[str, list[int]] = {}

    @classmethod
    def for_tokenizer(cls, tokenizer: Tokenizer) -> AsciiWordPiece | None:
        """The shortcut when the tokenizer is the BERT setup it reproduces, else None."""
        try:
            cfg: dict[str, Any] = json.loads(tokenizer.to_str())
        except Exception:  # tokenizers raises bare Exceptions
            return None
        norm, pre, model = cfg.get("normalizer") or {}, cfg.get("pre_tokenizer") or {}, cfg["model"]
        supported = (
            norm.get("type") == "BertNormalizer"
            and norm.get("clean_text") is True
            and norm.get("lowercase") is True
            and pre.get("type") == "BertPreTokenizer"
            and model.get("type") == "WordPiece"
        )
        if not supported:
            return None
        return cls(tokenizer, [t["content"] for t in cfg.get("added_tokens", [])])

    def ids(self, text: str) -> list[int] | None:
        """Token ids after truncation, or None when the real tokenizer must decide."""
        if not text.isascii() or any(token in text for token in self.added):
            return None
        trunc = self.tokenizer.truncation
        cap = trunc["max_length"] if trunc else None
        out: list[int] = []
        cache, misses = self.cache, 0
        for word in _WORDS.findall(text.translate(_CLEAN).lower()):
            ids = cache.get(word)
            if ids is None:
                misses += 1
                if misses > MISS_BUDGET:
                    return None  # mostly new words: one call to the real tokenizer is cheaper
                ids = self.tokenizer.encode(word, add_special_tokens=False).ids
                if len(cache) < MAX_CACHED_WORDS:
                    cache[word] = ids
            out += ids
            if cap is not None and len(out) >= cap:
                return out[:cap]
        return out
