"""Writes book/appendix_a_pytorch.ipynb (appendix A) and executes it to store its outputs.

    cd /work/main && .venv/bin/python book/_src/make_appendix_a.py            # write + execute
    cd /work/main && .venv/bin/python book/_src/make_appendix_a.py --no-exec
"""

from nbbuild import code, main, md

CELLS = [
    md(r"""
    # Appendix A: PyTorch in a nutshell

    Everything in this course is written in PyTorch. This appendix covers the parts we rely
    on, in the order a small project needs them. PyTorch is three things at once:

    1. a **tensor library**: multi-dimensional arrays like NumPy's, which can also live on a GPU;
    2. **automatic differentiation** (*autograd*): it records how a result was computed and
       works out the gradients of that result for you;
    3. a **deep learning toolkit**: layers, loss functions, optimisers and data loading, built
       on 1 and 2.

    We go through all three and finish with a complete training loop, saving a model, and
    running on a GPU. If you know PyTorch already, skim the headings and move on.
    """),
    code(r"""
    import tempfile
    from pathlib import Path

    import matplotlib.pyplot as plt
    import torch
    import torch.nn.functional as F
    from torch import nn
    from torch.utils.data import DataLoader, Dataset

    %matplotlib inline
    plt.rcParams["figure.dpi"] = 80
    torch.set_printoptions(precision=4, sci_mode=False)
    """),
    md(r"""
    ## A.1 Tensors

    A tensor is an array with any number of dimensions: a scalar has 0, a vector 1, a matrix
    2, and a stack of matrices 3. `torch.tensor` builds one from (nested) Python lists:
    """),
    code(r"""
    tensor0d = torch.tensor(1)
    tensor1d = torch.tensor([1, 2, 3])
    tensor2d = torch.tensor([[1, 2, 3], [4, 5, 6]])
    tensor3d = torch.tensor([[[1, 2], [3, 4]], [[5, 6], [7, 8]]])
    for name, t in [("tensor0d", tensor0d), ("tensor1d", tensor1d), ("tensor2d", tensor2d), ("tensor3d", tensor3d)]:
        print(f"{name}: {t.ndim} dimensions, shape {tuple(t.shape)}")
    """),
    md(r"""
    ### Data types

    Every element of a tensor has the same type. Python integers become 64-bit integers,
    Python floats become 32-bit floats:
    """),
    code(r"""
    print(tensor1d.dtype)
    print(torch.tensor([1.0, 2.0, 3.0]).dtype)
    print(tensor1d.to(torch.float32))
    """),
    md(r"""
    Model weights are `float32` by default: precise enough for training, and half the memory
    and much faster on GPUs than `float64`. Large models often go further down, to 16-bit
    `bfloat16`. Token ids, in contrast, are integers (`torch.long`), because they index rows
    of an embedding table.

    Tensors also come ready-made:
    """),
    code(r"""
    print(torch.zeros(2, 3))
    print(torch.arange(6))
    torch.manual_seed(123)  # random tensors repeat exactly after seeding
    print(torch.rand(2, 3))  # uniform in [0, 1)
    """),
    md(r"""
    ### Shapes: reshape, view, transpose

    `.shape` tells the size of every dimension. `reshape` and `view` rearrange the same
    elements into a new shape; `.T` transposes a matrix.
    """),
    code(r"""
    print(tensor2d.shape)
    print(tensor2d.reshape(3, 2))
    print(tensor2d.view(3, 2))
    print(tensor2d.T)
    """),
    md(r"""
    `view` never copies: the result shares its memory with the original, so it only works
    when the elements already lie in memory in the required order (the tensor is
    *contiguous*). A transpose is itself just a view with swapped strides, so its elements
    are not in row order any more. `reshape` copies when it has to, or you call
    `.contiguous()` first, which is what the attention code of chapter 3 does:
    """),
    code(r"""
    transposed = tensor2d.T
    print("contiguous:", transposed.is_contiguous())
    try:
        transposed.view(6)
    except RuntimeError:
        print("view(6) fails: RuntimeError")
    print(transposed.reshape(6))
    print(transposed.contiguous().view(6))
    """),
    md(r"""
    ### Matrix multiplication and broadcasting

    `@` (or `.matmul`) multiplies matrices. With more than two dimensions it treats the
    leading ones as a *batch* and multiplies matrix by matrix, which is how attention handles
    a batch of texts and many heads in one call.
    """),
    code(r"""
    print(tensor2d @ tensor2d.T)
    print(tensor2d.matmul(tensor2d.T))
    batch_a, batch_b = torch.rand(4, 2, 3), torch.rand(4, 3, 5)
    print("batched:", tuple((batch_a @ batch_b).shape))
    """),
    md(r"""
    When two tensors of different shapes meet in an element-wise operation, PyTorch
    *broadcasts*: it repeats the smaller one along the missing or size-1 dimensions, without
    copying. Here a vector is added to every row of a matrix, and a column to every column:
    """),
    code(r"""
    print(tensor2d + torch.tensor([10, 20, 30]))  # (2, 3) + (3,)
    print(tensor2d + torch.tensor([[100], [200]]))  # (2, 3) + (2, 1)
    """),
    md(r"""
    ## A.2 Automatic differentiation

    Training means nudging every weight in the direction that lowers the loss, which needs
    the gradient of the loss with respect to every weight. When a tensor has
    `requires_grad=True`, PyTorch records each operation that uses it in a *computation
    graph*; walking that graph backwards applies the chain rule and yields the gradients.

    The smallest example: logistic regression with one input feature. The model computes
    $z = x_1 w_1 + b$, squashes it into a probability $a = \sigma(z)$, and the loss is the
    binary cross-entropy between $a$ and the true label $y$.
    """),
    code(r"""
    y = torch.tensor([1.0])  # true label
    x1 = torch.tensor([1.1])  # input feature
    w1 = torch.tensor([2.2], requires_grad=True)  # weight
    b = torch.tensor([0.0], requires_grad=True)  # bias

    z = x1 * w1 + b
    a = torch.sigmoid(z)
    loss = F.binary_cross_entropy(a, y)
    print("loss:", loss)
    """),
    md(r"""
    The `grad_fn` in the output is the graph at work: the loss remembers which operation
    produced it. `torch.autograd.grad` computes the gradient of one tensor with respect to
    others. (`retain_graph=True` keeps the graph alive; by default PyTorch frees it after one
    backward pass to save memory.)
    """),
    code(r"""
    grad_w1, grad_b = torch.autograd.grad(loss, [w1, b], retain_graph=True)
    print("dloss/dw1:", grad_w1)
    print("dloss/db: ", grad_b)
    """),
    md(r"""
    Nothing magic happened. For a sigmoid followed by binary cross-entropy, the chain rule
    gives $\partial L / \partial z = a - y$, hence $\partial L / \partial w_1 = (a - y)\,x_1$ and
    $\partial L / \partial b = a - y$. By hand:
    """),
    code(r"""
    with torch.no_grad():  # plain arithmetic, no graph needed
        print("by hand:  ", (a - y) * x1, a - y)
    """),
    md(r"""
    In practice we do not call `torch.autograd.grad` ourselves. `loss.backward()` computes
    the gradients of the loss for **every** tensor that requires them and stores each one in
    that tensor's `.grad`, where the optimiser will find it:
    """),
    code(r"""
    loss.backward()
    print("w1.grad:", w1.grad)
    print("b.grad: ", b.grad)
    """),
    md(r"""
    `.grad` *accumulates*: a second `backward()` would add to it. That is why every training
    step starts by resetting the gradients (`optimizer.zero_grad()`, section A.5).

    ## A.3 Models as `nn.Module`s

    A model in PyTorch is a subclass of `nn.Module`. Layers are created in `__init__` (which
    registers their parameters with the module) and used in `forward`, which says how data
    flows. Here is a multilayer perceptron with two hidden layers; `nn.Sequential` chains
    layers so that `forward` is one call:
    """),
    code(r"""
    class NeuralNetwork(nn.Module):
        def __init__(self, num_inputs, num_outputs):
            super().__init__()
            self.layers = nn.Sequential(
                nn.Linear(num_inputs, 30),  # first hidden layer
                nn.ReLU(),
                nn.Linear(30, 20),  # second hidden layer
                nn.ReLU(),
                nn.Linear(20, num_outputs),  # output layer: one score per class
            )

        def forward(self, x):
            return self.layers(x)  # logits: the scores before any softmax


    torch.manual_seed(123)
    model = NeuralNetwork(num_inputs=50, num_outputs=3)
    print(model)
    """),
    md(r"""
    Every `nn.Linear(n_in, n_out)` holds an `n_out × n_in` weight matrix and `n_out` biases.
    `model.parameters()` walks all of them, so counting is one line:
    """),
    code(r"""
    num_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"trainable parameters: {num_params:,}")  # (50*30 + 30) + (30*20 + 20) + (20*3 + 3)
    print("first layer weight:", tuple(model.layers[0].weight.shape))
    """),
    md(r"""
    The weights start random (that is why we seeded first). Calling the model runs
    `forward`:
    """),
    code(r"""
    torch.manual_seed(123)
    X = torch.rand(1, 50)  # one example with 50 features
    print(model(X))
    """),
    md(r"""
    The output carries a `grad_fn` because the result depends on trainable weights, so
    PyTorch built a graph for a possible `backward()`. When we only want predictions,
    `torch.no_grad()` skips that bookkeeping and saves memory and time. Softmax turns the
    logits into class probabilities:
    """),
    code(r"""
    with torch.no_grad():
        print(torch.softmax(model(X), dim=-1))
    """),
    md(r"""
    ## A.4 Datasets and data loaders

    Training data reaches the model through two classes. A `Dataset` knows how many examples
    there are and returns one by index. A `DataLoader` draws examples from it, shuffles them,
    and stacks them into batches.

    As toy data we draw two clouds of 2-D points, one per class, and keep 150 points for
    training and 50 for testing. The clouds overlap a little, so no model can classify every
    point correctly:
    """),
    code(r"""
    torch.manual_seed(123)
    points_per_class = 100
    centers = torch.tensor([[-1.0, 1.5], [1.5, -1.0]])
    features = torch.cat([center + torch.randn(points_per_class, 2) for center in centers])
    labels = torch.arange(2).repeat_interleave(points_per_class)  # 100 zeros, then 100 ones

    order = torch.randperm(len(labels))  # mix the classes before splitting
    X_train, y_train = features[order[:150]], labels[order[:150]]
    X_test, y_test = features[order[150:]], labels[order[150:]]
    print("train:", tuple(X_train.shape), " test:", tuple(X_test.shape))
    print("class 1 share in train:", round(y_train.float().mean().item(), 2))
    """),
    code(r"""
    fig, ax = plt.subplots(figsize=(4, 3.2))
    for label, marker in [(0, "o"), (1, "^")]:
        chosen = y_train == label
        ax.scatter(X_train[chosen, 0], X_train[chosen, 1], marker=marker, s=14, label=f"class {label}")
    ax.set_xlabel("feature 1")
    ax.set_ylabel("feature 2")
    ax.legend()
    plt.tight_layout()
    plt.show()
    """),
    code(r"""
    class ToyDataset(Dataset):
        def __init__(self, X, y):
            self.features = X
            self.labels = y

        def __getitem__(self, index):
            return self.features[index], self.labels[index]

        def __len__(self):
            return len(self.labels)


    train_ds = ToyDataset(X_train, y_train)
    test_ds = ToyDataset(X_test, y_test)
    print(len(train_ds), train_ds[0])
    """),
    md(r"""
    * `shuffle=True` gives a new order every epoch, so the model cannot learn anything from
      the order of the examples. The `generator` makes that order reproducible.
    * `drop_last=True` drops the final, smaller batch (150 = 9 × 16 + 6). A tiny last batch
      gives a noisy gradient step; with large data sets losing a few examples per epoch does
      not matter.
    * `num_workers=0` loads the data in the main process. Larger values start background
      processes that prepare the next batches while the model computes, which pays off when
      loading is slow (images from disk), not for tensors already in memory.
    """),
    code(r"""
    train_loader = DataLoader(
        train_ds, batch_size=16, shuffle=True, drop_last=True, num_workers=0,
        generator=torch.Generator().manual_seed(123),
    )
    test_loader = DataLoader(test_ds, batch_size=16, shuffle=False, num_workers=0)

    features_batch, labels_batch = next(iter(train_loader))
    print("one batch:", tuple(features_batch.shape), tuple(labels_batch.shape))
    print("labels:   ", labels_batch.tolist())
    print("batches per epoch:", len(train_loader), "(without drop_last: 10)")
    """),
    md(r"""
    ## A.5 A training loop

    Each step of training does the same four things: a forward pass to get the predictions,
    the loss, a backward pass for the gradients, and an optimiser step that moves every
    weight a little against its gradient. One pass over the whole training set is an
    *epoch*.

    `F.cross_entropy` takes the raw logits and the integer class labels; it applies the
    softmax itself (in a numerically safer way than doing it separately). `model.train()`
    and `model.eval()` switch layers such as dropout between their training and inference
    behaviour; this model has none, but the habit prevents bugs in models that do.
    """),
    code(r"""
    torch.manual_seed(123)
    model = NeuralNetwork(num_inputs=2, num_outputs=2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    num_epochs = 10
    batch_losses = []
    for epoch in range(num_epochs):
        model.train()
        for features_batch, labels_batch in train_loader:
            logits = model(features_batch)
            loss = F.cross_entropy(logits, labels_batch)

            optimizer.zero_grad()  # clear the gradients of the previous step
            loss.backward()  # compute new ones
            optimizer.step()  # move the weights against them
            batch_losses.append(loss.item())

        epoch_losses = batch_losses[-len(train_loader):]
        print(f"epoch {epoch + 1:2}/{num_epochs} | mean train loss {sum(epoch_losses) / len(epoch_losses):.4f}")
    """),
    code(r"""
    steps_per_epoch = len(train_loader)
    epoch_ends = range(steps_per_epoch, len(batch_losses) + 1, steps_per_epoch)
    epoch_means = [sum(batch_losses[end - steps_per_epoch:end]) / steps_per_epoch for end in epoch_ends]

    fig, ax = plt.subplots(figsize=(5.5, 3))
    ax.plot(range(1, len(batch_losses) + 1), batch_losses, alpha=0.5, label="each batch")
    ax.plot(list(epoch_ends), epoch_means, marker="o", label="mean of each epoch")
    ax.set_xlabel("training step")
    ax.set_ylabel("cross-entropy loss")
    ax.legend()
    plt.tight_layout()
    plt.show()
    """),
    md(r"""
    The loss falls fast during the first epochs, then more slowly; the per-batch curve is
    noisy because every batch is a different small sample of the data. The loss measures how
    much probability the model gives to the right answers. What we usually care about is how
    often it is right, and above all on data it has not trained on:
    """),
    code(r"""
    def compute_accuracy(model, dataloader, device="cpu"):
        model.eval()
        correct, total = 0, 0
        for features_batch, labels_batch in dataloader:
            features_batch, labels_batch = features_batch.to(device), labels_batch.to(device)
            with torch.no_grad():
                predictions = model(features_batch).argmax(dim=-1)  # the class with the top score
            correct += (predictions == labels_batch).sum().item()
            total += len(labels_batch)
        return correct / total


    # train_loader drops 6 examples per epoch; to measure, we want all 150, in order.
    train_eval_loader = DataLoader(train_ds, batch_size=16, shuffle=False)
    print(f"train accuracy: {compute_accuracy(model, train_eval_loader):.2f}")
    print(f"test accuracy:  {compute_accuracy(model, test_loader):.2f}")
    """),
    md(r"""
    The two numbers are close: the model learned where the boundary between the clouds lies
    rather than memorising individual training points. A training accuracy far above the
    test accuracy would be the sign of *overfitting*.
    """),
    md(r"""
    ## A.6 Saving and loading a model

    A model's learned state is its `state_dict`: an ordered dictionary from parameter names
    to tensors. We save that rather than the whole model object: the file then holds nothing
    but named tensors, and any code that builds a model with the same names can load it,
    even after the class itself was edited or moved.
    """),
    code(r"""
    print({name: tuple(tensor.shape) for name, tensor in model.state_dict().items()})
    """),
    md(r"""
    To load, build a model of the same architecture and copy the tensors in.
    `weights_only=True` restricts `torch.load` to tensors and plain containers: a checkpoint
    downloaded from somewhere cannot run arbitrary code while it is being unpickled. (We write
    to a temporary directory that disappears afterwards; in a project you would pick a
    path.)
    """),
    code(r"""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.pth"
        torch.save(model.state_dict(), path)

        restored = NeuralNetwork(num_inputs=2, num_outputs=2)  # fresh random weights...
        restored.load_state_dict(torch.load(path, weights_only=True))  # ...replaced by the saved ones

    restored.eval()
    with torch.no_grad():
        print("same predictions:", torch.equal(restored(X_test), model(X_test)))
    """),
    md(r"""
    To resume *training* later, save the optimiser's `state_dict()` too (for AdamW it holds
    running averages for every parameter), in one dictionary with the model's.

    ## A.7 Running on a GPU

    Every tensor lives on a device: the CPU, an NVIDIA GPU (`"cuda"`), or Apple silicon's
    GPU (`"mps"`). An operation runs where its inputs are, and all inputs must be on the same
    device; mixing them raises an error that names both devices. The usual pattern picks the
    best device once, moves the model there, and moves each batch there as it arrives (our
    `compute_accuracy` already does the latter).

    The device depends on your machine, so the printed result below does too:
    """),
    code(r"""
    # NBVAL_IGNORE_OUTPUT
    if torch.cuda.is_available():
        device = "cuda"
    elif torch.backends.mps.is_available():
        device = "mps"
    else:
        device = "cpu"
    print("device:", device)
    """),
    code(r"""
    model = model.to(device)  # moves the parameters; for a module, .to() works in place
    print(f"test accuracy on the chosen device: {compute_accuracy(model, test_loader, device):.2f}")
    """),
    md(r"""
    For a tensor, `.to(device)` returns a *copy* on that device and leaves the original
    where it was, which is why we write `features_batch = features_batch.to(device)`. On a
    tiny model like this one the GPU is no faster (copying the data costs more than the
    arithmetic); for the GPT models of this course the difference is large.

    ## A.8 More than one GPU

    With several GPUs, the common approach is *distributed data parallel* (DDP). Every GPU
    gets its own process and a full copy of the model; a `DistributedSampler` gives each
    process a different share of every epoch's data; after each backward pass, DDP averages
    the gradients across all processes, so every copy takes the identical optimiser step and
    the copies never drift apart. With *N* GPUs an epoch takes roughly 1/*N* of the time.

    DDP needs one process per GPU, launched together, so it does not run inside a notebook.
    The shape of a DDP script, started with `torchrun --nproc_per_node=<number of GPUs>
    train.py`, is:

    ```python
    import os
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    from torch.utils.data.distributed import DistributedSampler

    dist.init_process_group(backend="nccl")  # torchrun tells each process its rank
    local_rank = int(os.environ["LOCAL_RANK"])
    torch.cuda.set_device(local_rank)

    model = DDP(NeuralNetwork(2, 2).to(local_rank), device_ids=[local_rank])
    sampler = DistributedSampler(train_ds, shuffle=True)  # this process's share of the data
    loader = DataLoader(train_ds, batch_size=16, sampler=sampler, drop_last=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    for epoch in range(num_epochs):
        sampler.set_epoch(epoch)  # a new shuffle each epoch, agreed on by all processes
        for features_batch, labels_batch in loader:
            ...  # the same four steps as in section A.5, on local_rank
    dist.destroy_process_group()
    ```

    The course's version of this setup, used by the training code of the later chapters, is
    in the package module `reference_impl/distributed.py`.

    ## Exercises

    This appendix has no graded exercise notebook. To practise, change the network and watch
    what happens: give `NeuralNetwork` a third hidden layer and count its parameters by hand
    before checking with `numel`; train with `lr=1.0` and with `lr=0.001` and compare the loss
    curves; replace `torch.optim.SGD` by `torch.optim.AdamW`.

    ## Summary

    * Tensors are typed, shaped arrays; `reshape`/`view` rearrange them (a `view` needs
      contiguous memory), `@` multiplies matrices, also in batches, and broadcasting fills in
      missing dimensions.
    * Autograd records the operations on tensors with `requires_grad=True`; `backward()`
      fills every parameter's `.grad` through the chain rule, and gradients accumulate until
      they are zeroed.
    * Models subclass `nn.Module`: parameters are created in `__init__`, the computation is
      written in `forward`, and `parameters()` finds them all.
    * A `Dataset` returns single examples; a `DataLoader` shuffles and batches them.
    * Training repeats forward pass, loss, `zero_grad`, `backward`, `step`; accuracy on held-out
      data tells how well the model generalises.
    * Save and load the `state_dict`, with `torch.load(..., weights_only=True)`.
    * Move the model and every batch to the same device; with several GPUs, DDP runs one
      copy per GPU and averages their gradients.
    """),
]

if __name__ == "__main__":
    main(CELLS, "appendix_a_pytorch")
