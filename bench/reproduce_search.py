"""The reproduction bench's LR search: each tuned arm brackets its best rung of a ladder of `lr.largest` values at
seed 0, then runs that choice at more seeds. Arms search independently of one another, so a run is scheduled as soon
as its arm's earlier runs say it is needed, `jobs` at a time: no worker waits for another arm's runs to finish."""

import heapq
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from reproduce_tables import grown_mean


Run = tuple[str, float, int]  # (arm, largest, seed)


def best_lr(runs: dict[Run, dict], arm: str) -> float:
    """The grid value with the lowest `grown_mean` for `arm` at seed 0."""
    tried = {largest: row for (a, largest, seed), row in runs.items() if a == arm and seed == 0}
    return min(tried, key=lambda largest: grown_mean(tried[largest]))


def next_rung(runs: dict[Run, dict], arm: str, ladder: list[float]) -> float | None:
    """The ladder value `arm` should try next: one rung beyond its best when the best is the lowest or highest value
    tried so far; None once the best is bracketed or at the ladder's end."""
    tried = sorted(largest for a, largest, seed in runs if a == arm and seed == 0)
    best, ladder = best_lr(runs, arm), sorted(ladder)
    step = -1 if best == tried[0] else 1 if best == tried[-1] else 0
    index = ladder.index(best) + step
    if not step or not 0 <= index < len(ladder) or ladder[index] in tried:
        return None
    return ladder[index]


def _follow_up(runs: dict[Run, dict], arm: str, ladder: list[float], asked: set[Run], seeds: int) -> list[Run]:
    """What `arm` runs next once its seed-0 runs are all in: its next rung, or (settled) its choice at the other
    seeds. A rung asked before but never summarised (a report-only pass) settles the arm where its built runs end."""
    rung = next_rung(runs, arm, ladder)
    if rung is not None and (arm, rung, 0) not in asked:
        return [(arm, rung, 0)]
    return [(arm, best_lr(runs, arm), seed) for seed in range(1, seeds)]


def search(build, summarize, tuned: list[str], ladder: list[float], start: dict[str, list[float]], seeds: int,
           jobs: int = 1) -> dict[Run, dict]:  # fmt: skip
    """Every tuned arm's bracketing search over `ladder` from its `start` rungs (seed 0), and its choice at `seeds`
    seeds as soon as it is bracketed. `build(run)` makes one run (called from `jobs` threads at once); `summarize(run)`
    reads it or returns None when it is absent. Seed-0 rungs go first (they steer the search), then the order asked.
    Returns {(arm, largest, seed): row}."""
    first = [(arm, start[arm][i], 0) for i in range(max(map(len, start.values()))) for arm in tuned
             if i < len(start[arm])]  # fmt: skip
    queue = [(0, order, run) for order, run in enumerate(first)]
    runs, asked, running = {}, set(first), {}
    with ThreadPoolExecutor(jobs) as pool:
        while queue or running:
            while queue and len(running) < jobs:
                run = heapq.heappop(queue)[-1]
                running[pool.submit(build, run)] = run
            for future in wait(running, return_when=FIRST_COMPLETED).done:
                future.result()  # a failed run stops the search
                run = running.pop(future)
                if (row := summarize(run)) is not None:
                    runs[run] = row
                if _ready(run, runs, [*running.values(), *(item[-1] for item in queue)]):
                    for later in _follow_up(runs, run[0], ladder, asked, seeds):
                        asked.add(later)
                        heapq.heappush(queue, (later[2], len(asked), later))
    return runs


def _ready(run: Run, runs: dict[Run, dict], waiting: list[Run]) -> bool:
    """Whether finishing seed-0 `run` completes its arm's current rungs (none waiting), so its arm can decide."""
    arm = run[0]
    return not run[2] and not any(r[0] == arm and not r[2] for r in waiting) and any(r[0] == arm for r in runs)
