"""Everything a CPU-only machine cannot check, in one run on a lent GPU (scripts/gpu-check.sh).

    python3 scripts/gpu_check.py OUT_DIR [--budget-s 480]

1. The NVML meter against `nvidia-smi --query-gpu=power.draw` sampled over the same windows
   (a busy matmul window and an idle one): the two energies and their ratio.
2. The default study and the MNIST-1D problem on `cuda` with `auto` metering: energy per
   trial, method, average power, idle baseline (a few trials each, bounded in time).
3. `train.deterministic` on and off: the same seed twice each; are the accuracies equal?
4. `tuning-energy estimate` before the default study on cuda, against what it then cost.

It writes OUT_DIR/gpu-check.md (and the stores beside it) and needs no network: the datasets
are digits (bundled) and MNIST-1D (generated). Each part that fails says why in the summary
and the rest still runs.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SMI_QUERY = ["--query-gpu=index,power.draw", "--format=csv,noheader,nounits"]


# ---------------------------------------------------------------- parts testable on a CPU


def parse_smi(text: str, gpu: int = 0) -> float | None:
    """Watts of GPU `gpu` from one `nvidia-smi --query-gpu=index,power.draw` answer."""
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 2 and parts[0] == str(gpu):
            try:
                return float(parts[1])
            except ValueError:  # "[N/A]" on GPUs that do not report power
                return None
    return None


def integrate_j(samples: list[tuple[float, float]]) -> float | None:
    """Trapezoid integral of (seconds, watts) samples; None with fewer than two."""
    if len(samples) < 2:
        return None
    return sum((t1 - t0) * (w0 + w1) / 2 for (t0, w0), (t1, w1) in zip(samples, samples[1:], strict=False))


class SmiSampler:
    """nvidia-smi's power.draw sampled every `interval_s` in a thread, over a window."""

    def __init__(self, gpu: int = 0, interval_s: float = 0.1, smi: str = "nvidia-smi"):
        self.gpu, self.interval_s, self.smi = gpu, interval_s, smi
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            out = subprocess.run([self.smi, *SMI_QUERY], capture_output=True, text=True)
            w = parse_smi(out.stdout, self.gpu)
            if w is not None:
                self.samples.append((time.monotonic(), w))
            self._stop.wait(self.interval_s)

    def __enter__(self) -> SmiSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def energy_j(self) -> float | None:
        return integrate_j(self.samples)


def table(rows: list[dict], columns: list[str]) -> str:
    """A markdown table of `rows` (dicts) in `columns` order; floats to 4 significant digits."""
    def cell(v: object) -> str:
        return f"{v:.4g}" if isinstance(v, float) else "-" if v is None else str(v)

    head = "| " + " | ".join(columns) + " |\n| " + " | ".join("---" for _ in columns) + " |\n"
    return head + "".join("| " + " | ".join(cell(r.get(c)) for c in columns) + " |\n"
                          for r in rows)


def cuda_config(source: Path, out: Path, **train: object) -> Path:
    """A copy of a study TOML that trains on cuda (and with the given [train] keys)."""
    text = source.read_text()
    for key, value in {"device": "cuda", **train}.items():
        literal = json.dumps(value) if not isinstance(value, bool) else str(value).lower()
        pattern = rf"(?m)^{key}\s*=.*$"
        if re.search(pattern, text):
            text = re.sub(pattern, f"{key} = {literal}", text)
        else:
            text = text.replace("[train]\n", f"[train]\n{key} = {literal}\n", 1)
    path = out / f"{source.stem}-cuda{''.join(f'-{k}' for k in train)}.toml"
    path.write_text(text)
    return path


# ---------------------------------------------------------------- parts that need the GPU


def _cli(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tuning_energy.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def meter_vs_smi(seconds: float = 10.0) -> list[dict]:
    import torch

    from tuning_energy.energy.nvml import NvmlMeter

    rows = []
    with NvmlMeter([0]) as meter:
        x = torch.randn(4096, 4096, device="cuda")
        for label, busy in (("busy (matmul)", True), ("idle", False)):
            with SmiSampler() as smi:
                window = meter.begin()
                t_end = time.monotonic() + seconds
                while time.monotonic() < t_end:
                    if busy:
                        x = (x @ x).tanh_()
                    else:
                        time.sleep(0.05)
                torch.cuda.synchronize()
                m = meter.end(window)
            ours, theirs = m.energy_j, smi.energy_j
            rows.append({"window": label, "seconds": m.duration_s, "nvml_j": ours,
                         "method": m.method, "nvidia_smi_j": theirs,
                         "ratio": ours / theirs if ours and theirs else None,
                         "smi_samples": len(smi.samples)})
    return rows


def study_rows(config: Path, store: Path, strategy: str, trials: int,
               timeout: float) -> tuple[list[dict], str]:
    url = f"sqlite:///{store}"
    run = _cli("study", "--config", str(config), "--strategy", strategy, "--trials",
               str(trials), "--storage", url, "--no-progress", timeout=timeout)
    if run.returncode != 0:
        return [], f"study failed ({run.returncode}): {run.stderr.strip()[-400:]}"
    import optuna

    from tuning_energy.energy.accounting import charged_known_j

    rows = []
    for study in optuna.get_all_study_summaries(url):
        s = optuna.load_study(study_name=study.study_name, storage=url)
        for t in s.trials:
            a = t.user_attrs
            rows.append({"study": s.study_name, "trial": t.number, "state": t.state.name,
                         "accuracy": t.value, "energy_j": a.get("energy_j"),
                         "method": a.get("energy_method"), "avg_power_w": a.get("avg_power_w"),
                         "idle_power_w": a.get("idle_power_w"),
                         "charged_j": charged_known_j(a)})
    return rows, run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--trials", type=int, default=8, help="trials per study (default 8)")
    args = ap.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    md = ["# GPU check", "", f"`{' '.join(sys.argv)}` at {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
          ""]
    smi = shutil.which("nvidia-smi")
    md += [f"nvidia-smi: {subprocess.run([smi, '-L'], capture_output=True, text=True).stdout.strip() if smi else 'not found'}", ""]

    def part(title: str, fn) -> None:
        md.extend([f"## {title}", ""])
        try:
            md.extend(fn())
        except Exception as exc:  # each part says why it failed; the rest still runs
            md.append(f"FAILED: {type(exc).__name__}: {exc}")
        md.append("")
        (out / "gpu-check.md").write_text("\n".join(md) + "\n")

    part("NVML meter against nvidia-smi power.draw, same windows",
         lambda: [table(meter_vs_smi(), ["window", "seconds", "nvml_j", "method",
                                         "nvidia_smi_j", "ratio", "smi_samples"])])

    default_cuda = cuda_config(REPO / "studies" / "default.toml", out)

    def estimate_then_study() -> list[str]:
        est = _cli("estimate", "--config", str(default_cuda), "--strategy", "bayes",
                   "--trials", str(args.trials), "--json", timeout=240)
        rows, last = study_rows(default_cuda, out / "default.db", "bayes", args.trials, 300)
        lines = [table(rows, ["study", "trial", "state", "accuracy", "energy_j", "method",
                              "avg_power_w", "idle_power_w"]), last]
        if est.returncode == 0 and rows:
            e = json.loads(est.stdout)["energy_j"]
            real = sum(r["charged_j"] or 0.0 for r in rows)
            inside = e["p10"] <= real <= e["p90"]
            lines.append(f"estimate {e['median']:.4g} J (80%: {e['p10']:.4g} to {e['p90']:.4g});"
                         f" the study was charged {real:.4g} J: "
                         f"{'inside' if inside else 'OUTSIDE'} the interval")
        else:
            lines.append(f"estimate failed: {est.stderr.strip()[-400:]}")
        return lines

    part("Default study on cuda (auto meter), with its estimate first", estimate_then_study)
    mnist1d = REPO / "studies" / "mnist1d.toml"
    if mnist1d.exists():
        part("MNIST-1D on cuda (auto meter)", lambda: [table(study_rows(
            cuda_config(mnist1d, out), out / "mnist1d.db", "random", args.trials, 300)[0],
            ["study", "trial", "accuracy", "energy_j", "method", "avg_power_w"])])

    def determinism() -> list[str]:
        rows = []
        for flag in (True, False):
            cfg = cuda_config(REPO / "studies" / "default.toml", out, deterministic=flag)
            accs = []
            for rep in range(2):
                r, _ = study_rows(cfg, out / f"det-{flag}-{rep}.db", "random", 3, 200)
                accs.append([x["accuracy"] for x in r])
            rows.append({"deterministic": flag, "run 1": str(accs[0]), "run 2": str(accs[1]),
                         "identical": accs[0] == accs[1]})
        return [table(rows, ["deterministic", "run 1", "run 2", "identical"])]

    part("train.deterministic on and off (same seed, twice each)", determinism)
    print((out / "gpu-check.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
