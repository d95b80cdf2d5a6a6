"""Chapter 2, "Working with text data": writes book/ch02_working_with_text.ipynb.

Run from the repository root: ``.venv/bin/python book/_src/make_ch02.py`` (see nbbuild.py).
"""

from nbbuild import code, main, md

CELLS = [
    md(r"""
    # Chapter 2: Working with text data

    A language model never sees letters. Before it can read a single word of its training
    text, that text has to become a sequence of numbers, and then a sequence of vectors.
    This chapter builds that pipeline, which sits in front of every GPT:

    1. split the text into **tokens** (words, pieces of words, punctuation);
    2. give each token an integer **token id**;
    3. cut the long sequence of ids into training examples: an input, and the same input
       shifted by one token as the target to predict;
    4. turn each id into a vector, an **embedding**, and add a vector for its position.

    We start with a tokenizer that fits in ten lines, see where it fails, and end with the
    byte-pair encoding tokenizer that GPT-2 uses, written from scratch.
    """),
    code(r"""
    import re
    from collections import Counter

    import matplotlib.pyplot as plt
    import torch
    import torch.nn as nn
    from torch.utils.data import DataLoader, Dataset

    from reference_impl.download import read_text

    %matplotlib inline
    torch.set_printoptions(precision=4, sci_mode=False)
    """),
    md(r"""
    ## 2.1 Why text must become numbers

    A neural network is a chain of matrix multiplications and simple functions. It computes
    with numbers, and it learns by nudging numbers along gradients. Characters and words are
    neither, so the first job is to represent each piece of text as a vector of numbers: an
    **embedding**.

    A good embedding is more than an arbitrary code. Because the vectors are *learned*,
    tokens used in similar ways end up with similar vectors, and the rest of the network can
    exploit that. Earlier systems such as Word2Vec trained embeddings as a separate model;
    GPT learns them together with everything else, as the first layer of the network. The
    sizes grow with the model: GPT-2 small uses 768 numbers per token, the largest GPT-3
    12,288.

    Before there can be vectors, there must be tokens.

    ## 2.2 Tokenizing text

    Our training text is "The Verdict", a short story by Edith Wharton that is in the public
    domain. Small as it is, it is enough to train a small model on later in the course.
    """),
    code(r"""
    raw_text = read_text("the-verdict.txt")
    print("Total number of characters:", len(raw_text))
    print(raw_text[:99])
    """),
    md(r"""
    A first idea: split the text at whitespace. Python's `re.split` does that, and a
    *capture group* (the parentheses) keeps the separators in the result.
    """),
    code(r"""
    text = "It was his last picture, wasn't it? Yes--quite."
    print(re.split(r"(\s)", text))
    """),
    md(r"""
    Punctuation stays glued to the words: `picture,` and `picture` would be two different
    tokens, and the model would have to learn the same word twice. So we split at
    punctuation too, and at the double dash the story uses a lot:
    """),
    code(r"""
    result = re.split(r'([,.:;?_!"()\']|--|\s)', text)
    print(result)
    """),
    md(r"""
    The spaces are now tokens of their own, as are the empty strings between two adjacent
    separators. We drop both. Dropping spaces loses a little information (we cannot tell
    `a - b` from `a-b` any more); for plain prose that is acceptable, and the tokenizer we
    end with keeps them.
    """),
    code(r"""
    result = [item.strip() for item in result if item.strip()]
    print(result)
    """),
    md(r"""
    The same on the whole story:
    """),
    code(r"""
    preprocessed = re.split(r'([,.:;?_!"()\']|--|\s)', raw_text)
    preprocessed = [item.strip() for item in preprocessed if item.strip()]
    print("Number of tokens:", len(preprocessed))
    print(preprocessed[:30])
    """),
    md(r"""
    ## 2.3 From tokens to token ids

    The **vocabulary** lists every distinct token once and gives it a number. Sorting the
    tokens makes the numbering reproducible.
    """),
    code(r"""
    all_words = sorted(set(preprocessed))
    vocab_size = len(all_words)
    print("Vocabulary size:", vocab_size)

    vocab = {token: integer for integer, token in enumerate(all_words)}
    for token, integer in list(vocab.items())[:12]:
        print(f"{integer:4d} {token!r}")
    """),
    md(r"""
    Punctuation sorts before letters, and capitals before lower case. To turn ids back into
    text we need the reverse mapping as well.

    ## 2.4 A first tokenizer

    A tokenizer bundles both directions: `encode` turns text into ids, `decode` ids into
    text. Decoding joins tokens with spaces, then removes the spaces that should not be in
    front of punctuation.
    """),
    code(r"""
    class SimpleTokenizerV1:
        def __init__(self, vocab):
            self.str_to_int = vocab
            self.int_to_str = {i: s for s, i in vocab.items()}

        def encode(self, text):
            preprocessed = re.split(r'([,.:;?_!"()\']|--|\s)', text)
            preprocessed = [item.strip() for item in preprocessed if item.strip()]
            return [self.str_to_int[s] for s in preprocessed]

        def decode(self, ids):
            text = " ".join(self.int_to_str[i] for i in ids)
            return re.sub(r'\s+([,.?!"()\'])', r"\1", text)  # no space before punctuation
    """),
    code(r"""
    tokenizer = SimpleTokenizerV1(vocab)
    text = "I had always thought Jack Gisburn rather a cheap genius--though a good fellow enough."
    ids = tokenizer.encode(text)
    print(ids)
    print(tokenizer.decode(ids))
    """),
    md(r"""
    The round trip works (up to the spacing around `--`, which decoding does not restore).
    But this tokenizer knows only the 1,130 tokens of one short story. Any other word
    breaks it:
    """),
    code(r"""
    try:
        tokenizer.encode("Hello, do you like tea?")
    except KeyError as error:
        print("KeyError:", error)
    """),
    md(r"""
    "Hello" never occurs in the story. A bigger training text would only make such failures
    rarer, never impossible: new names, typos and new words appear all the time.

    ## 2.5 Special tokens

    Two additions fix this tokenizer and prepare it for training on many documents:

    - `<|unk|>` stands for any word that is not in the vocabulary;
    - `<|endoftext|>` is put between two independent texts when they are joined into one
      training stream, so that the model can learn where one text ends and an unrelated one
      begins.

    Other tokenizers use other markers (`[BOS]` for the beginning of a sequence, `[PAD]` to
    fill up short texts in a batch...). GPT-2 gets away with `<|endoftext|>` alone, and,
    as we will see, needs no `<|unk|>`.
    """),
    code(r"""
    all_tokens = sorted(set(preprocessed))
    all_tokens.extend(["<|endoftext|>", "<|unk|>"])
    vocab = {token: integer for integer, token in enumerate(all_tokens)}
    print("Vocabulary size:", len(vocab))
    for token, integer in list(vocab.items())[-5:]:
        print(f"{integer:4d} {token!r}")
    """),
    code(r"""
    class SimpleTokenizerV2:
        def __init__(self, vocab):
            self.str_to_int = vocab
            self.int_to_str = {i: s for s, i in vocab.items()}

        def encode(self, text):
            preprocessed = re.split(r'([,.:;?_!"()\']|--|\s)', text)
            preprocessed = [item.strip() for item in preprocessed if item.strip()]
            # The only change from V1: a word missing from the vocabulary becomes <|unk|>.
            preprocessed = [item if item in self.str_to_int else "<|unk|>" for item in preprocessed]
            return [self.str_to_int[s] for s in preprocessed]

        def decode(self, ids):
            text = " ".join(self.int_to_str[i] for i in ids)
            return re.sub(r'\s+([,.?!"()\'])', r"\1", text)
    """),
    code(r"""
    text1 = "Hello, do you like tea?"
    text2 = "In the sunlit terraces of the palace."
    text = " <|endoftext|> ".join((text1, text2))
    print(text)

    tokenizer = SimpleTokenizerV2(vocab)
    ids = tokenizer.encode(text)
    print(ids)
    print(tokenizer.decode(ids))
    """),
    md(r"""
    No more errors, but "Hello", "tea", "sunlit", "terraces" and "palace" all became the same
    `<|unk|>`: the model cannot tell them apart, and decoding cannot give them back.

    ## 2.6 Byte-pair encoding

    GPT-2 solves the unknown-word problem at the root. Its tokenizer, **byte-pair encoding**
    (BPE), starts from the 256 possible *bytes*. Any text, in any language, with emoji or
    typos, is a sequence of bytes in UTF-8, so any text can be encoded. Then, to avoid
    sequences that are four times longer than with words, BPE *learns* to merge frequent
    neighbours into bigger tokens: common words become a single token, rare words are
    spelled out in a few pieces, and nothing is ever unknown.

    ### 2.6.1 How BPE learns its merges

    We build the algorithm in a few small functions and watch it work on a tiny text. First,
    the text as bytes:
    """),
    code(r"""
    tiny_text = "paint painter painted painting; faint fainter fainted"
    ids = list(tiny_text.encode("utf-8"))
    print(len(ids), "bytes:", ids[:20], "...")
    """),
    md(r"""
    Each step of training counts how often each pair of neighbouring ids occurs...
    """),
    code(r"""
    def get_pair_counts(ids, counts=None, weight=1):
        # counts: add to an existing count; weight: count a word that occurs `weight` times.
        counts = Counter() if counts is None else counts
        for pair in zip(ids, ids[1:]):
            counts[pair] += weight
        return counts

    counts = get_pair_counts(ids)
    for (a, b), n in counts.most_common(5):
        print(f"{(a, b)} = {bytes([a, b])!r:6} occurs {n} times")
    """),
    md(r"""
    ...and replaces every occurrence of the most frequent pair by a new id. The first new
    id is 256, the next free number after the bytes.
    """),
    code(r"""
    def merge(ids, pair, new_id):
        merged = []
        i = 0
        while i < len(ids):
            if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
                merged.append(new_id)  # the pair becomes one token
                i += 2
            else:
                merged.append(ids[i])
                i += 1
        return merged

    print(merge([5, 6, 6, 7, 5, 6], pair=(5, 6), new_id=99))
    """),
    md(r"""
    When two pairs are equally frequent we need a rule to pick one, or training could give
    different results depending on the order the pairs were counted in. We take the pair
    with the smallest ids.
    """),
    code(r"""
    def most_frequent_pair(counts):
        # Largest count first; on a tie, the smallest pair (compare left ids, then right).
        return max(counts, key=lambda pair: (counts[pair], -pair[0], -pair[1]))
    """),
    md(r"""
    Six merge steps on the tiny text. `token_bytes` records what each id stands for, so we
    can print the new tokens:
    """),
    code(r"""
    token_bytes = {i: bytes([i]) for i in range(256)}
    ids = list(tiny_text.encode("utf-8"))
    for step in range(6):
        counts = get_pair_counts(ids)
        pair = most_frequent_pair(counts)
        new_id = 256 + step
        ids = merge(ids, pair, new_id)
        token_bytes[new_id] = token_bytes[pair[0]] + token_bytes[pair[1]]
        print(f"merge {pair} -> {new_id} {token_bytes[new_id]!r:10} ({counts[pair]} times), now {len(ids)} tokens")
    """),
    md(r"""
    Each merge builds on earlier ones: `in`, then `ain`, `aint`, `paint`. The text shrank
    from 53 to 21 tokens. A real tokenizer repeats this tens of thousands of times on a large
    corpus: GPT-2 learnt 50,000 merges.

    ### 2.6.2 Pre-tokenisation

    Counting pairs over the raw text lets merges cross word boundaries: with enough data,
    BPE would learn tokens like `dog.` or `g. T`, and waste its vocabulary on combinations
    of words with punctuation. GPT-2 first splits the text into pieces with a regular
    expression and runs BPE inside each piece only. A piece is a contraction (`'s`, `'t`...),
    a run of letters, a run of digits or a run of other symbols, each with at most one
    leading space, or whitespace. The pattern needs the third-party `regex` module, which
    knows Unicode classes such as `\p{L}` (any letter, in any script).
    """),
    code(r'''
    import regex

    GPT2_SPLIT_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

    def pretokenize(text):
        return regex.findall(GPT2_SPLIT_PATTERN, text)

    print(pretokenize("It's 1908; the painter--Jack Gisburn--stopped.  Why?"))
    '''),
    md(r"""
    The leading space stays with the word (`' painter'`): "painter" at the start of a text
    and " painter" in the middle are different tokens.

    Training on pieces has a welcome side effect on speed: the story has thousands of
    pieces, but far fewer *distinct* ones. We count each distinct piece once, with a weight,
    instead of scanning the whole text at every step.
    """),
    code(r"""
    def train_bpe(text, num_merges):
        # The distinct pieces of the text, each with its number of occurrences.
        piece_counts = Counter(piece.encode("utf-8") for piece in pretokenize(text))
        words = [(list(piece), count) for piece, count in piece_counts.items()]
        merges = []
        for step in range(num_merges):
            counts = Counter()
            for ids, count in words:
                get_pair_counts(ids, counts, weight=count)
            if not counts:  # every piece is a single token: nothing left to merge
                break
            pair = most_frequent_pair(counts)
            words = [(merge(ids, pair, 256 + step), count) for ids, count in words]
            merges.append(pair)
        return merges
    """),
    md(r"""
    100 merges learnt from the story:
    """),
    code(r"""
    story_merges = train_bpe(raw_text, num_merges=100)

    def bytes_of_tokens(merges):
        # What each id stands for: the bytes, then each merge's two parts joined.
        vocab = {i: bytes([i]) for i in range(256)}
        for step, (left, right) in enumerate(merges):
            vocab[256 + step] = vocab[left] + vocab[right]
        return vocab

    story_vocab = bytes_of_tokens(story_merges)
    print([story_vocab[256 + step].decode("utf-8") for step in range(40)])
    """),
    md(r"""
    The first merges join a space with a frequent first letter, build common word endings
    (`ed`, `ing`) and the commonest English words: ` the`, ` to`, ` of`, ` was`...

    ### 2.6.3 Encoding with the learnt merges

    To encode new text, we apply the merges in the order they were learnt. Inside each
    piece, we repeatedly look for the neighbouring pair with the earliest merge and merge
    it, until no pair of the piece has been learnt. (Order matters: ` painter` should
    become ` paint` + `er`, as during training, not some other combination that happens to
    be in the vocabulary too.)
    """),
    code(r"""
    def bpe_encode(text, merges):
        rank = {pair: step for step, pair in enumerate(merges)}  # earlier merges first
        ids = []
        for piece in pretokenize(text):
            piece_ids = list(piece.encode("utf-8"))
            while len(piece_ids) >= 2:
                pair = min(zip(piece_ids, piece_ids[1:]), key=lambda p: rank.get(p, float("inf")))
                if pair not in rank:
                    break  # no learnt pair left in this piece
                piece_ids = merge(piece_ids, pair, 256 + rank[pair])
            ids.extend(piece_ids)
        return ids

    def bpe_decode(ids, merges):
        vocab = bytes_of_tokens(merges)
        return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")
    """),
    code(r"""
    sample = "The painter's wife was gracious, and the studio was full of light."
    ids = bpe_encode(sample, story_merges)
    print(len(sample.encode("utf-8")), "bytes ->", len(ids), "tokens")
    print([story_vocab[i].decode("utf-8") for i in ids])
    assert bpe_decode(ids, story_merges) == sample
    """),
    md(r"""
    Frequent words are already single tokens after 100 merges; rarer ones are still
    spelled in pieces. And since every text is bytes, there are no unknown words:
    """),
    code(r"""
    text = "Ärger? 東京 🙂"
    ids = bpe_encode(text, story_merges)
    print(ids)
    print(bpe_decode(ids, story_merges))
    """),
    md(r"""
    The characters that never occur in the story stay as their raw UTF-8 bytes (two for
    `Ä`, three for each Japanese character, four for the emoji), and decoding gives them
    back exactly.

    ### 2.6.4 GPT-2's tokenizer

    GPT-2's tokenizer is exactly this algorithm with 50,000 merges learnt by OpenAI from a
    large web corpus, plus `<|endoftext|>`: 50,257 tokens. The course uses the `tiktoken`
    library to run it, a fast implementation written in Rust. `get_tokenizer` loads it from
    the course's data files, so it works offline.
    """),
    code(r"""
    from reference_impl.tokenizer import BPETokenizer, get_tokenizer

    tokenizer = get_tokenizer("gpt2")
    print("Vocabulary size:", tokenizer.n_vocab)

    text = "Hello, do you like tea? <|endoftext|> In the sunlit terraces of someunknownPlace."
    ids = tokenizer.encode(text, allowed_special={"<|endoftext|>"})
    print(ids)
    print(tokenizer.decode(ids))
    """),
    md(r"""
    `<|endoftext|>` got the last id, 50256, and the made-up word came back intact.
    `allowed_special` is a safety catch: text taken from users or from the web may contain
    the characters `<|endoftext|>` by accident, and should not be able to end a document.
    Unless we allow it, the tokenizer refuses:
    """),
    code(r"""
    try:
        tokenizer.encode(text)
    except ValueError as error:
        print("ValueError:", str(error).splitlines()[0])
    """),
    md(r"""
    Decoding the tokens one at a time shows how an unfamiliar word is cut into familiar
    pieces:
    """),
    code(r"""
    for word in ["Gisburnesque", " someunknownPlace", " painter"]:
        ids = tokenizer.encode(word)
        print(f"{word!r:20} -> {ids} {[tokenizer.decode([i]) for i in ids]}")
    """),
    md(r"""
    Is tiktoken really running the algorithm we just wrote? `BPETokenizer` in the course's
    package is our from-scratch BPE (the functions of this chapter, plus loading GPT-2's
    merges from OpenAI's original files). On the whole story, it gives exactly tiktoken's
    ids:
    """),
    code(r"""
    gpt2_from_scratch = BPETokenizer.gpt2()
    print(gpt2_from_scratch)

    tiktoken_ids = tokenizer.encode(raw_text)
    our_ids = gpt2_from_scratch.encode(raw_text)
    print("Tokens in the story:", len(tiktoken_ids))
    assert our_ids == tiktoken_ids
    print("BPETokenizer.gpt2() and tiktoken give identical ids")
    """),
    md(r"""
    The only surprise inside: GPT-2 does not number its 256 byte tokens in byte order, so
    `BPETokenizer` keeps a small table from bytes to ids. The merges are the same
    `(left, right) -> 256 + step` as in our `train_bpe`. tiktoken is much faster, so the
    rest of the course uses it.

    What does BPE make of the story? 20,479 characters became 5,145 tokens, about 4
    characters per token. The commonest tokens are punctuation and short words, each with
    its leading space:
    """),
    code(r"""
    counts = Counter(tiktoken_ids)
    top = counts.most_common(15)
    labels = [repr(tokenizer.decode([i])) for i, _ in top]  # repr shows the spaces and "\n"
    lengths = Counter(len(tokenizer.decode([i])) for i in tiktoken_ids)

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4), dpi=90)
    ax1.barh(labels[::-1], [n for _, n in top][::-1], color="tab:blue")  # commonest on top
    ax1.set_title("The 15 commonest tokens of the story", fontsize=10)
    ax1.set_xlabel("occurrences")
    ax2.bar(sorted(lengths), [lengths[n] for n in sorted(lengths)], color="tab:orange")
    ax2.set_xticks(range(1, max(lengths) + 1, 2))
    ax2.set_title("Token lengths (a leading space counts)", fontsize=10)
    ax2.set_xlabel("characters per token")
    ax2.set_ylabel("tokens")
    fig.tight_layout()
    plt.show()
    """),
    md(r"""
    ## 2.7 Input–target pairs with a sliding window

    A GPT is trained to predict the next token. Every position of the text is a small
    exercise: given the tokens so far, which one comes next? Take a stretch of the story:
    """),
    code(r"""
    enc_text = tokenizer.encode(raw_text)
    enc_sample = enc_text[50:]

    context_size = 4  # how many tokens the model sees at once
    x = enc_sample[:context_size]
    y = enc_sample[1 : context_size + 1]
    print(f"x: {x}")
    print(f"y:      {y}")
    """),
    md(r"""
    The target `y` is the input `x` shifted by one token. One pair of length 4 holds four
    prediction tasks, one per position:
    """),
    code(r"""
    for i in range(1, context_size + 1):
        context, desired = enc_sample[:i], enc_sample[i]
        print(f"{str(context):28} ----> {desired}")
    """),
    code(r"""
    for i in range(1, context_size + 1):
        context, desired = enc_sample[:i], enc_sample[i]
        print(f"{tokenizer.decode(context)!r:32} ----> {tokenizer.decode([desired])!r}")
    """),
    md(r"""
    To train, we cut the whole token stream into such pairs: chunks of `max_length` tokens
    as inputs, the same chunks shifted by one as targets. A chunk starts every `stride`
    tokens. PyTorch's `Dataset` holds the pairs, and a `DataLoader` serves them in batches
    (shuffled, for training).
    """),
    code(r"""
    class GPTDatasetV1(Dataset):
        def __init__(self, txt, tokenizer, max_length, stride):
            self.input_ids = []
            self.target_ids = []
            token_ids = tokenizer.encode(txt, allowed_special={"<|endoftext|>"})
            # A window of max_length tokens slides over the text, stride tokens at a time.
            for i in range(0, len(token_ids) - max_length, stride):
                input_chunk = token_ids[i : i + max_length]
                target_chunk = token_ids[i + 1 : i + max_length + 1]
                self.input_ids.append(torch.tensor(input_chunk))
                self.target_ids.append(torch.tensor(target_chunk))

        def __len__(self):
            return len(self.input_ids)

        def __getitem__(self, idx):
            return self.input_ids[idx], self.target_ids[idx]
    """),
    code(r"""
    def create_dataloader_v1(txt, batch_size=4, max_length=256, stride=128,
                             shuffle=True, drop_last=True, num_workers=0):
        tokenizer = get_tokenizer("gpt2")
        dataset = GPTDatasetV1(txt, tokenizer, max_length, stride)
        # drop_last: a last, smaller batch would give a noisier training step.
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle,
                          drop_last=drop_last, num_workers=num_workers)
    """),
    md(r"""
    With a batch of one pair, `max_length=4` and `stride=1`, consecutive pairs overlap in
    all but one token:
    """),
    code(r"""
    dataloader = create_dataloader_v1(raw_text, batch_size=1, max_length=4, stride=1, shuffle=False)
    data_iter = iter(dataloader)
    first_batch = next(data_iter)
    print(first_batch)
    second_batch = next(data_iter)
    print(second_batch)
    """),
    md(r"""
    Each batch is a list `[inputs, targets]`. The second batch starts one token later than
    the first, and the targets are the inputs shifted by one.

    With `stride` equal to `max_length`, the chunks no longer overlap: every token is used
    once, and the model does not see the same stretch of text in several batches (which
    would make it overfit sooner). A batch of 8:
    """),
    code(r"""
    dataloader = create_dataloader_v1(raw_text, batch_size=8, max_length=4, stride=4, shuffle=False)
    inputs, targets = next(iter(dataloader))
    print("Inputs:\n", inputs)
    print("\nTargets:\n", targets)
    """),
    md(r"""
    Real training uses longer chunks: GPT-2 reads up to 1,024 tokens at a time. Larger
    batches give smoother gradients but need more memory.

    ## 2.8 Token embeddings

    The last step turns each id into a vector. An embedding layer is a table with one
    trainable row per token: looking up id `i` returns row `i`. A toy version with a
    vocabulary of 6 tokens and 3-dimensional vectors:
    """),
    code(r"""
    input_ids = torch.tensor([2, 3, 5, 1])

    torch.manual_seed(123)
    embedding_layer = nn.Embedding(num_embeddings=6, embedding_dim=3)
    print(embedding_layer.weight)
    """),
    md(r"""
    The rows start random and are learnt in training, like any other weight. Embedding the
    four ids picks rows 2, 3, 5 and 1:
    """),
    code(r"""
    print(embedding_layer(input_ids))
    """),
    md(r"""
    The same result would come from a linear layer applied to one-hot vectors, since a
    one-hot row times a matrix selects one row of it. The lookup gives it without
    multiplying by thousands of zeros.
    """),
    code(r"""
    one_hot = nn.functional.one_hot(input_ids, num_classes=6).float()
    torch.testing.assert_close(one_hot @ embedding_layer.weight, embedding_layer(input_ids))
    print("embedding lookup == one-hot @ weight")
    """),
    md(r"""
    For GPT-2's tokenizer the table has 50,257 rows. Here we give each token 256 numbers
    (GPT-2 small uses 768), and embed the batch of 8 × 4 token ids from above:
    """),
    code(r"""
    vocab_size = 50257
    output_dim = 256

    torch.manual_seed(123)
    token_embedding_layer = nn.Embedding(vocab_size, output_dim)
    print(f"weight: {tuple(token_embedding_layer.weight.shape)}, {token_embedding_layer.weight.numel():,} parameters")

    max_length = 4
    dataloader = create_dataloader_v1(raw_text, batch_size=8, max_length=max_length, stride=max_length, shuffle=False)
    inputs, targets = next(iter(dataloader))
    print("Token ids:", inputs.shape)

    token_embeddings = token_embedding_layer(inputs)
    print("Token embeddings:", token_embeddings.shape)  # (batch, tokens, output_dim)
    """),
    md(r"""
    ## 2.9 Encoding positions

    A token's embedding is the same wherever the token appears. Self-attention, the
    mechanism of chapter 3, is also blind to order: it would process "the dog bit the man"
    and "the man bit the dog" as the same bag of vectors. So we add information about
    position.

    GPT-2 uses **absolute positional embeddings**: a second embedding table, with one
    learnt row per position, from 0 up to the longest context the model accepts. The
    position vector is added to the token vector. (Other models encode the *distance*
    between tokens instead, e.g. rotary embeddings; the idea is the same.)
    """),
    code(r"""
    context_length = max_length
    torch.manual_seed(123)
    pos_embedding_layer = nn.Embedding(context_length, output_dim)

    pos_embeddings = pos_embedding_layer(torch.arange(context_length))  # positions 0, 1, 2, 3
    print("Positional embeddings:", pos_embeddings.shape)
    """),
    md(r"""
    Adding a `(4, 256)` tensor to an `(8, 4, 256)` one *broadcasts*: the same four position
    vectors are added to each of the 8 texts of the batch.
    """),
    code(r"""
    input_embeddings = token_embeddings + pos_embeddings
    print("Input embeddings:", input_embeddings.shape)
    """),
    md(r"""
    The effect, on a text in which ` the` occurs twice: the two token embeddings are
    identical, the two input embeddings are not.
    """),
    code(r"""
    ids = torch.tensor(tokenizer.encode(" the dog bit the"))
    print(ids)  # " the" at positions 0 and 3

    tok = token_embedding_layer(ids)
    inp = tok + pos_embedding_layer(torch.arange(len(ids)))
    print("same token embedding: ", torch.equal(tok[0], tok[3]))
    print("same input embedding: ", torch.equal(inp[0], inp[3]))
    """),
    md(r"""
    These input embeddings are what the first transformer block of the GPT receives.

    ## 2.10 The same code in `reference_impl`

    The course's package, `reference_impl`, holds the code of this chapter, and the later
    chapters use it from there. To make sure the book and the package never drift apart,
    we run both on the whole story and check that they give the same results. If this cell
    fails, the two have diverged.
    """),
    code(r"""
    from reference_impl import data as ref_data
    from reference_impl import tokenizer as ref_tok

    # The simple tokenizers: the same vocabulary, the same ids, the same decoded text.
    assert vocab == ref_tok.build_vocab(raw_text)
    ours, theirs = SimpleTokenizerV2(vocab), ref_tok.SimpleTokenizerV2(vocab)
    text = raw_text + " <|endoftext|> Hello, do you like tea?"
    ids = ours.encode(text)
    assert ids == theirs.encode(text)
    assert ours.decode(ids) == theirs.decode(ids)
    print(f"SimpleTokenizerV2: same {len(ids):,} ids and decoded text")

    # The BPE steps, on the story's bytes.
    story_bytes = list(raw_text.encode("utf-8"))
    counts = get_pair_counts(story_bytes)
    assert counts == ref_tok.get_pair_counts(story_bytes)
    pair = most_frequent_pair(counts)
    assert pair == ref_tok.most_frequent_pair(counts)
    assert merge(story_bytes, pair, 256) == ref_tok.merge(story_bytes, pair, 256)
    assert pretokenize(raw_text) == ref_tok.pretokenize(raw_text)
    print(f"get_pair_counts, most_frequent_pair, merge, pretokenize: same results (first merge: {pair})")

    # Training and encoding. The package also reserves an id for <|endoftext|>: vocab_size = 256 + merges + 1.
    package_bpe = ref_tok.BPETokenizer.train(raw_text, vocab_size=256 + len(story_merges) + 1)
    assert package_bpe.merges == story_merges
    assert package_bpe.encode(raw_text) == bpe_encode(raw_text, story_merges)
    print(f"BPETokenizer.train: same {len(story_merges)} merges, same ids")

    # The sliding-window dataset.
    ours = GPTDatasetV1(raw_text, tokenizer, max_length=32, stride=16)
    theirs = ref_data.GPTDatasetV1(raw_text, tokenizer, max_length=32, stride=16)
    assert len(ours) == len(theirs)
    for (x1, y1), (x2, y2) in zip(ours, theirs):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    print(f"GPTDatasetV1: same {len(ours)} input-target pairs")
    """),
    md(r"""
    ## Exercises

    [Exercises for chapter 2](../exercises/ch02/ch02_exercises.ipynb): write the pieces of
    this chapter yourself (the vocabulary, the simple tokenizer, a BPE merge step, the
    sliding-window dataset and the input embeddings), with instant feedback from automatic
    checks.

    ## Summary

    - Neural networks compute with numbers, so text is turned into **tokens**, tokens into
      integer **ids**, and ids into learnt vectors, **embeddings**.
    - A word-level tokenizer needs a vocabulary of every word it will ever meet; with
      `<|unk|>` it stops failing but loses the unknown words. `<|endoftext|>` separates
      independent texts.
    - **Byte-pair encoding** starts from the 256 bytes and learns merges of frequent
      neighbouring pairs (`get_pair_counts`, `merge`, repeat); inside each piece of GPT-2's
      pre-tokenisation regex. Any text can be encoded, and frequent words become single
      tokens. GPT-2 has 50,000 merges and 50,257 tokens.
    - tiktoken and our from-scratch `BPETokenizer.gpt2()` give the same ids; the course uses
      tiktoken for speed.
    - Training examples are **input–target pairs**: a chunk of `max_length` tokens and the
      same chunk shifted by one token. `stride` sets how far apart consecutive chunks start.
    - `nn.Embedding` is a lookup table of trainable vectors. GPT-2 adds a learnt
      **positional embedding** to each token embedding, because attention by itself does
      not see word order.
    """),
]

if __name__ == "__main__":
    main(CELLS, "ch02_working_with_text")
