"""utils/overlap.py: `bounded_map` runs every item once, never holds more than `workers + ahead` in flight, raises a
worker's error, and stops starting items once closed; `Flusher` flushes in the background and reports its errors.
The streaming reader's positional reads refuse a shard that ends early."""

import json
import os
import struct
import threading
import time
from contextlib import ExitStack, closing
from types import SimpleNamespace

import pytest
import torch

from hf_progressive.errors import ExpansionError
from hf_progressive.expansion.streaming import LazyCheckpoint
from hf_progressive.utils.overlap import Flusher, bounded_map


class Gauge:
    """Counts items in flight and the most seen at once."""

    def __init__(self):
        self.lock, self.now, self.most, self.started = threading.Lock(), 0, 0, []

    def __call__(self, item):
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
            self.started.append(item)
        time.sleep(0.002 * (item % 3))  # uneven work, so items finish out of order
        with self.lock:
            self.now -= 1
        if item == "boom":
            raise ValueError("boom")
        return item * 10


@pytest.mark.parametrize("workers, ahead", [(1, 0), (1, 2), (2, 0), (2, 1), (3, 4)])
def test_bounded_map_runs_each_item_once_within_its_bound(workers, ahead):
    gauge = Gauge()
    results = list(bounded_map(gauge, range(40), workers=workers, ahead=ahead))
    assert sorted(results) == [i * 10 for i in range(40)]
    assert sorted(gauge.started) == list(range(40))
    assert 1 <= gauge.most <= workers


def test_bounded_map_holds_at_most_workers_plus_ahead_results():
    """Results the caller has not taken yet count too: with a slow consumer, no more than workers + ahead items are
    ever submitted beyond those consumed."""
    submitted, consumed = [], []
    items = iter(range(30))

    def feed():
        for item in items:
            submitted.append(item)
            yield item

    for result in bounded_map(lambda x: x, feed(), workers=2, ahead=1):
        consumed.append(result)
        assert len(submitted) - len(consumed) <= 3
        time.sleep(0.001)
    assert sorted(consumed) == list(range(30))


def test_bounded_map_raises_a_workers_error_and_stops_starting_items():
    gauge = Gauge()
    items = [1, 2, "boom", *range(3, 200)]
    with pytest.raises(TypeError):  # "boom" * 10 is fine; the sleep's arithmetic on a str is not
        list(bounded_map(gauge, items, workers=2, ahead=1))
    assert len(gauge.started) < 20


def test_closing_bounded_map_cancels_what_has_not_started():
    gauge = Gauge()
    with closing(bounded_map(gauge, range(1000), workers=2, ahead=1)) as results:
        next(results)
    assert len(gauge.started) <= 4


@pytest.mark.parametrize("workers, ahead", [(0, 1), (1, -1)])
def test_bounded_map_refuses_a_bound_it_cannot_keep(workers, ahead):
    with pytest.raises(ValueError, match="workers >= 1 and ahead >= 0"):
        next(bounded_map(str, [1], workers=workers, ahead=ahead))


def test_flusher_flushes_after_every_bytes_and_reports_errors(tmp_path, monkeypatch):
    flushed = []
    monkeypatch.setattr("hf_progressive.utils.overlap.fsync", lambda path: flushed.append(path))
    path = tmp_path / "f"
    with Flusher(every=100) as flusher:
        flusher.maybe(path, 60)
        flusher.wait()
        assert flushed == []
        flusher.maybe(path, 60)
        flusher.wait()
        assert flushed == [path]
        flusher.done(path)
        flusher.wait()
        assert flushed == [path, path]
    monkeypatch.undo()
    with Flusher() as flusher, pytest.raises(FileNotFoundError):
        flusher.done(tmp_path / "missing")
        flusher.wait()


def test_lazy_checkpoint_refuses_a_shard_that_ends_before_its_tensor(tmp_path):
    """A shard cut short after it was opened (the checks before opening refuse one that already is)."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 64]}}).encode()
    shard = tmp_path / "model.safetensors"
    shard.write_bytes(struct.pack("<Q", len(header)) + header + bytes(64))
    with ExitStack() as stack:
        load = LazyCheckpoint(tmp_path, SimpleNamespace(tie_word_embeddings=False), stack)
        os.truncate(shard, shard.stat().st_size - 24)
        with pytest.raises(ExpansionError, match="w: the checkpoint file ends before this tensor does"):
            load("w")


def test_lazy_checkpoint_returns_a_fresh_tensor_per_call(tmp_path):
    values = torch.arange(16, dtype=torch.float32)
    header = json.dumps({"w": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 64]}}).encode()
    (tmp_path / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + values.numpy().tobytes())
    with ExitStack() as stack:
        load = LazyCheckpoint(tmp_path, SimpleNamespace(tie_word_embeddings=False), stack)
        first, second = load("w"), load("w")
        assert load.fresh and torch.equal(first, values.view(4, 4)) and torch.equal(first, second)
        first.zero_()
        assert torch.equal(second, values.view(4, 4))  # not aliased: expand_tensor may skip its copy
