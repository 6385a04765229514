"""benchmarks/time_to_quality.py: the fewest seconds at which a method's mean drop reaches a level."""

from conftest import benchmark_script


def test_fewest_seconds_reads_only_budgets_that_reach_the_drop():
    ttq = benchmark_script("time_to_quality")
    rows = [{"method": "crisp", "seconds": 2.0, "drop": 0.70, "area": 0.05},
            {"method": "crisp", "seconds": 4.0, "drop": 0.91, "area": 0.05},
            {"method": "crisp", "seconds": 6.0, "drop": 0.95, "area": 0.05},
            {"method": "torchray", "seconds": 1.0, "drop": 0.99, "area": 1.0},  # everything deleted
            {"method": "torchray", "seconds": 9.0, "drop": 0.85, "area": 0.1}]
    assert ttq.fewest_seconds(rows, "crisp", 0.9) == 4.0
    assert ttq.fewest_seconds(rows, "crisp", 0.6) == 2.0
    assert ttq.fewest_seconds(rows, "torchray", 0.9, max_area=0.25) is None
    assert ttq.fewest_seconds(rows, "torchray", 0.8, max_area=0.25) == 9.0
    assert ttq.fewest_seconds(rows, "torchray", 0.9) == 1.0  # with no bound on the area
