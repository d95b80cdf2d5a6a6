"""The tokenizers of chapter 2, as a specification: exact ids from the book and from tiktoken."""

import functools
import json
import random
import time

import pytest

from reference_impl.download import read_text
from reference_impl.tokenizer import (
    BPETokenizer,
    SimpleTokenizerV1,
    SimpleTokenizerV2,
    UnknownWordError,
    build_vocab,
    bytes_to_unicode,
    get_pair_counts,
    get_tokenizer,
    merge,
    most_frequent_pair,
    pretokenize,
    simple_split,
)

# ---------------------------------------------------------------------------------------
# Fixtures: GPT-2's tokenizer, ours and tiktoken's, loaded once (both need the data folder)
# ---------------------------------------------------------------------------------------


@functools.cache
def _gpt2_bpe() -> BPETokenizer:
    return BPETokenizer.gpt2()


@pytest.fixture
def bpe(data_dir) -> BPETokenizer:
    return _gpt2_bpe()


@pytest.fixture
def tiktoken_gpt2(data_dir):
    return get_tokenizer("gpt2")


@pytest.fixture
def sms_texts(data_dir) -> list[str]:
    lines = read_text("SMSSpamCollection").splitlines()
    return [line.split("\t", 1)[1] for line in lines]


@pytest.fixture
def instruction_texts(data_dir) -> list[str]:
    examples = json.loads(read_text("instruction-data.json"))
    return [example["instruction"] + example["input"] + example["output"] for example in examples]


# ---------------------------------------------------------------------------------------
# Simple tokenizers (the book's section 2.2-2.4)
# ---------------------------------------------------------------------------------------

BOOK_SENTENCE = '"It\'s the last he painted, you know," Mrs. Gisburn said with pardonable pride.'


def test_simple_split_keeps_punctuation_and_drops_whitespace():
    assert simple_split("Hello, world. Is this-- a test?") == [
        "Hello",
        ",",
        "world",
        ".",
        "Is",
        "this",
        "--",
        "a",
        "test",
        "?",
    ]


def test_the_verdict_has_4690_tokens_and_1130_distinct_ones(verdict_text):
    assert len(verdict_text) == 20479
    assert len(simple_split(verdict_text)) == 4690
    assert len(set(simple_split(verdict_text))) == 1130


def test_build_vocab_sorts_the_tokens_and_appends_the_special_tokens(verdict_text):
    vocab = build_vocab(verdict_text)
    assert len(vocab) == 1132
    assert list(vocab.items())[:8] == [
        ("!", 0),
        ('"', 1),
        ("'", 2),
        ("(", 3),
        (")", 4),
        (",", 5),
        ("--", 6),
        (".", 7),
    ]
    assert list(vocab.items())[-5:] == [
        ("younger", 1127),
        ("your", 1128),
        ("yourself", 1129),
        ("<|endoftext|>", 1130),
        ("<|unk|>", 1131),
    ]
    assert len(build_vocab(verdict_text, special_tokens=())) == 1130


def test_v1_encodes_the_books_sentence(verdict_text):
    tokenizer = SimpleTokenizerV1(build_vocab(verdict_text))
    ids = tokenizer.encode(BOOK_SENTENCE)
    assert ids == [1, 56, 2, 850, 988, 602, 533, 746, 5, 1126, 596, 5, 1, 67, 7, 38, 851, 1108, 754, 793, 7]
    # The round trip loses the original spacing around quotes and apostrophes, as in the book.
    assert tokenizer.decode(ids) == '" It\' s the last he painted, you know," Mrs. Gisburn said with pardonable pride.'
    assert tokenizer.encode(tokenizer.decode(ids)) == ids


def test_v1_names_an_unknown_word_and_suggests_v2(verdict_text):
    tokenizer = SimpleTokenizerV1(build_vocab(verdict_text))
    with pytest.raises(UnknownWordError, match=r"'Hello'.*SimpleTokenizerV2") as caught:
        tokenizer.encode("Hello, do you like tea?")
    assert caught.value.word == "Hello"
    # Both what the book's dictionary lookup raises and a ValueError.
    assert isinstance(caught.value, KeyError) and isinstance(caught.value, ValueError)


def test_v1_decode_rejects_an_unknown_id(verdict_text):
    tokenizer = SimpleTokenizerV1(build_vocab(verdict_text))
    with pytest.raises(ValueError, match="1132 is not in the vocabulary"):
        tokenizer.decode([1132])


def test_v2_maps_unknown_words_to_unk_and_keeps_endoftext(verdict_text):
    tokenizer = SimpleTokenizerV2(build_vocab(verdict_text))
    text = " <|endoftext|> ".join(["Hello, do you like tea?", "In the sunlit terraces of the palace."])
    ids = tokenizer.encode(text)
    assert ids == [1131, 5, 355, 1126, 628, 975, 10, 1130, 55, 988, 956, 984, 722, 988, 1131, 7]
    assert tokenizer.decode(ids) == "<|unk|>, do you like tea? <|endoftext|> In the sunlit terraces of the <|unk|>."


def test_v2_round_trips_text_made_of_known_words(verdict_text):
    tokenizer = SimpleTokenizerV2(build_vocab(verdict_text))
    text = "I had always thought Jack Gisburn rather a cheap genius."
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_v2_needs_its_special_tokens_in_the_vocabulary():
    with pytest.raises(ValueError, match=r"\['<\|unk\|>'\]"):
        SimpleTokenizerV2({"a": 0, "<|endoftext|>": 1})
    with pytest.raises(ValueError, match="<|endoftext|>"):
        SimpleTokenizerV2({"a": 0})


# ---------------------------------------------------------------------------------------
# The BPE algorithm, one step at a time
# ---------------------------------------------------------------------------------------


def test_get_pair_counts_counts_neighbouring_ids():
    assert get_pair_counts([1, 2, 3, 1, 2]) == {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    assert get_pair_counts([7]) == {}
    assert get_pair_counts([]) == {}
    # Overlapping pairs all count: "aaa" holds (a, a) twice.
    assert get_pair_counts([97, 97, 97]) == {(97, 97): 2}
    # Adding to a running count, a word that occurs 3 times.
    counts = get_pair_counts([1, 2])
    assert get_pair_counts([1, 2, 5], counts, weight=3) == {(1, 2): 4, (2, 5): 3}


def test_merge_replaces_each_occurrence_left_to_right():
    assert merge([1, 2, 3, 1, 2], (1, 2), 256) == [256, 3, 256]
    assert merge([5, 5, 5], (5, 5), 9) == [9, 5]  # occurrences do not overlap
    assert merge([5, 5, 5, 5], (5, 5), 9) == [9, 9]
    assert merge([1, 2], (2, 1), 256) == [1, 2]
    assert merge([], (1, 2), 256) == []


def test_most_frequent_pair_breaks_ties_towards_the_smallest_pair():
    assert most_frequent_pair({(3, 4): 1, (1, 2): 5, (0, 9): 2}) == (1, 2)
    assert most_frequent_pair({(256, 97): 2, (97, 98): 2, (98, 99): 1}) == (97, 98)
    assert most_frequent_pair({(5, 9): 1, (5, 2): 1}) == (5, 2)


def test_one_merge_step_by_hand():
    # Wikipedia's example of byte-pair encoding: "aaabdaaabac".
    ids = list(b"aaabdaaabac")
    assert ids == [97, 97, 97, 98, 100, 97, 97, 97, 98, 97, 99]
    counts = get_pair_counts(ids)
    assert counts == {(97, 97): 4, (97, 98): 2, (98, 100): 1, (100, 97): 1, (98, 97): 1, (97, 99): 1}
    pair = most_frequent_pair(counts)
    assert pair == (97, 97)
    assert merge(ids, pair, 256) == [256, 97, 98, 100, 256, 97, 98, 97, 99]


def test_bytes_to_unicode_gives_each_byte_a_printable_character():
    table = bytes_to_unicode()
    assert len(table) == 256 and len(set(table.values())) == 256
    assert all(char.isprintable() and not char.isspace() for char in table.values())
    assert table[ord("a")] == "a" and table[ord("!")] == "!"
    assert table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ"


def test_pretokenize_uses_gpt2s_regex():
    assert pretokenize("Hello world!") == ["Hello", " world", "!"]
    assert pretokenize("I'll pay 12345 dollars") == ["I", "'ll", " pay", " 12345", " dollars"]
    # A run of spaces leaves its last space to the word that follows.
    assert pretokenize("a   b\n\nc") == ["a", "  ", " b", "\n", "\n", "c"]
    assert pretokenize("a\n\n  \n") == ["a", "\n\n  \n"]  # trailing whitespace stays whole
    assert pretokenize("DON'T") == ["DON", "'", "T"]  # contractions are lower-case only


# ---------------------------------------------------------------------------------------
# Training a BPE tokenizer
# ---------------------------------------------------------------------------------------


def test_train_learns_wikipedias_merges():
    tokenizer = BPETokenizer.train("aaabdaaabac", vocab_size=259, special_tokens=())
    # aa -> 256; then (256, 97) and (97, 98) both occur twice and the smaller pair wins;
    # then "aa" + "ab" -> 258. As on Wikipedia: Z = aa, Y = ab, X = ZY.
    assert tokenizer.merges == [(97, 97), (97, 98), (256, 257)]
    assert tokenizer.vocab[256] == b"aa" and tokenizer.vocab[257] == b"ab" and tokenizer.vocab[258] == b"aaab"
    assert tokenizer.encode("aaabdaaabac") == [258, 100, 258, 97, 99]
    assert tokenizer.n_vocab == tokenizer.vocab_size == 259
    assert tokenizer.eot_token is None


def test_train_continues_with_ties_broken_by_the_smallest_pair():
    tokenizer = BPETokenizer.train("aaabdaaabac", vocab_size=262, special_tokens=())
    # After [258, 100, 258, 97, 99] every pair occurs once: the smallest pair wins each time.
    assert tokenizer.merges == [(97, 97), (97, 98), (256, 257), (97, 99), (100, 258), (258, 260)]
    assert tokenizer.encode("aaabdaaabac") == [261, 259]


def test_train_puts_special_tokens_after_the_merges():
    tokenizer = BPETokenizer.train("aaabdaaabac", vocab_size=262)
    assert len(tokenizer.merges) == 5
    assert tokenizer.special_tokens == {"<|endoftext|>": 261}
    assert tokenizer.eot_token == 261
    assert tokenizer.n_vocab == 262
    assert tokenizer.encode("aaab<|endoftext|>ac", allowed_special="all") == [258, 261, 259]
    assert tokenizer.decode([258, 261, 259]) == "aaab<|endoftext|>ac"


def test_train_does_not_learn_the_characters_of_special_tokens():
    tokenizer = BPETokenizer.train("<|endoftext|>" * 50 + "ab", vocab_size=300)
    # Only "ab" is left to learn from; training stops when no pair is left.
    assert tokenizer.merges == [(97, 98)]
    assert tokenizer.special_tokens == {"<|endoftext|>": 257}
    assert tokenizer.n_vocab == 258


def test_train_rejects_a_vocab_size_too_small_for_the_bytes_and_special_tokens():
    with pytest.raises(ValueError, match="at least 256.*= 257"):
        BPETokenizer.train("abc", vocab_size=256)
    with pytest.raises(ValueError, match="= 258"):
        BPETokenizer.train("abc", vocab_size=257, special_tokens=("<|endoftext|>", "<|pad|>"))
    assert BPETokenizer.train("abc", vocab_size=256, special_tokens=()).merges == []


def test_train_ties_do_not_depend_on_the_order_of_the_text():
    first = BPETokenizer.train("ab,cd", vocab_size=257, special_tokens=())
    second = BPETokenizer.train("cd,ab", vocab_size=257, special_tokens=())
    assert first.merges == second.merges == [(97, 98)]


def test_a_tokenizer_can_be_built_from_merges_and_checks_them():
    tokenizer = BPETokenizer([(104, 105)], {"<|endoftext|>": 257})  # "hi" -> 256
    assert tokenizer.encode("hi hi<|endoftext|>", allowed_special="all") == [256, 32, 256, 257]
    with pytest.raises(ValueError, match="an id must exist before a merge uses it"):
        BPETokenizer([(104, 300)])
    with pytest.raises(ValueError, match="already taken"):
        BPETokenizer([(104, 105)], {"<|endoftext|>": 256})
    with pytest.raises(ValueError, match="byte_ids"):
        BPETokenizer([], byte_ids=[0] * 256)


def test_train_on_the_verdict_is_deterministic_and_round_trips(verdict_text):
    first = BPETokenizer.train(verdict_text, vocab_size=280)
    second = BPETokenizer.train(verdict_text, vocab_size=280)
    assert first.merges == second.merges
    assert len(first.merges) == 280 - 256 - 1
    # The most frequent pairs of English text, with GPT-2's leading space.
    assert [first.vocab[256 + i] for i in range(5)] == [b" t", b"he", b" a", b"in", b" h"]
    ids = first.encode(verdict_text)
    assert len(ids) < len(verdict_text.encode("utf-8"))
    assert first.decode(ids) == verdict_text
    # Unseen text, even characters the story never uses, falls back to bytes.
    unseen = "The café's 日本語 emoji 👩‍👩‍👧 costs 12345 €!\n\tDONE"
    assert first.decode(first.encode(unseen)) == unseen


# ---------------------------------------------------------------------------------------
# GPT-2's tokenizer from its original files: identical to tiktoken
# ---------------------------------------------------------------------------------------

HELLO_TEXT = "Hello, do you like tea? <|endoftext|> In the sunlit terraces"
HELLO_IDS = [15496, 11, 466, 345, 588, 8887, 30, 220, 50256, 554, 262, 4252, 18250, 8812, 2114]

AWKWARD_STRINGS = [
    "",
    " ",
    "    ",
    "a    b",
    "  leading and trailing  ",
    "\t\ttabs\tand\t spaces \t",
    "\n",
    "line one\nline two\n\n\nline five\r\nwindows\r\n",
    " \n \n ",
    "12345678",
    "3.14159 and 1,000,000 and 2024-01-01",
    "I'll've",
    "DON'T won't can't shouldn't've y'all",
    "'s 'S 'll 'LL",
    "Akwirw ier",
    "😀",
    "👩‍👩‍👧‍👦 family (ZWJ sequence)",
    "flags 🇫🇷🇯🇵🇺🇸 and 🏳️‍🌈",
    "thumbs 👍🏽 skin tone",
    "café naïve résumé Ångström",
    "cafe\u0301 (combining accent)",
    "日本語のテキスト",
    "中文文本，标点。",
    "한국어 텍스트",
    "مرحبا بالعالم",
    "שלום עולם",
    "Привет, мир!",
    "Γειά σου Κόσμε",
    "नमस्ते दुनिया",
    "mixed: Hello 世界 مرحبا 🌍 123!",
    "\x00\x01\x1c\x1f control \x7f",
    "non\u00a0breaking\u2009thin\u3000ideographic\u2028separator",
    "zero\u200bwidth\ufeffbom",
    "private use \ue000 and astral 𝕏 𝔸 \U0010ffff",
    "Garay \U00010d50\U00010d51's (Unicode 16.0)",
    "<|endoftext",
    "<|endoftext|",
    "a" * 1000,
    "!!!???...---",
    "def f(x):\n    return x ** 2  # code\n",
]


def test_gpt2_loads_50000_merges_and_one_special_token(bpe):
    assert len(bpe.merges) == 50000
    assert bpe.merges[0] == (220, 83)  # the first line of vocab.bpe: "Ġ t"
    assert bpe.vocab[256] == b" t"
    assert bpe.n_vocab == bpe.vocab_size == 50257
    assert bpe.special_tokens == {"<|endoftext|>": 50256}
    assert bpe.eot_token == 50256


def test_gpt2_encodes_the_books_example(bpe, tiktoken_gpt2):
    assert bpe.encode(HELLO_TEXT, allowed_special={"<|endoftext|>"}) == HELLO_IDS
    assert tiktoken_gpt2.encode(HELLO_TEXT, allowed_special={"<|endoftext|>"}) == HELLO_IDS
    assert bpe.decode(HELLO_IDS) == HELLO_TEXT
    # An unknown word is split into known pieces, not replaced by <|unk|>.
    assert bpe.encode("Akwirw ier") == [33901, 86, 343, 86, 220, 959]


def test_gpt2_matches_tiktoken_on_the_whole_story(bpe, tiktoken_gpt2, verdict_text):
    ids = bpe.encode(verdict_text)
    assert len(ids) == 5145
    assert ids == tiktoken_gpt2.encode(verdict_text)
    assert bpe.decode(ids) == verdict_text


def test_gpt2_matches_tiktoken_on_every_sms_and_is_fast(bpe, tiktoken_gpt2, sms_texts):
    assert len(sms_texts) == 5574
    # A new tokenizer, so that its word cache starts empty and the time is honest.
    fresh = BPETokenizer(bpe.merges, bpe.special_tokens, bpe.byte_ids)
    start = time.perf_counter()
    all_ids = [fresh.encode(text) for text in sms_texts]
    # Measured at about 0.5 s of CPU. The bound only catches a lost cache or a quadratic loop.
    assert time.perf_counter() - start < 10
    for text, ids in zip(sms_texts, all_ids):
        assert ids == tiktoken_gpt2.encode(text), text
        assert fresh.decode(ids) == text


def test_gpt2_matches_tiktoken_on_every_instruction_example(bpe, tiktoken_gpt2, instruction_texts):
    assert len(instruction_texts) == 1100
    for text in instruction_texts:
        ids = bpe.encode(text)
        assert ids == tiktoken_gpt2.encode(text), text
        assert bpe.decode(ids) == text


@pytest.mark.parametrize("text", AWKWARD_STRINGS)
def test_gpt2_matches_tiktoken_on_awkward_strings(bpe, tiktoken_gpt2, text):
    ids = bpe.encode(text)
    assert ids == tiktoken_gpt2.encode(text)
    assert bpe.decode(ids) == text


def test_gpt2_exact_ids_of_a_few_awkward_strings(bpe):
    assert bpe.encode("12345678") == [10163, 2231, 30924]
    assert bpe.encode("I'll've") == [40, 1183, 1053]
    assert bpe.encode("DON'T") == [41173, 6, 51]
    assert bpe.encode("😀") == [47249, 222]
    assert bpe.encode("a    b") == [64, 220, 220, 220, 275]


# Blocks of code points to draw random characters from: ASCII (twice as likely), controls,
# Latin, Greek, Cyrillic, Hebrew/Arabic, Devanagari, kana, CJK, Hangul, emoji, punctuation
# and spaces, private use, mathematical letters, CJK Extension B, tags, the private-use
# plane. Surrogates are left out (not valid UTF-8), and so are the blocks that Unicode 17.0
# filled: tiktoken's regex engine does not know those letters yet (see GPT2_SPLIT_PATTERN).
_CODE_POINT_RANGES = [
    (0x20, 0x7E),
    (0x20, 0x7E),
    (0x00, 0x1F),
    (0x7F, 0xFF),
    (0x100, 0x24F),
    (0x370, 0x3FF),
    (0x400, 0x4FF),
    (0x590, 0x6FF),
    (0x900, 0x97F),
    (0x3040, 0x30FF),
    (0x4E00, 0x9FFF),
    (0xAC00, 0xD7A3),
    (0x1F300, 0x1FAFF),
    (0x2000, 0x206F),
    (0xE000, 0xF8FF),
    (0x1D400, 0x1D6A5),
    (0x20000, 0x2A6DF),
    (0xE0000, 0xE007F),
    (0xF0000, 0xFFFFD),
]
_ASCII_PIECES = [" ", "  ", "\n", "\t", "'s", "'ll", "'", "the", "The", "0", "42", ".", "!?"]


def _random_strings(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    strings = []
    for _ in range(count):
        chars = []
        for _ in range(rng.randint(0, 30)):
            if rng.random() < 0.3:
                chars.append(rng.choice(_ASCII_PIECES))
            else:
                low, high = rng.choice(_CODE_POINT_RANGES)
                chars.append(chr(rng.randint(low, high)))
        strings.append("".join(chars))
    return strings


def test_gpt2_matches_tiktoken_on_random_unicode_strings(bpe, tiktoken_gpt2):
    for text in _random_strings(400, seed=0):
        ids = bpe.encode(text)
        assert ids == tiktoken_gpt2.encode(text), ascii(text)
        assert bpe.decode(ids) == text, ascii(text)


def test_gpt2_round_trips_letters_newer_than_tiktokens_unicode_tables(bpe):
    # Unicode 17.0 letters (CJK Extension J, Tai Yo): the `regex` module knows them as
    # letters and tiktoken's engine does not yet, so only the round trip is specified.
    text = "\U000323b0\U000323b1's \U0001e6c0\U0001e6c1'll"
    assert bpe.decode(bpe.encode(text)) == text


def test_gpt2_matches_tiktoken_on_random_runs_of_gpt2_tokens(bpe, tiktoken_gpt2):
    # Text made of GPT-2's own tokens puts long merges next to each other.
    rng = random.Random(1)
    for _ in range(300):
        token_bytes = b"".join(bpe.vocab[rng.randrange(50256)] for _ in range(rng.randint(1, 8)))
        text = token_bytes.decode("utf-8", errors="ignore")
        ids = bpe.encode(text)
        assert ids == tiktoken_gpt2.encode(text), ascii(text)
        assert bpe.decode(ids) == text, ascii(text)


def test_gpt2_replaces_lone_surrogates_like_tiktoken(bpe, tiktoken_gpt2):
    text = "a\ud800b"  # not valid UTF-8: cannot round-trip
    assert bpe.encode(text) == tiktoken_gpt2.encode(text) == [64, 4210, 65]
    assert bpe.decode(bpe.encode(text)) == "a\ufffdb"
    # A surrogate pair written as two characters is the character it stands for.
    assert bpe.encode("\ud83d\ude00") == bpe.encode("😀")


# ---------------------------------------------------------------------------------------
# Special tokens, decoding errors
# ---------------------------------------------------------------------------------------


def test_a_special_token_in_the_text_must_be_allowed(bpe, tiktoken_gpt2):
    with pytest.raises(ValueError, match=r"'<\|endoftext\|>'.*allowed_special"):
        bpe.encode(HELLO_TEXT)
    with pytest.raises(ValueError):  # tiktoken refuses too
        tiktoken_gpt2.encode(HELLO_TEXT)
    assert bpe.encode(HELLO_TEXT, allowed_special="all") == HELLO_IDS
    assert bpe.encode("<|endoftext|>", allowed_special="all") == [50256]


def test_special_token_text_can_be_encoded_as_ordinary_text(bpe, tiktoken_gpt2):
    ordinary = [27, 91, 437, 1659, 5239, 91, 29]  # "<", "|", "end", "of", "text", "|", ">"
    assert bpe.encode("<|endoftext|>", disallowed_special=()) == ordinary
    assert bpe.encode_ordinary("<|endoftext|>") == ordinary
    assert tiktoken_gpt2.encode("<|endoftext|>", disallowed_special=()) == ordinary
    assert bpe.decode(ordinary) == "<|endoftext|>"


def test_allowed_special_must_name_special_tokens(bpe):
    with pytest.raises(ValueError, match="not special tokens"):
        bpe.encode("hi", allowed_special={"<|endoftxt|>"})
    with pytest.raises(TypeError, match="not the string"):
        bpe.encode("hi", allowed_special="<|endoftext|>")


def test_special_tokens_split_the_text_around_them(bpe, tiktoken_gpt2):
    text = "a<|endoftext|><|endoftext|> b<|endoftext|>"
    assert bpe.encode(text, allowed_special="all") == tiktoken_gpt2.encode(text, allowed_special="all")
    assert bpe.encode(text, allowed_special="all") == [64, 50256, 50256, 275, 50256]


def test_decode_rejects_an_unknown_id(bpe):
    with pytest.raises(ValueError, match="50257 is not in the vocabulary.*0 to 50256"):
        bpe.decode([15496, 50257])
    with pytest.raises(ValueError, match="-1 is not in the vocabulary"):
        bpe.decode([-1])


def test_decode_bytes_and_partial_characters(bpe):
    ids = bpe.encode("😀")
    assert bpe.decode_bytes(ids) == "😀".encode()
    assert bpe.decode_bytes([ids[0]]) == b"\xf0\x9f\x98"
    assert bpe.decode([ids[0]]) == "\ufffd"  # half a character cannot be shown
    assert bpe.decode([]) == ""


def test_get_tokenizer_is_tiktokens_gpt2(tiktoken_gpt2):
    assert tiktoken_gpt2.name == "gpt2"
    assert tiktoken_gpt2.n_vocab == 50257
    assert tiktoken_gpt2.encode(HELLO_TEXT, allowed_special={"<|endoftext|>"}) == HELLO_IDS


# --- long pieces: the heap-based merge gives the plain loop's ids ---------------------------


def plain_loop_encode_piece(tokenizer: BPETokenizer, piece: bytes) -> tuple[int, ...]:
    """Chapter 2's loop: merge every occurrence of the smallest-rank pair, rescan, repeat."""
    ids = [tokenizer.byte_ids[byte] for byte in piece]
    while len(ids) >= 2:
        pair = min(set(zip(ids, ids[1:])), key=lambda p: tokenizer.merge_ranks.get(p, float("inf")))
        if pair not in tokenizer.merge_ranks:
            break
        ids = merge(ids, pair, 256 + tokenizer.merge_ranks[pair])
    return tuple(ids)


def test_heap_merging_gives_the_plain_loops_ids_on_random_and_repetitive_pieces(bpe):
    rng = random.Random(0)
    pieces = [b"a" * n for n in (1, 2, 3, 4, 5, 17, 64)] + [b"ab" * 40, b"1234567890" * 20, b" " * 33]
    alphabet = b"aeinorst lhdcumwfgypbvk.,'-0123456789"
    pieces += [bytes(rng.choice(alphabet) for _ in range(rng.randint(2, 300))) for _ in range(200)]
    pieces += ["Ünïcödé façade naïve 日本語の文章 🤖🚀".encode() * 3]
    for piece in pieces:
        assert bpe._encode_piece_uncached(piece) == plain_loop_encode_piece(bpe, piece), piece[:40]


def test_a_long_word_is_encoded_like_tiktoken(bpe, tiktoken_gpt2):
    rng = random.Random(1)
    word = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(8000))
    assert bpe.encode(word) == tiktoken_gpt2.encode(word)
    digits = "".join(rng.choice("0123456789") for _ in range(20000))
    assert bpe.encode(digits) == tiktoken_gpt2.encode(digits)
