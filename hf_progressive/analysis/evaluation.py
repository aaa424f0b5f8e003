"""lm-eval for every member: `simple_evaluate` with the `hf` model type on each checkpoint directory, the shipped
offline tasks registered automatically (hf_progressive/lm_eval_tasks, passed as lm-eval's include_path). Results go
to `<member>/eval_results.json` and `OUT/eval_results.json` (the family table). lm-eval is imported lazily: it is the
`eval` extra."""

import contextlib
import difflib
import functools
from pathlib import Path

from ..errors import CheckpointError, HfProgressiveError
from ..family.ledger import EVAL_FILE, FamilyPaths, is_family, read_family
from ..utils.io import write_json


TASKS_DIR = Path(__file__).parent / "lm_eval_tasks"
OFFLINE_TASKS = ("hfp_gutenberg_ppl", "hfp_gutenberg_cloze")


def evaluate_member(
    model_dir: str | Path,
    tasks: tuple[str, ...] | list[str] = OFFLINE_TASKS,
    limit: int | None = None,
    batch_size: int = 8,
    device: str | None = None,
) -> dict:
    """Run lm-eval on one checkpoint directory; returns `{task: {metric: value}}` and writes eval_results.json."""
    import torch
    from lm_eval import __version__ as lm_eval_version
    from lm_eval import simple_evaluate

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    with _quiet_git():
        output = simple_evaluate(
            model="hf",
            model_args={"pretrained": str(model_dir), "dtype": "float32"},
            tasks=list(tasks),
            task_manager=task_manager(),
            limit=limit,
            batch_size=batch_size,
            device=device,
        )
    results = {task: _metrics(values) for task, values in output["results"].items()}
    write_json(
        Path(model_dir) / EVAL_FILE,
        {"tasks": list(tasks), "limit": limit, "results": results, "lm_eval_version": lm_eval_version},
    )
    return results


@contextlib.contextmanager
def _quiet_git():
    """lm-eval records the git commit of the working directory by running `git describe`, whose "fatal: not a git
    repository" lands on the console outside a repository; the same lookup, with git's stderr kept quiet."""
    import subprocess

    import lm_eval.evaluator

    def commit() -> str | None:
        try:
            found = subprocess.run(["git", "describe", "--always"], capture_output=True, text=True, check=True)
            return found.stdout.strip()
        except (subprocess.CalledProcessError, FileNotFoundError):
            return None

    original = lm_eval.evaluator.get_git_commit_hash
    lm_eval.evaluator.get_git_commit_hash = commit
    try:
        yield
    finally:
        lm_eval.evaluator.get_git_commit_hash = original


@functools.cache
def task_manager():
    """lm-eval's task registry with the shipped offline tasks (indexing every task takes seconds: done once)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(TASKS_DIR))


def check_tasks(tasks, limit: int | None) -> None:
    """One-line error for an unknown task or a `limit` that is not a positive integer, before any model loads."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise HfProgressiveError(f"limit={limit!r}: use a positive number of documents per task (or leave it out).")
    if not tasks:
        raise HfProgressiveError("tasks: give at least one lm-eval task, e.g. " + ",".join(OFFLINE_TASKS) + ".")
    unknown = [task for task in tasks if task not in OFFLINE_TASKS]
    known = task_manager().all_tasks if unknown else []
    for task in unknown:
        if task not in known:
            close = difflib.get_close_matches(task, known, n=3)
            hint = f"did you mean {', '.join(close)}?" if close else f"the shipped ones are {', '.join(OFFLINE_TASKS)}"
            raise HfProgressiveError(f"tasks: {task!r} is not an lm-eval task ({hint}).")


def _metrics(values: dict) -> dict:
    """`{"acc,none": 0.3, "alias": ...}` -> `{"acc": 0.3}` (the default filter is dropped from the names)."""
    return {
        key.split(",")[0]: value for key, value in values.items() if key != "alias" and isinstance(value, int | float)
    }


def member_dirs(out: str | Path) -> list[Path]:
    """The members of a built family, in ledger (build) order."""
    paths = FamilyPaths(out)
    names = list(read_family(out).members) if is_family(out) else []
    return [paths.member(name) for name in names]


def evaluate_family(out: str | Path, tasks=OFFLINE_TASKS, limit: int | None = None, batch_size: int = 8) -> dict:
    """Evaluate every member of the family in `out`; writes and returns `OUT/eval_results.json`."""
    check_tasks(list(tasks), limit)
    members = member_dirs(out)
    if not members:
        raise CheckpointError(f"{out}: no built members (the ledger lists none); run build-family first.")
    table = {member.name: evaluate_member(member, tasks, limit, batch_size) for member in members}
    write_json(FamilyPaths(out).eval_results, {"tasks": list(tasks), "limit": limit, "members": table})
    return table


def metric_columns(table: dict) -> list[tuple[str, str]]:
    """The (task, metric) pairs of a member -> results table, without stderr and sample counts."""
    return sorted(
        {
            (task, metric)
            for results in table.values()
            for task, metrics in results.items()
            for metric in metrics
            if not metric.endswith("_stderr") and metric != "sample_len"
        }
    )


def format_evaluation(table: dict) -> str:
    """One row per member, one column per task/metric."""
    columns = metric_columns(table)
    header = f"{'member':<16}" + "".join(f"{task.removeprefix('hfp_') + ':' + metric:>34}" for task, metric in columns)
    rows = [
        f"{name:<16}"
        + "".join(f"{results.get(task, {}).get(metric, float('nan')):>34.4f}" for task, metric in columns)
        for name, results in table.items()
    ]
    return "\n".join([header, *rows])


__all__ = [
    "OFFLINE_TASKS",
    "check_tasks",
    "TASKS_DIR",
    "evaluate_family",
    "evaluate_member",
    "format_evaluation",
    "member_dirs",
    "metric_columns",
]
