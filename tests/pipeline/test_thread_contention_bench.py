"""benchmarks/thread_contention.py measures the spin count stage actors really get, and its table
divides by the right baseline."""

from __future__ import annotations

from tests.benchmark_module import load_benchmark


def test_the_benchmark_measures_the_stage_actors_setting_against_the_default():
    from tip_ray.pipeline.placement import thread_wait_env

    bench = load_benchmark("thread_contention")
    assert thread_wait_env({}) in bench.SETTINGS.values()
    assert bench.SETTINGS["libgomp default"] == {}
    rows = [{"busy": busy, "setting": name, "tokens_per_s": rate, "load": 1.0}
            for busy, base in ((0, 40.0), (4, 5.0)) for name, rate in zip(bench.SETTINGS, (base, base * 2, base * 3))]
    lines = bench.report_lines({"busy": [0, 4], "threads": 2, "rows": rows, "machine": "m", "date": "d"})
    table = [line for line in lines if line.startswith("| 4 |")]
    assert [line.split(" | ")[3] for line in table] == ["1.00x", "2.00x", "3.00x"]
