"""Tokenizers, from a ten-line regex splitter to GPT-2's byte-level BPE.

Chapter 2 of the course builds these in order:

1. ``SimpleTokenizerV1`` -- split on punctuation and whitespace, look each word up in a
   vocabulary built from the training text. Fails on any word it has not seen.
2. ``SimpleTokenizerV2`` -- the same, but unseen words become ``<|unk|>`` and documents
   are separated by ``<|endoftext|>``.
3. ``BPETokenizer`` -- byte-pair encoding over UTF-8 bytes, written from scratch. It can
   learn its own merges (``BPETokenizer.train``) or load GPT-2's (``BPETokenizer.gpt2``),
   in which case it gives exactly the ids of ``tiktoken.get_encoding("gpt2")``.

The rest of the course uses ``get_tokenizer()``: tiktoken's GPT-2 encoding, which gives the
same ids as ``BPETokenizer.gpt2()`` but is written in Rust and much faster.

The BPE part follows the shape of Andrej Karpathy's minbpe: ``get_pair_counts`` and
``merge`` are the whole algorithm; training repeats "count pairs, merge the most frequent"
and encoding repeats "merge the pair that was learnt first".
"""

from __future__ import annotations

import functools
import heapq
import json
import re
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from typing import Literal

import regex  # the third-party `regex` module: `re` has no \p{L} (tiktoken depends on it)

# ---------------------------------------------------------------------------------------
# 1. Simple regex tokenizers (the book's section 2.2-2.4)
# ---------------------------------------------------------------------------------------

# The capture group keeps the separators: punctuation and "--" become tokens of their own.
_SIMPLE_SPLIT = re.compile(r'([,.:;?_!"()\']|--|\s)')
# Decoding joins tokens with spaces; this removes the space before punctuation again.
_SPACE_BEFORE_PUNCTUATION = re.compile(r'\s+([,.?!"()\'])')

END_OF_TEXT = "<|endoftext|>"
UNKNOWN = "<|unk|>"


def simple_split(text: str) -> list[str]:
    """Split ``text`` into words and punctuation, dropping whitespace (the book's regex)."""
    pieces = _SIMPLE_SPLIT.split(text)
    return [piece.strip() for piece in pieces if piece.strip()]


def build_vocab(text: str, special_tokens: Sequence[str] = (END_OF_TEXT, UNKNOWN)) -> dict[str, int]:
    """Map every distinct token of ``text`` to an id: sorted tokens first, then the specials.

    On "The Verdict" this gives the book's vocabulary: 1,130 words and punctuation marks,
    then ``<|endoftext|>`` = 1130 and ``<|unk|>`` = 1131.
    """
    words = sorted(set(simple_split(text)))
    tokens = words + [token for token in special_tokens if token not in words]
    return {token: token_id for token_id, token in enumerate(tokens)}


class UnknownWordError(KeyError, ValueError):
    """A word is not in a ``SimpleTokenizerV1`` vocabulary.

    Both a ``KeyError`` (what the book's dictionary lookup raises) and a ``ValueError``.
    """

    def __init__(self, word: str):
        super().__init__(word)
        self.word = word

    def __str__(self) -> str:  # KeyError's own __str__ would only show repr(word)
        return (
            f"{self.word!r} is not in the vocabulary. SimpleTokenizerV1 can only encode words "
            f"it saw when its vocabulary was built; use SimpleTokenizerV2, which maps unknown "
            f"words to {UNKNOWN!r}."
        )


class SimpleTokenizerV1:
    """The book's first tokenizer: a lookup table from words to ids, and back."""

    def __init__(self, vocab: dict[str, int]):
        self.str_to_int = dict(vocab)
        self.int_to_str = {token_id: token for token, token_id in vocab.items()}

    def encode(self, text: str) -> list[int]:
        return [self._id_of(word) for word in simple_split(text)]

    def decode(self, ids: Iterable[int]) -> str:
        text = " ".join(self._word_of(token_id) for token_id in ids)
        return _SPACE_BEFORE_PUNCTUATION.sub(r"\1", text)

    def _id_of(self, word: str) -> int:
        if word not in self.str_to_int:
            raise UnknownWordError(word)
        return self.str_to_int[word]

    def _word_of(self, token_id: int) -> str:
        if token_id not in self.int_to_str:
            n_ids = len(self.int_to_str)
            raise ValueError(f"token id {token_id} is not in the vocabulary (it has {n_ids} ids)")
        return self.int_to_str[token_id]


class SimpleTokenizerV2(SimpleTokenizerV1):
    """Like V1, but a word missing from the vocabulary becomes ``<|unk|>`` instead of an error.

    The vocabulary must hold ``<|unk|>`` (for unknown words) and ``<|endoftext|>`` (put
    between documents). The split regex leaves both intact, so text that contains them
    encodes them as their own ids.
    """

    def __init__(self, vocab: dict[str, int]):
        missing = [token for token in (END_OF_TEXT, UNKNOWN) if token not in vocab]
        if missing:
            raise ValueError(
                f"SimpleTokenizerV2 needs the special tokens {missing} in its vocabulary; "
                f"build it with build_vocab(text), which appends {END_OF_TEXT!r} and {UNKNOWN!r}"
            )
        super().__init__(vocab)

    def _id_of(self, word: str) -> int:
        return self.str_to_int.get(word, self.str_to_int[UNKNOWN])


# ---------------------------------------------------------------------------------------
# 2. Byte-pair encoding: the algorithm
# ---------------------------------------------------------------------------------------

# Token ids: 0-255 are the single bytes, and the i-th merge creates id 256 + i.
N_BYTES = 256

Pair = tuple[int, int]


def get_pair_counts(ids: Sequence[int], counts: Counter[Pair] | None = None, weight: int = 1) -> Counter[Pair]:
    """Count each pair of neighbouring ids.

    ``get_pair_counts([1, 2, 3, 1, 2]) == {(1, 2): 2, (2, 3): 1, (3, 1): 1}``.

    Pass ``counts`` to add to an existing count (one call per word), and ``weight`` to count
    a word that occurs ``weight`` times in the text with one call.
    """
    counts = Counter() if counts is None else counts
    for pair in zip(ids, ids[1:]):
        counts[pair] += weight
    return counts


def merge(ids: Sequence[int], pair: Pair, new_id: int) -> list[int]:
    """Replace every occurrence of ``pair`` in ``ids`` by ``new_id``, scanning left to right.

    ``merge([5, 5, 5], (5, 5), 9) == [9, 5]``: occurrences never overlap.
    """
    merged = []
    i = 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            merged.append(new_id)
            i += 2
        else:
            merged.append(ids[i])
            i += 1
    return merged


def most_frequent_pair(counts: Counter[Pair]) -> Pair:
    """The pair to merge next in training: the most frequent one.

    Ties go to the smallest pair, comparing ids (first the left one, then the right one).
    This makes training deterministic, whatever the order the pairs were counted in.
    """
    return max(counts, key=lambda pair: (counts[pair], -pair[0], -pair[1]))


# GPT-2's pre-tokenisation: BPE runs inside each piece, never across pieces, so a token
# never spans a word and the following punctuation. The pieces are: English contractions,
# a letter run, a digit run or a run of other symbols (each with at most one leading space),
# and whitespace (a run of spaces leaves its last space to the word that follows).
GPT2_SPLIT_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
#
# Which characters are letters (\p{L}) and digits (\p{N}) depends on the Unicode version of
# the regex engine. The `regex` module follows the newest Unicode (17.0 in regex 2026.x);
# tiktoken 0.14's Rust engine uses Unicode 16.0. So the letters added in Unicode 17.0
# (September 2025: CJK Extension J, Tai Yo, Sidetic...) are split differently and their
# ids can differ from tiktoken's; every older character gives identical ids.
_GPT2_SPLIT = regex.compile(GPT2_SPLIT_PATTERN)


def pretokenize(text: str) -> list[str]:
    """Split ``text`` into the pieces that BPE works on (GPT-2's regex): ``"Hello world!"`` ->
    ``["Hello", " world", "!"]``."""
    return _GPT2_SPLIT.findall(text)


@functools.cache
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's table from each byte to a printable character.

    GPT-2's files (``vocab.bpe``, ``encoder.json``) store tokens as text. Bytes that are
    printable characters stand for themselves; the others (control characters, space...)
    are shifted to unused printable characters from 256 up, so that a space shows as "Ġ"
    and a newline as "Ċ".
    """
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table = {byte: chr(byte) for byte in printable}
    shifted = 0
    for byte in range(N_BYTES):
        if byte not in table:
            table[byte] = chr(N_BYTES + shifted)
            shifted += 1
    return table


class BPETokenizer:
    """A byte-level BPE tokenizer, GPT-2 style.

    Encoding a text:

    1. split the special tokens that are allowed out of the text (they get their own ids);
    2. split the rest into pieces with GPT-2's regex (``pretokenize``);
    3. turn each piece into its UTF-8 bytes, one id per byte;
    4. in each piece, repeatedly merge the neighbouring pair that was learnt first
       (smallest rank), until no learnt pair is left.

    ``merges[i]`` is the pair of ids that the i-th merge joins; it creates the id
    ``256 + i``. The ids below 256 are the single bytes: byte ``b`` has id ``byte_ids[b]``
    (``b`` itself for a trained tokenizer; GPT-2 numbers its bytes in another order).
    Special tokens come after the merges.

    ``decode(encode(s)) == s`` for every ``str`` that can be encoded as UTF-8, that is,
    every string without lone surrogates (``"\\ud800"``). Like tiktoken, ``encode`` replaces
    a lone surrogate with U+FFFD, so such a string does not round-trip.

    With GPT-2's merges (``BPETokenizer.gpt2()``) the ids are those of tiktoken's "gpt2"
    encoding, except for characters newer than tiktoken's Unicode tables (see
    ``GPT2_SPLIT_PATTERN``).
    """

    def __init__(
        self,
        merges: Sequence[Pair],
        special_tokens: dict[str, int] | None = None,
        byte_ids: Sequence[int] | None = None,
    ):
        self.byte_ids = list(range(N_BYTES)) if byte_ids is None else list(byte_ids)
        if sorted(self.byte_ids) != list(range(N_BYTES)):
            raise ValueError("byte_ids must give each of the 256 bytes a different id from 0 to 255")
        self.merges = [tuple(pair) for pair in merges]
        self.special_tokens = dict(special_tokens or {})

        # vocab: id -> the bytes it stands for. A merged token is its two parts joined.
        self.vocab: dict[int, bytes] = {token_id: bytes([byte]) for byte, token_id in enumerate(self.byte_ids)}
        for rank, (left, right) in enumerate(self.merges):
            if left not in self.vocab or right not in self.vocab:
                raise ValueError(f"merge {rank} joins ({left}, {right}), but an id must exist before a merge uses it")
            self.vocab[N_BYTES + rank] = self.vocab[left] + self.vocab[right]
        for token, token_id in self.special_tokens.items():
            if not token:
                raise ValueError("a special token cannot be the empty string")
            if token_id in self.vocab:
                raise ValueError(f"special token {token!r} has id {token_id}, which is already taken")
            self.vocab[token_id] = token.encode("utf-8")

        # The rank of a pair is when it was learnt: earlier merges are applied first.
        self.merge_ranks: dict[Pair, int] = {pair: rank for rank, pair in enumerate(self.merges)}
        # Texts repeat the same words over and over: BPE each distinct piece only once.
        self._encode_piece = functools.lru_cache(maxsize=1 << 16)(self._encode_piece_uncached)

    # -- building one ------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        text: str,
        vocab_size: int,
        special_tokens: Sequence[str] = (END_OF_TEXT,),
    ) -> BPETokenizer:
        """Learn ``vocab_size - 256 - len(special_tokens)`` merges from ``text``.

        Each step counts the pairs of neighbouring ids inside every piece of the text (see
        ``pretokenize``), merges the most frequent pair into a new id (ties: see
        ``most_frequent_pair``) and records it in ``merges``. Special tokens found in
        ``text`` are cut out first, so that no merge learns their characters. Training stops
        early when no pair is left (every piece is a single token); the vocabulary is then
        smaller than ``vocab_size``.
        """
        special_tokens = list(dict.fromkeys(special_tokens))  # drop repeats, keep the order
        n_merges = vocab_size - N_BYTES - len(special_tokens)
        if n_merges < 0:
            raise ValueError(
                f"vocab_size={vocab_size} is too small: it must be at least 256 (one id per byte) "
                f"+ {len(special_tokens)} (the special tokens) = {N_BYTES + len(special_tokens)}"
            )

        # Work on distinct pieces with their counts: a word that occurs 100 times is
        # merged once and counted with weight 100.
        piece_counts = Counter(
            piece.encode("utf-8")
            for part in _split_on_special_tokens(text, special_tokens)[::2]
            for piece in pretokenize(part)
        )
        words = [(list(piece), count) for piece, count in piece_counts.items()]

        merges: list[Pair] = []
        for rank in range(n_merges):
            pair_counts: Counter[Pair] = Counter()
            for ids, count in words:
                get_pair_counts(ids, pair_counts, weight=count)
            if not pair_counts:
                break
            pair = most_frequent_pair(pair_counts)
            new_id = N_BYTES + rank
            # Most words do not hold the pair; the fast `in` test (done in C) skips them.
            words = [(merge(ids, pair, new_id) if pair[0] in ids else ids, count) for ids, count in words]
            merges.append(pair)

        first_special_id = N_BYTES + len(merges)
        specials = {token: first_special_id + i for i, token in enumerate(special_tokens)}
        return cls(merges, specials)

    @classmethod
    def gpt2(cls) -> BPETokenizer:
        """GPT-2's tokenizer, from its original files ``vocab.bpe`` and ``encoder.json``.

        ``vocab.bpe`` lists the 50,000 merges in the order they were learnt, as pairs of
        token strings; ``encoder.json`` maps each token string to its id. Tokens are written
        with ``bytes_to_unicode``'s printable characters.
        """
        from .download import fetch  # only needed here: the rest of this module is offline-pure

        encoder: dict[str, int] = json.loads(fetch("gpt2/encoder.json").read_text(encoding="utf-8"))
        lines = fetch("gpt2/vocab.bpe").read_text(encoding="utf-8").splitlines()
        merge_lines = [line for line in lines[1:] if line]  # line 0 is "#version: 0.2"

        byte_to_char = bytes_to_unicode()
        byte_ids = [encoder[byte_to_char[byte]] for byte in range(N_BYTES)]
        merges = []
        for rank, line in enumerate(merge_lines):
            left, right = line.split(" ")
            # GPT-2's ids follow the merge order, so merge i is id 256 + i, as in a trained
            # tokenizer. Check it rather than assume it.
            if encoder[left + right] != N_BYTES + rank:
                raise ValueError(f"vocab.bpe line {rank + 2} ({line!r}) does not match encoder.json")
            merges.append((encoder[left], encoder[right]))
        return cls(merges, {END_OF_TEXT: encoder[END_OF_TEXT]}, byte_ids)

    # -- encoding ----------------------------------------------------------------------

    def encode(
        self,
        text: str,
        allowed_special: Literal["all"] | Collection[str] = frozenset(),
        disallowed_special: Literal["all"] | Collection[str] = "all",
    ) -> list[int]:
        """The token ids of ``text``; the same arguments and behaviour as tiktoken's ``encode``.

        A special token written in ``text`` (e.g. ``"<|endoftext|>"``) becomes its special
        id only when it is in ``allowed_special`` (``"all"``: every special token). By
        default any other special token in the text raises a ``ValueError``, because text
        that merely contains the characters (a user's input, a web page) should not be able
        to end a document. ``disallowed_special=()`` turns the check off: those special tokens
        are then encoded as ordinary text. Unlike tiktoken, naming a special token that this
        tokenizer does not have is an error (it is most likely a typo).
        """
        allowed = self._special_token_set(allowed_special)
        disallowed = self._special_token_set(disallowed_special) - allowed
        for token in sorted(disallowed):
            if token in text:
                raise ValueError(
                    f"the text contains the special token {token!r}, which is not allowed. "
                    f"To encode it as the special token, pass allowed_special={{{token!r}}} "
                    f"(or allowed_special='all'); to encode it as ordinary text, pass "
                    f"disallowed_special=()."
                )
        text = _replace_lone_surrogates(text)

        ids: list[int] = []
        parts = _split_on_special_tokens(text, allowed)
        for i, part in enumerate(parts):
            if i % 2 == 1:  # the separators of the split are the special tokens
                ids.append(self.special_tokens[part])
            else:
                for piece in pretokenize(part):
                    ids.extend(self._encode_piece(piece.encode("utf-8")))
        return ids

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode ``text`` with special tokens treated as ordinary text (tiktoken's name)."""
        return self.encode(text, disallowed_special=())

    def _encode_piece_uncached(self, piece: bytes) -> tuple[int, ...]:
        """BPE one piece: apply the learnt merges, the earliest-learnt pair first.

        The result is that of the plain loop (find the pair of smallest rank, ``merge`` all
        its occurrences left to right, repeat), which chapter 2 writes; that loop rescans the
        whole piece after every merge, so a long piece (a 16 KB run of letters) took seconds.
        Here the tokens are a linked list and the candidate pairs wait in a heap ordered by
        (rank, position): each merge only looks at its two new neighbours, O(n log n) in all.
        Merging pair rank r creates id 256 + r, which only merges of higher rank use, so every
        pair of rank r is merged, left to right, before any pair of a higher rank.
        """
        ids: list[int | None] = [self.byte_ids[byte] for byte in piece]
        n = len(ids)
        if n < 2:
            return tuple(ids)
        ranks = self.merge_ranks
        following = list(range(1, n)) + [-1]  # index of the next live token, -1 at the end
        preceding = list(range(-1, n - 1))
        heap = [(ranks[pair], i) for i, pair in enumerate(zip(ids, ids[1:])) if pair in ranks]
        heapq.heapify(heap)
        while heap:
            rank, i = heapq.heappop(heap)
            j = following[i]
            if ids[i] is None or j == -1 or ranks.get((ids[i], ids[j])) != rank:
                continue  # this pair was changed by an earlier merge
            ids[i], ids[j] = N_BYTES + rank, None
            k = following[j]
            following[i] = k
            if k != -1:
                preceding[k] = i
                if (right := ranks.get((ids[i], ids[k]))) is not None:
                    heapq.heappush(heap, (right, i))
            if (h := preceding[i]) != -1 and (left := ranks.get((ids[h], ids[i]))) is not None:
                heapq.heappush(heap, (left, h))
        return tuple(token for token in ids if token is not None)  # a tuple: the cache shares it

    def _special_token_set(self, tokens: Literal["all"] | Collection[str]) -> set[str]:
        if tokens == "all":
            return set(self.special_tokens)
        if isinstance(tokens, str):
            raise TypeError(f"pass a set of special tokens, e.g. {{{tokens!r}}}, or 'all', not the string {tokens!r}")
        unknown = set(tokens) - set(self.special_tokens)
        if unknown:
            raise ValueError(
                f"{sorted(unknown)} are not special tokens of this tokenizer; "
                f"its special tokens are {sorted(self.special_tokens)}"
            )
        return set(tokens)

    # -- decoding ----------------------------------------------------------------------

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes that ``ids`` stand for, joined."""
        return b"".join(self._bytes_of(token_id) for token_id in ids)

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids``. A token can end in the middle of a multi-byte character, so
        a slice of the ids may not be valid UTF-8: such bytes show as U+FFFD (``"�"``)."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def _bytes_of(self, token_id: int) -> bytes:
        try:
            return self.vocab[token_id]
        except (KeyError, TypeError):
            raise ValueError(
                f"token id {token_id!r} is not in the vocabulary (its ids run from 0 to {self.n_vocab - 1})"
            ) from None

    # -- facts about the vocabulary ----------------------------------------------------

    @property
    def n_vocab(self) -> int:
        """One more than the largest id: the size of a model's embedding table (tiktoken's name)."""
        return max(self.vocab) + 1

    @property
    def vocab_size(self) -> int:
        return self.n_vocab

    @property
    def eot_token(self) -> int | None:
        """The id of ``<|endoftext|>``, or None when this tokenizer has no such token."""
        return self.special_tokens.get(END_OF_TEXT)

    def __repr__(self) -> str:
        return f"BPETokenizer(n_vocab={self.n_vocab}, merges={len(self.merges)}, special_tokens={self.special_tokens})"


def _split_on_special_tokens(text: str, special_tokens: Collection[str]) -> list[str]:
    """``text`` split around the special tokens: ordinary text at even indices, special
    tokens at odd ones. ``"a<|endoftext|>b"`` -> ``["a", "<|endoftext|>", "b"]``."""
    if not special_tokens:
        return [text]
    # Longest first, so that a special token that contains another one wins.
    alternatives = "|".join(re.escape(token) for token in sorted(special_tokens, key=len, reverse=True))
    return re.split(f"({alternatives})", text)


def _replace_lone_surrogates(text: str) -> str:
    """Replace each lone surrogate (not valid UTF-8) with U+FFFD, as tiktoken does.

    A surrogate *pair* written as two characters becomes the character it stands for.
    """
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


# ---------------------------------------------------------------------------------------
# 3. The tokenizer the rest of the course uses
# ---------------------------------------------------------------------------------------


def get_tokenizer(name: str = "gpt2"):
    """tiktoken's encoding ``name``: the same ids as ``BPETokenizer.gpt2()``, written in Rust.

    Reads GPT-2's files from the course cache, so it works offline. The course cache only
    holds GPT-2's files; another name needs the network the first time.
    """
    import tiktoken

    if name == "gpt2":
        from .download import use_tiktoken_cache

        use_tiktoken_cache()
    return tiktoken.get_encoding(name)
