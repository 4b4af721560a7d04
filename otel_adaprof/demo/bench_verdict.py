"""The benchmark's verdict: every configuration against static-100, by user measures.

Issue #11's targets, read from a :func:`~otel_adaprof.demo.bench.run_bench` result:
in every phase adaptive's L1 error ≤ 1.5× static-100's, hot-path detection ≤ 1.5×,
slow-request coverage ≥ 0.5×, at ≤ 0.5× static-100's profiler CPU (≤ 0.2× when the
phases are stretched 4× or more), inside its session's budget on average over the run;
and adaptive ahead of static-10, static-1 and the heuristic on each measure per
CPU-second (error × CPU and detection × CPU lower, coverage ÷ CPU higher). The reward
plays no part.

Usage::

    >>> fig = {"profiler_cpu": 0.1, "profile_error_l1": 0.1, "slow_request_coverage": 0.8}
    >>> res = {"settings": {"phase_scale": 1.0}, "configurations": {
    ...     "static-100": {"p": fig, "_run": {"hot_path_detect_s": 4.0}},
    ...     "adaptive": {"p": {**fig, "profiler_cpu": 0.04}, "_run": {"hot_path_detect_s": 5.0}}}}
    >>> v = verdict(res)
    >>> v["adaptive"]["cpu_ratio"], v["adaptive"]["targets_met"]
    (0.4, True)
    >>> verdict({**res, "budget_cpu": 0.03})["adaptive"]["checks"]["budget"]  # 0.04 > 0.03
    False
"""

from __future__ import annotations

import math
from typing import Any

from otel_adaprof.demo.ground_truth import GROUND_TRUTH, sampling_l1
from otel_adaprof.demo.phases import PHASE_PLAN

#: Issue #11's bounds against static-100.
L1_MAX_RATIO = 1.5
DETECT_MAX_RATIO = 1.5
COVERAGE_MIN_RATIO = 0.5
CPU_MAX_RATIO = 0.5
#: CPU bound when every phase is stretched at least :data:`LONG_PHASE_SCALE` times.
CPU_MAX_RATIO_LONG = 0.2
LONG_PHASE_SCALE = 4.0
#: Configurations that run a session with the CPU budget (held on average over the run).
BUDGETED = ("heuristic", "adaptive")
#: Configurations adaptive must be ahead of, per CPU-second.
RIVALS = ("static-10", "static-1", "heuristic")


def _phases(conf: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in conf.items() if not k.startswith("_")}


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summary(conf: dict[str, Any]) -> dict[str, float | None]:
    """Run-level figures of one configuration: mean profiler CPU, mean and worst L1,
    mean slow-request coverage, detection time."""
    phases = _phases(conf).values()
    cpu = [f["profiler_cpu"] for f in phases if f.get("profiler_cpu") is not None]
    l1 = [f["profile_error_l1"] for f in phases if f.get("profile_error_l1") is not None]
    cov = [f["slow_request_coverage"] for f in phases if f.get("slow_request_coverage") is not None]
    return {
        "cpu": _mean(cpu),
        "l1_mean": _mean(l1),
        "l1_worst": max(l1) if l1 else None,
        "coverage": _mean(cov),
        "detect_s": conf.get("_run", {}).get("hot_path_detect_s"),
    }


def run_cpu(conf: dict[str, Any]) -> float | None:
    """Profiler CPU averaged over the whole run: the phases' means weighted by their
    share of the run (:data:`~otel_adaprof.demo.phases.PHASE_PLAN`; equal weights for a
    phase the plan does not name).

    >>> run_cpu({"steady": {"profiler_cpu": 0.02}, "hot_path_gone": {"profiler_cpu": 0.01}})
    0.016
    """
    share = {name: fraction for name, fraction, _rate, _hot in PHASE_PLAN}
    pairs = [
        (share.get(name, 1.0), f["profiler_cpu"])
        for name, f in _phases(conf).items()
        if f.get("profiler_cpu") is not None
    ]
    total = sum(w for w, _ in pairs)
    return round(sum(w * c for w, c in pairs) / total, 5) if total > 0 else None


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def verdict(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per configuration: ratios to static-100 (per phase and whole run), whether
    issue #11's targets are met (adaptive), and per-CPU-second comparisons."""
    confs = result["configurations"]
    base = confs.get("static-100")
    if base is None:
        return {}
    scale = float(result.get("settings", {}).get("phase_scale", 1.0))
    cpu_max = CPU_MAX_RATIO_LONG if scale >= LONG_PHASE_SCALE else CPU_MAX_RATIO
    budget = result.get("budget_cpu")  # the sessions' budget (heuristic, adaptive)
    ref = summary(base)
    out: dict[str, dict[str, Any]] = {}
    for name, conf in confs.items():
        if name in ("static-100", "off"):
            continue
        mine = summary(conf)
        per_phase: dict[str, dict[str, float | None]] = {}
        for phase, fig in _phases(conf).items():
            b = _phases(base).get(phase, {})
            per_phase[phase] = {
                "l1_ratio": _ratio(fig.get("profile_error_l1"), b.get("profile_error_l1")),
                "coverage_ratio": _ratio(
                    fig.get("slow_request_coverage"), b.get("slow_request_coverage")
                ),
            }
        row: dict[str, Any] = {
            "summary": mine,
            "cpu_ratio": _ratio(mine["cpu"], ref["cpu"]),
            "detect_ratio": _ratio(mine["detect_s"], ref["detect_s"]),
            "phases": per_phase,
        }
        checks = {
            "l1": all(
                p["l1_ratio"] is not None and p["l1_ratio"] <= L1_MAX_RATIO
                for p in per_phase.values()
            ),
            "detection": row["detect_ratio"] is not None
            and row["detect_ratio"] <= DETECT_MAX_RATIO,
            "coverage": all(
                p["coverage_ratio"] is not None and p["coverage_ratio"] >= COVERAGE_MIN_RATIO
                for p in per_phase.values()
            ),
            "cpu": row["cpu_ratio"] is not None and row["cpu_ratio"] <= cpu_max,
        }
        if budget is not None and name in BUDGETED:
            spent = run_cpu(conf)
            row["run_cpu"], row["budget_cpu"] = spent, budget
            checks["budget"] = spent is not None and spent <= budget
        row["checks"] = checks
        row["cpu_max_ratio"] = cpu_max
        row["targets_met"] = all(checks.values())
        out[name] = row
    adaptive = out.get("adaptive")
    if adaptive is not None:
        a = adaptive["summary"]
        ahead: dict[str, dict[str, bool | None]] = {}
        for rival in RIVALS:
            if rival not in out:
                continue
            r = out[rival]["summary"]
            ahead[rival] = {
                "l1_x_cpu": _lower(a["l1_mean"], a["cpu"], r["l1_mean"], r["cpu"]),
                "detect_x_cpu": _lower(a["detect_s"], a["cpu"], r["detect_s"], r["cpu"]),
                "coverage_per_cpu": _higher(a["coverage"], a["cpu"], r["coverage"], r["cpu"]),
            }
        adaptive["ahead_per_cpu_second"] = ahead
    return out


def static_draws(result: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per phase, how static-100's L1 compares with the error of its sampling alone.

    The L1 bound is judged against one run of static-100, a random draw. ``noise`` is
    the expected L1 of ideal sampling at static-100's workload sample count
    (:func:`~otel_adaprof.demo.ground_truth.sampling_l1`); ``floor`` what sampling does
    not explain (``√(l1² − noise²)``); ``share_needed`` the share of static-100's samples
    another configuration needs, on average, for an L1 within :data:`L1_MAX_RATIO` of
    this draw (1.0: more than all of them; a draw well below its own noise was lucky).
    ``bench/target_frontier.py`` adds what that costs.

    >>> fig = {"workload_samples": 700, "profile_error_l1": 0.03}
    >>> res = {"configurations": {"static-100": {"steady": fig}}}
    >>> static_draws(res)["steady"]["share_needed"]
    1.0
    """
    base = result.get("configurations", {}).get("static-100")
    if base is None:
        return {}
    out: dict[str, dict[str, float]] = {}
    # the run's own truth (its demo shape's; runs before session 35 are the shop's)
    truths = result.get("ground_truth") or GROUND_TRUTH
    for phase, fig in _phases(base).items():
        n, l1 = fig.get("workload_samples"), fig.get("profile_error_l1")
        truth = truths.get(phase)
        if truth is None or not n or l1 is None:
            continue
        noise = sampling_l1(float(n), truth)
        floor = math.sqrt(max(0.0, l1 * l1 - noise * noise))
        room = (L1_MAX_RATIO * l1) ** 2 - floor * floor
        unit = sampling_l1(1.0, truth)
        needed = unit * unit / room / float(n) if room > 0 else math.inf
        out[phase] = {
            "l1": round(float(l1), 4),
            "noise": round(noise, 4),
            "floor": round(floor, 4),
            "share_needed": round(min(1.0, needed), 3),
        }
    return out


def _lower(
    a: float | None, a_cpu: float | None, b: float | None, b_cpu: float | None
) -> bool | None:
    if b is None or b_cpu is None:
        return True if a is not None else None  # the rival never got there
    if a is None or a_cpu is None:
        return False
    return a * a_cpu < b * b_cpu


def _higher(
    a: float | None, a_cpu: float | None, b: float | None, b_cpu: float | None
) -> bool | None:
    if a is None or not a_cpu:
        return None
    if b is None or not b_cpu:
        return True
    return a / a_cpu > b / b_cpu


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _md_table(header: list[str], rows: list[list[Any]]) -> list[str]:
    """Markdown table lines; each cell through :func:`_fmt`."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(cell) for cell in row) + " |" for row in rows]
    return lines


def draws_markdown(draws: dict[str, dict[str, float]]) -> str:
    """:func:`static_draws` as markdown (empty without static-100)."""
    if not draws:
        return ""
    header = ["static-100 in phase", "L1", "sampling alone", "beyond sampling",
              f"share of its samples for ≤ {L1_MAX_RATIO}× of it"]  # fmt: skip
    keys = ("l1", "noise", "floor", "share_needed")
    rows = [[phase, *(d[k] for k in keys)] for phase, d in draws.items()]
    return "\n".join(_md_table(header, rows)) + "\n"


def verdict_markdown(v: dict[str, dict[str, Any]]) -> str:
    """The verdict as markdown: ratios to static-100 and the targets, per configuration."""
    lines = [
        "| configuration | CPU ÷ static-100 | worst phase L1 ÷ static-100 | detection ÷ static-100 "
        "| lowest phase coverage ÷ static-100 | run CPU ÷ budget "
        "| targets met (L1, detection, coverage, CPU, budget) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in v.items():
        l1 = [p["l1_ratio"] for p in row["phases"].values() if p["l1_ratio"] is not None]
        # a phase without a ratio (no samples of its own) is the worst of all: say so
        blind = len(row["phases"]) - len(l1)
        worst = _fmt(max(l1) if l1 else None) + (
            f" ({blind} phase{'s' if blind > 1 else ''} without samples)" if blind else ""
        )
        cov = [
            p["coverage_ratio"] for p in row["phases"].values() if p["coverage_ratio"] is not None
        ]
        c = row["checks"]
        met = ", ".join(_fmt(c.get(k)) for k in ("l1", "detection", "coverage", "cpu", "budget"))
        spent = row.get("run_cpu")
        in_budget = _ratio(spent, row.get("budget_cpu"))
        lines.append(
            f"| {name} | {_fmt(row['cpu_ratio'])} (bound {row['cpu_max_ratio']}) | "
            f"{worst} | {_fmt(row['detect_ratio'])} | "
            f"{_fmt(min(cov) if cov else None)} | {_fmt(in_budget)} | {met} |"
        )
    ahead = v.get("adaptive", {}).get("ahead_per_cpu_second")
    if ahead:
        header = ["adaptive vs", "L1 × CPU lower", "detection × CPU lower",
                  "coverage ÷ CPU higher"]  # fmt: skip
        keys = ("l1_x_cpu", "detect_x_cpu", "coverage_per_cpu")
        lines += [
            "",
            *_md_table(header, [[r, *(row[k] for k in keys)] for r, row in ahead.items()]),
        ]
    return "\n".join(lines) + "\n"
