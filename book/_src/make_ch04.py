"""Writes book/ch04_gpt_model.ipynb (chapter 4) and executes it to store its outputs.

    cd /work/main && .venv/bin/python book/_src/make_ch04.py            # write + execute
    cd /work/main && .venv/bin/python book/_src/make_ch04.py --no-exec
"""

from nbbuild import code, main, md

CELLS = [
    md(r"""
    # Chapter 4: Implementing a GPT model from scratch

    Chapter 3 ended with multi-head attention: the part of the model that lets each token
    gather information from the tokens before it. Attention on its own is not a language
    model yet. In this chapter we build everything around it and end with a complete GPT:

    * token and position **embeddings** turn token ids into vectors;
    * a stack of **transformer blocks** refines those vectors; each block is attention plus a
      small **feed-forward network**, held together by **layer normalisation** and
      **shortcut connections**;
    * a final normalisation and an **output head** turn every position's vector into one
      score (a *logit*) per vocabulary token: the model's guess for the token that comes next.

    We first fix all sizes in a configuration and sketch the whole model with placeholder
    parts, then replace the placeholders one by one, count the parameters of the real GPT-2
    "small" model (124 million, or 163 million, depending on how you count) and finally let
    the model write text. The text will be gibberish: the weights are random until chapter 5
    trains them.

    One switch decides how big the models are that we actually *run*:
    """),
    code(r"""
    # False: forward passes use a small GPT (4 layers, 128-dimensional embeddings) and the
    #        chapter runs in seconds.
    # True:  they use the real GPT-2 124M sizes. Same code, same shapes except the width;
    #        about 10-20 seconds more on a laptop CPU, and the printed numbers change.
    FULL_SIZE = False
    """),
    code(r"""
    import matplotlib.pyplot as plt
    import torch
    from torch import nn

    from reference_impl.model import PRESETS, GPTConfig
    from reference_impl.tokenizer import get_tokenizer

    %matplotlib inline
    plt.rcParams["figure.dpi"] = 80
    torch.set_printoptions(precision=4, sci_mode=False)


    def rounded(t, decimals=4):
        # Adding 0.0 turns -0.0 into 0.0, so float noise around zero prints the same everywhere.
        return t.detach().round(decimals=decimals) + 0.0
    """),
    md(r"""
    ## 4.1 The blueprint: a configuration and a skeleton

    ### The configuration

    A handful of numbers fixes every size inside a GPT. The book keeps them in a plain
    dictionary (`GPT_CONFIG_124M = {"vocab_size": 50257, ...}`). A dictionary is quick to
    write, but a misspelt key (`"n_head"`) or an embedding width that the heads cannot share
    evenly only shows up much later, as a confusing error deep inside the model, or not at
    all. This course uses `GPTConfig` from `reference_impl.model`, a *frozen dataclass*:

    * the fields have names and types that your editor can complete and check;
    * impossible values are rejected the moment the configuration is created;
    * frozen means nothing can change a model's configuration after the model was built.

    | field | GPT-2 small | what it sets |
    |---|---|---|
    | `vocab_size` | 50,257 | how many token ids exist (the BPE tokenizer of chapter 2) |
    | `context_length` | 1,024 | the most tokens the model can see at once (rows of the position embedding) |
    | `emb_dim` | 768 | the width of every token's vector, through the whole model |
    | `n_heads` | 12 | attention heads per block (each works on 768 / 12 = 64 dimensions) |
    | `n_layers` | 12 | how many transformer blocks are stacked |
    | `drop_rate` | 0.1 | the dropout probability (only active while training) |
    | `qkv_bias` | `False` | whether the query, key and value projections have a bias |
    | `tie_embeddings` | `False` | whether the output head reuses the token embedding matrix (section 4.6) |

    The four sizes OpenAI released are presets:
    """),
    code(r"""
    GPT_CONFIG_124M = GPTConfig.from_preset("gpt2-small (124M)")
    print(GPT_CONFIG_124M)
    """),
    code(r"""
    for name, preset in PRESETS.items():
        print(f"{name:20}  emb_dim={preset.emb_dim:5}  n_layers={preset.n_layers:3}  n_heads={preset.n_heads:3}")
    """),
    md(r"""
    The larger models grow in width (`emb_dim`) and depth (`n_layers`); the vocabulary and
    the context length stay the same. A configuration that cannot work is refused with a
    message that says why:
    """),
    code(r"""
    try:
        GPTConfig(emb_dim=768, n_heads=10)
    except ValueError as err:
        print("ValueError:", err)
    """),
    md(r"""
    If you follow the book with its dictionaries, `GPTConfig.coerce` converts one (and
    rejects unknown keys), and `reference_impl.model.GPTModel` accepts either form:
    """),
    code(r"""
    book_config = {
        "vocab_size": 50257, "context_length": 1024, "emb_dim": 768, "n_heads": 12,
        "n_layers": 12, "drop_rate": 0.1, "qkv_bias": False,
    }
    print(GPTConfig.coerce(book_config) == GPT_CONFIG_124M)
    """),
    md(r"""
    For experiments we want a model that runs in a blink. `replace` returns a copy with
    some fields changed. We keep GPT-2's vocabulary, so the real GPT-2 token ids still work,
    and shrink everything else. `CFG` is the configuration the rest of the chapter runs:
    """),
    code(r"""
    SMALL_CONFIG = GPT_CONFIG_124M.replace(context_length=256, emb_dim=128, n_heads=4, n_layers=4)
    CFG = GPT_CONFIG_124M if FULL_SIZE else SMALL_CONFIG
    print(CFG)
    """),
    md(r"""
    ### A skeleton with placeholders

    Before writing any part properly, we write the whole model with placeholders that pass
    their input through unchanged. This pins down the data flow and the tensor shapes; the
    following sections then replace `DummyTransformerBlock` and `DummyLayerNorm` with the
    real thing.
    """),
    code(r"""
    class DummyGPTModel(nn.Module):
        def __init__(self, cfg):
            super().__init__()
            self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.emb_dim)
            self.pos_emb = nn.Embedding(cfg.context_length, cfg.emb_dim)
            self.drop_emb = nn.Dropout(cfg.drop_rate)
            self.trf_blocks = nn.Sequential(*[DummyTransformerBlock(cfg) for _ in range(cfg.n_layers)])
            self.final_norm = DummyLayerNorm(cfg.emb_dim)
            self.out_head = nn.Linear(cfg.emb_dim, cfg.vocab_size, bias=False)

        def forward(self, in_idx):
            batch_size, num_tokens = in_idx.shape
            positions = torch.arange(num_tokens, device=in_idx.device)
            x = self.tok_emb(in_idx) + self.pos_emb(positions)  # (batch, tokens, emb_dim)
            x = self.drop_emb(x)
            x = self.trf_blocks(x)
            x = self.final_norm(x)
            return self.out_head(x)  # (batch, tokens, vocab_size)


    class DummyTransformerBlock(nn.Module):
        def __init__(self, cfg):
            super().__init__()

        def forward(self, x):
            return x  # placeholder: section 4.5 builds the real block


    class DummyLayerNorm(nn.Module):
        def __init__(self, emb_dim, eps=1e-5):
            super().__init__()

        def forward(self, x):
            return x  # placeholder: section 4.2 builds the real normalisation
    """),
    md(r"""
    The input is a batch of token ids. We encode two short texts with GPT-2's tokenizer;
    both happen to be four tokens long, so they stack into one `(2, 4)` tensor:
    """),
    code(r"""
    tokenizer = get_tokenizer("gpt2")
    texts = ["Every effort moves you", "Every day holds a"]
    batch = torch.stack([torch.tensor(tokenizer.encode(text)) for text in texts])
    print(batch)
    """),
    code(r"""
    torch.manual_seed(123)
    dummy_model = DummyGPTModel(CFG)
    logits = dummy_model(batch)
    print("logits shape:", tuple(logits.shape))
    """),
    md(r"""
    One row of 50,257 logits for each of the 2 × 4 positions. The row at position *t*
    scores every vocabulary token as a candidate for position *t* + 1. Section 4.7 turns
    these scores into text; first we build the real parts.

    ## 4.2 Layer normalisation

    As a deep network trains, the outputs of each layer drift in size: some features grow
    large, others collapse towards zero, and the next layer keeps receiving inputs whose
    scale changes from step to step. That makes training slow and unstable. *Layer
    normalisation* fixes the scale: for each token on its own, it shifts and rescales the
    token's features so that they have mean 0 and variance 1.

    To see the effect we take a tiny layer whose outputs are far from normalised:
    """),
    code(r"""
    torch.manual_seed(123)
    batch_example = torch.randn(2, 5)  # 2 examples, 5 features each
    layer = nn.Sequential(nn.Linear(5, 6), nn.ReLU())
    out = layer(batch_example)
    print(rounded(out))
    """),
    code(r"""
    mean = out.mean(dim=-1, keepdim=True)
    var = out.var(dim=-1, keepdim=True)
    print("mean:\n", rounded(mean))
    print("variance:\n", rounded(var))
    """),
    md(r"""
    `dim=-1` averages over the last dimension, the features of one example, so we get one
    mean per example. `keepdim=True` keeps the result as a `(2, 1)` column instead of a
    flat `(2,)` vector, which lets it broadcast against `out` in the next step: subtract the
    mean, divide by the standard deviation.
    """),
    code(r"""
    out_norm = (out - mean) / torch.sqrt(var)
    print(rounded(out_norm))
    print("mean:    ", rounded(out_norm.mean(dim=-1)))
    print("variance:", rounded(out_norm.var(dim=-1)))
    """),
    md(r"""
    Now the layer itself. Two details on top of the arithmetic above:

    * `eps`, a tiny number added to the variance, so that a token whose features are all
      equal (variance 0) does not cause a division by zero;
    * `scale` and `shift`, one learnable value per feature, initialised to 1 and 0. They
      start as "do nothing", and training can adjust them where a different scale or offset
      works better. Normalising is the default, not a constraint.

    We also compute the variance with `unbiased=False` (divide by *n*, not *n* − 1). This is
    what GPT-2 did, so its trained weights expect it; with 768 features the difference is
    tiny anyway.
    """),
    code(r"""
    class LayerNorm(nn.Module):
        def __init__(self, emb_dim, eps=1e-5):
            super().__init__()
            self.eps = eps
            self.scale = nn.Parameter(torch.ones(emb_dim))
            self.shift = nn.Parameter(torch.zeros(emb_dim))

        def forward(self, x):
            mean = x.mean(dim=-1, keepdim=True)
            var = x.var(dim=-1, keepdim=True, unbiased=False)
            norm_x = (x - mean) / torch.sqrt(var + self.eps)
            return self.scale * norm_x + self.shift
    """),
    code(r"""
    ln = LayerNorm(emb_dim=5)
    out_ln = ln(batch_example)
    print("mean:    ", rounded(out_ln.mean(dim=-1)))
    print("variance:", rounded(out_ln.var(dim=-1, unbiased=False)))
    """),
    md(r"""
    Mean 0 and variance 1 for each example, as promised (`eps` makes the variance a hair
    below 1, too little to show at four decimals). PyTorch ships the same layer as `nn.LayerNorm`; with its default
    initialisation it computes exactly this:
    """),
    code(r"""
    torch.testing.assert_close(ln(batch_example), nn.LayerNorm(5)(batch_example))
    print("our LayerNorm matches torch.nn.LayerNorm")
    """),
    md(r"""
    Unlike *batch* normalisation, which averages over the examples in a batch, layer
    normalisation only looks inside one token's vector. It therefore behaves the same for any
    batch size, during training and generation alike.

    ## 4.3 A feed-forward network with GELU activations

    The second half of every transformer block is a small two-layer network applied to each
    token separately. Its activation function is not the familiar ReLU but **GELU** (Gaussian
    error linear unit). GELU is defined as $x \cdot \Phi(x)$, where $\Phi$ is the cumulative
    distribution function of the standard normal distribution; GPT-2 used a cheaper
    approximation with `tanh`, and so do we:
    """),
    code(r"""
    class GELU(nn.Module):
        def forward(self, x):
            return 0.5 * x * (1 + torch.tanh(torch.sqrt(torch.tensor(2.0 / torch.pi)) * (x + 0.044715 * x**3)))
    """),
    code(r"""
    x = torch.linspace(-3, 3, 100)
    fig, axes = plt.subplots(1, 2, figsize=(7, 2.6))
    for ax, (name, activation) in zip(axes, [("GELU", GELU()), ("ReLU", nn.ReLU())]):
        ax.plot(x, activation(x))
        ax.set_title(f"{name} activation")
        ax.set_xlabel("x")
        ax.set_ylabel(f"{name}(x)")
        ax.grid(True)
    plt.tight_layout()
    plt.show()
    """),
    md(r"""
    For large inputs the two agree: negative inputs give about 0, positive inputs pass
    through. Around zero they differ. ReLU has a sharp corner at 0 and is exactly flat for
    every negative input, so a neuron whose input is negative gets zero gradient and stops
    learning. GELU is smooth everywhere, and slightly negative inputs give a small negative
    output with a non-zero gradient, so every neuron keeps receiving a learning signal.

    PyTorch has this function built in (`approximate="tanh"` picks the same approximation):
    """),
    code(r"""
    torch.testing.assert_close(GELU()(x), torch.nn.functional.gelu(x, approximate="tanh"))
    print("our GELU matches torch.nn.functional.gelu(approximate='tanh')")
    """),
    md(r"""
    The feed-forward network widens each token's vector four times, applies GELU, and
    projects back to `emb_dim`. The wide middle layer gives the model room to compute many
    features per token; projecting back keeps the block's input and output the same shape,
    which is what lets us stack blocks (and add shortcuts, next section). Note that this
    network never mixes positions: moving information between tokens is attention's job.
    """),
    code(r"""
    class FeedForward(nn.Module):
        def __init__(self, cfg):
            super().__init__()
            self.layers = nn.Sequential(
                nn.Linear(cfg.emb_dim, 4 * cfg.emb_dim),
                GELU(),
                nn.Linear(4 * cfg.emb_dim, cfg.emb_dim),
            )

        def forward(self, x):
            return self.layers(x)
    """),
    code(r"""
    ffn = FeedForward(CFG)
    x = torch.rand(2, 3, CFG.emb_dim)  # 2 texts, 3 tokens each
    print("input: ", tuple(x.shape))
    print("output:", tuple(ffn(x).shape))
    print(f"parameters: {sum(p.numel() for p in ffn.parameters()):,}")
    """),
    md(r"""
    ## 4.4 Shortcut connections

    Gradients flow backwards through a network layer by layer, and at every layer they are
    multiplied by that layer's local derivatives. If those factors are mostly below 1, the
    gradient shrinks geometrically on its way down, and the first layers barely learn: the
    *vanishing gradient* problem. A *shortcut* (or residual) connection adds a layer's input
    to its output, `x = x + layer(x)`. The derivative of that sum contains a plain 1 from the
    `x` term, so part of the gradient skips the layer untouched.

    A small experiment shows the difference: five layers of width 3, with or without
    shortcuts. (The last layer maps 3 features to 1, so its shapes do not match and it gets
    no shortcut.)
    """),
    code(r"""
    class ExampleDeepNeuralNetwork(nn.Module):
        def __init__(self, layer_sizes, use_shortcut):
            super().__init__()
            self.use_shortcut = use_shortcut
            self.layers = nn.ModuleList(
                nn.Sequential(nn.Linear(n_in, n_out), GELU())
                for n_in, n_out in zip(layer_sizes[:-1], layer_sizes[1:])
            )

        def forward(self, x):
            for layer in self.layers:
                layer_output = layer(x)
                if self.use_shortcut and x.shape == layer_output.shape:
                    x = x + layer_output
                else:
                    x = layer_output
            return x


    def mean_abs_weight_gradients(model, x):
        # One backward pass of a squared-error loss against target 0; then, per layer,
        # the average size of the gradient that reached its weight matrix.
        loss = nn.functional.mse_loss(model(x), torch.tensor([[0.0]]))
        loss.backward()
        return [layer[0].weight.grad.abs().mean().item() for layer in model.layers]
    """),
    code(r"""
    layer_sizes = [3, 3, 3, 3, 3, 1]
    sample_input = torch.tensor([[1.0, 0.0, -1.0]])

    gradients = {}
    for use_shortcut in (False, True):
        torch.manual_seed(123)  # the same initial weights for both networks
        model = ExampleDeepNeuralNetwork(layer_sizes, use_shortcut)
        gradients[use_shortcut] = mean_abs_weight_gradients(model, sample_input)

    print("layer   without shortcuts   with shortcuts")
    for i, (without, with_) in enumerate(zip(gradients[False], gradients[True]), start=1):
        print(f"{i:5}   {without:17.4g}   {with_:14.4g}")
    """),
    code(r"""
    layers = range(1, len(layer_sizes))
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.bar([i - 0.2 for i in layers], gradients[False], width=0.4, label="without shortcuts")
    ax.bar([i + 0.2 for i in layers], gradients[True], width=0.4, label="with shortcuts")
    ax.set_yscale("log")
    ax.set_xlabel("layer (1 = closest to the input)")
    ax.set_ylabel("mean |gradient| (log scale)")
    ax.set_xticks(list(layers))
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5))
    plt.tight_layout()
    plt.show()
    """),
    md(r"""
    Without shortcuts, the gradient reaching the first layer is about 25 times smaller than
    the one at the last layer, after only five layers; in a network of dozens of layers it
    would be practically zero. With shortcuts every layer gets a gradient of similar size
    (note the log scale: the two networks differ by a factor of roughly 200 to 1,700). This is why every sub-layer of a transformer block sits inside a shortcut.

    ## 4.5 The transformer block

    The block combines everything so far with chapter 3's multi-head attention. Here is that
    class again, the same code as in chapter 3, with the book's `W_query`, `W_key` and
    `W_value` projections. One detail matters in this chapter: the causal mask is registered
    with `persistent=False`. It is a buffer (it moves to the GPU with the model) but not part
    of the model's state dict, because it holds no learned values and the constructor
    rebuilds it anyway. Saved checkpoints then contain only weights.
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
    md(r"""
    A transformer block has two halves with the same pattern: normalise, transform, apply
    dropout, and add the result to the input through a shortcut. The first half lets tokens
    exchange information (attention); the second processes each token on its own
    (feed-forward).

    The normalisation comes *before* each sub-layer ("pre-LayerNorm"), as in GPT-2. The
    original transformer of 2017 normalised after the shortcut addition; normalising first
    leaves the shortcut path completely untouched from the first block to the last, which
    makes deep stacks train more reliably.
    """),
    code(r"""
    class TransformerBlock(nn.Module):
        def __init__(self, cfg):
            super().__init__()
            self.att = MultiHeadAttention(
                d_in=cfg.emb_dim,
                d_out=cfg.emb_dim,
                context_length=cfg.context_length,
                dropout=cfg.drop_rate,
                num_heads=cfg.n_heads,
                qkv_bias=cfg.qkv_bias,
            )
            self.ff = FeedForward(cfg)
            self.norm1 = LayerNorm(cfg.emb_dim)
            self.norm2 = LayerNorm(cfg.emb_dim)
            self.drop_shortcut = nn.Dropout(cfg.drop_rate)

        def forward(self, x):
            x = x + self.drop_shortcut(self.att(self.norm1(x)))  # tokens look at each other
            x = x + self.drop_shortcut(self.ff(self.norm2(x)))  # each token on its own
            return x
    """),
    code(r"""
    torch.manual_seed(123)
    x = torch.rand(2, 4, CFG.emb_dim)
    block = TransformerBlock(CFG)
    print("input: ", tuple(x.shape))
    print("output:", tuple(block(x).shape))
    """),
    md(r"""
    The shape goes in and comes out unchanged: that is what allows any number of blocks to be
    stacked. What changes is the content. Each output vector now mixes information from the
    token itself and from the tokens before it.

    ## 4.6 The GPT model

    The real model is the skeleton of section 4.1 with the placeholders replaced:
    """),
    code(r"""
    class GPTModel(nn.Module):
        def __init__(self, cfg):
            super().__init__()
            cfg = GPTConfig.coerce(cfg)  # also accepts the book's plain dict
            self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.emb_dim)
            self.pos_emb = nn.Embedding(cfg.context_length, cfg.emb_dim)
            self.drop_emb = nn.Dropout(cfg.drop_rate)
            self.trf_blocks = nn.Sequential(*[TransformerBlock(cfg) for _ in range(cfg.n_layers)])
            self.final_norm = LayerNorm(cfg.emb_dim)
            self.out_head = nn.Linear(cfg.emb_dim, cfg.vocab_size, bias=False)

        def forward(self, in_idx):
            batch_size, num_tokens = in_idx.shape
            positions = torch.arange(num_tokens, device=in_idx.device)
            x = self.tok_emb(in_idx) + self.pos_emb(positions)  # (batch, tokens, emb_dim)
            x = self.drop_emb(x)
            x = self.trf_blocks(x)
            x = self.final_norm(x)
            return self.out_head(x)  # (batch, tokens, vocab_size)
    """),
    code(r"""
    torch.manual_seed(123)
    model = GPTModel(CFG)
    logits = model(batch)
    print("input: ", tuple(batch.shape))
    print("logits:", tuple(logits.shape))
    print("first logits of the first text:", [round(v, 2) for v in logits[0, 0, :4].tolist()])
    """),
    md(r"""
    ### How big is GPT-2 "small"?

    Counting parameters needs no forward pass, so we can afford the full 124M configuration
    here whatever `FULL_SIZE` says (building it takes about a second).
    """),
    code(r"""
    torch.manual_seed(123)
    model_124m = GPTModel(GPT_CONFIG_124M)
    total_params = sum(p.numel() for p in model_124m.parameters())
    print(f"total parameters: {total_params:,}")
    """),
    md(r"""
    163 million, not 124. The difference is the output head: it has one row of 768 weights
    per vocabulary token, exactly like the token embedding.
    """),
    code(r"""
    print("token embedding:", tuple(model_124m.tok_emb.weight.shape))
    print("output head:    ", tuple(model_124m.out_head.weight.shape))
    params_without_head = total_params - model_124m.out_head.weight.numel()
    print(f"parameters without the output head: {params_without_head:,}")
    """),
    md(r"""
    OpenAI's GPT-2 uses **weight tying**: the output head *is* the token embedding matrix,
    so those 38.6 million weights are stored once. That gives the advertised 124 million.
    Tying is one assignment in PyTorch, and `model.parameters()` yields a shared tensor only
    once, so the count drops by itself:
    """),
    code(r"""
    model_124m.out_head.weight = model_124m.tok_emb.weight
    print(f"parameters with tied weights: {sum(p.numel() for p in model_124m.parameters()):,}")
    """),
    md(r"""
    Tying saves memory, but separate matrices tend to train a little better, which is why
    the book (and this course, by default) keeps them separate. `GPTConfig` has a
    `tie_embeddings` switch for the other choice, and loading OpenAI's weights later fills
    both matrices with the same values either way.

    Each parameter is a 32-bit float, four bytes:
    """),
    code(r"""
    total_size_mb = total_params * 4 / 1024**2
    print(f"memory for the untied model's parameters: {total_size_mb:.2f} MB")
    del model_124m  # free its 622 MB before we go on
    """),
    md(r"""
    That is just for the weights. Training needs several times more: the gradients (same
    size again), the optimiser's state (AdamW keeps two more values per parameter) and the
    activations stored for the backward pass.

    ## 4.7 Generating text

    The model outputs, at every position, scores for the next token. To write text we use
    only the **last** position's scores (the prediction for the token after the whole
    input), pick a token, append it to the input, and run the model again, until we have as
    many new tokens as we asked for. The simplest choice of token is the highest score,
    *greedy decoding*. Two details:

    * the model cannot see more than `context_size` tokens, so we feed it only the last
      `context_size` tokens of a longer sequence;
    * softmax turns logits into probabilities but never changes their order, so taking the
      argmax of the logits picks the same token as the argmax of the probabilities.
    """),
    code(r"""
    def generate_text_simple(model, idx, max_new_tokens, context_size):
        # idx: (batch, tokens) token ids of the text so far.
        for _ in range(max_new_tokens):
            idx_cond = idx[:, -context_size:]  # crop to what the model can see
            with torch.no_grad():
                logits = model(idx_cond)
            logits = logits[:, -1, :]  # (batch, vocab_size): the prediction for the next token
            idx_next = torch.argmax(logits, dim=-1, keepdim=True)  # (batch, 1)
            idx = torch.cat((idx, idx_next), dim=1)
        return idx
    """),
    md(r"""
    `model.eval()` switches dropout off: while generating we want the model's actual
    prediction, not a randomly thinned one.
    """),
    code(r"""
    start_context = "Hello, I am"
    encoded = tokenizer.encode(start_context)
    encoded_tensor = torch.tensor(encoded).unsqueeze(0)  # add the batch dimension
    print("token ids:", encoded)

    model.eval()
    out = generate_text_simple(model, encoded_tensor, max_new_tokens=6, context_size=CFG.context_length)
    print("output ids:", out.tolist())
    print("decoded:   ", repr(tokenizer.decode(out.squeeze(0).tolist())))
    """),
    md(r"""
    Six new tokens, and no sense in them. This is expected: the weights are random, so the
    scores are random too. (With `FULL_SIZE = True` you get the book's gibberish,
    `'Hello, I am Featureiman Byeswickattribute argue'`: our classes create their weights in
    the same order as the book's, so the same seed gives the same random model.) Looking at the probabilities of the first prediction makes that
    visible. A model that knew English would put most of the probability on a few plausible
    continuations; ours spreads it almost evenly over all 50,257 tokens (even odds would
    give each token 1 / 50,257 ≈ 0.00002):
    """),
    code(r"""
    with torch.no_grad():
        probas = torch.softmax(model(encoded_tensor)[0, -1], dim=-1)
    top = torch.topk(probas, 5)
    for p, token_id in zip(top.values, top.indices):
        print(f"{tokenizer.decode([token_id.item()])!r:16} {p.item():.5f}")
    """),
    md(r"""
    Training, in chapter 5, is what moves this distribution towards the tokens that actually
    follow in real text.

    ## The same code in `reference_impl`

    The course package contains this chapter's model as `reference_impl.model.GPTModel`,
    which the later chapters use. It has the same module and parameter names, with one
    difference inside attention: `FusedMultiHeadAttention` stores `W_query`, `W_key` and
    `W_value` stacked into a single `qkv` layer (one matrix multiplication instead of three,
    and the layout of OpenAI's checkpoints) and calls PyTorch's fused
    `scaled_dot_product_attention`. A load hook stacks the book's three matrices on the way
    in, so the chapter's state dict loads unchanged. Because our mask is not persistent, the
    state dict holds only weights and no key is left over:
    """),
    code(r"""
    from reference_impl.generate import generate
    from reference_impl.generate import generate_text_simple as package_generate_text_simple
    from reference_impl.model import GPTModel as PackageGPTModel
    from reference_impl.model import count_parameters

    torch.manual_seed(123)
    chapter_model = GPTModel(SMALL_CONFIG).eval()
    package_model = PackageGPTModel(SMALL_CONFIG).eval()

    state_dict = chapter_model.state_dict()
    print("mask buffers in the state dict:", [key for key in state_dict if key.endswith("mask")])
    result = package_model.load_state_dict(state_dict)  # strict: any key mismatch raises
    print("missing keys:", result.missing_keys, " unexpected keys:", result.unexpected_keys)
    assert count_parameters(package_model) == sum(p.numel() for p in chapter_model.parameters())
    """),
    code(r"""
    with torch.no_grad():
        torch.testing.assert_close(package_model(batch), chapter_model(batch))

    chapter_tokens = generate_text_simple(chapter_model, encoded_tensor, 10, SMALL_CONFIG.context_length)
    package_tokens = package_generate_text_simple(package_model, encoded_tensor, 10, SMALL_CONFIG.context_length)
    assert torch.equal(chapter_tokens, package_tokens)
    print("same logits and the same 10 generated tokens:", chapter_tokens[0, -10:].tolist())
    """),
    md(r"""
    `generate_text_simple` is wasteful. To produce token number 14 it runs all 13 previous
    tokens through every layer again, although the keys and values of those 13 tokens are
    exactly what they were one step earlier: a token only attends to the tokens *before*
    it, so nothing that comes later changes them. A **KV cache** stores each layer's keys
    and values once computed. Every later step feeds the model only the newest token, computes
    its query, key and value, appends the key and value to the cache, and lets the query
    attend to everything cached. Each step then costs one token's worth of work instead of
    the whole sequence's, at the price of memory for the cache (two tensors of
    `tokens × emb_dim` per layer). The package's `generate` does this with `use_cache=True`
    and must produce exactly the same tokens:
    """),
    code(r"""
    cached_tokens = generate(package_model, encoded_tensor, max_new_tokens=10, use_cache=True)
    assert torch.equal(cached_tokens, chapter_tokens)
    prompt_len, new = encoded_tensor.shape[1], 10
    print("generate(use_cache=True) gives the same tokens as generate_text_simple")
    print("token positions run through the model without a cache:", sum(range(prompt_len, prompt_len + new)))
    print("token positions run through the model with a cache:   ", prompt_len + new - 1)
    """),
    md(r"""
    `generate` also offers temperature, top-k sampling and a stop token; chapter 5 explains
    them.

    ## Exercises

    [Exercises for chapter 4](../exercises/ch04/ch04_exercises.ipynb): write the layer
    normalisation, GELU, feed-forward network, transformer block, GPT model and greedy
    generation loop yourself, and count a GPT's parameters by formula, without building it.

    ## Summary

    * A `GPTConfig` fixes every size of the model; the presets give the four GPT-2 sizes,
      and invalid combinations are refused as soon as they are written.
    * Layer normalisation rescales each token's features to mean 0 and variance 1, with a
      learnable `scale` and `shift`; it keeps activations in a stable range.
    * The feed-forward network widens each token to 4 × `emb_dim`, applies the smooth GELU
      activation, and projects back.
    * Shortcut connections add a layer's input to its output and keep gradients from
      vanishing on their way to the early layers.
    * A transformer block is pre-LayerNorm attention and a pre-LayerNorm feed-forward
      network, each inside a shortcut; input and output have the same shape, so blocks stack.
    * `GPTModel` is embeddings, `n_layers` blocks, a final LayerNorm and a linear output
      head. GPT-2 small has 163,009,536 parameters with a separate output head and
      124,412,160 with the head tied to the token embedding (621.83 MB in float32 untied).
    * Text comes out one token at a time: predict, pick the most likely token, append, repeat.
      Untrained, the model produces gibberish; a KV cache makes the loop much cheaper.
    """),
]

if __name__ == "__main__":
    main(CELLS, "ch04_gpt_model")
