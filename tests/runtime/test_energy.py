"""The NVML energy measurement of the executor, driven by a simulated coarse energy counter.

NVML's total-energy counter advances in steps every ~20–100 ms; a naive read before/after a few
millisecond runs gives 0 or a whole step. These tests replace NVML with a counter that has exactly that
behaviour (and a simulated clock, so they take no wall time) and check that the executor's meter recovers
per-run energy and idle power.
"""

from __future__ import annotations

import math

import pytest

from deepx_opt.runtime.executor import _NvmlEnergy


class SimBoard:
    """A GPU board on a simulated clock: ``idle_w`` always, plus ``busy_w`` while a run executes; its
    energy counter (mJ) publishes the true cumulative energy only every ``period_s``."""

    def __init__(self, idle_w=100.0, busy_w=250.0, period_s=0.05, run_s=0.002, gap_s=0.0001, read_s=2e-5):
        self.idle_w, self.busy_w, self.period_s = idle_w, busy_w, period_s
        self.run_s, self.gap_s, self.read_s = run_s, gap_s, read_s
        self.t = 0.37  # arbitrary phase against the counter's updates
        self.busy_time = 0.0  # cumulative busy seconds, as (start, end) intervals folded in
        self.intervals: list[tuple[float, float]] = []

    def true_mj(self, t):
        busy = sum(max(0.0, min(e, t) - s) for s, e in self.intervals)
        return (self.idle_w * t + self.busy_w * busy) * 1e3

    def read_mj(self):
        self.t += self.read_s
        published = math.floor(self.t / self.period_s) * self.period_s
        return self.true_mj(published)

    def clock(self):
        return self.t

    def sleep(self, s):
        self.t += s

    def run(self):
        self.intervals.append((self.t, self.t + self.run_s))
        self.t += self.run_s + self.gap_s


def meter(board):
    return _NvmlEnergy(read_mj=board.read_mj, power_mw=lambda: board.idle_w * 1e3,
                       clock=board.clock, sleep=board.sleep)


def test_naive_reading_is_quantised_but_window_measure_is_not():
    board = SimBoard()
    m = meter(board)
    # the old way, counter read around 10 runs of 2 ms that fall between two 50 ms updates: zero energy
    # (the "SVHN 0.00 mJ" symptom seen on an H200)
    e0 = m.read()
    for _ in range(10):
        board.run()
    assert m.read() - e0 == 0.0
    true_per_run_uj = (board.idle_w * (board.run_s + board.gap_s) + board.busy_w * board.run_s) * 1e6
    res = m.measure(board.run, min_runs=20, window_s=1.0)
    assert res["aligned"] and res["runs"] >= 20 and res["seconds"] >= 1.0
    per_run = res["energy_uj"] / res["runs"]
    assert per_run == pytest.approx(true_per_run_uj, rel=0.01)


def test_min_runs_beyond_window_and_idle_power():
    board = SimBoard(idle_w=80.0, busy_w=300.0, period_s=0.1, run_s=0.03)
    m = meter(board)
    assert m.idle_power_w(0.3) == pytest.approx(80.0, rel=0.01)
    res = m.measure(board.run, min_runs=50, window_s=0.2)  # 50 runs of 30 ms outlast the window
    assert res["runs"] >= 50
    true_per_run_uj = (80.0 * (board.run_s + board.gap_s) + 300.0 * board.run_s) * 1e6
    assert res["energy_uj"] / res["runs"] == pytest.approx(true_per_run_uj, rel=0.03)


def test_frozen_counter_is_reported_unaligned():
    board = SimBoard()
    m = _NvmlEnergy(read_mj=lambda: 5.0, clock=board.clock, sleep=board.sleep)
    res = m.measure(board.run, min_runs=3, window_s=0.05, max_extra_s=0.05)
    assert res["aligned"] is False and res["energy_uj"] == 0.0 and res["runs"] >= 3
    assert m.power_mw() is None


def test_no_nvidia_device_means_no_handles():
    m = _NvmlEnergy([])
    assert m.handles == [] and "no NVIDIA" in m.reason
