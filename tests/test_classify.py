"""Chapter 6: the spam data, SpamDataset, the classifier head, and a tiny end-to-end run."""

import math
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from reference_impl.classify import (
    SpamDataset,
    calc_accuracy_loader,
    calc_loss_batch,
    calc_loss_loader,
    classify_review,
    create_balanced_dataset,
    evaluate_model,
    label_id,
    last_token_index,
    last_token_logits,
    load_sms_spam,
    plot_values,
    prepare_for_classification,
    random_split,
    read_csv,
    train_classifier_simple,
    write_csv,
)
from reference_impl.model import GPTConfig, GPTModel, count_parameters

HELLO_IDS = [15496, 11, 466, 345, 588, 8887, 30]  # "Hello, do you like tea?" in GPT-2's BPE
EOT = 50256


@pytest.fixture(scope="module")
def tokenizer():
    import tiktoken

    from reference_impl.download import use_tiktoken_cache

    use_tiktoken_cache()
    return tiktoken.get_encoding("gpt2")


@pytest.fixture
def sms_rows(data_dir):
    return load_sms_spam()


# --- data -----------------------------------------------------------------------------


def test_sms_spam_collection_counts(sms_rows):
    assert len(sms_rows) == 5574
    assert Counter(label for label, _ in sms_rows) == {"ham": 4827, "spam": 747}
    assert sms_rows[0] == (
        "ham",
        "Go until jurong point, crazy.. Available only in bugis n great world la e buffet... "
        "Cine there got amore wat...",
    )
    # quotes are part of the text, not CSV quoting
    assert sum('"' in text for _, text in sms_rows) > 0
    assert any(
        text.endswith(
            "so happy about \"the cave\". I'm sorry I didn't and don't have more to give. "
            "I'm sorry i offered. I'm sorry your room was so embarassing."
        )
        for _, text in sms_rows
    )


def test_balanced_dataset_keeps_all_spam_and_as_many_ham(sms_rows):
    balanced = create_balanced_dataset(sms_rows)
    assert len(balanced) == 1494
    assert Counter(label for label, _ in balanced) == {"ham": 747, "spam": 747}
    assert balanced[747:] == [row for row in sms_rows if row[0] == "spam"]
    ham = {id(row) for row in sms_rows if row[0] == "ham"}
    assert len({id(row) for row in balanced[:747]} & ham) == 747  # distinct rows, all ham
    assert create_balanced_dataset(sms_rows) == balanced  # seeded
    assert create_balanced_dataset(sms_rows, seed=1)[:747] != balanced[:747]


def test_random_split_sizes_as_in_the_book(sms_rows):
    balanced = create_balanced_dataset(sms_rows)
    train, validation, test = random_split(balanced, 0.7, 0.1)
    assert (len(train), len(validation), len(test)) == (1045, 149, 300)
    assert sorted(map(id, train + validation + test)) == sorted(map(id, balanced))
    assert random_split(balanced) == (train, validation, test)
    assert random_split(balanced, seed=7)[0] != train


def test_random_split_rejects_fractions_over_one():
    with pytest.raises(ValueError, match="sum <= 1"):
        random_split(list(range(10)), train_frac=0.8, validation_frac=0.3)


def test_csv_round_trip_with_quotes_and_commas(tmp_path):
    rows = [("ham", 'He said "hi, there", then left'), ("spam", "WIN £100, call 0800\tnow")]
    path = write_csv(rows, tmp_path / "sub" / "train.csv")
    assert path.read_text(encoding="utf-8").splitlines()[0] == "Label,Text"
    assert read_csv(path) == [(0, rows[0][1]), (1, rows[1][1])]


def test_labels():
    assert [label_id(x) for x in ("ham", "spam", 0, 1, "0", "1")] == [0, 1, 0, 1, 0, 1]
    with pytest.raises(ValueError, match="unknown label 'eggs'"):
        label_id("eggs")


# --- SpamDataset ----------------------------------------------------------------------


def test_spam_dataset_pads_to_the_longest(tokenizer):
    dataset = SpamDataset([("ham", "Hello, do you like tea?"), ("spam", "Hello")], tokenizer)
    assert dataset.max_length == 7 and len(dataset) == 2
    ids, label = dataset[0]
    assert ids.tolist() == HELLO_IDS and ids.dtype == torch.long and label.item() == 0
    ids, label = dataset[1]
    assert ids.tolist() == [15496] + [EOT] * 6 and label.item() == 1


def test_spam_dataset_truncates_and_pads_to_max_length(tokenizer, tmp_path):
    path = write_csv([("ham", "Hello, do you like tea?"), ("spam", "Hello")], tmp_path / "data.csv")
    dataset = SpamDataset(path, tokenizer, max_length=3, pad_token_id=0)
    assert dataset.max_length == 3
    assert [dataset[i][0].tolist() for i in range(2)] == [[15496, 11, 466], [15496, 0, 0]]
    assert [dataset[i][1].item() for i in range(2)] == [0, 1]
    batch_ids, batch_labels = next(iter(DataLoader(dataset, batch_size=2)))
    assert batch_ids.shape == (2, 3) and batch_labels.tolist() == [0, 1]


def test_spam_dataset_records_the_real_lengths(tokenizer):
    dataset = SpamDataset([("ham", "Hello, do you like tea?"), ("spam", "Hello")], tokenizer, max_length=5)
    assert dataset.lengths == [5, 1]  # the first is cut to 5 tokens, the second padded by 4
    assert last_token_index(torch.stack([dataset[0][0], dataset[1][0]])).tolist() == [4, 0]


def test_spam_dataset_refuses_a_pad_id_that_ends_a_message(tokenizer):
    # "!" is token 0 in GPT-2's vocabulary: padding with 0 would hide where "Win!" ends
    assert tokenizer.encode("Win!")[-1] == 0
    with pytest.raises(ValueError, match=r"message 1 \('Win!'\) ends with token 0, the pad_token_id"):
        SpamDataset([("ham", "Hi"), ("spam", "Win!")], tokenizer, pad_token_id=0)
    # cut to its first token, "Hello, do you like tea?" ends with 15496, not 0: accepted
    assert SpamDataset([("ham", "Hello, do you like tea?")], tokenizer, max_length=1, pad_token_id=0).lengths == [1]


def test_spam_dataset_rejects_bad_input(tokenizer):
    with pytest.raises(ValueError, match="no rows"):
        SpamDataset([], tokenizer)
    with pytest.raises(ValueError, match="max_length must be a positive integer"):
        SpamDataset([("ham", "hi")], tokenizer, max_length=0)


# --- the classifier head --------------------------------------------------------------

TINY = GPTConfig(vocab_size=50, context_length=8, emb_dim=16, n_heads=2, n_layers=3, drop_rate=0.0)


def test_prepare_for_classification_trains_last_block_final_norm_and_new_head():
    torch.manual_seed(0)
    model = prepare_for_classification(GPTModel(TINY))
    trainable = sorted(name for name, p in model.named_parameters() if p.requires_grad)
    block = [f"trf_blocks.2.{name}" for name, _ in GPTModel(TINY).trf_blocks[2].named_parameters()]
    assert trainable == sorted(block + ["final_norm.scale", "final_norm.shift", "out_head.weight", "out_head.bias"])
    # last block: qkv 16*48 (no bias) + out_proj 16*16+16 + feed-forward 16*64+64 + 64*16+16 + 2 norms 4*16;
    # final norm 2*16; head 16*2+2
    assert count_parameters(model, trainable_only=True) == 3232 + 32 + 34 == 3298
    assert model(torch.zeros(2, 5, dtype=torch.long)).shape == (2, 5, 2)


def test_prepare_for_classification_unties_a_tied_head():
    torch.manual_seed(0)
    model = GPTModel(TINY.replace(tie_embeddings=True))
    tok_emb = model.tok_emb.weight.clone()
    prepare_for_classification(model, num_classes=3)
    assert model.out_head.weight.shape == (3, 16) and model.out_head.weight is not model.tok_emb.weight
    assert torch.equal(model.tok_emb.weight, tok_emb) and not model.tok_emb.weight.requires_grad
    assert model.cfg.tie_embeddings is False
    with pytest.raises(ValueError, match="at least 2 classes"):
        prepare_for_classification(model, num_classes=1)


# --- the last real token ---------------------------------------------------------------


def test_last_token_index_finds_the_last_token_that_is_not_padding():
    batch = torch.tensor(
        [
            [5, 6, 7, 8],  # no padding: the last position
            [5, 6, EOT, EOT],  # padded: position 1
            [5, EOT, 6, EOT],  # the pad id inside a message is not its end
            [EOT, EOT, EOT, EOT],  # an empty message: the first position
        ]
    )
    assert last_token_index(batch).tolist() == [3, 1, 2, 0]
    assert last_token_index(batch).dtype == torch.long
    assert last_token_index(batch, pad_token_id=6).tolist() == [3, 3, 3, 3]
    assert last_token_index(batch, pad_token_id=None).tolist() == [3, 3, 3, 3]  # the book's choice
    with pytest.raises(ValueError, match=r"shape \(batch, tokens\), got \(4,\)"):
        last_token_index(batch[0])


def test_last_token_logits_picks_each_rows_position():
    logits = torch.arange(2 * 3 * 2, dtype=torch.float).view(2, 3, 2)  # (batch 2, tokens 3, classes 2)
    batch = torch.tensor([[1, EOT, EOT], [1, 2, 3]])
    assert last_token_logits(logits, batch).tolist() == [[0.0, 1.0], [10.0, 11.0]]
    assert last_token_logits(logits, batch, pad_token_id=None).tolist() == [[4.0, 5.0], [10.0, 11.0]]


MESSAGES = [
    ("ham", "Hello, do you like tea?"),
    ("spam", "WINNER!! You have won a 1 week FREE membership, call 08002986030 now"),
    ("ham", "Ok"),
]


def padded_batches(tokenizer, max_length):
    dataset = SpamDataset(MESSAGES, tokenizer, max_length=max_length)
    return [next(iter(DataLoader(dataset, batch_size=len(MESSAGES))))]


@pytest.fixture
def tiny_classifier():
    torch.manual_seed(123)
    model = prepare_for_classification(GPTModel(TINY.replace(vocab_size=50257, context_length=64)))
    return model.eval()


def test_padding_does_not_change_logits_loss_or_prediction(tokenizer, tiny_classifier):
    model = tiny_classifier
    ((short_ids, targets),) = padded_batches(tokenizer, 20)
    ((long_ids, _),) = padded_batches(tokenizer, 60)
    assert short_ids.shape == (3, 20) and long_ids.shape == (3, 60)
    with torch.no_grad():
        short_logits = last_token_logits(model(short_ids), short_ids)
        long_logits = last_token_logits(model(long_ids), long_ids)
        torch.testing.assert_close(short_logits, long_logits)
        # the book's reading (the last position) sees padding, and its logits move with the padding
        book_short = last_token_logits(model(short_ids), short_ids, pad_token_id=None)
        book_long = last_token_logits(model(long_ids), long_ids, pad_token_id=None)
        assert (book_short - book_long).abs().max() > 1e-3
    short_loss = calc_loss_loader(padded_batches(tokenizer, 20), model, "cpu")
    long_loss = calc_loss_loader(padded_batches(tokenizer, 60), model, "cpu")
    assert short_loss == pytest.approx(long_loss, rel=1e-5)
    assert short_loss == pytest.approx(F.cross_entropy(short_logits, targets).item(), rel=1e-5)
    labels = {
        max_length: [classify_review(text, model, tokenizer, "cpu", max_length=max_length) for _, text in MESSAGES]
        for max_length in (20, 60, None)
    }
    assert labels[20] == labels[60] == labels[None]
    predicted = ["spam" if p == 1 else "not spam" for p in short_logits.argmax(-1).tolist()]
    assert labels[20] == predicted


# --- loss and accuracy on hand-made batches -------------------------------------------


class LastTokenParity(nn.Module):
    """A stand-in model: logit 2 for the class equal to each token id's parity, 0 for the other."""

    def __init__(self, context_length=8):
        super().__init__()
        self.pos_emb = nn.Embedding(context_length, 1)  # classify_review reads the context length here
        self.seen = []

    def forward(self, in_idx):
        self.seen.append(in_idx.tolist())
        return 2.0 * F.one_hot(in_idx % 2, 2).float()


HAND_MADE = [
    (torch.tensor([[6, 1], [5, 0]]), torch.tensor([1, 1])),  # last tokens 1, 0: one right, one wrong
    (torch.tensor([[3, 4]]), torch.tensor([0])),  # last token 4: right (the first token would be wrong)
]


def test_accuracy_uses_the_last_token():
    model = LastTokenParity()
    assert calc_accuracy_loader(HAND_MADE, model, "cpu") == pytest.approx(2 / 3, abs=0)
    assert calc_accuracy_loader(HAND_MADE, model, "cpu", num_batches=1) == 0.5
    assert calc_accuracy_loader(HAND_MADE, model, "cpu", num_batches=10) == pytest.approx(2 / 3, abs=0)


# The last tokens are 5 (odd: spam), 4 (even: ham) and 7 (odd: spam); the padding (50256) is even.
PADDED = [(torch.tensor([[3, 5, EOT, EOT], [4, EOT, EOT, EOT], [2, 8, 6, 7]]), torch.tensor([1, 0, 1]))]


def test_accuracy_and_loss_read_the_last_real_token_not_the_padding():
    model = LastTokenParity()
    assert calc_accuracy_loader(PADDED, model, "cpu") == 1.0
    # the book's reading: the padding of the first row says "ham", a wrong answer
    assert calc_accuracy_loader(PADDED, model, "cpu", pad_token_id=None) == pytest.approx(2 / 3, abs=0)
    right = math.log(1 + math.exp(-2))  # logits (2, 0) for the right class
    assert calc_loss_batch(*PADDED[0], model, "cpu").item() == pytest.approx(right, abs=1e-6)
    assert calc_loss_loader(PADDED, model, "cpu") == pytest.approx(right, abs=1e-6)
    assert calc_loss_loader(PADDED, model, "cpu", pad_token_id=None) == pytest.approx(
        (2 * right + 2 + right) / 3, abs=1e-6
    )
    assert evaluate_model(model, PADDED, PADDED, "cpu", eval_iter=1) == pytest.approx((right, right), abs=1e-6)
    with pytest.raises(ValueError, match="num_batches must be a positive integer"):
        calc_accuracy_loader(PADDED, model, "cpu", num_batches=0)


def test_loss_is_cross_entropy_of_the_last_token():
    right = math.log(1 + math.exp(-2))  # logits (2, 0), target 0
    wrong = 2 + right
    model = LastTokenParity()
    assert calc_loss_batch(*HAND_MADE[0], model, "cpu").item() == pytest.approx((right + wrong) / 2, abs=1e-6)
    assert calc_loss_loader(HAND_MADE, model, "cpu") == pytest.approx(((right + wrong) / 2 + right) / 2, abs=1e-6)
    assert calc_loss_loader(HAND_MADE, model, "cpu", num_batches=1) == pytest.approx((right + wrong) / 2, abs=1e-6)
    assert math.isnan(calc_loss_loader([], model, "cpu"))


def test_classify_review_pads_and_truncates_like_the_dataset(tokenizer):
    model = LastTokenParity(context_length=8)
    # max_length beyond the context length: cut to 8 tokens, 7 of text and 1 pad (even: ham)
    assert classify_review("Hello, do you like tea?", model, tokenizer, "cpu", max_length=10) == "not spam"
    assert model.seen[-1] == [HELLO_IDS + [EOT]]
    assert classify_review("Hello, do you like tea?", model, tokenizer, "cpu", max_length=4) == "spam"  # 345 is odd
    assert model.seen[-1] == [HELLO_IDS[:4]]
    assert classify_review("Hello, do you like tea? " * 3, model, tokenizer, "cpu") == "spam"
    assert len(model.seen[-1][0]) == 8
    with pytest.raises(ValueError, match="text is empty"):
        classify_review("", model, tokenizer, "cpu")


def test_classify_review_reads_the_last_real_token_whatever_the_padding(tokenizer):
    model = LastTokenParity(context_length=8)
    # "Hello, do you" ends with 345 (odd: spam); the padding 50256 is even
    assert [classify_review("Hello, do you", model, tokenizer, "cpu", max_length=n) for n in (None, 4, 6, 8)] == [
        "spam"
    ] * 4
    assert model.seen[-1] == [HELLO_IDS[:4] + [EOT] * 4]  # padded as the dataset pads
    assert classify_review("Hello, do you", model, tokenizer, "cpu", max_length=8, pad_token_id=None) == "not spam"
    assert classify_review("", model, tokenizer, "cpu", max_length=3) == "not spam"  # padding alone: position 0


# --- end to end -----------------------------------------------------------------------


@pytest.fixture
def one_thread():
    # The matrices are tiny: a second thread only adds synchronisation, which on a busy
    # machine costs more than the work itself.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_tiny_gpt_learns_to_classify_spam(sms_rows, tokenizer, one_thread):
    train_rows, validation_rows, test_rows = random_split(create_balanced_dataset(sms_rows))
    max_length = 32
    train_set = SpamDataset(train_rows, tokenizer, max_length=max_length)
    validation_set = SpamDataset(validation_rows, tokenizer, max_length=max_length)
    test_set = SpamDataset(test_rows, tokenizer, max_length=max_length)

    torch.manual_seed(123)
    model = GPTModel(GPTConfig(context_length=max_length, emb_dim=64, n_heads=2, n_layers=2, drop_rate=0.0))
    prepare_for_classification(model)
    for param in model.parameters():  # no pretrained weights: train everything from scratch
        param.requires_grad = True
    train_loader = DataLoader(train_set, batch_size=16, shuffle=True, drop_last=True)
    validation_loader = DataLoader(validation_set, batch_size=50)
    # fused: on CPU the default AdamW spends most of each step updating the 50257 x 64 embedding
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.1, fused=True)
    train_losses, val_losses, train_accs, val_accs, examples_seen = train_classifier_simple(
        model,
        train_loader,
        validation_loader,
        optimizer,
        "cpu",
        num_epochs=2,
        eval_freq=50,
        eval_iter=2,
        show_progress=False,
    )
    assert len(train_loader) == 65 and examples_seen == 2 * 65 * 16
    assert len(train_losses) == len(val_losses) == 3  # steps 0, 50, 100
    assert len(train_accs) == len(val_accs) == 2  # one per epoch
    assert train_losses[-1] < train_losses[0]

    test_loader = DataLoader(test_set, batch_size=100)
    accuracy = calc_accuracy_loader(test_loader, model, "cpu")
    assert accuracy > 0.85  # chance is 0.5; 0.91 with this seed

    # classify_review agrees with the batched predictions, and both labels occur
    inputs, _ = next(iter(test_loader))
    with torch.no_grad():
        predicted = last_token_logits(model(inputs[:30]), inputs[:30]).argmax(-1).tolist()
    labels = [classify_review(text, model, tokenizer, "cpu", max_length=max_length) for _, text in test_rows[:30]]
    assert labels == ["spam" if p == 1 else "not spam" for p in predicted]
    assert set(labels) == {"spam", "not spam"}


def test_plot_values_returns_a_figure():
    fig = plot_values([0, 1, 2], [0, 10, 20], [0.9, 0.5, 0.3], [1.0, 0.6, 0.4], label="loss")
    bottom, top = fig.axes
    assert bottom.get_xlabel() == "Epochs" and bottom.get_ylabel() == "Loss" and top.get_xlabel() == "Examples seen"
    assert [line.get_label() for line in bottom.lines] == ["Training loss", "Validation loss"]


def test_training_the_classifier_on_a_loader_without_batches_says_why(tokenizer):
    model = prepare_for_classification(GPTModel(TINY.replace(vocab_size=50257)))
    rows = [("ham", "hi"), ("spam", "win")]
    empty = DataLoader(SpamDataset(rows, tokenizer, max_length=4), batch_size=8, drop_last=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with pytest.raises(ValueError, match="yields no batch"):
        train_classifier_simple(model, empty, empty, optimizer, "cpu", 1, 1, 1, show_progress=False)
