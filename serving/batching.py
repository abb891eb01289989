"""Server-side batching, as TF Serving's ``--enable_batching``: Predict requests for one model version that
arrive together run as one ONNX Runtime call, and each gets its own rows back. It pays where one call costs much
more than the rows in it (a GPU; many live streams of a face or two each); a lone request waits at most
``batch_timeout_micros`` for company. Off by default, as in TF Serving."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from serving.protocol.errors import ServingError, Unavailable

Run = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass(frozen=True)
class BatchingOptions:
    """TF Serving's BatchingParameters (its defaults where a file leaves a field out)."""

    max_batch_size: int = 1000  # rows (faces) in one run; a larger request runs alone
    batch_timeout_micros: int = 0  # how long the first request of a batch waits for more (0: takes only those waiting)
    max_enqueued_batches: int = 100  # beyond this many full batches waiting, requests are refused (UNAVAILABLE)
    num_batch_threads: int = 1  # runs of one model version at a time

    @classmethod
    def from_file(cls, path: Path) -> BatchingOptions:
        """A text-format BatchingParameters file (``--batching_parameters_file``)."""
        from google.protobuf import text_format

        from serving.protocol.protos import tensorflow_serving_pb2 as tfs

        try:
            parameters = text_format.Parse(Path(path).read_text(), tfs.BatchingParameters())
        except (OSError, text_format.ParseError) as error:
            raise ServingError(f"cannot read batching parameters file {path}: {error}") from error
        # Each field is an Int64Value wrapper named like ours: the file's value where it sets one, else ours.
        given = {name: getattr(parameters, name).value for name in cls.__dataclass_fields__ if parameters.HasField(name)}
        options = replace(cls(), **given)
        if min(options.max_batch_size, options.max_enqueued_batches, options.num_batch_threads) < 1 or options.batch_timeout_micros < 0:
            raise ServingError(f"batching parameters in {path} must be positive: {options}")
        return options


@dataclass(eq=False)  # compared by identity: deque.remove must not compare the arrays
class _Task:
    inputs: dict[str, np.ndarray]
    rows: int
    shape_key: tuple  # requests batch together only with the same inputs, dtypes and non-batch dimensions
    enqueued_s: float
    future: Future


class Batcher:
    """Batches requests to ``run`` (one model version's ONNX Runtime session, all outputs)."""

    def __init__(self, run: Run, options: BatchingOptions, name: str):
        self._run, self.options, self.name = run, options, name
        self._tasks: deque[_Task] = deque()
        self._queued_rows = 0
        self._changed = threading.Condition()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._serve, name=f"batch-{name}-{i}", daemon=True) for i in range(options.num_batch_threads)
        ]
        for thread in self._threads:
            thread.start()

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """This request's outputs, computed with whatever requests share its run. Inputs are already validated."""
        rows = next(iter(inputs.values())).shape[0]
        key = tuple(sorted((name, array.dtype.str, array.shape[1:]) for name, array in inputs.items()))
        task = _Task(inputs, rows, key, time.monotonic(), Future())
        with self._changed:
            closed = self._closed
            if not closed and self._queued_rows + rows > self.options.max_enqueued_batches * self.options.max_batch_size:
                raise Unavailable(f"the batch scheduling queue of model {self.name} is full")  # TF Serving's wording
            if not closed:
                self._tasks.append(task)
                self._queued_rows += rows
                self._changed.notify()
        if closed:  # a request that found this version just before it was unloaded: run alone
            return self._run(inputs)
        return task.future.result()

    def close(self) -> None:
        """No new batches; those waiting still run."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def _serve(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._execute(batch)

    def _next_batch(self) -> list[_Task] | None:
        timeout_s = self.options.batch_timeout_micros / 1e6
        with self._changed:
            while not self._tasks:
                if self._closed:
                    return None
                self._changed.wait()
            first = self._tasks.popleft()
            batch, rows = [first], first.rows
            while rows < self.options.max_batch_size:
                task = self._take(first.shape_key, self.options.max_batch_size - rows)
                if task is not None:
                    batch.append(task)
                    rows += task.rows
                    continue
                left_s = first.enqueued_s + timeout_s - time.monotonic()
                if left_s <= 0 or self._closed:
                    break
                self._changed.wait(left_s)
            self._queued_rows -= rows
            return batch

    def _take(self, shape_key: tuple, room: int) -> _Task | None:
        """The oldest waiting request that fits beside the batch (the others keep their place)."""
        for task in self._tasks:
            if task.shape_key == shape_key and task.rows <= room:
                self._tasks.remove(task)
                return task
        return None

    def _execute(self, batch: list[_Task]) -> None:
        try:
            if len(batch) == 1:
                outputs = self._run(batch[0].inputs)
            else:
                joined = {name: np.concatenate([task.inputs[name] for task in batch]) for name in batch[0].inputs}
                outputs = self._run(joined)
        except BaseException as error:  # every request of the batch gets the run's error, none is left waiting
            for task in batch:
                task.future.set_exception(error)
            return
        start = 0
        for task in batch:
            task.future.set_result({name: output[start : start + task.rows] for name, output in outputs.items()})
            start += task.rows
