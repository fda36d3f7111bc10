"""An exact shortcut for BERT WordPiece tokenization, for serving and batch embedding.

The tokenizers library spends about a microsecond per word building an `Encoding` (offsets,
masks, token strings) that rung never reads: ~200 us of a ~250 us decision on 150 words, and
130-340 us a row in batch prediction. BertNormalizer and BertPreTokenizer work character by
character, so they reduce to one `str.translate` table and a split on spaces:
- every ASCII character, and every other character the first time a text contains it, is run
  through the tokenizer's own normalizer (clean-up, CJK spacing, accent stripping,
  lower-casing) and, for punctuation, its own pre-tokenizer, and the table remembers what it
  became ("," becomes " , " so that it stands alone);
- WordPiece is context-free per word, so each word's ids come from the real tokenizer once and
  are cached.
A character whose normalisation is not per-character (a combining mark that NFD could
reorder, an output that normalises again to something else) marks its texts for the real
tokenizer, as does a special token such as `[MASK]` written in the text or a tokenizer
configured differently. Tests compare both on fuzzed and real text, ASCII and not.

Tokenizing a word alone costs a few microseconds, so a single text with many unseen words
would be slower word by word than in one call: each text learns at most `MISS_BUDGET` new words
and hands the rest to the real tokenizer. Batches learn all their new words in one call.
"""

from __future__ import annotations

import json
import re
import unicodedata
from array import array
from collections.abc import Sequence
from typing import Any

import numpy as np
from tokenizers import Tokenizer

MAX_CACHED_CHUNKS = 100_000  # ~15 MB at most; chunks beyond it are worked out each time
MAX_CACHED_WORDS = 100_000
MAX_CACHED_CHARS = 50_000  # distinct characters the table learns
MISS_BUDGET = 8  # unseen words one text may tokenize one by one

# Every character `str.split()` splits on (tests check the list against a scan of Unicode).
# BERT's clean-up deletes some of them (vertical tab, form feed, U+001C-U+001F, U+0085) rather
# than splitting there; texts holding one are translated before splitting.
PY_SPACES = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680" + "".join(
    map(chr, [*range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F, 0x205F, 0x3000])
)

Ids = bytes  # token ids as native int32: texts join their chunks' ids with one b"".join
TokenIds = Sequence[int] | np.ndarray  # a list, or int32 ids (a view into a batch's array)

# Joins a batch's texts: a chunk of its own (the private-use character is deleted by BERT's
# clean-up wherever a text holds it, so a text cannot make this chunk unless it holds it
# alone between spaces, which the count of separators then reveals).
_SEPARATOR = " \ue000 "
_MARK: Ids = np.array([-1], np.int32).tobytes()  # the separator's ids, found by identity
# Stands for a chunk the table cannot reproduce (found by identity; its -2 lies inside a text
# that is refused anyway).
_HOLE: Ids = np.array([-2], np.int32).tobytes()


class WordPieceShortcut:
    """Token ids identical to `tokenizer.encode(text, add_special_tokens=False).ids`.

    Text is split on whitespace into chunks (`str.split`, in C); a chunk's ids are cached, so
    a warm text costs a split and a dict lookup per chunk. An unseen chunk is normalised with
    the character table, split again (punctuation stands alone, CJK characters are spaced),
    and its words' ids come from the word cache or the real tokenizer.
    """

    def __init__(self, tokenizer: Tokenizer, added: list[str]) -> None:
        self.tokenizer = tokenizer
        # Special tokens are matched in the raw text: texts holding one fall back. Their first
        # characters ("[") make a cheap test per text; one regex pass serves a joined batch
        # (5 substring scans took 3x as long).
        self.added_starts = sorted({t[0] for t in added if t})
        self.added_search = (
            re.compile("|".join(re.escape(t) for t in added if t)).search if any(added) else None
        )
        # Ids are kept as bytes of int32: the garbage collector does not track them (lists
        # made every collection walk the caches: 30% of a warm lookup's time), and a text's
        # ids are one b"".join of its chunks' (flattening tuples cost 75 ns a token).
        self.chunks: dict[str, Ids] = {}
        self.cache: dict[str, Ids] = {}  # word -> ids
        self.table: dict[int, str | None] = {}
        self.known: set[str] = set()  # characters the table has decided
        self.unsafe: set[str] = set()  # characters whose texts go to the real tokenizer
        for code in range(128):
            self._learn(chr(code))
        # Characters str.split() splits on but BERT does not: what BERT makes of them.
        self.hazards = {ord(c): self._normalize(c) for c in PY_SPACES if self._normalize(c) != " "}
        self.hazard_search = (
            re.compile("[" + "".join(re.escape(chr(c)) for c in self.hazards) + "]").search
            if self.hazards
            else None
        )

    @classmethod
    def for_tokenizer(cls, tokenizer: Tokenizer) -> WordPieceShortcut | None:
        """The shortcut when the tokenizer is the BERT setup it reproduces, else None."""
        try:
            cfg: dict[str, Any] = json.loads(tokenizer.to_str())
        except Exception:  # tokenizers raises bare Exceptions
            return None
        norm, pre, model = cfg.get("normalizer") or {}, cfg.get("pre_tokenizer") or {}, cfg["model"]
        supported = (
            norm.get("type") == "BertNormalizer"
            and pre.get("type") == "BertPreTokenizer"
            and model.get("type") == "WordPiece"
        )
        if not supported:
            return None
        return cls(tokenizer, [t["content"] for t in cfg.get("added_tokens", [])])

    def _normalize(self, text: str) -> str:
        return self.tokenizer.normalizer.normalize_str(text)  # type: ignore[union-attr]

    def _learn(self, char: str) -> None:
        """Decide what `char` becomes, from the tokenizer's own normalizer and pre-tokenizer."""
        self.known.add(char)
        try:
            out = self._normalize(char)
        except UnicodeError:  # a lone surrogate: the real tokenizer decides what to do
            self.unsafe.add(char)
            return
        pieces = []
        for c in out:
            if c == " ":
                pieces.append(c)
                continue
            if c.isspace() or unicodedata.combining(c) or self._normalize(c).strip(" ") != c:
                # str.split would split where BERT does not; NFD could reorder it against
                # its neighbours; or it normalises again to something else
                self.unsafe.add(char)
            pieces.append(f" {c} " if self._is_punctuation(c) else c)
        mapped = "".join(pieces)
        if mapped != char:
            self.table[ord(char)] = mapped or None

    def _is_punctuation(self, c: str) -> bool:
        split = self.tokenizer.pre_tokenizer.pre_tokenize_str(f"a{c}a")  # type: ignore[union-attr]
        return [piece for piece, _ in split] == ["a", c, "a"]

    def _split(self, text: str) -> list[str] | None:
        """Whitespace chunks of `text`, or None when the real tokenizer must decide."""
        if self._holds_special_token(text):
            return None
        if self.hazard_search is not None and self.hazard_search(text):
            text = text.translate(self.hazards)
        return text.split()

    def _holds_special_token(self, text: str) -> bool:
        """A special token written in the text (matched raw, as the tokenizer does); the
        first-character test skips the regex for most texts."""
        search = self.added_search
        return (
            search is not None
            and any(c in text for c in self.added_starts)
            and search(text) is not None
        )

    def _chunk_words(self, chunk: str) -> list[str] | None:
        """BERT's words in one chunk, or None if it holds a character the table cannot
        reproduce."""
        if not chunk.isascii():
            new = set(chunk).difference(self.known)
            if new and len(self.known) + len(new) > MAX_CACHED_CHARS:
                return None
            for char in new:
                self._learn(char)
            if not self.unsafe.isdisjoint(chunk):
                return None
        return chunk.translate(self.table).split()

    def _cap(self) -> int | None:
        trunc = self.tokenizer.truncation
        return int(trunc["max_length"]) if trunc else None

    def ids(self, text: str) -> np.ndarray | None:
        """Token ids after truncation, or None when the real tokenizer must decide."""
        chunks = self._split(text)
        if chunks is None:
            return None
        pieces = list(map(self.chunks.get, chunks))
        if None in pieces:
            budget = [MISS_BUDGET]
            for i, ids in enumerate(pieces):
                if ids is None:
                    pieces[i] = ids = self._chunk_ids(chunks[i], budget)
                    if ids is None:
                        return None
        return _join(pieces, self._cap())  # type: ignore[arg-type]

    def _chunk_ids(self, chunk: str, budget: list[int]) -> Ids | None:
        words = self._chunk_words(chunk)
        if words is None:
            return None
        ids: list[Ids] = []
        for word in words:
            known = self.cache.get(word)
            if known is None:
                budget[0] -= 1
                if budget[0] < 0:
                    return None  # mostly new words: one call to the real tokenizer is cheaper
                known = _pack(self.tokenizer.encode(word, add_special_tokens=False).ids)
                if len(self.cache) < MAX_CACHED_WORDS:
                    self.cache[word] = known
            ids.append(known)
        out = b"".join(ids)
        if len(self.chunks) < MAX_CACHED_CHUNKS:
            self.chunks[chunk] = out
        return out

    def ids_batch(self, texts: list[str]) -> list[TokenIds | None]:
        """`ids` for every text (a view into one int array per batch), or None where the real
        tokenizer must decide; the batch's unseen words are learnt in one tokenizer call.

        The whole batch is joined with a separator chunk and split, looked up and flattened
        in a few C calls: per-text Python (a split, a lookup pass and a join per text) was
        most of the cost of tokenizing once the caches were warm."""
        if not texts:
            return []
        joined = _SEPARATOR.join(texts)
        added = self._holds_special_token(joined)
        if self.hazard_search is not None and self.hazard_search(joined):
            joined = joined.translate(self.hazards)
        chunks = joined.split()
        pieces = self._lookup_marking_separators(chunks)
        holes = False
        if None in pieces:
            self._fill(chunks, pieces)
            for h in _positions(pieces, None):  # chunks the table cannot reproduce
                pieces[h] = _HOLE
                holes = True
        flat = np.frombuffer(b"".join(pieces), np.int32)  # type: ignore[arg-type]
        # Each separator leaves one -1 between two texts (token ids are never negative).
        seps = np.flatnonzero(flat == -1)
        if len(seps) != len(texts) - 1:  # a text holds the separator itself: text by text
            return self._ids_one_by_one(texts)
        begin = np.concatenate([[0], seps + 1])
        end = np.append(seps, len(flat))
        bad = self._texts_to_refuse(texts, pieces, holes, added)
        cap = self._cap()
        if cap is not None:
            end = np.minimum(end, begin + cap)
        return [
            None if k in bad else flat[b:e]
            for k, (b, e) in enumerate(zip(begin.tolist(), end.tolist(), strict=True))
        ]

    def _lookup_marking_separators(self, chunks: list[str]) -> list[Ids | None]:
        """Cached ids per chunk, with the separator chunk as `_MARK` (only for this lookup:
        inside a text, the same chunk has its real ids)."""
        key = _SEPARATOR.strip()
        real = self.chunks.get(key)
        self.chunks[key] = _MARK
        try:
            return list(map(self.chunks.get, chunks))
        finally:
            if real is None:
                del self.chunks[key]
            else:
                self.chunks[key] = real

    def _fill(self, chunks: list[str], pieces: list[Ids | None]) -> None:
        """Learn the unseen chunks and fill them in (None stays for what the table cannot
        reproduce)."""
        unseen = {c for c, p in zip(chunks, pieces, strict=True) if p is None}
        local = self._learn_chunks(unseen)
        for i, (c, p) in enumerate(zip(chunks, pieces, strict=True)):
            if p is None:
                pieces[i] = self.chunks[c] if c in self.chunks else local[c]

    def _texts_to_refuse(
        self, texts: list[str], pieces: list[Ids | None], holes: bool, added: bool
    ) -> set[int]:
        """Texts holding a chunk the table cannot reproduce (its ids were replaced by
        `_HOLE`), or a special token."""
        bad: set[int] = set()
        if holes:
            text = 0
            for p in pieces:
                if p is _MARK:
                    text += 1
                elif p is _HOLE:
                    bad.add(text)
        if added:
            bad.update(k for k, t in enumerate(texts) if self._holds_special_token(t))
        return bad

    def _ids_one_by_one(self, texts: list[str]) -> list[TokenIds | None]:
        out: list[TokenIds | None] = []
        for text in texts:
            chunks = self._split(text)
            if chunks is None:
                out.append(None)
                continue
            pieces = list(map(self.chunks.get, chunks))
            if None in pieces:
                self._fill(chunks, pieces)
            out.append(None if None in pieces else _join(pieces, self._cap()))  # type: ignore[arg-type]
        return out

    def _learn_chunks(self, chunks: set[str]) -> dict[str, Ids | None]:
        """Work out every chunk (unseen words in one `encode_batch`); cache what fits and
        return the rest (None for chunks the table cannot reproduce)."""
        split = {c: self._chunk_words(c) for c in chunks}
        words = {w for ws in split.values() if ws is not None for w in ws if w not in self.cache}
        fresh: dict[str, Ids] = {}
        if words:
            order = list(words)
            encs = self.tokenizer.encode_batch(order, add_special_tokens=False)
            fresh = {w: _pack(e.ids) for w, e in zip(order, encs, strict=True)}
            room = max(0, MAX_CACHED_WORDS - len(self.cache))
            self.cache.update(dict(list(fresh.items())[:room]))
        rest: dict[str, Ids | None] = {}
        for chunk, ws in split.items():
            ids = None
            if ws is not None:
                ids = b"".join(self.cache[w] if w in self.cache else fresh[w] for w in ws)
            if ids is not None and len(self.chunks) < MAX_CACHED_CHUNKS:
                self.chunks[chunk] = ids
            else:
                rest[chunk] = ids
        return rest


assert array("i").itemsize == 4  # C int is int32 wherever rung runs


def batch_ids(
    tokenizer: Tokenizer, shortcut: WordPieceShortcut | None, texts: list[str]
) -> list[TokenIds]:
    """Token ids per text: the exact shortcut where it applies (several times cheaper than
    building `Encoding`s), one `encode_batch` call for the rest."""
    out: list[TokenIds | None] = (
        shortcut.ids_batch(texts) if shortcut is not None else [None] * len(texts)
    )
    rest = [i for i, ids in enumerate(out) if ids is None]
    if rest:
        encs = tokenizer.encode_batch([texts[i] for i in rest], add_special_tokens=False)
        for i, enc in zip(rest, encs, strict=True):
            out[i] = enc.ids
    return out  # type: ignore[return-value]


def _pack(ids: list[int]) -> Ids:
    return array("i", ids).tobytes()  # np.asarray for a few ints cost ~2 us; this ~0.3


def _join(pieces: list[Ids], cap: int | None) -> np.ndarray:
    out = np.frombuffer(b"".join(pieces), np.int32)
    return out if cap is None or len(out) <= cap else out[:cap]


def _positions(items: list[Any], target: object) -> list[int]:
    """Indices of `target` in `items` by identity, with C-speed scans (`list.index`)."""
    out: list[int] = []
    i = -1
    try:
        while True:
            i = items.index(target, i + 1)
            if items[i] is target:
                out.append(i)
    except ValueError:
        return out
