"""Chapter 3, "Coding attention mechanisms": writes book/ch03_attention.ipynb.

Run from the repository root: ``.venv/bin/python book/_src/make_ch03.py`` (see nbbuild.py).
"""

from nbbuild import code, main, md

CELLS = [
    md(r"""
    # Chapter 3: Coding attention mechanisms

    Chapter 2 turned text into a sequence of vectors, one per token. Each of those vectors
    knows about its own token and position, and nothing else: the embedding of "bank" is the
    same in "river bank" and in "bank account". *Attention* is the mechanism that lets every
    token look at the other tokens of its text and fold what it finds into a new vector, a
    **context vector**. It is the heart of the GPT model we build in chapter 4.

    We build it in four steps, each adding one idea to the previous one:

    1. **simplified self-attention**: no trainable weights, just dot products and a softmax;
    2. **self-attention with trainable weights**: queries, keys and values, the form GPT uses;
    3. **causal attention**: a token may only look at the tokens *before* it;
    4. **multi-head attention**: several attention mechanisms side by side.

    Everything here runs in a few seconds on a laptop CPU.
    """),
    code(r"""
    import itertools

    import matplotlib.pyplot as plt
    import torch
    import torch.nn as nn

    %matplotlib inline
    torch.set_printoptions(precision=4, sci_mode=False)
    """),
    md(r"""
    ## 3.1 The problem with modelling long sequences

    Before transformers, translation systems were built from *recurrent* neural networks
    (RNNs). An encoder RNN read the source sentence one word at a time, updating a single
    hidden state vector, and a decoder RNN produced the translation from that final state.

    Two things make this hard. First, translation is not word by word: "the black cat" is
    "le chat noir" in French, so the decoder needs the whole sentence, not just the current
    word. Second, the *whole* sentence has to squeeze through one fixed-size vector. The
    longer the sentence, the more of its beginning is lost by the time the encoder reaches
    its end.

    ## 3.2 Capturing dependencies with attention

    The fix, proposed in 2014, was to let the decoder look back at *every* encoder state,
    and to weight each one by how relevant it is for the word being produced. Three years
    later, the transformer architecture dropped the recurrent network altogether and kept
    only attention.

    GPT uses **self-attention**: the positions of one sequence attend to each other. For each
    token, the mechanism asks "which other tokens of this text matter to me, and how much?",
    and builds that token's context vector as a weighted mix of them.
    """),
    md(r"""
    ## 3.3 Self-attention without trainable weights

    Our running example is the six-token sentence "Your journey starts with one step". Real
    embeddings have hundreds of dimensions; these have three, small enough to check by hand.
    """),
    code(r"""
    tokens = ["Your", "journey", "starts", "with", "one", "step"]
    inputs = torch.tensor(
        [[0.43, 0.15, 0.89],  # Your     (x^1)
         [0.55, 0.87, 0.66],  # journey  (x^2)
         [0.57, 0.85, 0.64],  # starts   (x^3)
         [0.22, 0.58, 0.33],  # with     (x^4)
         [0.77, 0.25, 0.10],  # one      (x^5)
         [0.05, 0.80, 0.55]]  # step     (x^6)
    )
    inputs.shape
    """),
    md(r"""
    ### 3.3.1 The context vector of one token

    Take the second token, "journey", as the **query**: the token whose context vector we
    compute. The first step scores every token of the sentence against it. The simplest
    score is the dot product: it is large when two vectors point the same way, so it
    measures how similar two tokens are.

    $$\omega_{2i} = x^{(2)} \cdot x^{(i)}$$
    """),
    code(r"""
    query = inputs[1]  # "journey": Python counts from 0

    attn_scores_2 = torch.empty(inputs.shape[0])
    for i, x_i in enumerate(inputs):
        attn_scores_2[i] = torch.dot(x_i, query)
    attn_scores_2
    """),
    md(r"""
    A dot product is nothing mysterious: multiply the vectors element by element and add up.
    """),
    code(r"""
    by_hand = sum(inputs[0, j] * query[j] for j in range(3))
    print(round(by_hand.item(), 4), round(torch.dot(inputs[0], query).item(), 4))
    """),
    md(r"""
    "journey" scores highest with itself and with "starts", whose embedding is almost the
    same. Next we **normalise** the scores into **attention weights** that are positive and
    add up to 1. Weights like that read as "how much of each token goes into the mix", and
    they keep the context vectors on the same scale as the inputs, which helps training.

    Dividing by the sum works for these scores:
    """),
    code(r"""
    attn_weights_2_tmp = attn_scores_2 / attn_scores_2.sum()
    print("Weights:", attn_weights_2_tmp)
    print("Sum:", attn_weights_2_tmp.sum())
    """),
    md(r"""
    but scores can be negative, and a negative weight makes no sense. The **softmax**
    function, $\mathrm{softmax}(\omega)_i = e^{\omega_i} / \sum_j e^{\omega_j}$, makes every
    weight positive and also stretches the differences: the largest score gets a larger share
    than simple division gives it.
    """),
    code(r"""
    def softmax_naive(x):
        return torch.exp(x) / torch.exp(x).sum(dim=0)

    attn_weights_2_naive = softmax_naive(attn_scores_2)
    print("Weights:", attn_weights_2_naive)
    print("Sum:", attn_weights_2_naive.sum())
    """),
    md(r"""
    Written that naively, softmax breaks on large scores: $e^{1000}$ does not fit in a float.
    `torch.softmax` subtracts the largest score first (which does not change the result,
    since the common factor cancels) and so never overflows. Always use it.
    """),
    code(r"""
    large = torch.tensor([1000.0, 1001.0])
    print("naive:        ", softmax_naive(large))
    print("torch.softmax:", torch.softmax(large, dim=0))
    """),
    code(r"""
    attn_weights_2 = torch.softmax(attn_scores_2, dim=0)
    print("Weights:", attn_weights_2)
    print("Sum:", attn_weights_2.sum())
    """),
    md(r"""
    The context vector of "journey" is the weighted sum of all the input vectors:
    $z^{(2)} = \sum_i \alpha_{2i}\, x^{(i)}$.
    """),
    code(r"""
    context_vec_2 = torch.zeros(query.shape)
    for i, x_i in enumerate(inputs):
        context_vec_2 += attn_weights_2[i] * x_i
    context_vec_2
    """),
    md(r"""
    A weighted sum of rows is a vector–matrix product, so the loop is one line:
    """),
    code(r"""
    torch.testing.assert_close(attn_weights_2 @ inputs, context_vec_2)
    attn_weights_2 @ inputs
    """),
    md(r"""
    ### 3.3.2 All the context vectors at once

    Every token gets its own context vector, with itself as the query. With two loops we
    would compute all $6 \times 6$ scores one at a time:
    """),
    code(r"""
    attn_scores = torch.empty(6, 6)
    for i, x_i in enumerate(inputs):
        for j, x_j in enumerate(inputs):
            attn_scores[i, j] = torch.dot(x_i, x_j)
    attn_scores
    """),
    md(r"""
    Row $i$, column $j$ is the dot product of token $i$ with token $j$: that is exactly the
    matrix product of the inputs with their transpose. Matrix products are what GPUs (and
    CPUs) do fastest, so from now on everything is written as one.
    """),
    code(r"""
    attn_scores = inputs @ inputs.T
    attn_weights = torch.softmax(attn_scores, dim=-1)  # normalise each row
    print(attn_weights)
    print("Row sums:", attn_weights.sum(dim=-1))
    """),
    md(r"""
    `dim=-1` makes softmax normalise along the last dimension, that is, each row: row $i$
    holds the weights that query $i$ gives to every token. A picture makes the pattern easier
    to see than the numbers:
    """),
    code(r"""
    def show_attention(ax, weights, title, vmin=0.0, vmax=1.0):
        # One row per query, one column per key; the numbers are the weights.
        ax.imshow(weights, cmap="Blues", vmin=vmin, vmax=vmax)
        ax.set_xticks(range(len(tokens)), tokens, rotation=45, ha="right")
        ax.set_yticks(range(len(tokens)), tokens)
        ax.set_xlabel("key: the token attended to")
        ax.set_ylabel("query: the token attending")
        ax.set_title(title, fontsize=10)
        for i, j in itertools.product(range(len(tokens)), repeat=2):
            w = weights[i, j].item()
            ax.text(j, i, f"{w:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if w > vmin + 0.6 * (vmax - vmin) else "black")

    fig, ax = plt.subplots(figsize=(4.2, 3.8), dpi=90)
    # Here the colours span the smallest to the largest weight, to make the pattern visible.
    show_attention(ax, attn_weights, "Dot-product attention weights",
                   vmin=attn_weights.min().item(), vmax=attn_weights.max().item())
    fig.tight_layout()
    plt.show()
    """),
    md(r"""
    "journey" and "starts", the two most similar embeddings, attend to each other strongly.
    Multiplying the weights with the inputs gives all six context vectors; the second row is
    the one we computed by hand.
    """),
    code(r"""
    all_context_vecs = attn_weights @ inputs
    print(all_context_vecs)
    torch.testing.assert_close(all_context_vecs[1], context_vec_2)
    """),
    md(r"""
    ## 3.4 Self-attention with trainable weights

    In the simple version, how much one token attends to another is fixed by their
    embeddings: nothing in it can learn. The attention in GPT (and in the original
    transformer) adds three trainable matrices that project each input vector into three
    roles:

    - a **query** $q = x W_q$: what this token is looking for;
    - a **key** $k = x W_k$: what this token offers, to be matched against queries;
    - a **value** $v = x W_v$: what this token hands over once it is attended to.

    Think of a soft dictionary lookup: the query is compared with every key, and the values
    are mixed in proportion to how well their keys match. Training tunes $W_q$, $W_k$ and
    $W_v$ so that tokens attend to whatever helps predict the next token.

    ### 3.4.1 Step by step, for one token

    The projections may change the size of the vectors. GPT keeps input and output the same
    size, but here we project from 3 to 2 dimensions so that the shapes are easy to follow.
    """),
    code(r"""
    x_2 = inputs[1]
    d_in = inputs.shape[1]  # 3
    d_out = 2

    torch.manual_seed(123)
    # requires_grad=False: we only look at numbers here, no training yet.
    W_query = nn.Parameter(torch.rand(d_in, d_out), requires_grad=False)
    W_key = nn.Parameter(torch.rand(d_in, d_out), requires_grad=False)
    W_value = nn.Parameter(torch.rand(d_in, d_out), requires_grad=False)

    query_2 = x_2 @ W_query
    query_2
    """),
    md(r"""
    The query is needed only for the token we are looking at, but its scores need the keys
    of *every* token, and its context vector the values of every token:
    """),
    code(r"""
    keys = inputs @ W_key
    values = inputs @ W_value
    print("keys.shape:", keys.shape)
    print("values.shape:", values.shape)
    """),
    md(r"""
    The score of "journey" for itself is its query dotted with its own key; the scores for
    all tokens are one product with the key matrix:
    """),
    code(r"""
    attn_score_22 = query_2.dot(keys[1])
    print(round(attn_score_22.item(), 4))

    attn_scores_2 = query_2 @ keys.T
    print(attn_scores_2)
    """),
    md(r"""
    Before the softmax, the scores are divided by $\sqrt{d_k}$, the square root of the key
    size. This is why the mechanism is called *scaled* dot-product attention. The reason:
    a dot product adds up $d_k$ products, so for random vectors its spread grows like
    $\sqrt{d_k}$. GPT-2's keys have 64 dimensions per head, so without scaling the scores
    would be 8 times larger than with 1 dimension:
    """),
    code(r"""
    torch.manual_seed(123)
    for d_k in (1, 64, 1024):
        q, k = torch.randn(10_000, d_k), torch.randn(10_000, d_k)
        dots = (q * k).sum(dim=-1)
        print(f"d_k={d_k:5d}  std of q.k: {dots.std():6.2f}   after / sqrt(d_k): {(dots / d_k**0.5).std():.2f}")
    """),
    md(r"""
    Large scores push the softmax towards a one-hot vector: nearly all weight on one token.
    In that regime, the gradients that flow back through the softmax are almost zero and
    training stalls. Scaling keeps the scores around 1, where the softmax is smooth:
    """),
    code(r"""
    scores = torch.tensor([0.4, -0.3, 0.9, 0.1])
    print("softmax(scores):    ", torch.softmax(scores, dim=-1))
    print("softmax(8 * scores):", torch.softmax(8 * scores, dim=-1))
    """),
    code(r"""
    d_k = keys.shape[-1]
    attn_weights_2 = torch.softmax(attn_scores_2 / d_k**0.5, dim=-1)
    print(attn_weights_2)

    context_vec_2 = attn_weights_2 @ values
    print(context_vec_2)
    """),
    md(r"""
    ### 3.4.2 A compact self-attention class

    Doing the same for every token at once is the matrix version of the steps above. As a
    PyTorch module, with the three matrices as trainable parameters:
    """),
    code(r"""
    class SelfAttention_v1(nn.Module):
        def __init__(self, d_in, d_out):
            super().__init__()
            self.W_query = nn.Parameter(torch.rand(d_in, d_out))
            self.W_key = nn.Parameter(torch.rand(d_in, d_out))
            self.W_value = nn.Parameter(torch.rand(d_in, d_out))

        def forward(self, x):
            queries = x @ self.W_query
            keys = x @ self.W_key
            values = x @ self.W_value
            attn_scores = queries @ keys.T  # one row of scores per query
            attn_weights = torch.softmax(attn_scores / keys.shape[-1] ** 0.5, dim=-1)
            return attn_weights @ values
    """),
    code(r"""
    torch.manual_seed(123)
    sa_v1 = SelfAttention_v1(d_in, d_out)
    print(sa_v1(inputs))
    """),
    md(r"""
    Same seed, same matrices: the second row is `context_vec_2` from above.

    `nn.Linear` layers do the same matrix products, and do them better: they initialise
    their weights with a scheme that keeps activations at a sensible size (`torch.rand`
    gives only positive numbers, which is a poor start for training), and they can add a
    bias vector. GPT-2 uses biases in these projections; the models we train from scratch
    do not, hence the `qkv_bias` switch.
    """),
    code(r"""
    class SelfAttention_v2(nn.Module):
        def __init__(self, d_in, d_out, qkv_bias=False):
            super().__init__()
            self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
            self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
            self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)

        def forward(self, x):
            queries = self.W_query(x)
            keys = self.W_key(x)
            values = self.W_value(x)
            attn_scores = queries @ keys.T
            attn_weights = torch.softmax(attn_scores / keys.shape[-1] ** 0.5, dim=-1)
            return attn_weights @ values
    """),
    code(r"""
    torch.manual_seed(789)
    sa_v2 = SelfAttention_v2(d_in, d_out)
    print(sa_v2(inputs))
    """),
    md(r"""
    The outputs differ from `sa_v1`'s only because the weights differ. `nn.Linear` stores
    its weight as a `(d_out, d_in)` matrix and computes `x @ weight.T`, so giving
    `SelfAttention_v1` the *transposed* weights of `sa_v2` must give identical results:
    """),
    code(r"""
    sa_v1_copy = SelfAttention_v1(d_in, d_out)
    with torch.no_grad():
        sa_v1_copy.W_query.copy_(sa_v2.W_query.weight.T)
        sa_v1_copy.W_key.copy_(sa_v2.W_key.weight.T)
        sa_v1_copy.W_value.copy_(sa_v2.W_value.weight.T)

    torch.testing.assert_close(sa_v1_copy(inputs), sa_v2(inputs))
    print("SelfAttention_v1 with sa_v2's weights gives the same context vectors")
    """),
    md(r"""
    ## 3.5 Causal attention: hiding the future

    GPT is trained to predict the next token. If, while predicting token 4, it could attend
    to token 4 itself, the task would be trivial and the model would learn nothing useful.
    **Causal** (or *masked*) attention lets each token attend only to itself and the tokens
    before it: in the weight matrix, everything above the diagonal must be zero.

    ### 3.5.1 Masking the attention weights

    Start from the weights of `sa_v2`, computed step by step (we reuse its layers):
    """),
    code(r"""
    queries = sa_v2.W_query(inputs)
    keys = sa_v2.W_key(inputs)
    attn_scores = queries @ keys.T
    attn_weights = torch.softmax(attn_scores / keys.shape[-1] ** 0.5, dim=-1)
    print(attn_weights)
    """),
    md(r"""
    One way: multiply by a lower-triangular matrix of ones, which zeroes the future...
    """),
    code(r"""
    context_length = attn_scores.shape[0]
    mask_simple = torch.tril(torch.ones(context_length, context_length))
    masked_simple = attn_weights * mask_simple
    print(masked_simple)
    """),
    md(r"""
    ...and divide each row by its sum, so the rows add up to 1 again:
    """),
    code(r"""
    row_sums = masked_simple.sum(dim=-1, keepdim=True)
    masked_simple_norm = masked_simple / row_sums
    print(masked_simple_norm)
    """),
    md(r"""
    Did the future leak in through the first softmax, whose denominator summed over *all*
    tokens? No: after renormalising, each weight is $e^{\omega_{ij}}$ divided by the sum of
    $e^{\omega_{ij'}}$ over the allowed tokens only. The big denominator cancels out; the
    result is exactly a softmax over the visible tokens.

    That suggests a shorter way: mask the *scores* instead, with $-\infty$ above the
    diagonal. Since $e^{-\infty} = 0$, one softmax then gives zero weight to the future and
    normalises over the visible tokens, in one step.
    """),
    code(r"""
    mask = torch.triu(torch.ones(context_length, context_length, dtype=torch.bool), diagonal=1)
    masked = attn_scores.masked_fill(mask, -torch.inf)
    print(masked)
    """),
    code(r"""
    attn_weights_causal = torch.softmax(masked / keys.shape[-1] ** 0.5, dim=-1)
    print(attn_weights_causal)
    torch.testing.assert_close(attn_weights_causal, masked_simple_norm)
    """),
    md(r"""
    Both ways give the same weights; the $-\infty$ trick is the one used in practice. The
    weights of this untrained layer are almost uniform, since small random projections make
    all scores similar; after the mask, a token spreads its attention over fewer tokens, so
    the first rows get larger weights:
    """),
    code(r"""
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.8), dpi=90)  # same colour scale: 0 to 1
    show_attention(axes[0], attn_weights.detach(), "Before the causal mask")
    show_attention(axes[1], attn_weights_causal.detach(), "After the causal mask")
    fig.tight_layout()
    plt.show()
    """),
    md(r"""
    ### 3.5.2 Dropout on the attention weights

    **Dropout** is a regulariser: during training, it zeroes a random fraction of values,
    so the model cannot lean too hard on any single one. In GPT it is applied to the
    attention weights (among other places). To keep the expected total unchanged, the
    surviving values are scaled up by $1/(1-p)$. GPT-2 used $p = 0.1$; we use $0.5$ here so
    the effect is easy to see.
    """),
    code(r"""
    torch.manual_seed(123)
    dropout = nn.Dropout(0.5)
    example = torch.ones(6, 6)
    print(dropout(example))
    """),
    md(r"""
    Half of the entries are gone, and the others doubled. On the causal attention weights:
    """),
    code(r"""
    torch.manual_seed(123)
    print(dropout(attn_weights_causal))
    """),
    md(r"""
    Dropout only acts in training mode. After `.eval()` (which a model's `eval()` passes on
    to all its layers) it does nothing, so generating text is deterministic:
    """),
    code(r"""
    dropout.eval()
    torch.testing.assert_close(dropout(example), example)
    print("in eval mode, dropout returns its input unchanged")
    """),
    md(r"""
    ### 3.5.3 A causal attention class

    A model processes a **batch** of texts at once, so the input gains a first dimension.
    We stack our sentence twice to make a batch of two texts of six tokens:
    """),
    code(r"""
    batch = torch.stack((inputs, inputs), dim=0)
    print(batch.shape)  # (batch size, tokens, embedding size)
    """),
    md(r"""
    The class is `SelfAttention_v2` plus the mask and dropout. Two details:

    - `keys.transpose(1, 2)` swaps the token and feature dimensions of each text, leaving
      the batch dimension alone (`.T` would reverse all three);
    - the mask is built once, for the longest text the model accepts (`context_length`),
      and cut to the actual number of tokens. It is registered as a **buffer**: it moves
      with the module to the GPU, but it is not a parameter, so the optimiser leaves it
      alone. `persistent=False` keeps it out of the `state_dict`: it is rebuilt from
      `context_length`, so there is nothing to save.
    """),
    code(r"""
    class CausalAttention(nn.Module):
        def __init__(self, d_in, d_out, context_length, dropout, qkv_bias=False):
            super().__init__()
            self.d_out = d_out
            self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
            self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
            self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
            self.dropout = nn.Dropout(dropout)
            mask = torch.triu(torch.ones(context_length, context_length, dtype=torch.bool), diagonal=1)
            self.register_buffer("mask", mask, persistent=False)

        def forward(self, x):
            b, num_tokens, d_in = x.shape
            queries = self.W_query(x)
            keys = self.W_key(x)
            values = self.W_value(x)

            attn_scores = queries @ keys.transpose(1, 2)  # (b, num_tokens, num_tokens)
            attn_scores = attn_scores.masked_fill(self.mask[:num_tokens, :num_tokens], -torch.inf)
            attn_weights = torch.softmax(attn_scores / keys.shape[-1] ** 0.5, dim=-1)
            attn_weights = self.dropout(attn_weights)
            return attn_weights @ values  # (b, num_tokens, d_out)
    """),
    code(r"""
    torch.manual_seed(123)
    context_length = batch.shape[1]
    ca = CausalAttention(d_in, d_out, context_length, 0.0)
    context_vecs = ca(batch)
    print("context_vecs.shape:", context_vecs.shape)
    print(context_vecs)
    """),
    md(r"""
    Each of the two texts got six 2-dimensional context vectors. The first token can only
    see itself, so its context vector is its own value vector.

    ## 3.6 Multi-head attention

    One causal attention layer computes, for each token, *one* weighted average: one view of
    which tokens matter. But a token may need several things at once, say the subject of
    its verb and the noun an adjective describes. **Multi-head attention** runs several
    attention mechanisms, the *heads*, in parallel, each with its own query, key and value
    projections, and joins their outputs.

    ### 3.6.1 Stacking single-head attention layers

    The most direct implementation: a list of `CausalAttention` heads whose outputs are
    concatenated along the feature dimension.
    """),
    code(r"""
    class MultiHeadAttentionWrapper(nn.Module):
        def __init__(self, d_in, d_out, context_length, dropout, num_heads, qkv_bias=False):
            super().__init__()
            self.heads = nn.ModuleList(
                [CausalAttention(d_in, d_out, context_length, dropout, qkv_bias) for _ in range(num_heads)]
            )

        def forward(self, x):
            return torch.cat([head(x) for head in self.heads], dim=-1)
    """),
    code(r"""
    torch.manual_seed(123)
    mha_wrapper = MultiHeadAttentionWrapper(d_in, d_out, context_length, 0.0, num_heads=2)
    context_vecs = mha_wrapper(batch)
    print("context_vecs.shape:", context_vecs.shape)
    print(context_vecs)
    """),
    md(r"""
    Two heads of 2 dimensions each give 4 output dimensions per token.

    ### 3.6.2 All heads in one set of matrices

    The wrapper computes its heads one after the other, each with three small matrix
    products. It is faster to do the work of all heads in *one* product per role: a single
    `W_query` of size `d_in × d_out`, whose output we then cut into `num_heads` slices of
    `head_dim = d_out // num_heads` features. Slice $h$ plays the role of head $h$'s query.

    The cutting is a reshape, which copies no data. Follow the shapes on a tiny tensor:
    one text, 3 tokens, `d_out = 4` features, split into 2 heads of 2 features.
    """),
    code(r"""
    x = torch.arange(12.0).view(1, 3, 4)  # (b, num_tokens, d_out): token t holds 4t ... 4t+3
    print(x)
    """),
    md(r"""
    First `view` splits the last dimension into `(num_heads, head_dim)`: each token's four
    features become two pairs. Then `transpose(1, 2)` moves the head dimension in front of
    the tokens, so that each head holds its own `(num_tokens, head_dim)` matrix:
    """),
    code(r"""
    num_heads, head_dim = 2, 2
    heads = x.view(1, 3, num_heads, head_dim).transpose(1, 2)  # (b, num_heads, num_tokens, head_dim)
    print(heads.shape)
    print(heads)
    """),
    md(r"""
    Head 0 got features 0-1 of every token, head 1 features 2-3. With this layout, one
    matrix product with the keys transposed on their last two dimensions computes the score
    matrices of all heads of all texts at once: PyTorch's `@` treats the leading dimensions
    as a batch. It equals a loop over the heads:
    """),
    code(r"""
    all_heads = heads @ heads.transpose(2, 3)  # (b, num_heads, num_tokens, num_tokens)
    for h in range(num_heads):
        one_head = heads[0, h] @ heads[0, h].T
        torch.testing.assert_close(all_heads[0, h], one_head)
    print(all_heads.shape)
    """),
    md(r"""
    After attention, the heads are merged back by the reverse steps: `transpose(1, 2)` to
    `(b, num_tokens, num_heads, head_dim)`, then `view` to `(b, num_tokens, d_out)`. The
    transpose only changes how the tensor is read, not where its numbers sit in memory, and
    `view` needs them in order: `.contiguous()` makes that copy.
    """),
    code(r"""
    merged = heads.transpose(1, 2).contiguous().view(1, 3, num_heads * head_dim)
    torch.testing.assert_close(merged, x)
    print("merging the heads gives back the original tensor")
    """),
    md(r"""
    Put together, with one more ingredient: an output projection `out_proj`, a linear layer
    after the merge. Concatenation just places the heads side by side; `out_proj` lets the
    model combine what the different heads found. GPT-2 has it, so we do too.
    """),
    code(r"""
    class MultiHeadAttention(nn.Module):
        def __init__(self, d_in, d_out, context_length, dropout, num_heads, qkv_bias=False):
            super().__init__()
            if d_out % num_heads != 0:
                raise ValueError(f"d_out ({d_out}) must be divisible by num_heads ({num_heads})")
            self.d_out = d_out
            self.num_heads = num_heads
            self.head_dim = d_out // num_heads
            self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
            self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
            self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
            self.out_proj = nn.Linear(d_out, d_out)  # combines the heads' outputs
            self.dropout = nn.Dropout(dropout)
            mask = torch.triu(torch.ones(context_length, context_length, dtype=torch.bool), diagonal=1)
            self.register_buffer("mask", mask, persistent=False)

        def forward(self, x):
            b, num_tokens, d_in = x.shape
            # (b, num_tokens, d_out) -> (b, num_tokens, num_heads, head_dim) -> (b, num_heads, num_tokens, head_dim)
            queries = self.W_query(x).view(b, num_tokens, self.num_heads, self.head_dim).transpose(1, 2)
            keys = self.W_key(x).view(b, num_tokens, self.num_heads, self.head_dim).transpose(1, 2)
            values = self.W_value(x).view(b, num_tokens, self.num_heads, self.head_dim).transpose(1, 2)

            attn_scores = queries @ keys.transpose(2, 3)  # (b, num_heads, num_tokens, num_tokens)
            attn_scores = attn_scores.masked_fill(self.mask[:num_tokens, :num_tokens], -torch.inf)
            attn_weights = torch.softmax(attn_scores / self.head_dim**0.5, dim=-1)
            attn_weights = self.dropout(attn_weights)

            # (b, num_heads, num_tokens, head_dim) -> (b, num_tokens, num_heads, head_dim) -> (b, num_tokens, d_out)
            context = (attn_weights @ values).transpose(1, 2).contiguous().view(b, num_tokens, self.d_out)
            return self.out_proj(context)
    """),
    code(r"""
    torch.manual_seed(123)
    mha = MultiHeadAttention(d_in, d_out=2, context_length=context_length, dropout=0.0, num_heads=2)
    context_vecs = mha(batch)
    print("context_vecs.shape:", context_vecs.shape)
    print(context_vecs)
    """),
    md(r"""
    Here `d_out = 2` with two heads, so each head works in a single dimension; that is just
    to keep the printout short. The sizes of the real thing: GPT-2 small has 768-dimensional
    embeddings and **12 heads of 64 dimensions** each ($12 \times 64 = 768$), and reads up
    to 1,024 tokens. One such layer has about 2.4 million parameters: four $768 \times 768$
    matrices and the bias of `out_proj`.
    """),
    code(r"""
    gpt2_small_attention = MultiHeadAttention(d_in=768, d_out=768, context_length=1024, dropout=0.0, num_heads=12)
    print("head_dim:", gpt2_small_attention.head_dim)
    print(f"parameters: {sum(p.numel() for p in gpt2_small_attention.parameters()):,}")

    torch.manual_seed(123)
    x = torch.randn(2, 10, 768)  # 2 texts of 10 tokens
    print("output shape:", gpt2_small_attention(x).shape)
    """),
    md(r"""
    GPT-2 small stacks 12 such layers, one per transformer block; chapter 4 builds the
    block around it.

    ## 3.7 The same code in `reference_impl`

    The course's package, `reference_impl`, holds the classes of this chapter, and the GPT
    model of chapter 4 is built on them. To make sure the book and the package never drift
    apart, we copy the weights of this chapter's classes into the package's (with
    `load_state_dict`) and check that both compute the same outputs. If this cell fails, the
    two have diverged.
    """),
    code(r"""
    from reference_impl import attention as ref

    def check_same(ours, theirs, x):
        theirs.load_state_dict(ours.state_dict())  # strict: every parameter name must match
        ours.eval()  # no dropout: eval mode makes both deterministic
        theirs.eval()
        torch.testing.assert_close(theirs(x), ours(x))
        print(f"{type(theirs).__name__:27s} same outputs as the chapter's {type(ours).__name__}")

    torch.manual_seed(123)
    x = torch.randn(2, 10, 32)  # 2 texts, 10 tokens, 32 features
    check_same(SelfAttention_v1(32, 16), ref.SelfAttention_v1(32, 16), x[0])
    check_same(SelfAttention_v2(32, 16, qkv_bias=True), ref.SelfAttention_v2(32, 16, qkv_bias=True), x[0])
    check_same(CausalAttention(32, 16, 10, 0.1), ref.CausalAttention(32, 16, 10, 0.1), x)
    check_same(MultiHeadAttentionWrapper(32, 16, 10, 0.1, 2), ref.MultiHeadAttentionWrapper(32, 16, 10, 0.1, 2), x)

    ours = MultiHeadAttention(32, 32, context_length=10, dropout=0.1, num_heads=4, qkv_bias=True)
    check_same(ours, ref.MultiHeadAttention(32, 32, 10, 0.1, num_heads=4, qkv_bias=True), x)
    check_same(ours, ref.FusedMultiHeadAttention(32, 32, 10, 0.1, num_heads=4, qkv_bias=True), x)
    """),
    md(r"""
    The last check loads our `W_query`, `W_key` and `W_value` into a module that has none of
    them. `FusedMultiHeadAttention` keeps the three matrices stacked in one linear layer,
    `qkv`, and its `load_state_dict` stacks the book's three matrices on the way in:
    """),
    code(r"""
    fused = ref.FusedMultiHeadAttention(32, 32, 10, 0.0, num_heads=4, qkv_bias=True)
    fused.load_state_dict(ours.state_dict())
    print("chapter's parameters:", [name for name, _ in ours.named_parameters()])
    print("fused parameters:    ", [name for name, _ in fused.named_parameters()])
    print("qkv.weight:", tuple(fused.qkv.weight.shape), "= W_query, W_key and W_value stacked")
    torch.testing.assert_close(fused.qkv.weight[32:64], ours.W_key.weight)
    """),
    md(r"""
    The GPT model in the package uses this fused form. It computes the same function as the
    chapter's `MultiHeadAttention`, with two changes that only affect speed: the queries,
    keys and values come out of *one* matrix product instead of three, and the attention
    itself is PyTorch's `scaled_dot_product_attention`, which computes mask, softmax and
    weighted sum in one fused kernel and, where it can (FlashAttention on GPUs), without
    ever storing the full `num_tokens × num_tokens` weight matrix. The stacked `qkv` layout
    is also the one OpenAI's GPT-2 checkpoints use, which makes loading them simpler later.

    ## Exercises

    [Exercises for chapter 3](../exercises/ch03/ch03_exercises.ipynb): write the pieces of
    this chapter yourself (attention scores and weights, the causal mask, splitting and
    merging heads, the attention classes), with instant feedback from automatic checks.

    ## Summary

    - Attention turns each token's vector into a **context vector**: a weighted mix of the
      vectors of the tokens it attends to. The weights come from a softmax over scores.
    - In **simplified self-attention**, the score of two tokens is the dot product of their
      embeddings; all scores at once are one matrix product, `inputs @ inputs.T`.
    - **Trainable** self-attention projects each token into a query, a key and a value; scores
      are query–key dot products scaled by $1/\sqrt{d_k}$ (so the softmax does not
      saturate), and the context vectors mix the values.
    - **Causal attention** hides the future: scores above the diagonal are set to $-\infty$
      before the softmax, which equals masking the weights and renormalising.
    - **Dropout** on the attention weights regularises training and is off in `eval()` mode.
    - **Multi-head attention** runs several heads in parallel. Efficiently: one projection
      per role, split into heads with `view` + `transpose`, one batched matrix product for
      all heads, merged back, then `out_proj`. GPT-2 small: 12 heads × 64 dimensions.
    - The package's `FusedMultiHeadAttention` computes the same thing faster, with one `qkv`
      projection and `scaled_dot_product_attention`.
    """),
]

if __name__ == "__main__":
    main(CELLS, "ch03_attention")
