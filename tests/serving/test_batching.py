"""Server-side batching (--enable_batching): requests that arrive together run once, each gets its own rows, and
nothing that cannot share a run is joined."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from serving.batching import Batcher, BatchingOptions
from serving.protocol.errors import ServingError, Unavailable
from serving.registry import ModelRegistry, ServingOptions, discover
from serving.server import batching_options, parse_args
from tests.serving.test_registry import write_scale_model


class CountingRun:
    """y = 2x, remembering the batch sizes it was called with; ``gate`` holds the first run until released."""

    def __init__(self, gate: threading.Event | None = None):
        self.sizes: list[int] = []
        self.gate = gate

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.gate is not None:
            self.gate.wait(5)
        self.sizes.append(len(inputs["x"]))
        return {"y": inputs["x"] * 2}


def rows(start: int, count: int, width: int = 2) -> dict[str, np.ndarray]:
    return {"x": np.arange(start, start + count * width, dtype=np.float32).reshape(count, width)}


def test_requests_arriving_together_run_once_and_each_gets_its_own_rows():
    run = CountingRun()
    batcher = Batcher(run, BatchingOptions(max_batch_size=64, batch_timeout_micros=300_000), "m")
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda i: batcher.run(rows(100 * i, i + 1)), range(6)))
    for i, answer in enumerate(answers):
        np.testing.assert_array_equal(answer["y"], rows(100 * i, i + 1)["x"] * 2)
    assert sum(run.sizes) == 21 and len(run.sizes) < 6  # 1 + 2 + ... + 6 rows, in fewer runs than requests


def test_a_batch_stops_at_max_batch_size_and_a_larger_request_runs_alone():
    gate = threading.Event()
    run = CountingRun(gate)
    batcher = Batcher(run, BatchingOptions(max_batch_size=4, batch_timeout_micros=0), "m")
    with ThreadPoolExecutor(5) as pool:
        held = pool.submit(batcher.run, rows(0, 1))  # occupies the one batch thread until the gate opens
        time.sleep(0.2)
        waiting = [pool.submit(batcher.run, rows(10 * i, 3)) for i in range(3)] + [pool.submit(batcher.run, rows(99, 9))]
        time.sleep(0.2)
        gate.set()
        for future in [held, *waiting]:
            future.result(5)
    assert run.sizes[0] == 1 and sorted(run.sizes[1:]) == [3, 3, 3, 9]  # 3 + 3 > 4: never joined; 9 > 4: alone


def test_requests_of_other_shapes_are_not_joined():
    gate = threading.Event()
    run = CountingRun(gate)
    batcher = Batcher(run, BatchingOptions(max_batch_size=64, batch_timeout_micros=0), "m")
    with ThreadPoolExecutor(4) as pool:
        held = pool.submit(batcher.run, rows(0, 1))
        time.sleep(0.2)
        narrow, wide, narrow_again = (pool.submit(batcher.run, rows(0, 2, width)) for width in (2, 3, 2))
        time.sleep(0.2)
        gate.set()
        assert wide.result(5)["y"].shape == (2, 3) and narrow.result(5)["y"].shape == (2, 2) and narrow_again.result(5)
        held.result(5)
    assert run.sizes[1:] == [4, 2]  # the two narrow requests together, the wide one on its own


def test_a_failed_run_fails_every_request_in_it_and_the_batcher_keeps_serving():
    calls = []

    def run(inputs):
        calls.append(len(inputs["x"]))
        if len(calls) == 1:
            raise RuntimeError("the session failed")
        return {"y": inputs["x"]}

    batcher = Batcher(run, BatchingOptions(batch_timeout_micros=0), "m")
    with pytest.raises(RuntimeError, match="the session failed"):
        batcher.run(rows(0, 1))
    np.testing.assert_array_equal(batcher.run(rows(0, 1))["y"], rows(0, 1)["x"])


def test_a_full_queue_refuses_with_unavailable_and_a_closed_batcher_runs_requests_alone():
    gate = threading.Event()
    run = CountingRun(gate)
    batcher = Batcher(run, BatchingOptions(max_batch_size=2, max_enqueued_batches=1, batch_timeout_micros=0), "m")
    with ThreadPoolExecutor(3) as pool:
        held = pool.submit(batcher.run, rows(0, 1))
        time.sleep(0.2)
        queued = pool.submit(batcher.run, rows(0, 2))  # one full batch waiting: the queue's limit
        time.sleep(0.2)
        with pytest.raises(Unavailable, match="queue of model m is full"):
            batcher.run(rows(0, 1))
        gate.set()
        held.result(5), queued.result(5)
    batcher.close()
    np.testing.assert_array_equal(batcher.run(rows(0, 1))["y"], rows(0, 1)["x"] * 2)


def test_the_model_server_batches_a_model_and_answers_each_request_its_own(tmp_path):
    write_scale_model(tmp_path / "scale" / "1", 3.0)
    options = ServingOptions(intra_op_threads=1, batching=BatchingOptions(max_batch_size=32, batch_timeout_micros=100_000))
    registry = ModelRegistry(discover(tmp_path), options)
    registry.refresh()
    model = registry.resolve("scale")
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: model.predict(rows(10 * i, 1 + i % 3)), range(8)))
    for i, answer in enumerate(answers):
        np.testing.assert_allclose(answer["y"], rows(10 * i, 1 + i % 3)["x"] * 3)


def test_batching_parameters_are_read_from_tf_servings_text_format(tmp_path):
    path = tmp_path / "batching.config"
    path.write_text("max_batch_size { value: 32 }\nbatch_timeout_micros { value: 2000 }\nnum_batch_threads { value: 2 }\n")
    options = batching_options(parse_args(["--batching_parameters_file", str(path)]))
    assert options == BatchingOptions(max_batch_size=32, batch_timeout_micros=2000, max_enqueued_batches=100, num_batch_threads=2)
    assert batching_options(parse_args(["--enable_batching"])) == BatchingOptions()
    assert batching_options(parse_args([])) is None  # off unless asked, as TF Serving
    path.write_text("max_batch_size { value: 0 }\n")
    with pytest.raises(ServingError, match="must be positive"):
        BatchingOptions.from_file(path)
    path.write_text("allowed_batch_sizes: 8\n")
    with pytest.raises(ServingError, match="cannot read batching parameters"):
        BatchingOptions.from_file(path)
