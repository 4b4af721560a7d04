"""Session 37: detection timed to the report that showed it (``arrival_snapshots``), and
the bench scripts that read finished runs: ``bench/detection_from_reports.py``,
``bench/verdict_self_test.py`` — on the controller's real SQLite schema or on the
committed runs."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path

import pytest

from otel_adaprof.demo.bench_figures import arrival_snapshots, detection_time
from otel_adaprof.demo.workload import HOT_PATH
from tests.support.bench_scripts import BENCH, load

detection = load("detection_from_reports")
self_test = load("verdict_self_test")

ONSET = 1000.0
HOT = f"main;handle;{HOT_PATH}"
COLD = "main;handle;price_items"


def _db(folder: Path) -> Path:
    """An empty controller database, made by the controller's own store (its schema)."""
    from otel_adaprof.controller.store import Store

    path = folder / "adaprof.db"
    Store(str(path)).close()
    return path


def _report(db: sqlite3.Connection, service: str, at: float, stacks: dict[str, int],
            version: int = 1, window: dict | None = None) -> None:  # fmt: skip
    db.execute(
        "INSERT INTO reports (instance_id, service, config_version, window, stacks, received_at)"
        " VALUES ('i', ?, ?, ?, ?, ?)",
        (service, version, json.dumps(window or {"window_start": at - 3, "window_seconds": 3}),
         json.dumps(stacks), at),
    )  # fmt: skip


def _reports(folder: Path, service: str) -> None:
    """Before the onset only cold samples; the first report after it mostly cold; the
    second (at onset + 4.2 s) brings the hot path over half its share (0.4 / 2)."""
    with contextlib.closing(sqlite3.connect(_db(folder))) as db, db:
        _report(db, service, ONSET - 2.0, {COLD: 50})
        _report(db, service, ONSET + 1.2, {COLD: 30, HOT: 2})
        _report(db, service, ONSET + 4.2, {COLD: 10, HOT: 20})
        _report(db, "other", ONSET + 0.5, {HOT: 99})  # another service's: not counted


def test_detection_is_timed_to_the_report_not_to_the_next_look(tmp_path) -> None:  # type: ignore[no-untyped-def]
    _reports(tmp_path, "bench-adaptive")
    arrivals = arrival_snapshots(tmp_path / "adaprof.db", "bench-adaptive")
    assert [t for t, _ in arrivals] == [ONSET - 2.0, ONSET + 1.2, ONSET + 4.2]
    # cumulative, this service only, by workload function
    assert arrivals[-1][1] == {"price_items": 90.0, HOT_PATH: 22.0}
    assert detection_time(arrivals, ONSET, 0.4) == pytest.approx(4.2)
    # the bench's former reading: a look every 3 s from a phase of its own (onset - 1.0
    # here) saw it at onset + 5.0, the first look after the report
    looks = [(t, dict(p)) for t, p in _looks(arrivals, start=ONSET - 1.0, every=3.0)]
    assert detection_time(looks, ONSET, 0.4) == pytest.approx(5.0)


def _looks(arrivals, start: float, every: float):  # type: ignore[no-untyped-def]
    t, i, profile = start, 0, {}
    while t < arrivals[-1][0] + every:
        while i < len(arrivals) and arrivals[i][0] <= t:
            profile = arrivals[i][1]
            i += 1
        yield t, profile
        t += every


def test_detection_from_reports_reads_a_finished_run(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A work folder as the bench leaves it: the script times static-100 and adaptive
    from their reports and their own /control/hot-path spans, beside the JSON's figure."""
    with contextlib.closing(sqlite3.connect(_db(tmp_path))) as db, db:
        for name, late in (("static-100", 0.0), ("adaptive", 2.0)):
            _report(db, f"bench-{name}", ONSET - 2.0, {COLD: 50})
            _report(db, f"bench-{name}", ONSET + 2.0 + late, {COLD: 10, HOT: 20})
    for name in ("static-100", "adaptive"):
        spans = [{"name": "POST /control/hot-path", "startTimeUnixNano": str(int(t * 1e9))}
                 for t in (ONSET - 60.0, ONSET, ONSET + 60.0, ONSET + 120.0)]  # fmt: skip
        (tmp_path / f"spans-{name}.jsonl").write_text("".join(json.dumps(s) + "\n" for s in spans))
    truth = {p: {HOT_PATH: 0.4} for p in ("steady", "hot_path", "load_change", "hot_path_gone")}
    run = {
        "ground_truth": truth,
        "settings": {"phase_scale": 1.0},
        "configurations": {
            "static-100": {"_run": {"hot_path_detect_s": 3.5}},
            "adaptive": {"_run": {"hot_path_detect_s": 6.5}},
        },
    }
    (tmp_path / "bench.json").write_text(json.dumps(run))
    got = detection.run_detection(tmp_path, tmp_path / "bench.json")["configurations"]
    assert got["static-100"]["by_reports_s"] == pytest.approx(2.0)
    assert got["adaptive"]["by_reports_s"] == pytest.approx(4.0)
    assert got["adaptive"]["by_reports_ratio"] == 2.0
    assert got["adaptive"]["by_looks_ratio"] == pytest.approx(1.86)
    # 20 hot samples of 30: far above half the truth (0.2) at 1.645 standard errors too
    assert got["static-100"]["confident_s"] == pytest.approx(2.0)
    assert got["adaptive"]["confident_ratio"] == 2.0
    # at 8 standard errors the lower end of 20 of 30 is under 0.2: never confident
    strict = detection.run_detection(tmp_path, tmp_path / "bench.json", z=8.0)
    assert strict["z"] == 8.0 and strict["configurations"]["adaptive"]["confident_s"] is None
    with pytest.raises(SystemExit, match=r"no adaprof\.db"):
        detection.run_detection(tmp_path / "nowhere", tmp_path / "bench.json")
    (tmp_path / "cut.json").write_text('{"ground_truth": {')
    with pytest.raises(SystemExit, match=r"cut\.json: Expecting"):
        detection.run_detection(tmp_path, tmp_path / "cut.json")
    with pytest.raises(SystemExit, match=r"missing\.json: .*No such file"):
        self_test.self_test([tmp_path / "missing.json"])


def test_the_committed_detection_readings_match_the_committed_runs() -> None:
    """The committed table's "by looks" column is each run's own JSON figure, and its
    ratios are its own figures' ratios (a check on the file, not on the workdirs)."""
    rows = json.loads((BENCH / "output" / "detection_from_reports_s36.json").read_text())
    assert len(rows) == 8
    for row in rows:
        run = json.loads((BENCH / "output" / row["run"]).read_text())
        ref = row["configurations"]["static-100"]
        for name, got in row["configurations"].items():
            assert got["by_looks_s"] == run["configurations"][name]["_run"]["hot_path_detect_s"]
            if got["by_reports_s"] is not None:
                ratio = round(got["by_reports_s"] / ref["by_reports_s"], 2)
                assert got["by_reports_ratio"] == ratio


def test_the_self_test_reads_back_as_committed() -> None:
    committed = json.loads((BENCH / "output" / "verdict_self_test.json").read_text())
    paths = sorted({BENCH / "output" / run for row in committed for run in row["runs"]})
    again = self_test.self_test(paths)
    assert again == committed
    shop_1x = next(r for r in again if r["shape"] == "shop" and r["phase_scale"] == 1.0)
    # static-100 against its own other draws: every pair's coverage holds, L1 rarely
    assert shop_1x["pass_share"]["coverage"] == 1.0
    assert shop_1x["pass_share"]["all"] < 0.5
