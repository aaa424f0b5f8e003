"""Overlapping slow steps on a few threads, with bounded memory: `bounded_map` runs a few items at a time on a thread
pool (reads, tensor arithmetic and writes all release the GIL, so they overlap and use every core), and `Flusher`
pushes written files to disk in the background, so the final flush before a rename has little left to do.
Standard library only; threads rather than processes, because the items are large tensors that must not be pickled."""

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

from .io import fsync


def bounded_map(fn: Callable, items: Iterable, workers: int = 2, ahead: int = 1) -> Iterator:
    """`fn(item)` for each item on `workers` threads, results yielded as they finish (not in order). At most
    `workers + ahead` items are in flight at once, so memory is bounded by that many results whatever the number of
    items. An exception in `fn` is raised here; closing the iterator early cancels what has not started."""
    if ahead < 0 or workers < 1:
        raise ValueError(f"bounded_map needs workers >= 1 and ahead >= 0, got workers={workers}, ahead={ahead}")
    pool = ThreadPoolExecutor(workers, thread_name_prefix="hfp-overlap")
    running: set[Future] = set()
    try:
        for item in items:
            running.add(pool.submit(fn, item))
            if len(running) >= workers + ahead:
                finished, running = wait(running, return_when=FIRST_COMPLETED)
                yield from (future.result() for future in finished)
        while running:
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            yield from (future.result() for future in finished)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class Flusher:
    """Flush files to disk on one background thread while the caller goes on writing. `maybe(path, written)` starts
    a flush of `path` once `every` bytes were written since the last one (and none is running); `done(path)` queues a
    final one; `wait()` joins them and raises the first error. Ends with `close()` (or use it as a context manager)."""

    def __init__(self, every: int = 256 * 2**20):
        self.every, self.since = every, 0
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="hfp-flush")
        self.futures: list[Future] = []

    def maybe(self, path: Path, written: int) -> None:
        self.since += written
        if self.since >= self.every and all(f.done() for f in self.futures):
            self.done(path)

    def done(self, path: Path) -> None:
        self.since = 0
        self.futures.append(self.pool.submit(fsync, path))

    def wait(self) -> None:
        futures, self.futures = self.futures, []
        for future in futures:
            future.result()

    def close(self) -> None:
        self.pool.shutdown(wait=True)

    def __enter__(self) -> "Flusher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["Flusher", "bounded_map"]
