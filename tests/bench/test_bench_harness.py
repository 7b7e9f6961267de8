"""The benchmark harness (benchmarks/common.py): warm-up before timing, interleaved rotating order, the
statistics written, goals judged on the median, and the result file's fields."""

from __future__ import annotations

import json

import pytest

from benchmarks import common


def test_every_contender_is_warmed_up_before_any_timed_call_and_the_order_rotates():
    calls: list[str] = []
    contenders = {name: (lambda name=name: calls.append(name)) for name in ("a", "b", "c")}
    seconds = common.interleaved(contenders, repeats=5, warmup=2, log=False)
    # hand-written: two warm-up calls each, then rounds starting at a, b, c, a, b
    assert calls[:6] == ["a", "a", "b", "b", "c", "c"]
    assert calls[6:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b", "a", "b", "c", "b", "c", "a"]
    assert {name: len(values) for name, values in seconds.items()} == {"a": 5, "b": 5, "c": 5}


def test_a_contender_that_times_itself_counts_its_own_seconds_and_its_last_value_is_kept():
    rounds = iter(range(100))
    last: dict[str, object] = {}
    seconds = common.interleaved({"self": lambda: common.SelfTimed(42.0, next(rounds)), "plain": lambda: "p"},
                                 repeats=5, warmup=1, log=False, last_values=last)
    assert seconds["self"] == [42.0] * 5 and all(0 <= value < 1 for value in seconds["plain"])
    assert last == {"self": 5, "plain": "p"}  # call 0 was the warm-up, calls 1-5 the timed rounds


def test_fewer_than_five_repeats_is_refused():
    with pytest.raises(ValueError, match="at least 5"):
        common.interleaved({"a": lambda: None}, repeats=4, log=False)


def test_spread_ratio_and_rate_are_the_median_min_and_max_of_the_rounds():
    assert common.spread([3.0, 1.0, 2.0, 10.0, 4.0]) == {"median": 3.0, "min": 1.0, "max": 10.0}
    assert common.spread([1.0, 2.0, 3.0, 4.0]) == {"median": 2.5, "min": 1.0, "max": 4.0}
    # paired round by round: 2/1, 3/3, 8/2, 1/2, 5/5 -> 2, 1, 4, 0.5, 1
    assert common.ratio_spread([2, 3, 8, 1, 5], [1, 3, 2, 2, 5]) == {"median": 1.0, "min": 0.5, "max": 4.0}
    assert common.rate_spread(10, [1.0, 2.0, 4.0, 5.0, 0.5]) == {"median": 5.0, "min": 2.0, "max": 20.0}
    with pytest.raises(ValueError, match="as many values"):
        common.ratio_spread([1, 2], [1])


def test_goals_are_judged_on_the_median_and_an_absent_metric_is_missed():
    metrics = {"ratio": {"median": 1.3, "min": 1.1, "max": 1.5}, "fraction": 0.52}
    verdicts = common.check_goals(metrics, {"ratio": ("<=", 1.2), "fraction": (">=", 0.5), "gone": (">=", 1)})
    assert verdicts == {"ratio": {"goal": "<= 1.2", "met": False}, "fraction": {"goal": ">= 0.5", "met": True},
                        "gone": {"goal": ">= 1", "met": False}}
    with pytest.raises(ValueError, match="comparison"):
        common.check_goals(metrics, {"ratio": ("<", 1.2)})


def test_result_file_records_machine_and_goals_and_the_table_shows_spreads(tmp_path, monkeypatch):
    import torch
    from threadpoolctl import threadpool_info, threadpool_limits

    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path)
    for name in common.THREAD_ENV:  # restored after the test, as are torch's and the BLAS pools' threads
        monkeypatch.setenv(name, "")
    before = torch.get_num_threads()
    with threadpool_limits(limits=None):
        try:
            machine = common.start_benchmark(threads=1)
            assert torch.get_num_threads() == 1
            assert {pool["num_threads"] for pool in threadpool_info()} == {1}
        finally:
            torch.set_num_threads(before)
    path = common.write_result("demo", {"ratio": {"median": 1.3, "min": 1.1, "max": 1.5}, "count": 7},
                               baseline="the plain loop", command="python -m benchmarks.demo",
                               goals={"ratio": ("<=", 1.2)})
    result = json.loads(path.read_text())
    assert {"name", "metrics", "baseline", "machine", "date", "command", "goals"} <= result.keys()
    assert result["machine"] == machine
    assert result["machine"]["threads"] == 1 and len(result["machine"]["load_average"]) == 3
    assert len(result["machine"]["git_commit"].split("+")[0]) == 40
    table = common.results_table()
    assert "| demo | `ratio` 1.3 (1.1-1.5), `count` 7 | `ratio` <= 1.2: MISSED | the plain loop |" in table


def test_make_bench_runs_every_benchmark_module():
    from benchmarks import run

    modules = {path.stem for path in (common.REPO / "benchmarks").glob("*.py")}
    listed = set(run.BENCHMARKS) | set(run.GPU_BENCHMARKS) | set(run.NOT_BENCHMARKS)
    assert modules - listed == set(), "a benchmark module that `make bench` does not run"
    assert set(run.BENCHMARKS) <= modules
