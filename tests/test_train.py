"""reference_impl.train: losses, the training loop and its schedule, plots, checkpoints.

Everything runs on a tiny GPT over a character-level vocabulary, so each test takes well
under a second or two on a CPU.
"""

import math
import pickle

import matplotlib
import pytest
import torch
from torch import nn

from reference_impl.data import create_dataloader_v1
from reference_impl.model import GPTConfig
from reference_impl.train import (
    TrainingHistory,
    calc_loss_batch,
    calc_loss_loader,
    evaluate_model,
    learning_rate_at,
    load_checkpoint,
    perplexity,
    plot_learning_rates,
    plot_losses,
    save_checkpoint,
    train_model_simple,
)

matplotlib.use("Agg")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # These models are tiny: a second thread only adds overhead, and much more of it when
    # the cores are busy with other work.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TEXT = "Every effort moves you forward, one small step at a time. " * 12


class CharTokenizer:
    """One token per character: a vocabulary of a few dozen ids keeps the model tiny."""

    def __init__(self, text: str):
        self.chars = sorted(set(text))
        self.ids = {c: i for i, c in enumerate(self.chars)}

    def encode(self, text, allowed_special=None):
        return [self.ids[c] for c in text]

    def decode(self, ids):
        return "".join(self.chars[i] for i in ids)


TOKENIZER = CharTokenizer(TEXT)
TINY = GPTConfig(vocab_size=len(TOKENIZER.chars), context_length=8, emb_dim=16, n_heads=2, n_layers=1, drop_rate=0.0)


@pytest.fixture
def tiny_config():
    """The tiny model of these tests (conftest.py's tiny_model fixture builds it)."""
    return TINY


def loaders(batch_size=4, shuffle=True):
    # 696 characters in chunks of 8: 86 training chunks, so 21 steps of 4 per epoch.
    train = create_dataloader_v1(TEXT, batch_size, 8, 8, shuffle=shuffle, tokenizer=TOKENIZER)
    val = create_dataloader_v1(TEXT[:200], batch_size, 8, 8, shuffle=False, tokenizer=TOKENIZER)
    return train, val


def train(model, num_epochs=1, lr=5e-3, eval_freq=5, seed=0, **options):
    torch.manual_seed(seed)  # the shuffling of the training loader
    train_loader, val_loader = loaders()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1)
    options.setdefault("show_progress", False)
    history = train_model_simple(
        model, train_loader, val_loader, optimizer, "cpu", num_epochs, eval_freq, 2, None, None, **options
    )
    return history, optimizer


class FixedLogits(nn.Module):
    """A 'model' that returns the logits it was given, whatever the input."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, idx):
        return self.logits[: idx.shape[0], : idx.shape[1]]


# ---------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------


def test_uniform_logits_give_log_vocab_size():
    vocab = 50257
    inputs = torch.zeros(2, 3, dtype=torch.long)
    targets = torch.tensor([[5, 70, 50256], [0, 1, 2]])
    loss = calc_loss_batch(inputs, targets, FixedLogits(torch.zeros(2, 3, vocab)), "cpu")
    assert loss.item() == pytest.approx(math.log(vocab), rel=1e-6)
    assert perplexity(loss) == pytest.approx(vocab, rel=1e-5)


def test_calc_loss_batch_is_mean_negative_log_likelihood_skipping_minus_100():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5)
    targets = torch.tensor([[1, 4, -100], [0, -100, 2]])
    log_probs = torch.log_softmax(logits, dim=-1)
    kept = [(0, 0, 1), (0, 1, 4), (1, 0, 0), (1, 2, 2)]  # the positions not marked -100
    by_hand = -sum(log_probs[b, t, y] for b, t, y in kept) / len(kept)

    loss = calc_loss_batch(torch.zeros(2, 3, dtype=torch.long), targets, FixedLogits(logits), "cpu")

    torch.testing.assert_close(loss, by_hand, rtol=1e-6, atol=1e-6)


def test_calc_loss_loader_averages_the_first_num_batches():
    torch.manual_seed(0)
    logits = torch.randn(1, 4, 6)
    model = FixedLogits(logits)
    batches = [(torch.zeros(1, 4, dtype=torch.long), torch.full((1, 4), k)) for k in range(3)]
    per_batch = [calc_loss_batch(x, y, model, "cpu").item() for x, y in batches]

    assert calc_loss_loader(batches, model, "cpu", num_batches=2) == pytest.approx(sum(per_batch[:2]) / 2)
    assert calc_loss_loader(batches, model, "cpu") == pytest.approx(sum(per_batch) / 3)
    assert calc_loss_loader(batches, model, "cpu", num_batches=10) == pytest.approx(sum(per_batch) / 3)
    assert math.isnan(calc_loss_loader([], model, "cpu"))
    with pytest.raises(ValueError, match="num_batches"):
        calc_loss_loader(batches, model, "cpu", num_batches=0)


def test_perplexity_is_exp_of_the_loss():
    assert perplexity(0.0) == 1.0
    assert perplexity(torch.tensor(math.log(7.0))) == pytest.approx(7.0, rel=1e-6)


def test_evaluate_model_uses_eval_mode_without_gradients_and_restores_train_mode(tiny_model):
    model = tiny_model(drop_rate=0.5)
    train_loader, val_loader = loaders(shuffle=False)
    model.train()
    first = evaluate_model(model, train_loader, val_loader, "cpu", eval_iter=2)
    second = evaluate_model(model, train_loader, val_loader, "cpu", eval_iter=2)
    assert first == second  # dropout off: the same batches give the same losses
    assert model.training
    assert all(p.grad is None for p in model.parameters())


# ---------------------------------------------------------------------------------------
# Learning-rate schedule
# ---------------------------------------------------------------------------------------

SCHEDULE = dict(warmup_steps=10, initial_lr=1e-5, peak_lr=1e-3, min_lr=1e-4, cosine_decay=True)


def test_learning_rate_warms_up_linearly_then_follows_a_cosine_to_min_lr():
    total = 110  # 10 warm-up steps, then 100 of cosine decay
    assert learning_rate_at(0, total, **SCHEDULE) == 1e-5
    assert learning_rate_at(5, total, **SCHEDULE) == pytest.approx(1e-5 + 5 * (1e-3 - 1e-5) / 10, rel=1e-12)
    assert learning_rate_at(10, total, **SCHEDULE) == pytest.approx(1e-3, rel=1e-12)  # end of warm-up: peak
    assert learning_rate_at(60, total, **SCHEDULE) == pytest.approx((1e-3 + 1e-4) / 2, rel=1e-12)  # half way
    assert learning_rate_at(110, total, **SCHEDULE) == pytest.approx(1e-4, rel=1e-12)  # the end: min_lr
    assert learning_rate_at(500, total, **SCHEDULE) == pytest.approx(1e-4, rel=1e-12)  # and it stays there


def test_learning_rate_without_cosine_stays_at_peak_after_warmup():
    assert learning_rate_at(3, 50, warmup_steps=4, initial_lr=0.0, peak_lr=0.4) == pytest.approx(0.3)
    assert learning_rate_at(49, 50, warmup_steps=4, initial_lr=0.0, peak_lr=0.4) == 0.4
    assert learning_rate_at(0, 50, peak_lr=0.4, cosine_decay=True, min_lr=0.0) == 0.4  # no warm-up


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(warmup_steps=5, peak_lr=1e-3), "needs initial_lr"),
        (dict(peak_lr=1e-3, cosine_decay=True), "needs min_lr"),
        (dict(peak_lr=1e-3, min_lr=1e-5), "only used by the cosine decay"),
        (dict(peak_lr=1e-3, initial_lr=1e-5), "only used by a warm-up"),
        (dict(warmup_steps=20, initial_lr=0.0, peak_lr=1e-3, cosine_decay=True, min_lr=0.0), "steps after the warm-up"),
    ],
)
def test_inconsistent_schedule_options_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        learning_rate_at(0, 20, **options)


# ---------------------------------------------------------------------------------------
# The training loop
# ---------------------------------------------------------------------------------------


def book_train_model_simple(model, train_loader, val_loader, optimizer, device, num_epochs, eval_freq, eval_iter):
    """Chapter 5's loop, as printed in the book (without the sample text)."""
    train_losses, val_losses, track_tokens_seen = [], [], []
    tokens_seen, global_step = 0, -1
    for epoch in range(num_epochs):  # noqa: B007 (the book names it)
        model.train()
        for input_batch, target_batch in train_loader:
            optimizer.zero_grad()
            loss = calc_loss_batch(input_batch, target_batch, model, device)
            loss.backward()
            optimizer.step()
            tokens_seen += input_batch.numel()
            global_step += 1
            if global_step % eval_freq == 0:
                train_loss, val_loss = evaluate_model(model, train_loader, val_loader, device, eval_iter)
                train_losses.append(train_loss)
                val_losses.append(val_loss)
                track_tokens_seen.append(tokens_seen)
    return train_losses, val_losses, track_tokens_seen


def test_with_extras_off_it_is_exactly_the_books_loop(tiny_model):
    model = tiny_model()
    history, _ = train(model, num_epochs=2)

    book_model = tiny_model()
    torch.manual_seed(0)
    train_loader, val_loader = loaders()
    optimizer = torch.optim.AdamW(book_model.parameters(), lr=5e-3, weight_decay=0.1)
    book = book_train_model_simple(book_model, train_loader, val_loader, optimizer, "cpu", 2, 5, 2)

    assert history[:3] == book
    for ours, theirs in zip(model.parameters(), book_model.parameters()):
        assert torch.equal(ours, theirs)


def test_loss_falls_by_more_than_half_and_training_is_reproducible(tiny_model):
    history, _ = train(tiny_model(), num_epochs=3, lr=1e-2, eval_freq=5)
    again, _ = train(tiny_model(), num_epochs=3, lr=1e-2, eval_freq=5)

    assert isinstance(history, TrainingHistory)
    assert history.train_losses[0] == pytest.approx(math.log(TINY.vocab_size), abs=0.3)  # random start
    assert history.train_losses[-1] < 0.5 * history.train_losses[0]
    assert history.val_losses[-1] < 0.5 * history.val_losses[0]
    assert history == again


def test_evaluates_every_eval_freq_steps_and_counts_tokens(capsys, tiny_model):
    history, optimizer = train(tiny_model(), num_epochs=2, eval_freq=7)  # 21 steps per epoch, 42 in all

    steps = [0, 7, 14, 21, 28, 35]
    assert history.tokens_seen == [(step + 1) * 4 * 8 for step in steps]  # batch 4 x 8 tokens per step
    assert len(history.train_losses) == len(history.val_losses) == len(steps)
    assert history.learning_rates == [5e-3] * 42  # no schedule: the optimizer's rate, untouched
    lines = capsys.readouterr().out.splitlines()
    assert [line[: len("Ep 1 (Step 000000):")] for line in lines] == [
        f"Ep {step // 21 + 1} (Step {step:06d}):" for step in steps
    ]
    assert lines[0] == (
        f"Ep 1 (Step 000000): Train loss {history.train_losses[0]:.3f}, Val loss {history.val_losses[0]:.3f}"
    )


def test_prints_a_sample_after_each_epoch_only_when_asked(capsys, tiny_model):
    model = tiny_model()
    train_loader, val_loader = loaders()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    args = (model, train_loader, val_loader, optimizer, "cpu", 2, 100, 1)

    train_model_simple(*args, "Every effort", TOKENIZER, show_progress=False)
    lines = capsys.readouterr().out.splitlines()
    assert [line.startswith("Every effort") for line in lines] == [False, True, True]  # eval, sample, sample
    assert len(lines[1]) == len("Every effort") + 50  # 50 new characters, on one line

    train_model_simple(*args, "Every effort", TOKENIZER, show_progress=False, print_samples=False)
    train_model_simple(*args, None, TOKENIZER, show_progress=False)
    assert len(capsys.readouterr().out.splitlines()) == 2  # only the evaluation lines


def test_loop_follows_the_learning_rate_schedule(tiny_model):
    options = dict(warmup_steps=5, initial_lr=1e-4, min_lr=1e-5, cosine_decay=True)
    history, optimizer = train(tiny_model(), num_epochs=1, lr=2e-3, **options)
    expected = [learning_rate_at(step, 21, peak_lr=2e-3, **options) for step in range(21)]
    assert history.learning_rates == expected
    assert optimizer.param_groups[0]["lr"] == expected[-1]


class RecordingSGD(torch.optim.SGD):
    """SGD that notes the global gradient norm it is asked to step with."""

    def __init__(self, params, lr):
        super().__init__(params, lr=lr)
        self.grad_norms = []

    def step(self, closure=None):
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        self.grad_norms.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())
        return super().step(closure)


@pytest.mark.parametrize("grad_clip", [None, 0.05])
def test_gradient_clipping_caps_the_norm_after_warmup(grad_clip, tiny_model):
    model = tiny_model()
    train_loader, val_loader = loaders()
    optimizer = RecordingSGD(model.parameters(), lr=0.1)
    options = dict(warmup_steps=3, initial_lr=0.01, grad_clip=grad_clip, show_progress=False)
    train_model_simple(model, train_loader, val_loader, optimizer, "cpu", 1, 100, 1, None, None, **options)

    warmup, after = optimizer.grad_norms[:3], optimizer.grad_norms[3:]
    assert min(warmup) > 0.5  # not clipped during the warm-up, as in appendix D
    if grad_clip is None:
        assert min(after) > 0.5  # a fresh model's gradients stay far above the cap
    else:
        assert after == pytest.approx([0.05] * len(after), rel=1e-5)  # clipped from the end of the warm-up on


def test_training_options_are_checked_before_training(tiny_model):
    model = tiny_model()
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(ValueError, match="needs min_lr"):
        train(model, cosine_decay=True)
    with pytest.raises(ValueError, match="grad_clip"):
        train(model, grad_clip=0.0)
    with pytest.raises(ValueError, match="eval_freq"):
        train(model, eval_freq=0)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


# ---------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------


def test_plot_losses_returns_the_books_figure():
    import matplotlib.pyplot as plt

    fig = plot_losses(torch.linspace(0, 2, 3), [32, 64, 96], [9.0, 7.0, 5.0], [9.5, 8.0, 7.0])
    try:
        assert isinstance(fig, matplotlib.figure.Figure)
        loss_axes, token_axes = fig.axes
        assert (loss_axes.get_xlabel(), loss_axes.get_ylabel()) == ("Epochs", "Loss")
        assert token_axes.get_xlabel() == "Tokens seen"
        assert [t.get_text() for t in loss_axes.get_legend().get_texts()] == ["Training loss", "Validation loss"]
        assert list(loss_axes.lines[1].get_ydata()) == [9.5, 8.0, 7.0]
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="one value per evaluation"):
        plot_losses([0, 1], [32, 64], [9.0, 7.0], [9.5])


def test_plot_learning_rates_plots_one_point_per_step():
    import matplotlib.pyplot as plt

    fig = plot_learning_rates([1e-4, 5e-4, 1e-3])
    try:
        assert list(fig.axes[0].lines[0].get_xdata()) == [0, 1, 2]
        assert fig.axes[0].get_ylabel() == "Learning rate"
    finally:
        plt.close(fig)


# ---------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------


def test_checkpoint_round_trip_restores_outputs_and_optimizer_state(tmp_path, tiny_model):
    model = tiny_model()
    _, optimizer = train(model)
    path = save_checkpoint(tmp_path / "ckpt.pth", model, optimizer, epoch=1, cfg=model.cfg)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pth"]  # no temporary file left behind

    restored = tiny_model(seed=999)
    restored_optimizer = torch.optim.AdamW(restored.parameters(), lr=1.0)
    extra = load_checkpoint(path, restored, restored_optimizer)

    assert extra == {"epoch": 1, "cfg": TINY.__dict__}
    idx = torch.tensor([TOKENIZER.encode("Every ef")])
    model.eval(), restored.eval()
    assert torch.equal(model(idx), restored(idx))
    ours, theirs = optimizer.state_dict(), restored_optimizer.state_dict()
    assert ours["param_groups"] == theirs["param_groups"]
    for key, state in ours["state"].items():
        for name, value in state.items():
            assert torch.equal(value, theirs["state"][key][name]), (key, name)


def test_a_plain_state_dict_and_the_books_attention_layout_load_too(tmp_path, tiny_model):
    model = tiny_model()
    state = model.state_dict()
    # The book's MultiHeadAttention keeps W_query, W_key and W_value apart; ours stacks them.
    q, k, v = state.pop("trf_blocks.0.att.qkv.weight").chunk(3)
    for part, tensor in zip(("query", "key", "value"), (q, k, v)):
        state[f"trf_blocks.0.att.W_{part}.weight"] = tensor
    torch.save(state, tmp_path / "model.pth")

    restored = tiny_model(seed=999)
    assert load_checkpoint(tmp_path / "model.pth", restored) == {}
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, restored.state_dict()[name]), name


def test_checkpoint_from_another_configuration_names_the_first_misfit(tmp_path, tiny_model):
    save_checkpoint(tmp_path / "small.pth", tiny_model())
    bigger = tiny_model(emb_dim=32, n_layers=2)
    before = [p.clone() for p in bigger.parameters()]

    with pytest.raises(ValueError) as error:
        load_checkpoint(tmp_path / "small.pth", bigger)

    assert str(error.value) == (
        "checkpoint does not fit this model: tok_emb.weight has shape (21, 16) in the checkpoint "
        "but (21, 32) in the model — was it saved from another configuration?"
    )
    assert all(torch.equal(a, b) for a, b in zip(before, bigger.parameters()))  # nothing was loaded

    deeper = tiny_model(n_layers=2)
    missing = r"the model has trf_blocks\.1\.att\.qkv\.weight \(shape \(48, 16\)\) but the checkpoint does not"
    with pytest.raises(ValueError, match=missing):
        load_checkpoint(tmp_path / "small.pth", deeper)
    save_checkpoint(tmp_path / "deep.pth", deeper)
    unexpected = r"the checkpoint has trf_blocks\.1\.att\.qkv\.weight \(shape \(48, 16\)\) but the model does not"
    with pytest.raises(ValueError, match=unexpected):
        load_checkpoint(tmp_path / "deep.pth", tiny_model())


CODE_RAN = []


def _payload():
    CODE_RAN.append(True)
    return {}


class Malicious:
    def __reduce__(self):
        return (_payload, ())


def test_checkpoints_load_with_weights_only_and_refuse_pickled_objects(tmp_path, tiny_model):
    model = tiny_model()
    path = tmp_path / "evil.pth"
    torch.save({"model_state_dict": model.state_dict(), "extra": {"gift": Malicious()}}, path)

    with pytest.raises(pickle.UnpicklingError, match="evil.pth holds Python objects other than tensors") as err:
        load_checkpoint(path, tiny_model())
    assert CODE_RAN == []  # the pickled call never ran
    assert "weights_only=False" not in str(err.value)  # never advise turning the safety check off


def test_checkpoint_errors_are_clear(tmp_path, tiny_model):
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_checkpoint(tmp_path / "missing.pth", tiny_model())

    save_checkpoint(tmp_path / "no_optimizer.pth", tiny_model())
    model = tiny_model()
    with pytest.raises(ValueError, match="holds no optimizer state"):
        load_checkpoint(tmp_path / "no_optimizer.pth", model, torch.optim.AdamW(model.parameters()))

    with pytest.raises(TypeError, match="'tokenizer' is a CharTokenizer"):
        save_checkpoint(tmp_path / "no_optimizer.pth", model, tokenizer=TOKENIZER)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["no_optimizer.pth"]  # the old file is intact


# --- damaged files, tying, full disks (each fails without its fix) ----------------------------


def test_an_untied_checkpoint_is_refused_by_a_tied_model_instead_of_overwriting_its_embedding(tmp_path, tiny_model):
    untied = tiny_model(seed=1)
    path = save_checkpoint(tmp_path / "untied.pth", untied)
    tied = tiny_model(seed=2, tie_embeddings=True)
    before = tied.tok_emb.weight.detach().clone()
    with pytest.raises(ValueError, match=r"untied.pth has an output head of its own.*tie_embeddings=False"):
        load_checkpoint(path, tied)
    assert torch.equal(tied.tok_emb.weight, before)  # nothing changed
    # A checkpoint of a tied model (head == embedding) loads into a tied model as before.
    load_checkpoint(save_checkpoint(tmp_path / "tied.pth", tiny_model(seed=3, tie_embeddings=True)), tied)


def test_flipped_bytes_in_a_saved_checkpoint_are_found_by_its_checksum(tmp_path, tiny_model):
    path = save_checkpoint(tmp_path / "model.pth", tiny_model())
    data = bytearray(path.read_bytes())
    # Flip 64 bytes inside the first tensor's data (after the zip entry of the pickle).
    start = data.index(b"data/0") + 200
    for i in range(start, start + 64):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"model.pth (is damaged|cannot be read)"):
        load_checkpoint(path, tiny_model())


def test_a_truncated_checkpoint_names_the_file_and_says_it_is_cut_short(tmp_path, tiny_model):
    path = save_checkpoint(tmp_path / "cut.pth", tiny_model())
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"cut.pth cannot be read as a PyTorch checkpoint: it is damaged or cut short"):
        load_checkpoint(path, tiny_model())


def test_a_web_page_saved_as_a_checkpoint_is_called_what_it_is(tmp_path, tiny_model):
    path = tmp_path / "model.pth"
    path.write_text("<!DOCTYPE html><html><body>Rate limit exceeded</body></html>")
    with pytest.raises(ValueError, match=r"model.pth is not a checkpoint: it is a text file") as err:
        load_checkpoint(path, tiny_model())
    assert "weights_only=False" not in str(err.value)


def test_a_failed_write_says_which_file_and_suggests_a_full_disk(tmp_path, tiny_model, monkeypatch):
    def full_disk(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 320 vs 256")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match=r"could not write the checkpoint .*model.pth .*is the disk full\?"):
        save_checkpoint(tmp_path / "model.pth", tiny_model())
    assert not (tmp_path / "model.pth").exists()


def test_training_on_a_loader_without_batches_says_why_instead_of_returning_an_empty_history(tiny_model):
    model = tiny_model()
    empty = create_dataloader_v1(TEXT[:40], 64, 8, 8, shuffle=False, drop_last=True, tokenizer=TOKENIZER)
    assert len(empty) == 0
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with pytest.raises(ValueError, match=r"yields no batch.*fewer examples than its batch_size.*drop_last"):
        train_model_simple(model, empty, empty, optimizer, "cpu", 1, 1, 1, None, None, show_progress=False)
