"""Run the benchmarks; write bench/results.json and bench/RESULTS.md.

    python -m bench.run            # everything (`make bench`), at most ~10 minutes
    python -m bench.run --quick    # smoke run (`make bench QUICK=1`), at most ~2 minutes
    python -m bench.run --quick --only storage_overhead --repeats 3
    python -m bench.run --only propose_scaling --sizes 16,128 --strategies bayes,tpe
    python -m bench.run --render-only  # RESULTS.md again from results.json, runs nothing

Each benchmark prints what it compares and how many repeats. Every figure is a ratio whose
two sides were timed in this run, interleaved, because the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

if __package__ in (None, ""):  # `python bench/run.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "bench"  # noqa: A001

from bench.common import Context, machine, make_context, meets, say  # noqa: E402
from bench.render import dump, fmt, load, render_markdown  # noqa: E402
from bench.scaling import QUICK_SIZES, SIZES  # noqa: E402
from bench.scaling import STRATEGIES as SCALING_STRATEGIES  # noqa: E402

OUT_DIR = Path(__file__).resolve().parent


def _int_list(p: argparse.ArgumentParser, flag: str, value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        out = [int(v) for v in value.split(",") if v]
    except ValueError:
        out = []
    if not out or min(out) < 1:
        p.error(f"{flag} {value}: expected positive integers separated by commas, e.g. 16,64")
    return sorted(set(out))


def _names(p: argparse.ArgumentParser, flag: str, value: str | None,
           allowed: tuple[str, ...]) -> list[str] | None:
    if value is None:
        return None
    out = [v for v in value.split(",") if v]
    bad = [v for v in out if v not in allowed]
    if bad or not out:
        p.error(f"{flag} {value}: unknown {', '.join(bad) or '(empty)'}; allowed values are "
                f"{', '.join(allowed)}")
    return out


def _benchmarks() -> dict[str, Callable[[Context], list[dict]]]:
    from bench import gp_quality, meter_compare, meters, scaling, search, study, trainer

    return {
        "default_study_wall": study.bench_default_study_wall,
        "search_share_default_bayes": study.bench_search_share,
        "storage_overhead": search.bench_storage,
        "meter_window_overhead": meters.bench_meters,
        "meter_vs_codecarbon": meter_compare.bench_meter_compare,
        "propose_overhead_bayes_64": search.bench_propose,
        "propose_scaling": scaling.bench_scaling,
        "gp_cap_quality": gp_quality.bench_gp_quality,
        "trainer_vs_bare_torch": trainer.bench_trainer,
        "flops_vs_matmul_peak": trainer.bench_flops,
    }


def order(quick: bool) -> list[str]:
    """Full: the whole default study first (its trials give the reference trial time).
    QUICK: a 3-trial run gives it; the study estimate comes after the proposal timing."""
    if quick:
        return ["storage_overhead", "search_share_default_bayes", "meter_window_overhead",
                "meter_vs_codecarbon",
                "propose_overhead_bayes_64", "propose_scaling", "gp_cap_quality",
                "default_study_wall", "trainer_vs_bare_torch", "flops_vs_matmul_peak"]
    return ["default_study_wall", "search_share_default_bayes", "storage_overhead",
            "meter_window_overhead",
            "meter_vs_codecarbon", "propose_overhead_bayes_64", "propose_scaling",
            "gp_cap_quality", "trainer_vs_bare_torch", "flops_vs_matmul_peak"]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.run", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run, <= ~2 minutes")
    p.add_argument("--only", action="append", default=[],
                   help="run only these benchmarks (repeatable or comma-separated)")
    p.add_argument("--repeats", type=int, default=None, help="override repeat counts")
    p.add_argument("--trial-s", type=float, default=None,
                   help="reference trial seconds to divide by, instead of measuring them")
    p.add_argument("--out", type=Path, default=OUT_DIR,
                   help="folder for results.json and RESULTS.md (default bench/)")
    p.add_argument("--note", default="", help="a line added to RESULTS.md (e.g. machine load)")
    p.add_argument("--render-only", action="store_true",
                   help="run nothing: write RESULTS.md again from the results.json in --out "
                        "(`make bench-render`)")
    p.add_argument("--sizes", default=None,
                   help="propose_scaling: finished-trial counts, comma-separated "
                        f"(default {','.join(map(str, SIZES))}; --quick "
                        f"{','.join(map(str, QUICK_SIZES))})")
    p.add_argument("--strategies", default=None,
                   help="propose_scaling: strategies, comma-separated (default all: "
                        f"{','.join(SCALING_STRATEGIES)})")
    args = p.parse_args(argv)
    if args.render_only:
        return render_only(p, args.out)

    benches = _benchmarks()
    only = [n for item in args.only for n in item.split(",") if n]
    unknown = [n for n in only if n not in benches]
    if unknown:
        p.error(f"--only {', '.join(unknown)}: unknown; allowed values are {', '.join(benches)}")
    names = [n for n in order(args.quick) if not only or n in only]

    sizes = _int_list(p, "--sizes", args.sizes)
    if sizes and max(sizes) == 64 and "propose_scaling" in names \
            and "propose_overhead_bayes_64" in names:
        p.error("--sizes: the largest size names propose_scaling's rows "
                "(propose_overhead_bayes_N), and propose_overhead_bayes_64 is another "
                "benchmark's row: add --only propose_scaling, or another largest size")
    strategies = _names(p, "--strategies", args.strategies, SCALING_STRATEGIES)
    args.out.mkdir(parents=True, exist_ok=True)  # propose_scaling draws its figure there
    ctx = make_context(args.quick, repeats=args.repeats, trial_s=args.trial_s)
    ctx.extra.update(sizes=sizes, strategies=strategies, out_dir=args.out)
    from tuning_energy.run.runner import set_threads

    set_threads(ctx.threads)  # torch, BLAS and OpenMP threads as a study sets them
    info = machine()
    info["torch_threads_used"] = ctx.threads
    ctx.extra["load_avg_1_5_15"] = info["load_avg_1_5_15"]
    say(f"machine: {info['cpu']}, {info['cpu_cores_usable']} usable cores, torch "
        f"{info['torch']}, {ctx.threads} thread(s) (default study), load {info['load_avg_1_5_15']}")
    t0 = time.perf_counter()
    results: list[dict] = []
    try:
        for name in names:
            t = time.perf_counter()
            results += benches[name](ctx)
            say(f"  [{name}: {time.perf_counter() - t:.1f} s]\n")
    finally:
        shutil.rmtree(ctx.workdir, ignore_errors=True)
    wall_s = time.perf_counter() - t0
    info["load_avg_1_5_15_after"] = machine()["load_avg_1_5_15"]
    if args.note:
        info["note"] = args.note

    run = {"quick": args.quick, "wall_s": round(wall_s, 1), "machine": info}
    (args.out / "results.json").write_text(dump(results, run))
    (args.out / "RESULTS.md").write_text(render_markdown(results, run) + "\n")
    for r in results:
        ok = meets(r)
        say(f"{r['name']:42s} {fmt(r['value']):>10s}  goal {fmt(r['goal']):>6s} "
            f"({r['better']})  {'' if ok is None else ('ok' if ok else 'MISSES GOAL')}")
    say(f"wrote {args.out / 'results.json'} and {args.out / 'RESULTS.md'} ({wall_s:.0f} s)")
    return 0


def render_only(p: argparse.ArgumentParser, out: Path) -> int:
    """RESULTS.md from the results.json in `out`, nothing run."""
    path = out / "results.json"
    if not path.is_file():
        p.error(f"--render-only: no results.json in {out} (run `make bench` first, or give "
                "--out the folder that holds it)")
    (out / "RESULTS.md").write_text(render_markdown(*load(path)) + "\n")
    say(f"wrote {out / 'RESULTS.md'} from {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
