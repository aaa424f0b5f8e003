"""bench/reproduce.py: its family is a valid recipe with ~2x members whose planned budget meets the paper's FLOPs
target, and the target check reads a summary the way BENCHMARKS.md reports it (met and missed cases)."""

import importlib
import importlib.util
import sys
from pathlib import Path

import pytest
import yaml

from hf_progressive.family.family_plan import plan_family
from hf_progressive.family.recipe import load_recipe


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))  # as `python bench/reproduce.py` has it: its tables module beside it
SPEC = importlib.util.spec_from_file_location("reproduce", ROOT / "bench" / "reproduce.py")
reproduce = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(reproduce)
tables = importlib.import_module("reproduce_tables")
search = importlib.import_module("reproduce_search")


@pytest.mark.parametrize("quick", [True, False])
def test_reproduction_recipe_is_a_family_of_doubling_members(tmp_path, quick):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(reproduce.recipe_dict(tmp_path, quick)))
    recipe = load_recipe(str(path))
    independent, progressive = plan_family(recipe, "independent"), plan_family(recipe, "progressive")
    totals = [m.params["total"] for m in independent.members]
    assert len(totals) == 4
    assert all(1.5 <= b / a <= 2.5 for a, b in zip(totals, totals[1:], strict=False))
    assert progressive.total_flops / independent.total_flops <= tables.TARGETS["flops_ratio"]
    lrs = [m.max_lr for m in progressive.members]
    assert lrs == sorted(lrs, reverse=True) and lrs[0] > lrs[-1]


def _run(delta: float, kl_mean: float, flops: float) -> dict:
    return {
        "val_loss": {"m0": 5.0, "m1": 4.5 + delta},
        "select_loss": {"m0": 5.1, "m1": 4.6 + delta},
        "flops": flops,
        "adjacent_kl": [{"pair": "m0-m1", "small_big": kl_mean, "big_small": kl_mean, "mean": kl_mean}],
        "mean_adjacent_kl": kl_mean,
        "wall_time_s": 1.0,
    }


def _summary(kl: float, loss_delta: float, ratio: float) -> dict:
    """Two seeds per arm at the chosen LR (seed 1 shifted by 0.01 in both arms), plus a worse grid point."""
    runs = {
        ("independent", 1.5e-3, 0): _run(0.0, 0.3, 1e12),
        ("independent", 1.5e-3, 1): _run(0.01, 0.3, 1e12),
        ("independent", 4e-3, 0): _run(0.5, 0.3, 1e12),
        ("progressive", 2.5e-3, 0): _run(loss_delta, kl, ratio * 1e12),
        ("progressive", 2.5e-3, 1): _run(loss_delta + 0.01, kl, ratio * 1e12),
        ("progressive", 4e-3, 0): _run(loss_delta + 0.2, kl, ratio * 1e12),
    }
    chosen = {arm: search.best_lr(runs, arm) for arm in ("independent", "progressive")}
    assert chosen == {"independent": 1.5e-3, "progressive": 2.5e-3}  # each arm's own best grid value
    return tables.aggregate(runs, chosen)


def test_aggregate_reports_seed_spread_and_paired_differences():
    summary = _summary(kl=0.2, loss_delta=-0.05, ratio=0.7)
    row = summary["progressive"]
    assert row["seeds"] == [0, 1] and row["val_loss"]["m1"] == pytest.approx(4.5 - 0.05 + 0.005)
    assert row["spread"]["val_loss"]["m1"]["max"] - row["spread"]["val_loss"]["m1"]["min"] == pytest.approx(0.01)
    assert row["paired"]["m1"]["min"] == pytest.approx(-0.05) and row["paired"]["m1"]["max"] == pytest.approx(-0.05)
    table = tables.markdown(summary, tables.check_targets(summary, ["progressive"]))
    assert "4.4550 (4.4500..4.4600)" in table and "-0.0500" in table


def test_flops_to_reach_the_independent_loss_counts_seeds_that_never_reach_it():
    runs = {("independent", 1.5e-3, s): _run(0.0, 0.3, 1e12) for s in (0, 1)}
    runs |= {("progressive", 1.5e-3, s): {**_run(-0.01, 0.2, 7e11), "reach": {"m0": 1.0, "m1": r}}
             for s, r in ((0, 0.6), (1, None))}  # fmt: skip
    summary = tables.aggregate(runs, {"independent": 1.5e-3, "progressive": 1.5e-3})
    assert summary["progressive"]["reach"]["m1"] == {"mean": 0.6, "min": 0.6, "max": 0.6, "n": 1, "missed": 1}
    assert "| progressive | 1.0000 (1.0000..1.0000) | 0.6000, not reached in 1 seed(s) |" in tables.markdown(
        summary, tables.check_targets(summary, ["progressive"])
    )


@pytest.mark.parametrize(
    "kl, loss_delta, ratio, expected",
    [
        (0.2, -0.05, 0.70, {"flops": True, "loss": True, "kl": True}),
        (0.2, 0.004, 0.75, {"flops": True, "loss": True, "kl": True}),  # within the independent's seed spread
        (0.2, 0.006, 0.70, {"flops": True, "loss": False, "kl": True}),  # above its worst seed
        (0.3, -0.05, 0.70, {"flops": True, "loss": True, "kl": False}),
        (0.2, -0.05, 0.76, {"flops": False, "loss": True, "kl": True}),
    ],
)
def test_targets_are_checked_against_the_independent_arm(kl, loss_delta, ratio, expected):
    summary = _summary(kl, loss_delta, ratio)
    checks = tables.check_targets(summary, ["progressive"])
    assert {name: ok for name, (ok, _) in checks["progressive"].items()} == expected
    table = tables.markdown(summary, checks)
    assert ("MISSED" in table) == (not all(expected.values()))


LADDER = [1.5e-3, 2.5e-3, 4e-3, 6e-3, 9e-3]


@pytest.mark.parametrize(
    "optimum, start, seeds, jobs",
    [(9e-3, [4e-3, 6e-3], 2, 1), (1.5e-3, [4e-3, 6e-3], 2, 2), (4e-3, [4e-3, 6e-3], 3, 1),
     (6e-3, [2.5e-3, 4e-3], 1, 2), (2.5e-3, [6e-3, 9e-3], 2, 3)],
)  # fmt: skip
def test_the_lr_search_brackets_each_arms_optimum_and_seeds_only_the_choice(optimum, start, seeds, jobs):
    """A unimodal loss over the ladder (an oracle minimum per arm, one rung apart): each arm ends at its own optimum,
    tries only the rungs on the way there plus one beyond, and runs the extra seeds at its choice only."""
    import math

    optima = {"independent": optimum, "progressive": LADDER[max(LADDER.index(optimum) - 1, 0)]}
    built = []

    def summarize(run):
        arm, largest, seed = run
        return _run(abs(math.log(largest / optima[arm])) + 0.01 * seed, 0.3, 1e12)

    runs = search.search(built.append, summarize, list(optima), LADDER, dict.fromkeys(optima, start), seeds, jobs)
    assert set(runs) == set(built)  # every run is built once, and only the ones built are summarised
    assert len(built) == len(set(built))
    for arm, best in optima.items():
        tried = sorted(lr for a, lr, s in runs if a == arm and s == 0)
        assert search.best_lr(runs, arm) == best
        at = LADDER.index(best)  # the start's rungs, then every rung on the way to the best and one beyond it
        low, high = min(LADDER.index(start[0]), max(at - 1, 0)), max(LADDER.index(start[-1]), min(at + 1, 4))
        assert tried == LADDER[low : high + 1]
        assert sorted(s for a, lr, s in runs if a == arm and s > 0) == list(range(1, seeds))
        assert all(lr == best for a, lr, s in runs if a == arm and s > 0)


def test_a_report_only_search_stops_where_the_built_runs_end():
    built = {("independent", lr, 0) for lr in (4e-3, 6e-3)} | {("progressive", lr, 0) for lr in (4e-3, 6e-3, 9e-3)}

    def summarize(run):  # progressive improves up the ladder; only the runs in `built` exist
        return _run(-run[1] * 10, 0.3, 1e12) if run in built else None

    arms = ["independent", "progressive"]
    runs = search.search(lambda run: None, summarize, arms, LADDER, dict.fromkeys(arms, [4e-3, 6e-3]), 2)
    assert set(runs) == built and search.best_lr(runs, "progressive") == 9e-3


def test_an_arm_goes_on_searching_while_another_arms_run_is_still_building():
    """Two workers; independent's first run blocks until progressive's third rung is built, which progressive
    decides once its own two first runs are in. A search that waited for every arm's runs before deciding any
    would leave that run blocked (and the test fails after its timeout)."""
    import threading

    third = threading.Event()

    def build(run):
        if run == ("progressive", 9e-3, 0):
            third.set()
        elif run == ("independent", 4e-3, 0):
            assert third.wait(timeout=20), "progressive's next rung waited for independent's runs"

    def summarize(run):  # progressive improves up the ladder, independent is best at 4e-3
        return _run(-run[1] * 10 if run[0] == "progressive" else abs(run[1] - 4e-3), 0.3, 1e12)

    arms = ["independent", "progressive"]
    runs = search.search(build, summarize, arms, LADDER, dict.fromkeys(arms, [4e-3, 6e-3]), 2, jobs=2)
    assert search.best_lr(runs, "progressive") == 9e-3 and search.best_lr(runs, "independent") == 4e-3
    assert {("progressive", 9e-3, 1), ("independent", 4e-3, 1), ("independent", 2.5e-3, 0)} <= set(runs)


def test_a_second_baseline_is_reported_but_not_checked_and_arms_pair_against_it():
    runs = {(arm, 4e-3, s): _run(delta + 0.01 * s, 0.3, flops) for s in (0, 1)
            for arm, delta, flops in (("independent", 0.0, 1e12), ("independent_wsd", -0.1, 1e12),
                                      ("progressive_trunk", -0.3, 8e11))}  # fmt: skip
    chosen = dict.fromkeys(("independent", "independent_wsd", "progressive_trunk"), 4e-3)
    summary = tables.aggregate(runs, chosen)
    assert reproduce.grown_arms(chosen) == ["progressive_trunk"]
    assert set(tables.check_targets(summary, reproduce.grown_arms(chosen))) == {"progressive_trunk"}
    assert summary["independent_wsd"]["paired"]["m1"]["mean"] == pytest.approx(-0.1)
    table = tables.paired_markdown(runs, chosen, ["progressive_trunk"], base="independent_wsd")
    assert "| progressive_trunk | +0.0000 (+0.0000..+0.0000) | -0.2000 (-0.2000..-0.2000) |" in table
    assert {"independent_wsd", "progressive_trunk"} <= set(reproduce.TUNED.split(","))


@pytest.mark.parametrize("wsd_delta, baseline", [(-0.1, "independent_wsd"), (0.1, "independent")])
def test_the_baseline_is_the_independent_schedule_that_selection_prefers(wsd_delta, baseline):
    deltas = {"independent": 0.0, "independent_wsd": wsd_delta, "progressive": -0.3}
    runs = {(arm, 4e-3, s): _run(delta + 0.01 * s, 0.3, 1e12) for s in (0, 1) for arm, delta in deltas.items()}
    chosen = dict.fromkeys(("independent", "independent_wsd", "progressive"), 4e-3)
    assert reproduce.baseline_arm(runs, chosen) == baseline
    summary = tables.aggregate(runs, chosen, baseline)
    other = ({"independent", "independent_wsd"} - {baseline}).pop()
    assert summary[other]["paired"]["m1"]["mean"] == pytest.approx(abs(wsd_delta))  # the other one is worse
    assert summary["progressive"]["paired"]["m1"]["mean"] == pytest.approx(-0.3 - min(wsd_delta, 0.0))
    assert f"every grown loss within {baseline}'s seed spread" in tables.markdown(
        summary, tables.check_targets(summary, ["progressive"], baseline), baseline
    )


def test_an_arm_can_start_its_search_elsewhere_and_still_ends_at_its_optimum():
    """A warm start (another budget's choice): the arm's first runs are its own rungs, the others' the default."""
    import math

    arms = ["independent", "progressive"]
    ladder = list(reproduce.LR_GRID)  # 1.5e-3 .. 1.35e-2
    start = reproduce.start_rungs(arms, ladder, "4e-3,6e-3", ["progressive=9e-3,1.35e-2"])
    assert start == {"independent": [4e-3, 6e-3], "progressive": [9e-3, 1.35e-2]}
    built = []
    summarize = lambda run: _run(abs(math.log(run[1] / 2.5e-3)), 0.3, 1e12)  # noqa: E731  both optima at 2.5e-3
    runs = search.search(built.append, summarize, arms, ladder, start, 1)
    assert built[:4] == [("independent", 4e-3, 0), ("progressive", 9e-3, 0), ("independent", 6e-3, 0),
                         ("progressive", 1.35e-2, 0)]  # fmt: skip
    assert search.best_lr(runs, "independent") == search.best_lr(runs, "progressive") == 2.5e-3


@pytest.mark.parametrize("per_arm", [["progressive=5e-3"], ["nosuch=4e-3"], ["progressive="]])
def test_start_rungs_off_the_ladder_or_for_an_unknown_arm_are_refused(per_arm):
    with pytest.raises(SystemExit, match="start rungs"):
        reproduce.start_rungs(["independent", "progressive"], LADDER, "4e-3,6e-3", per_arm)


def test_a_finished_run_is_not_launched_again_and_run_time_sums_the_ledger_clocks(tmp_path):
    run = ("progressive", 6e-3, 0)
    reproduce.report_losses(tmp_path / reproduce.run_name(*run)).write_text("{}")
    reproduce.builder(tmp_path, jobs=1, quick=True)(run)  # a relaunch would write a log (and fail: no data here)
    assert reproduce.is_built(tmp_path, run) and not list(tmp_path.glob("*.log"))
    runs = {run: {"wall_time_s": 1800.0}, ("independent", 4e-3, 0): {"wall_time_s": 5400.0}}
    assert tables.run_time(runs, 2) == "training time: 2.0 h over 2 runs (1.0 h at 2 at a time)"
