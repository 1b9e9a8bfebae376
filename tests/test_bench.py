"""`make bench`'s arithmetic: the network's training FLOPs and the compute floor."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

import pytest

from .conftest import REPO


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
