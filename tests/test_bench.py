"""`make bench`'s arithmetic: the network's training FLOPs and the compute floor."""

from __future__ import annotations

import importlib.util
import io
import sys
from types import ModuleType

import pytest

from .helpers import REPO


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench", REPO / "benchmarks" / "bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_training_flops_are_the_books_mlp_forward_and_backward(bench: ModuleType) -> None:
    forward = 2 * (784 * 512 + 512 * 10)
    weight_gradients = forward
    input_gradients = 2 * 512 * 10  # the second layer's only: the pixels take no gradient
    assert bench.training_flops_per_sample() == forward + weight_gradients + input_gradients
    assert bench.training_flops_per_sample() == 1_636_352


def test_the_floor_divides_by_the_best_throughput_any_probe_measured(bench: ModuleType) -> None:
    shapes = [f"{m}x{k}x{n}" for m, k, n in bench.PROBE_SHAPES]
    slow = dict.fromkeys(shapes, 50.0) | {"2048x2048x2048": 100.0}
    fast = dict.fromkeys(shapes, 80.0) | {"2048x2048x2048": 150.0}
    floor = bench.compute_floor([slow, fast])
    flops = 1_636_352 * 60_000 * 5
    assert floor["best_shape"] == "2048x2048x2048" and floor["best_gflops"] == 150.0
    assert floor["floor_s"] == pytest.approx(flops / 150e9)
    assert floor["floor_at_network_shapes_s"] == pytest.approx(flops / 80e9)


def test_epoch_times_are_read_from_the_table_dlcli_train_prints(bench: ModuleType) -> None:
    from rich.console import Console

    from dlcli.cli.render import TrainView

    output = io.StringIO()
    view = TrainView(Console(file=output, width=100))  # not a terminal, as under the bench
    for epoch, loss in ((1, 0.5), (2, 0.25), (3, 0.125)):
        view.start_epoch(epoch, 3, 10)
        view.end_epoch(epoch, {"accuracy": 0.9, "loss": loss})
    view.stop()
    times = bench.epoch_times(output.getvalue())
    assert len(times) == 3 and all(0 <= seconds < 1 for seconds in times), output.getvalue()


def test_compare_gives_medians_ratios_and_the_quiet_pairs(bench: ModuleType) -> None:
    def run(wall: float, steal: float = 0.0) -> dict[str, float]:
        return {
            "wall": wall,
            "cpu": 2 * wall,
            "fit": wall - 5,
            "accuracy": 0.98,
            "rss_mb": 1000.0,
            "steal": steal,
        }

    runs = {
        "baseline": [run(100), run(120, steal=0.2), run(110)],
        "dlcli": [run(60), run(90), run(77)],
    }
    result = bench.compare(runs, 5)
    assert result["pairs"] == 3 and result["baseline"]["wall_s"] == 110
    assert result["ratios"]["wall"] == pytest.approx(77 / 110)
    per_pair = result["ratios"]["median_of_pair_ratios"]
    assert per_pair["wall"] == pytest.approx(0.7)  # of 0.6, 0.75, 0.7
    assert per_pair["quiet_pairs"] == 2 and per_pair["quiet_wall"] == pytest.approx(0.65)
    assert result["dlcli"]["samples_per_s"] == pytest.approx(300_000 / 72)
