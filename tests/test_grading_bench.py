"""The grading benchmark's report, from made-up measurements (the real run takes half an hour: make bench-grading)."""

from digitlab import grading_bench

INFO = {"cpu": "Test CPU", "cores": "2", "cpu_capability": "AVX2", "python": "3.11", "torch": "2.x"}


def records(seconds: dict[str, list[float]]) -> list[dict]:
    return [{"assignment": a, "student": f"s{k}", "seconds": s, "score": 1.0}
            for a, secs in seconds.items() for k, s in enumerate(secs)]


def test_report_states_ratios_and_the_cost_of_a_class():
    base = {"a": 30.0, "b": 60.0}
    runs = {1: (90.0, records({"a": [10, 10], "b": [20, 20]})),   # 60 s of grading, 90 s of wall time
            2: (50.0, records({"a": [12, 12], "b": [24, 24]}))}
    text = grading_bench.report(INFO, 2, base, runs, startup=(3.0, 2.0), wrong=[])
    assert "Test CPU, 2 cores, AVX2" in text
    assert "| 1 | 90 | 22.5 | 15.0 | 20.0 | 1.00 |" in text and "| 2 | 50 | 12.5 | 18.0 | 24.0 | 1.80 |" in text
    assert "| a | 30.0 | 10.0 | 3.00 |" in text and "| b | 60.0 | 20.0 | 3.00 |" in text
    assert "45.0 s per submission before, 15.0 s now with 1 worker (3.00 times as fast)" in text
    assert "the sandbox adds 1.0 s, 7% of the median" in text
    assert "300 submissions" in text and "12.5 s per submission on 2 cores): 62 minutes" in text
    assert "about 8 minutes" in text  # 300 x 12.5 s x 2 / 16 cores
    assert "every submission got the points expected" in text


def test_report_says_when_a_score_is_wrong():
    runs = {1: (10.0, records({"a": [5.0]})), 2: (6.0, records({"a": [5.0]}))}
    text = grading_bench.report(INFO, 1, {"a": 9.0}, runs, startup=(2.0, 1.5), wrong=["a/blank-03"])
    assert "NOT AS EXPECTED: a/blank-03" in text
