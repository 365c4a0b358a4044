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


def test_the_demo_table_takes_medians_per_setting_and_divides_by_the_default():
    bench = load_benchmark("thread_contention")
    default, spin = bench.DEMO_SETTINGS
    assert bench.DEMO_SETTINGS[default] == {"GOMP_SPINCOUNT": "300000"}  # explicit: unset means the actors' 1000
    assert bench.DEMO_SETTINGS[spin] == {}

    def row(pair, setting, seconds, rollout):
        rates = {stage: 100.0 for stage in bench.STAGE_RATES} | {"rollout": rollout}
        return {"pair": pair, "setting": setting, "distill_seconds": seconds, "stage_tokens_per_s": rates}

    rows = [row(0, default, 60, 1000.0), row(0, spin, 90, 500.0), row(1, default, 70, 3000.0),
            row(1, spin, 63, 900.0), row(2, default, 80, 2000.0), row(2, spin, 84, 800.0)]
    lines = bench.demo_lines(rows)
    assert "3 runs of `tip-ray demo` per setting" in lines[1]
    assert "| distillation, s | 70 | 84 | 1.20x |" in lines
    assert "| rollout tokens/s | 2000 | 800 | 0.40x |" in lines
    assert "| learner tokens/s | 100 | 100 | 1.00x |" in lines
