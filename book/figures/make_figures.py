"""Draw the figures of chapter 1 as SVG files next to this script.

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


if __name__ == "__main__":
    course_stages()
    next_token_prediction()
