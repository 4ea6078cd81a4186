"""Fit and evaluate on tensors already in memory (and on the device).

The trainer knows nothing of energy, Optuna or files. A NaN/inf loss stops training and
is reported as `diverged`; the caller decides what that means for the trial. Given a test
set, `fit` evaluates it once, when training ends (not for a run stopped early: a pruned
trial's model is not one anybody would select).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from tuning_energy.cnn.models import uses_batchnorm

#: Called after each epoch with (epoch index from 0, validation accuracy); return True to
#: stop training early (pruning). Knows nothing of Optuna.
EpochCallback = Callable[[int, float], bool]


@dataclass(frozen=True)
class Hyper:
    lr: float
    beta1: float
    beta2: float
    eps: float = 1e-8
    weight_decay: float = 0.0
    epochs: int = 20
    batch_size: int = 64


@dataclass
class FitResult:
    accuracy: float  # validation accuracy in [0, 1]
    train_loss: float  # mean training loss of the last epoch run (nan if diverged)
    epochs_run: int
    diverged: bool
    stopped_early: bool = False
    accuracy_per_epoch: list[float] = field(default_factory=list)
    test_accuracy: float | None = None  # held-out test set, once at the end (None: not run)


@torch.inference_mode()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += (model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum().item()
    return correct / len(x)


def fit(
    model: nn.Module,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    hyper: Hyper,
    generator: torch.Generator,
    on_epoch: EpochCallback | None = None,
    evaluate_each_epoch: bool = True,
    test: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> FitResult:
    """Train with Adam; evaluate on the validation set at the end.

    on_epoch: called after every epoch; with evaluate_each_epoch it gets the epoch's
    validation accuracy (an extra evaluation per epoch), otherwise NaN.
    test: (x_test, y_test), evaluated once when training ends (diverged or not), unless
    on_epoch stopped it early. When it is the validation set itself (data.validation =
    "test") the validation accuracy is reused instead of evaluating twice.
    """

    def final_test(val_accuracy: float) -> float | None:
        if test is None:
            return None
        return val_accuracy if test[0] is x_val else evaluate(model, *test)

    # fused: one kernel per step for all parameters (~25% faster steps on these small CPU
    # models than the per-tensor loop, and the default on neither device).
    opt = torch.optim.Adam(
        model.parameters(), lr=hyper.lr, betas=(hyper.beta1, hyper.beta2), eps=hyper.eps,
        weight_decay=hyper.weight_decay, fused=True,
    )
    loss_fn = nn.CrossEntropyLoss()
    n = len(x_train)
    history: list[float] = []
    loss_sum = torch.zeros((), device=x_train.device)
    epochs_run = 0
    batchnorm = uses_batchnorm(model)
    for epoch in range(hyper.epochs):
        model.train()
        # Shuffle on the CPU generator, then index on the device: same order on any device.
        order = torch.randperm(n, generator=generator).to(x_train.device)
        loss_sum.zero_()
        for i in range(0, n, hyper.batch_size):
            idx = order[i : i + hyper.batch_size]
            xb, yb = x_train[idx], y_train[idx]
            if len(xb) == 1 and batchnorm:
                continue  # BatchNorm cannot train on a batch of one
            loss = loss_fn(model(xb), yb)
            # set_to_none skips a memset per parameter; the grads are rewritten by backward.
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            # Accumulate on the device: one host sync per epoch instead of one per batch.
            loss_sum += loss.detach() * len(xb)
        epochs_run = epoch + 1
        mean_loss = loss_sum.item() / n
        if not math.isfinite(mean_loss):
            acc = evaluate(model, x_val, y_val)
            return FitResult(acc, mean_loss, epochs_run, diverged=True,
                             accuracy_per_epoch=history, test_accuracy=final_test(acc))
        if on_epoch is not None:
            acc = math.nan
            if evaluate_each_epoch:
                acc = evaluate(model, x_val, y_val)
                history.append(acc)
            if on_epoch(epoch, acc):
                acc = acc if evaluate_each_epoch else evaluate(model, x_val, y_val)
                return FitResult(acc, mean_loss, epochs_run, False, True, history)
    acc = history[-1] if history else evaluate(model, x_val, y_val)
    return FitResult(acc, mean_loss, epochs_run, diverged=False, accuracy_per_epoch=history,
                     test_accuracy=final_test(acc))


def set_deterministic(on: bool) -> None:
    """`train.deterministic`: PyTorch's deterministic algorithms and cuDNN's flags, or back
    to PyTorch's defaults (one process may run studies of both kinds).

    On: torch.use_deterministic_algorithms(True) (an operation without a deterministic
    implementation raises instead of running), cudnn.deterministic = True and
    cudnn.benchmark = False (no per-shape search for the fastest, possibly nondeterministic
    convolution), and CUBLAS_WORKSPACE_CONFIG=:4096:8, which cuBLAS needs for
    reproducible matrix products on CUDA >= 10.2; it is read when cuBLAS starts, so a
    process that already used CUDA without it cannot turn determinism on.
    """
    import os

    if on and torch.cuda.is_available() and torch.cuda.is_initialized() and \
            os.environ.get("CUBLAS_WORKSPACE_CONFIG") not in (":4096:8", ":16:8"):
        from tuning_energy.errors import ConfigError

        raise ConfigError("train.deterministic = true: CUDA was started in this process "
                          "without CUBLAS_WORKSPACE_CONFIG=:4096:8; run the deterministic "
                          "study in its own process or export that variable first")
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(on)
    torch.backends.cudnn.deterministic = on
    torch.backends.cudnn.benchmark = False


def warm_up(data, device: torch.device | str = "cpu", batch_size: int = 64) -> None:
    """One training step and one evaluation of a conv model on a few samples.

    PyTorch initialises kernels, allocators and the fused optimiser lazily: the first trial
    of a process would be charged ~2 s of one-off CPU work (10x a small trial here). Run
    this outside any meter window before the first trial.
    """
    from tuning_energy.cnn.models import ModelSpec, build_model

    n = 4 * batch_size + len(data.x_train) % batch_size  # full batches and the last, short one
    x, y = data.x_train[:n], data.y_train[:n]
    for n_conv in range(4):  # every conv shape of the family's usual depths
        model = build_model(ModelSpec(n_conv=n_conv, n_linear=2, relu=True), data.input_shape,
                            data.n_classes).to(device)
        fit(model, x, y, data.x_val, data.y_val,
            Hyper(lr=1e-3, beta1=0.9, beta2=0.999, epochs=2, batch_size=batch_size),
            torch.Generator().manual_seed(0))
