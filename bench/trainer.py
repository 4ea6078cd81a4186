"""The trainer against its limits.

- `trainer_vs_bare_torch`: samples/s of `tuning_energy.cnn.train.fit` / samples/s of a bare,
  hand-written PyTorch loop (what a user would write), same model, init, data, batch size
  and threads, interleaved.
- `flops_vs_matmul_peak`: training FLOP/s of the default study's largest model (n_conv=3,
  n_linear=3, ReLU, on digits) / float32 torch.mm FLOP/s on large square matrices, same
  threads. Training FLOPs ~= 3 x forward flops_per_sample x samples trained (+ 1 x forward
  for the validation pass at the end). Variants (batch size, threads, channels-last,
  torch.compile, the evaluation's inference mode) are reported in `detail`.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from tuning_energy.cnn.data import load_dataset
from tuning_energy.cnn.models import ModelSpec, build_model, flops_per_sample
from tuning_energy.cnn.train import Hyper, evaluate, fit

from .common import Context, interleave, row, say

GOAL_TRAINER = 0.95
LARGEST = ModelSpec(n_conv=3, n_linear=3, relu=True)


def bare_loop(model: nn.Module, x, y, xv, yv, epochs: int, batch_size: int, lr: float,
              generator: torch.Generator, fused: bool = False) -> float:
    """A plain PyTorch training loop, as in the tutorials; returns validation accuracy."""
    opt = torch.optim.Adam(model.parameters(), lr=lr, fused=fused or None)
    loss_fn = nn.CrossEntropyLoss()
    n = len(x)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=generator)
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            opt.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        return (model(xv).argmax(1) == yv).float().mean().item()


def _data(ctx: Context):
    return load_dataset(ctx.config.data)


def bench_trainer(ctx: Context) -> list[dict]:
    d = _data(ctx)
    torch.set_num_threads(ctx.threads)
    bs = ctx.config.train.batch_size
    epochs = 1 if ctx.quick else 3
    repeats = ctx.n(full=5, quick=2)
    torch.manual_seed(0)
    base = build_model(LARGEST, d.input_shape, d.n_classes)
    n = len(d.x_train)

    def ours() -> float:
        m = copy.deepcopy(base)
        t = time.perf_counter()
        fit(m, d.x_train, d.y_train, d.x_val, d.y_val, Hyper(1e-3, 0.9, 0.999, epochs=epochs,
            batch_size=bs), torch.Generator().manual_seed(0))
        return epochs * n / (time.perf_counter() - t)

    def bare(fused: bool) -> Callable[[], float]:
        def run() -> float:
            m = copy.deepcopy(base)
            t = time.perf_counter()
            bare_loop(m, d.x_train, d.y_train, d.x_val, d.y_val, epochs, bs, 1e-3,
                      torch.Generator().manual_seed(0), fused=fused)
            return epochs * n / (time.perf_counter() - t)
        return run

    say(f"trainer_vs_bare_torch: train.fit vs a bare PyTorch loop (default Adam; and with "
        f"fused Adam), model {LARGEST}, batch {bs}, {ctx.threads} thread(s), {epochs} "
        f"epoch(s) per run, {repeats} interleaved repeats (A B C A B C ...)")
    sps = interleave({"ours": ours, "bare": bare(False), "bare_fused": bare(True)}, repeats)
    ratios = [a / b for a, b in zip(sps["ours"], sps["bare"], strict=True)]
    ratios_f = [a / b for a, b in zip(sps["ours"], sps["bare_fused"], strict=True)]
    value = statistics.median(ratios)
    for k, v in sps.items():
        say(f"  {k:12s} {statistics.median(v):9.0f} samples/s")
    say(f"  ratio ours/bare {value:.3f} (per-pair medians); ours/bare with fused Adam "
        f"{statistics.median(ratios_f):.3f}")
    detail = {"compares": "samples/s of train.fit / samples/s of bench.trainer.bare_loop "
                          "(default Adam), same model, init, data, batch, threads",
              "model": str(LARGEST), "batch_size": bs, "threads": ctx.threads,
              "epochs_per_run": epochs, "repeats": repeats,
              "samples_per_s": {k: round(statistics.median(v), 1) for k, v in sps.items()},
              "ratio_per_pair": [round(r, 4) for r in ratios],
              "ratio_vs_bare_fused_adam": round(statistics.median(ratios_f), 4),
              "note": "fit uses fused Adam; the bare loop uses Adam's default (the for-loop "
                      "implementation on CPU), as a user's loop would. ratio_vs_bare_fused_adam "
                      "isolates the loop itself."}
    return [row("trainer_vs_bare_torch", value, "ratio of samples/s", GOAL_TRAINER, "higher",
                detail)]


# ---------------------------------------------------------------- FLOPs


def mm_flops(n: int, threads: int, calls: int = 3) -> float:
    """Best float32 torch.mm FLOP/s of `calls` calls on n x n matrices."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    best = float("inf")
    for _ in range(calls):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def _fit_flops(d, fps: int, epochs: int, bs: int, threads: int, channels_last: bool = False,
               compiled: nn.Module | None = None, base: nn.Module | None = None) -> float:
    torch.set_num_threads(threads)
    m = compiled if compiled is not None else copy.deepcopy(base)
    xt, xv = d.x_train, d.x_val
    if channels_last:
        m = m.to(memory_format=torch.channels_last)
        xt, xv = xt.contiguous(memory_format=torch.channels_last), \
            xv.contiguous(memory_format=torch.channels_last)
    t = time.perf_counter()
    fit(m, xt, d.y_train, xv, d.y_val, Hyper(1e-3, 0.9, 0.999, epochs=epochs, batch_size=bs),
        torch.Generator().manual_seed(0))
    dt = time.perf_counter() - t
    return (3 * fps * len(xt) * epochs + fps * len(xv)) / dt


def _eval_flops(model: nn.Module, d, fps: int, mode: str, threads: int, reps: int = 5) -> float:
    torch.set_num_threads(threads)
    model.eval()
    t = time.perf_counter()
    for _ in range(reps):
        if mode == "inference_mode":
            evaluate(model, d.x_val, d.y_val)
        elif mode == "no_grad":
            with torch.no_grad():
                (model(d.x_val).argmax(1) == d.y_val).sum().item()
        else:  # autograd on: what an evaluation without either costs
            (model(d.x_val).argmax(1) == d.y_val).sum().item()
    return fps * len(d.x_val) * reps / (time.perf_counter() - t)


def bench_flops(ctx: Context) -> list[dict]:
    d = _data(ctx)
    th = ctx.threads
    bs = ctx.config.train.batch_size
    epochs = 1 if ctx.quick else 2
    repeats = ctx.n(full=3, quick=1)
    mm_n = 1024 if ctx.quick else 2048
    torch.manual_seed(0)
    base = build_model(LARGEST, d.input_shape, d.n_classes)
    fps = flops_per_sample(base, d.input_shape)
    more_threads = max(2, th + 1)

    sides: dict[str, Callable[[], float]] = {
        f"peak mm {mm_n} x{th}": lambda: mm_flops(mm_n, th),
        f"fit batch {bs} x{th}": lambda: _fit_flops(d, fps, epochs, bs, th, base=base),
    }
    if not ctx.quick:
        sides.update({
            f"fit batch 256 x{th}": lambda: _fit_flops(d, fps, epochs, 256, th, base=base),
            f"fit batch 512 x{th}": lambda: _fit_flops(d, fps, epochs, 512, th, base=base),
            f"fit batch {bs} x{th} channels_last": lambda: _fit_flops(
                d, fps, epochs, bs, th, channels_last=True, base=base),
            f"peak mm {mm_n} x{more_threads}": lambda: mm_flops(mm_n, more_threads),
            f"fit batch {bs} x{more_threads}": lambda: _fit_flops(d, fps, epochs, bs,
                                                                   more_threads, base=base),
            f"fit batch 512 x{more_threads}": lambda: _fit_flops(d, fps, epochs, 512,
                                                                  more_threads, base=base),
        })
        evm = copy.deepcopy(base)
        for mode in ("inference_mode", "no_grad", "grad"):
            sides[f"eval {mode} x{th}"] = lambda mode=mode: _eval_flops(evm, d, fps, mode, th)
    say(f"flops_vs_matmul_peak: training FLOP/s of {LARGEST} ({fps} forward FLOPs/sample, "
        f"x3 for training) vs float32 torch.mm {mm_n}x{mm_n} peak; {len(sides)} sides "
        f"interleaved, {repeats} repeat(s), {epochs} epoch(s) per fit")
    res = interleave(sides, repeats)
    torch.set_num_threads(th)
    med = {k: statistics.median(v) for k, v in res.items()}
    peak = {th: med[f"peak mm {mm_n} x{th}"]}
    if not ctx.quick:
        peak[more_threads] = med[f"peak mm {mm_n} x{more_threads}"]
    variants = {}
    for k, v in med.items():
        t = int(k.rsplit(" x", 1)[1].split()[0])
        variants[k] = {"gflop_s": round(v / 1e9, 3),
                       **({} if k.startswith("peak") else {"ratio_to_peak": round(v / peak[t], 4)})}
        say(f"  {k:36s} {v / 1e9:8.2f} GFLOP/s" + ("" if k.startswith("peak") else
                                                  f"  ratio {v / peak[t]:.4f}"))
    if not ctx.quick:
        variants.update(_compile_variant(ctx, d, fps, bs, th, base, peak[th]))
    value = med[f"fit batch {bs} x{th}"] / peak[th]
    detail = {"compares": "training FLOP/s (3 x forward flops_per_sample x samples trained + "
                          "1 x forward over the validation set, / fit wall time) / best "
                          "torch.mm float32 FLOP/s of three calls, same threads",
              "model": str(LARGEST), "flops_per_sample_forward": fps, "batch_size": bs,
              "threads": th, "epochs_per_fit": epochs, "repeats": repeats, "mm_n": mm_n,
              "variants": variants}
    return [row("flops_vs_matmul_peak", value, "ratio to mm peak", None, "higher", detail)]


def _compile_variant(ctx, d, fps, bs, th, base, peak) -> dict:
    """torch.compile (inductor) on the same fit: compile time apart, then steady FLOP/s."""
    torch.set_num_threads(th)
    try:
        torch._dynamo.reset()
        m = torch.compile(copy.deepcopy(base))
        t = time.perf_counter()
        _fit_flops(d, fps, 1, bs, th, compiled=m)  # compiles (train, last batch, eval)
        compile_s = time.perf_counter() - t
        v = statistics.median(_fit_flops(d, fps, 2, bs, th, compiled=m) for _ in range(2))
    except Exception as exc:  # no compiler, or inductor cannot handle it here
        say(f"  torch.compile: failed: {type(exc).__name__}: {str(exc)[:200]}")
        return {f"fit batch {bs} x{th} torch.compile": {"error": f"{type(exc).__name__}: "
                                                          f"{str(exc)[:300]}"}}
    say(f"  fit batch {bs} x{th} torch.compile        {v / 1e9:8.2f} GFLOP/s  ratio "
        f"{v / peak:.4f} (first epoch incl. compile {compile_s:.1f} s; not interleaved)")
    return {f"fit batch {bs} x{th} torch.compile": {
        "gflop_s": round(v / 1e9, 3), "ratio_to_peak": round(v / peak, 4),
        "compile_and_first_epoch_s": round(compile_s, 1), "interleaved": False}}
