"""Draw the figures of chapters 1-4 and appendix A as SVG files next to this script.

Run from anywhere:  .venv/bin/python book/figures/make_figures.py
The output is byte-for-byte reproducible (no dates, fixed ids), so re-running it
only changes the SVGs when this script changes.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

HERE = Path(__file__).resolve().parent

plt.rcParams.update(
    {
        "svg.fonttype": "none",  # keep text as text: small files, crisp at any zoom
        "svg.hashsalt": "llm-course",  # fixed element ids, so the files are reproducible
        "font.family": "DejaVu Sans",
        "font.size": 10,
    }
)

# One colour per stage, used for the box edge and a light fill.
STAGE_COLOURS = ["#3b7dd8", "#e08a1e", "#2e9e5b"]


def save(fig, name):
    fig.savefig(HERE / name, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    print(f"wrote {HERE / name}")


def box(ax, x, y, w, h, colour, fill_alpha=0.12):
    patch = FancyBboxPatch(
        (x, y),
        w,
        h,
        boxstyle="round,pad=0.02,rounding_size=0.15",
        edgecolor=colour,
        facecolor=colour,
        linewidth=1.8,
    )
    patch.set_facecolor(matplotlib.colors.to_rgba(colour, fill_alpha))
    ax.add_patch(patch)


def arrow(ax, start, end, colour="#555555"):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=16, linewidth=1.6, color=colour))


def course_stages():
    """The three stages of the course, the chapters in each, and what each stage produces."""
    stages = [
        (
            "Stage 1: build",
            ["Ch. 2  tokens and embeddings", "Ch. 3  attention", "Ch. 4  the GPT model"],
            "an untrained GPT",
        ),
        (
            "Stage 2: pretrain",
            ["Ch. 5  training loop and loss", "Ch. 5  generating text", "Ch. 5  loading GPT-2's weights"],
            "a foundation model",
        ),
        (
            "Stage 3: fine-tune",
            ["Ch. 6  spam classifier", "Ch. 7  instruction follower", "App. E  LoRA"],
            "a classifier / an assistant",
        ),
    ]
    fig, ax = plt.subplots(figsize=(10.0, 2.9))
    width, height, gap = 3.1, 1.7, 0.55
    for i, (title, lines, result) in enumerate(stages):
        x = i * (width + gap)
        colour = STAGE_COLOURS[i]
        box(ax, x, 0.55, width, height, colour)
        ax.text(
            x + width / 2,
            0.55 + height - 0.28,
            title,
            ha="center",
            va="center",
            fontsize=12,
            fontweight="bold",
            color=colour,
        )
        for j, line in enumerate(lines):
            ax.text(x + 0.15, 0.55 + height - 0.72 - j * 0.33, line, ha="left", va="center", fontsize=9.5)
        # What the stage hands on to the next one.
        ax.text(x + width / 2, 0.18, result, ha="center", va="center", fontsize=9.5, style="italic", color="#333333")
        arrow(ax, (x + width / 2, 0.55), (x + width / 2, 0.32), colour)
        if i < len(stages) - 1:
            arrow(ax, (x + width + 0.05, 0.55 + height / 2), (x + width + gap - 0.05, 0.55 + height / 2))
    ax.set_xlim(-0.1, 3 * width + 2 * gap + 0.1)
    ax.set_ylim(0.0, 0.55 + height + 0.1)
    ax.set_axis_off()
    save(fig, "course_stages.svg")


def next_token_prediction():
    """The targets are the inputs shifted by one: each position predicts the token after it."""
    tokens = ["Every", " effort", " moves", " you", " forward", "."]
    inputs, targets = tokens[:-1], tokens[1:]
    fig, ax = plt.subplots(figsize=(8.0, 2.6))
    cell_w, cell_h = 1.35, 0.5
    for i, (inp, tgt) in enumerate(zip(inputs, targets)):
        x = i * (cell_w + 0.15)
        box(ax, x, 1.45, cell_w, cell_h, STAGE_COLOURS[0])
        ax.text(
            x + cell_w / 2,
            1.45 + cell_h / 2,
            inp.replace(" ", "␣"),
            ha="center",
            va="center",
            fontsize=10,
            family="DejaVu Sans Mono",
        )
        box(ax, x, 0.15, cell_w, cell_h, STAGE_COLOURS[2])
        ax.text(
            x + cell_w / 2,
            0.15 + cell_h / 2,
            tgt.replace(" ", "␣"),
            ha="center",
            va="center",
            fontsize=10,
            family="DejaVu Sans Mono",
        )
        arrow(ax, (x + cell_w / 2, 1.45), (x + cell_w / 2, 0.65))
    ax.text(-0.15, 1.45 + cell_h / 2, "input", ha="right", va="center", fontsize=10, fontweight="bold")
    ax.text(-0.15, 0.15 + cell_h / 2, "target", ha="right", va="center", fontsize=10, fontweight="bold")
    ax.text(
        len(inputs) * (cell_w + 0.15) / 2,
        2.2,
        "Each position sees its token and all before it, and predicts the next one (␣ is a space)",
        ha="center",
        va="center",
        fontsize=9.5,
        style="italic",
        color="#333333",
    )
    ax.set_xlim(-1.3, len(inputs) * (cell_w + 0.15))
    ax.set_ylim(0.0, 2.4)
    ax.set_axis_off()
    save(fig, "next_token_prediction.svg")


# ---------------------------------------------------------------------------------------
# Chapters 2-4 and appendix A
# ---------------------------------------------------------------------------------------

BLUE, ORANGE, GREEN, GREY, RED, PURPLE = "#3b7dd8", "#e08a1e", "#2e9e5b", "#777777", "#c0392b", "#7d4cc2"


def node(ax, cx, cy, w, h, text, colour, fontsize=10, bold=False, mono=False, alpha=0.12):
    """A rounded box centred at (cx, cy) with its text."""
    box(ax, cx - w / 2, cy - h / 2, w, h, colour, fill_alpha=alpha)
    ax.text(
        cx,
        cy,
        text,
        ha="center",
        va="center",
        fontsize=fontsize,
        fontweight="bold" if bold else "normal",
        family="DejaVu Sans Mono" if mono else "DejaVu Sans",
    )


def note(ax, x, y, text, ha="left", size=9, colour="#333333", style="italic"):
    ax.text(x, y, text, ha=ha, va="center", fontsize=size, style=style, color=colour)


def canvas(width_in, height_in, xlim, ylim):
    fig, ax = plt.subplots(figsize=(width_in, height_in))
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_axis_off()
    return fig, ax


def sliding_window():
    """Chapter 2: input chunks of max_length tokens, targets shifted by one, windows moved by stride."""
    tokens = ["In", "␣the", "␣heart", "␣of", "␣the", "␣city", "␣stood", "␣the", "␣old", "␣library"]
    fig, ax = canvas(10.4, 3.0, (-1.6, 12.2), (-0.3, 3.3))
    for i, token in enumerate(tokens):
        node(ax, i + 0.5, 2.55, 0.92, 0.5, token, GREY, fontsize=8.5, mono=True, alpha=0.06)
    note(ax, -0.1, 2.55, "token ids", ha="right", style="normal")
    max_length, stride = 4, 4
    for row, start in enumerate(range(0, 2 * stride, stride)):
        y = 1.55 - row * 1.05
        colour = [BLUE, ORANGE][row]
        for k in range(max_length):
            node(ax, start + k + 0.5, y + 0.22, 0.92, 0.36, tokens[start + k], colour, fontsize=8, mono=True)
            node(
                ax,
                start + k + 1.5,
                y - 0.22,
                0.92,
                0.36,
                tokens[start + k + 1],
                colour,
                fontsize=8,
                mono=True,
                alpha=0.3,
            )
        note(ax, -0.1, y + 0.22, f"input {row + 1}", ha="right", style="normal", colour=colour)
        note(ax, -0.1, y - 0.22, f"target {row + 1}", ha="right", style="normal", colour=colour)
    note(ax, 11.0, 1.55, "max_length = 4:\ntokens per input", ha="center", size=8.5)
    note(ax, 11.0, 0.55, "stride = 4: the next\nwindow starts 4 later", ha="center", size=8.5)
    note(ax, 4.5, -0.15, "each target is its input shifted one token to the right", ha="center")
    save(fig, "ch02_sliding_window.svg")


def bpe_merges():
    """Chapter 2: BPE repeatedly replaces the most frequent pair of neighbouring ids with a new id."""
    steps = [
        (["l", "o", "w", "␣", "l", "o", "w", "e", "r"], None),
        (["lo", "w", "␣", "lo", "w", "e", "r"], "merge 1: (l, o) → lo"),
        (["low", "␣", "low", "e", "r"], "merge 2: (lo, w) → low"),
        (["low", "␣", "low", "er"], "merge 3: (e, r) → er"),
    ]
    fig, ax = canvas(8.6, 3.5, (-2.6, 9.6), (-0.6, 4.2))
    for row, (pieces, label) in enumerate(steps):
        y = 3.7 - row * 1.1
        x = 0.0
        for piece in pieces:
            width = 0.45 + 0.28 * len(piece)
            merged = len(piece) > 1
            node(ax, x + width / 2, y, width, 0.5, piece, GREEN if merged else BLUE, fontsize=9, mono=True,
                 alpha=0.25 if merged else 0.1)  # fmt: skip
            x += width + 0.12
        note(ax, -0.2, y, label or "bytes", ha="right", size=8.5, style="normal")
    note(ax, 3.6, -0.4, "each merge learns one new token; encoding applies the merges in the order learnt",
         ha="center", size=8.5)  # fmt: skip
    save(fig, "ch02_bpe_merges.svg")


def qkv_attention():
    """Chapter 3: inputs projected to queries, keys and values; scores, softmax, weighted sum."""
    fig, ax = canvas(9.6, 3.6, (0, 12.4), (0, 4.6))
    node(ax, 1.0, 2.3, 1.6, 1.0, "inputs x\n(tokens × d_in)", GREY, fontsize=9)
    for y, name, colour in [
        (3.7, "queries Q = x W_q", BLUE),
        (2.3, "keys K = x W_k", ORANGE),
        (0.9, "values V = x W_v", GREEN),
    ]:
        node(ax, 4.0, y, 2.6, 0.8, name, colour, fontsize=9)
        arrow(ax, (1.85, 2.3), (2.65, y))
    node(ax, 7.2, 3.0, 2.4, 1.0, "scores = Q Kᵀ\n(tokens × tokens)", PURPLE, fontsize=9)
    arrow(ax, (5.35, 3.7), (5.95, 3.2))
    arrow(ax, (5.35, 2.3), (5.95, 2.8))
    node(ax, 10.6, 3.0, 3.1, 1.1, "weights =\nsoftmax(scores / √d_k)\neach row sums to 1", PURPLE, fontsize=8.5)
    arrow(ax, (8.45, 3.0), (9.0, 3.0))
    node(ax, 10.6, 0.9, 2.7, 0.9, "context vectors\n= weights · V", RED, fontsize=9)
    arrow(ax, (10.6, 2.42), (10.6, 1.4))
    arrow(ax, (5.35, 0.9), (9.2, 0.9))
    note(ax, 7.2, 1.85, "how much each token (row)\nattends to each other (column)", ha="center", size=8)
    save(fig, "ch03_qkv_attention.svg")


def causal_mask():
    """Chapter 3: the causal mask hides the future; each row is renormalised over what is left."""
    tokens = ["Your", "journey", "starts", "with", "one", "step"]
    fig, ax = canvas(6.2, 4.4, (-1.9, 6.6), (-0.9, 6.9))
    for i, row in enumerate(tokens):  # i: the query (row), j: the key (column)
        ax.text(-0.15, 5.5 - i, row, ha="right", va="center", fontsize=9)
        ax.text(i + 0.5, 6.15, tokens[i], ha="center", va="bottom", fontsize=8.5, rotation=35)
        for j in range(len(tokens)):
            visible = j <= i
            colour = BLUE if visible else GREY
            ax.add_patch(plt.Rectangle((j, 5 - i), 1, 1, facecolor=matplotlib.colors.to_rgba(colour, 0.55 / (i + 1) + 0.12
                         if visible else 0.18), edgecolor="white", linewidth=1.5))  # fmt: skip
            ax.text(j + 0.5, 5.5 - i, f"{1 / (i + 1):.2f}" if visible else "−∞ → 0", ha="center", va="center",
                    fontsize=7.5 if visible else 6.5, color="#222222" if visible else "#666666")  # fmt: skip
    note(ax, 3.0, -0.35, "row = the query token, column = the key token; above the diagonal is the future:", ha="center",
         size=8)  # fmt: skip
    note(ax, 3.0, -0.75, "scores there are set to −∞, so softmax gives them weight 0 (here: uniform weights)",
         ha="center", size=8)  # fmt: skip
    save(fig, "ch03_causal_mask.svg")


def split_heads():
    """Chapter 3: one wide projection viewed as several heads, attention per head, merged back."""
    fig, ax = canvas(9.6, 2.7, (0, 13.0), (0, 3.4))
    steps = [
        ("Q, K, V\n(b, tokens, d_out)", BLUE),
        (".view\n(b, tokens, heads, head_dim)", ORANGE),
        (".transpose(1, 2)\n(b, heads, tokens, head_dim)", ORANGE),
        ("attention in\neach head at once", PURPLE),
        ("transpose back, merge\n(b, tokens, d_out)", GREEN),
    ]
    for k, (text, colour) in enumerate(steps):
        x = 1.3 + k * 2.6
        node(ax, x, 2.2, 2.35, 1.1, text, colour, fontsize=8.3)
        if k:
            arrow(ax, (x - 1.45, 2.2), (x - 1.18, 2.2))
    note(ax, 6.5, 0.9, "d_out = heads × head_dim: e.g. 768 = 12 × 64 in GPT-2 small. No new weights: the same",
         ha="center", size=8.5)  # fmt: skip
    note(ax, 6.5, 0.45, "numbers are regrouped so each head attends with its own 64 of the 768 features.", ha="center",
         size=8.5)  # fmt: skip
    save(fig, "ch03_split_heads.svg")


def transformer_block():
    """Chapter 4: pre-LayerNorm attention and feed-forward, each inside a shortcut."""
    fig, ax = canvas(5.0, 7.0, (0, 6.6), (0, 10.5))
    x = 3.3
    layers = [
        (0.6, "input (b, tokens, emb_dim)", GREY),
        (1.9, "LayerNorm 1", BLUE),
        (2.9, "masked multi-head attention", PURPLE),
        (3.9, "dropout", GREY),
        (5.9, "LayerNorm 2", BLUE),
        (6.9, "feed-forward (Linear, GELU, Linear)", ORANGE),
        (7.9, "dropout", GREY),
        (9.9, "output (b, tokens, emb_dim)", GREY),
    ]
    for y, text, colour in layers:
        node(ax, x, y, 4.4, 0.6, text, colour, fontsize=8.6)
    half = 0.3
    for y0, y1 in [(0.6, 1.9), (1.9, 2.9), (2.9, 3.9), (5.9, 6.9), (6.9, 7.9)]:
        arrow(ax, (x, y0 + half), (x, y1 - half))
    for y_from, y_add, y_next in [(1.25, 4.9, 5.9), (5.4, 8.9, 9.9)]:
        ax.add_patch(plt.Circle((x, y_add), 0.25, facecolor="white", edgecolor="#333333", linewidth=1.4))
        ax.text(x, y_add, "+", ha="center", va="center", fontsize=12)
        arrow(ax, (x, y_add - 1.0 + half), (x, y_add - 0.25))  # from the dropout below
        arrow(ax, (x, y_add + 0.25), (x, y_next - half))
        ax.plot([x, 0.55, 0.55], [y_from, y_from, y_add], color=GREEN, linewidth=1.6)
        arrow(ax, (0.55, y_add), (x - 0.25, y_add), GREEN)
        ax.text(0.3, (y_from + y_add) / 2, "shortcut", rotation=90, ha="center", va="center", fontsize=8, color=GREEN)
    save(fig, "ch04_transformer_block.svg")


def gpt_architecture():
    """Chapter 4: token ids to logits through embeddings, n_layers blocks, a final norm and the head."""
    fig, ax = canvas(6.4, 6.2, (0, 8.6), (0, 9.0))
    layers = [
        (0.55, "token ids (b, tokens)", GREY, "e.g. 4 tokens of one text"),
        (1.65, "token embedding + position embedding", BLUE, "50,257 × 768 and 1,024 × 768"),
        (2.65, "dropout", GREY, ""),
        (4.05, "transformer block  × n_layers", PURPLE, "12 blocks in GPT-2 small"),
        (5.45, "final LayerNorm", BLUE, ""),
        (6.45, "linear output head", ORANGE, "768 → 50,257"),
        (7.65, "logits (b, tokens, vocab_size)", RED, "a score for every possible next token"),
    ]
    for y, text, colour, side in layers:
        height = 1.0 if "block" in text else 0.62
        node(ax, 3.0, y, 4.6, height, text, colour, fontsize=9, bold="block" in text)
        if side:
            note(ax, 5.45, y, side, size=7.8)
    for (y0, t0, *_), (y1, t1, *_) in zip(layers, layers[1:]):
        h0 = 0.5 if "block" in t0 else 0.31
        h1 = 0.5 if "block" in t1 else 0.31
        arrow(ax, (3.0, y0 + h0), (3.0, y1 - h1))
    save(fig, "ch04_gpt_architecture.svg")


def autograd_graph():
    """Appendix A: the computation graph of a logistic regression, and the gradients flowing back."""
    fig, ax = canvas(8.8, 3.0, (0, 12.6), (0, 4.2))
    nodes = {
        "x1": (0.8, 3.1, "x₁ (input)", GREY),
        "w1": (0.8, 1.9, "w₁ (weight)", BLUE),
        "b": (0.8, 0.7, "b (bias)", BLUE),
        "z": (4.0, 1.9, "z = x₁·w₁ + b", PURPLE),
        "a": (7.0, 1.9, "a = σ(z)", PURPLE),
        "loss": (10.4, 1.9, "loss = BCE(a, y)", RED),
    }
    for cx, cy, text, colour in nodes.values():
        node(ax, cx, cy, 2.3 if cx > 1 else 1.5, 0.7, text, colour, fontsize=9)
    for start in ("x1", "w1", "b"):
        arrow(ax, (1.6, nodes[start][1]), (2.8, 1.9))
    arrow(ax, (5.2, 1.9), (5.8, 1.9))
    arrow(ax, (8.2, 1.9), (9.2, 1.9))
    ax.annotate("", xy=(0.8, 2.3), xytext=(10.4, 2.3), arrowprops=dict(arrowstyle="-|>", color=RED, lw=1.2, ls="--",
                connectionstyle="arc3,rad=0.25"))  # fmt: skip
    note(ax, 6.3, 3.95, "loss.backward(): the chain rule, node by node, from the loss back to the weights", ha="center",
         size=8.5, colour=RED)  # fmt: skip
    note(ax, 6.3, 0.35, "forward: each operation records itself; backward fills w₁.grad and b.grad", ha="center",
         size=8.5)  # fmt: skip
    save(fig, "appendix_a_autograd_graph.svg")


if __name__ == "__main__":
    course_stages()
    next_token_prediction()
    sliding_window()
    bpe_merges()
    qkv_attention()
    causal_mask()
    split_heads()
    transformer_block()
    gpt_architecture()
    autograd_graph()
