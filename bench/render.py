"""bench/results.json -> bench/RESULTS.md: every number about a run comes from its results.json.

results.json holds `{"run": {"quick", "wall_s", "machine"}, "results": [row, ...]}` (a row:
`{"name", "value", "unit", "goal", "better", "detail"}`). An older file, a bare list of rows,
renders without what it does not hold (run time, machine). Re-render the committed file with
`python -m bench.run --render-only` (`make bench-render`); nothing is run again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.common import meets

RERENDER = "python -m bench.run --render-only"
#: what a row's detail says about what it compares, in this order (the rest is in Details)
ABOUT = ("compares", "how", "value", "no_goal", "note")


def dump(results: list[dict], run: dict[str, Any]) -> str:
    return json.dumps({"run": run, "results": results}, indent=2) + "\n"


def load(path: Path) -> tuple[list[dict], dict[str, Any]]:
    """The rows and the run record of a results.json (an older bare list: no run record)."""
    data = json.loads(path.read_text())
    if isinstance(data, list):
        return data, {}
    return data["results"], data.get("run", {})


def fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def render_markdown(results: list[dict], run: dict[str, Any]) -> str:
    quick = run.get("quick", False)
    made = (f"`{'make bench QUICK=1' if quick else 'make bench'}` "
            f"(`python -m bench.run{' --quick' if quick else ''}`)")
    took = f" in {run['wall_s']:.0f} s" if "wall_s" in run else ""
    lines = [
        "# Benchmarks",
        "",
        f"Written by {made}{took}. Every value is a ratio whose two sides were timed in the "
        "same run, interleaved (A B A B ...); `detail` in results.json has the raw times, "
        f"repeats and variants. This file is rendered from results.json (`{RERENDER}`, "
        "`make bench-render`, re-renders it without running anything): change "
        "bench/render.py, not this file.",
        "",
        "| benchmark | value | unit | goal | better | meets goal |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        ok = meets(r)
        lines.append(f"| {r['name']} | {fmt(r['value'])} | {r['unit']} | {fmt(r['goal'])} | "
                     f"{r['better']} | {'-' if ok is None else ('yes' if ok else 'NO')} |")
    missed = [r for r in results if meets(r) is False]
    if missed:
        lines += ["", "## Goals missed, and why", ""]
        lines += [f"- **{r['name']}**: {r['detail'].get('why_missed', 'see its detail below')}"
                  for r in missed]
    lines += ["", "## What each row compares", ""]
    lines += [f"- **{r['name']}**: {about(r['detail'])}" for r in results]
    shown: list[str] = []
    lines += scaling_section(results, shown) + meters_section(results)
    figures = [f for f in dict.fromkeys(r["detail"]["figure"] for r in results
                                        if "figure" in r["detail"]) if f not in shown]
    if figures:
        lines += ["", "## Figures", ""]
        lines += [f"![{f}]({f})" for f in figures]
    if run.get("machine"):
        lines += ["", "## Machine", ""]
        lines += [f"- {k}: {v}" for k, v in run["machine"].items()]
    return "\n".join(lines + ["", "## Details", ""] + details(results))


def about(detail: dict[str, Any]) -> str:
    """What a row compares, how it was taken and what its value is, as its detail says."""
    parts = [v if k == "compares" else f"{k.replace('_', ' ')}: {v}"
             for k in ABOUT if isinstance(v := detail.get(k), str)]
    return "; ".join(parts) or "see its detail below"


def scaling_section(results: list[dict], shown: list[str]) -> list[str]:
    """CPU ms per proposal of each strategy at each size, from the row of propose_scaling
    that holds the table (propose_overhead_bayes_N); `shown` gets the figure it shows."""
    r = next((r for r in results if isinstance(r["detail"].get("table"), dict)), None)
    if r is None:
        return []
    d = r["detail"]
    sizes = [str(n) for n in d["sizes"]]
    out = ["", "## Cost as the study grows", "",
           f"CPU ms per proposal (`study.ask()` + the parameters in an `estimate` meter window, "
           f"as the runner opens it; the storage round trip: ask + parameters + attrs + tell) "
           f"at each number of synthetic finished trials in SQLite, all interleaved, median of "
           f"{d['repeats']} after {d['warmup']} warm-up (row {r['name']}, its `table`). "
           f"Energy: {d['energy_method']}. bayes: {d['value']}."]
    if d.get("before", {}).get("what"):
        out[-1] += f" bayes before: {d['before']['what']}."
    out += ["", f"| strategy | {' | '.join(sizes)} |", "|---" * (len(sizes) + 1) + "|"]
    out += [f"| {label} | {' | '.join(fmt(per[n]['cpu_ms']) for n in sizes)} |"
            for label, per in d["table"].items()]
    if "figure" in d:
        out += ["", f"![{d['figure']}]({d['figure']})"]
        shown.append(d["figure"])
    return out


def meters_section(results: list[dict]) -> list[str]:
    """Our meter beside CodeCarbon's and Zeus's: the window times and the readings of one
    busy window (row meter_vs_codecarbon)."""
    r = next((r for r in results if r["name"] == "meter_vs_codecarbon"
              and "window_us" in r["detail"]), None)
    if r is None:
        return []
    d = r["detail"]
    per = ", ".join(f"{k} {v}" for k, v in d["windows_per_repeat"].items())
    out = ["", "## Meters side by side", "",
           f"One window (begin + end), us, median of {d['repeats']} interleaved repeats, each "
           f"the mean of its windows (per repeat: {per}; row {r['name']}):", "",
           "| window | us |", "|---|---|"]
    out += [f"| {k} | {fmt(v)} |" for k, v in d["window_us"].items()]
    busy = d.get("readings_same_window")
    if busy:
        out += ["", f"Readings of the same busy window ({busy['busy_window']}): ours "
                    f"{busy['ours_method']}; CodeCarbon {busy['codecarbon_method']}; Zeus "
                    f"{busy.get('zeus_method', '-')}. {busy['like_for_like']}.", "",
                "| duration s | ours J | CodeCarbon J | its CPU J | its RAM J | "
                "ours / CodeCarbon | ours / its CPU | Zeus J |", "|---" * 8 + "|"]
        for w in busy["windows"]:
            by = w.get("codecarbon_by_device_j", {})
            cells = [w["duration_s"], w["ours_j"], w["codecarbon_j"], by.get("cpu"),
                     by.get("ram"), w["ours_over_codecarbon"], w["ours_over_codecarbon_cpu"]]
            zeus = "None (measured nothing)" if w.get("zeus_j") is None else fmt(w["zeus_j"])
            out.append(f"| {' | '.join(fmt(c) for c in cells)} | {zeus} |")
    return out


def details(results: list[dict]) -> list[str]:
    lines = []
    for r in results:
        lines += [f"### {r['name']}", ""]
        for k, v in r["detail"].items():
            if isinstance(v, dict):
                lines.append(f"- {k}:")
                lines += [f"  - {kk}: {json.dumps(vv)}" for kk, vv in v.items()]
            else:
                lines.append(f"- {k}: {json.dumps(v) if not isinstance(v, str) else v}")
        lines.append("")
    return lines
