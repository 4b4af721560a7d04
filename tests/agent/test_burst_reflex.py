"""The burst reflex in a real process: a CPU-per-request step starts a burst at once.

A request loop in a process with the agent and real py-spy (5 Hz, wall mode, 1 s segments);
after 12 s, each request calls a new hot function (3 ms → 15 ms of CPU). With
``burst_sensitivity`` set, the agent bursts to 100 Hz within about a second, by itself;
in the 12 s of steady load before the step it does not burst (nor glimpse).
"""

from __future__ import annotations

import pytest

from tests.support.bench_scripts import load

pytestmark = pytest.mark.slow


def _run(mode: str) -> dict:
    got: dict = load("burst_reflex").run(mode)  # bench/burst_reflex.py's probe
    return got


def _served(got: dict) -> None:
    # 18.5 s at 20 requests/s: on a saturated machine the loop itself falls behind, and
    # neither the step's timing nor the signal's observation rate hold.
    if got["requests"] < 185:
        pytest.skip(f"the probe served {got['requests']} of 370 requests: machine saturated")


@pytest.mark.flaky(reruns=2)  # timing on a shared 2-core machine: a rerun, the bound unchanged
def test_a_cpu_per_request_step_starts_a_burst_within_two_seconds():
    got = _run("step")
    _served(got)
    # the 12 s of steady load before the step (the signals' baselines formed) start none:
    # the probe's ``steady`` mode says the same over 18.5 s, 20 s more of the timing pass
    assert got["bursts_before_step"] == 0, got
    assert got["bursts"] >= 1, got
    assert got["delay"] is not None and 0.0 <= got["delay"] <= 2.0, got
    state = got["state"]
    assert state["burst_seconds"] >= 2.0, state
    assert state["change_signals"]["changes"] >= 1
    assert state["change_signals"]["profile_changes"] >= 1  # wall mode: every change shows
    assert state["change_signals"]["last_change_unix"] is not None
    assert got["during"] >= 3 * max(got["before"], 1.0), got  # 100 Hz against 5 Hz
    assert got["rate_after"] == 200  # the burst is over: the params are back


@pytest.mark.flaky(reruns=2)  # timing on a shared 2-core machine: a rerun, the bound unchanged
def test_a_subtle_rise_starts_one_glimpse_long_before_a_change_could_fire():
    """3 → 3.9 ms of CPU a request under ``burst_sensitivity: 20`` and
    ``glimpse_sensitivity: 3``: one 2 s run at 100 Hz starts within seconds, reported as
    a glimpse; no change fires."""
    got = _run("glimpse")
    _served(got)
    assert got["glimpses_before_step"] == 0 and got["bursts_before_step"] == 0, got
    assert got["glimpses"] == 1 and got["bursts"] == 1, got
    assert got["delay"] is not None and 0.0 <= got["delay"] <= 4.0, got
    state = got["state"]
    assert state["glimpse_seconds"] == pytest.approx(2.0, abs=0.3), state
    assert state["burst_seconds"] == pytest.approx(state["glimpse_seconds"]), state
    assert state["change_signals"]["changes"] == 0, state
    assert got["during"] >= 3 * max(got["before"], 1.0), got  # 100 Hz against 5 Hz
    assert got["rate_after"] == 200
