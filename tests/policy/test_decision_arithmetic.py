"""The policy's hot path computes with plain lists what it computed with numpy arrays:
the same values to the last bit (the decisions, the logged features and the model must
not move). The numpy versions are kept here as the reference."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from otel_adaprof.budget_bank import BudgetBank
from otel_adaprof.controller.policy.base import DecisionContext
from otel_adaprof.controller.policy.catalog import load_catalog
from otel_adaprof.controller.policy.cost import BYTES_PER_SPAN
from otel_adaprof.controller.policy.features import (
    C_FEATURES,
    MAX_BUDGET_RATIO,
    ActionContext,
)
from otel_adaprof.controller.policy.safety import SafetyGuard, situation
from otel_adaprof.controller.policy.vw import VWPolicy
from otel_adaprof.params import Params
from otel_adaprof.protocol import ObservedState
from otel_adaprof.reward import PhaseState, accuracy_gain, accuracy_gains
from otel_adaprof.session_spec import Mode, OverheadBudget, RewardWeights


def _assess_arrays(g: SafetyGuard, ctx: DecisionContext):  # the former numpy version
    spans, active = situation(ctx)
    kept = spans * g.ratio
    cpu = (g._spy + g.burst_share * g._burst_extra) * g.calibration
    cpu = cpu + kept * g._agent
    data = kept * BYTES_PER_SPAN + g.rate * active * g._bps
    ok = (cpu <= g.cpu_room(ctx)) & (data <= (ctx.budget.bytes_per_s or math.inf) * g.margin)
    ok &= g._offerable
    ok[int(np.argmin(np.where(g._offerable, cpu, np.inf)))] = True
    idx = np.flatnonzero(ok)
    return idx, cpu[idx], data[idx]


def _matrix(ac: ActionContext, rate, ratio, share, cpu, data, same):  # the former version
    markers = ac.spans * ratio * np.minimum(1.0, share * ac.pass_scale)
    samples = rate * (ac.active * ac.secs)
    out = np.empty((len(rate), len(C_FEATURES)))
    out[:, 0] = np.minimum(cpu / ac.cpu_budget, MAX_BUDGET_RATIO)
    out[:, 1] = np.minimum(data / ac.bytes_budget, MAX_BUDGET_RATIO)
    out[:, 2] = np.minimum(1.0, markers / ac.target)
    out[:, 3] = np.log10(1.0 + samples) / 4.0
    gain = [accuracy_gain(ac.phase_n, float(n), ac.functions, ac.acc_target) for n in samples]
    out[:, 4] = [g / 3.0 for g in gain]
    out[:, 5] = same
    return out


def _contexts(n: int):
    rng = random.Random(5)
    catalog = load_catalog()
    values = [0.0, 1e-300, 0.5, 3.0, 1e6, math.inf]
    for i in range(n):
        pick = (lambda: rng.choice(values)) if i % 4 == 0 else (lambda: rng.uniform(0, 400))
        state = ObservedState(
            window_start=1000.0,
            window_seconds=rng.choice([1.0, 5.0, 7.5]),
            process_cpu=rng.uniform(0.0, 2.0),
            profiler_cpu_seconds=rng.uniform(0.0, 0.3),
            samples_per_s=pick(),
            spans_per_s=pick(),
            markers_per_s=pick(),
            bytes_exported_per_s=pick() * 100,
        )
        budget = OverheadBudget(
            cpu_fraction=rng.choice([0.005, 0.02, 0.2]),
            bytes_per_s=rng.choice([None, 5000.0, 1e6]),
        )
        phase = PhaseState(samples=rng.choice([0.0, 30.0, 900.0, 1e5]))
        in_force = catalog[rng.randrange(len(catalog.names))].params
        yield (
            DecisionContext(
                service="s",
                initial_params=Params(),
                params_in_force=in_force,
                mode=Mode.ADAPTIVE,
                budget=budget,
                goal=RewardWeights(functions=rng.choice([2, 8, 50])),
                state=state,
                phase=phase,
            ),
            rng,
        )


def _same_bits(a, b) -> bool:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return a.shape == b.shape and a.tobytes() == b.tobytes()


def test_guard_and_action_features_as_lists_equal_the_numpy_arithmetic():
    catalog = load_catalog()
    checked = 0
    for ctx, rng in _contexts(400):
        guard = SafetyGuard(catalog)
        guard.calibration = rng.choice([0.25, 1.0, 3.7])
        guard.burst_share = rng.choice([0.0, 0.3])
        guard.bank = BudgetBank(rng.uniform(0.0, 0.05), seen_s=rng.choice([0.0, 30.0, 3600.0]))
        idx, cpu, data = guard.assess_lists(ctx)
        ref_idx, ref_cpu, ref_data = _assess_arrays(guard, ctx)
        assert idx == ref_idx.tolist()
        assert _same_bits(cpu, ref_cpu) and _same_bits(data, ref_data)
        same = [rng.choice([0.0, 1.0]) for _ in idx]
        ac = ActionContext(ctx)
        rows = ac.rows(
            [guard.rate.tolist()[i] for i in idx],
            [guard.ratio.tolist()[i] for i in idx],
            [guard.pass_share.tolist()[i] for i in idx],
            cpu,
            data,
            same,
        )
        with np.errstate(all="ignore"):
            ref = _matrix(
                ac, guard.rate[idx], guard.ratio[idx], guard.pass_share[idx], ref_cpu, ref_data,
                np.array(same),
            )  # fmt: skip
        assert _same_bits(rows, ref), (rows, ref.tolist())
        checked += len(idx)
    assert checked > 1000


def test_accuracy_gains_equal_accuracy_gain_one_by_one():
    rng = random.Random(2)
    for _ in range(300):
        before = rng.choice([0.0, 5.0, rng.uniform(0, 5000)])
        added = [rng.choice([0.0, -1.0, rng.uniform(0, 900), math.inf]) for _ in range(9)]
        k, target = rng.choice([2, 8, 300]), rng.choice([0.01, 0.09, 1.5])
        got = accuracy_gains(before, added, k, target)
        assert got == [accuracy_gain(before, n, k, target) for n in added]


@pytest.mark.parametrize("zeros", [False, True])
def test_learning_lines_from_one_template_make_the_same_model(zeros: bool):
    """Learning examples formatted all at once (zeros written, VW's parser drops them)
    teach the model what the per-action text (zeros left out) taught it."""

    def run(batched: bool) -> bytes:
        policy = VWPolicy(seed=4)
        if not batched:
            policy._action_lines = lambda names, dyn: [  # type: ignore[method-assign]
                f"{policy._lines[n]} {vw_c_line(dyn.get(n))}" for n in names
            ]
        rng = random.Random(9)
        for i in range(60):
            state = ObservedState(
                window_start=1000.0 + 5 * i,
                window_seconds=5.0,
                process_cpu=rng.uniform(0.05, 1.5),
                samples_per_s=0.0 if zeros else rng.uniform(0, 100),
                spans_per_s=0.0 if zeros else rng.uniform(0, 300),
                bytes_exported_per_s=rng.uniform(0, 30000),
            )
            ctx = DecisionContext(
                service="s", initial_params=Params(), params_in_force=Params(),
                mode=Mode.ADAPTIVE, state=state,
            )  # fmt: skip
            d = policy.decide(ctx)
            policy.learn(ctx, d, reward=rng.uniform(-2.0, 3.0))
        return policy.snapshot()

    from otel_adaprof.controller.policy.vw import _c_line as vw_c_line

    assert run(True) == run(False)


def test_shared_line_with_zeros_parses_as_the_line_without_them():
    """The state's line is written with its zeros (one template per tuple of names);
    VW parses it to the example the line without them gave."""
    from otel_adaprof.controller.policy.vw import _line, _shared_text

    policy = VWPolicy(seed=1)
    rng = random.Random(4)
    for _ in range(200):
        feats = {
            f"f{i}": rng.choice([0.0, -0.0, 1e-300, rng.uniform(-3, 3), 1.0, math.inf])
            for i in range(rng.randint(1, 40))
        }
        new = policy._vw.parse(_shared_text(feats))
        old = policy._vw.parse("shared " + _line("S", feats))
        assert list(new[ord("S")].indices) == list(old[ord("S")].indices)
        assert list(new[ord("S")].values) == list(old[ord("S")].values)
        assert list(new._feat_group_indices) == list(old._feat_group_indices)
