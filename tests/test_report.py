"""The family report renders with every plot, alone and against a baseline build of the same recipe."""

from pathlib import Path

import pytest
from testing_utils import STEPS, tiny_recipe

from hf_progressive.analysis.evaluation import evaluate_family
from hf_progressive.analysis.report import equal_loss_savings, first_reach, write_report
from hf_progressive.cli import main
from hf_progressive.family.builder import build_family


PNG = b"\x89PNG\r\n\x1a\n"


def _pngs(directory: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in directory.glob("*.png") if p.read_bytes()[:8] == PNG}


def test_report_renders_every_plot_against_a_baseline(tiny_family, tmp_path):
    out, ledger = tiny_family
    if not (out / "eval_results.json").is_file():
        evaluate_family(out, limit=3)
    baseline = tmp_path / "independent"
    build_family(tiny_recipe(out.parent), baseline, "independent", max_steps=STEPS)
    evaluate_family(baseline, limit=2)
    report = write_report(out, baseline=baseline, report_dir=tmp_path / "report")
    text = report.read_text()
    pngs = _pngs(tmp_path / "report")
    assert set(pngs) == {"loss_vs_flops.png", "val_loss.png", "kl_heatmap.png", "eval.png"}
    assert all(size > 10_000 for size in pngs.values())
    for section in ("## Members", "## Compute", "## FLOPs to reach equal loss", "## Consistency", "## lm-eval"):
        assert section in text
    assert all(f"![{name}]({name})" in text for name in pngs)
    assert (out / "consistency.json").is_file() and (baseline / "consistency.json").is_file()
    rows = equal_loss_savings(out, baseline)
    assert [r["member"] for r in rows] == list(ledger.members)
    assert rows[0]["saving"] == 0.0  # the first member is trained identically in both modes


@pytest.mark.parametrize(
    "points, target, flops",
    [([(10, 5.0), (20, 3.0)], 4.0, 15.0),  # halfway down the segment
     ([(10, 5.0), (20, 3.0)], 5.0, 10.0),  # the first evaluation is already there
     ([(10, 5.0), (20, 4.0), (30, 3.0)], 4.0, 20.0),  # exactly on an evaluation
     ([(10, 5.0), (20, 3.5), (30, 4.2), (40, 3.0)], 3.8, 18.0),  # the first crossing, not a later one
     ([(10, 5.0), (20, 3.0)], 2.0, None)],  # never
)  # fmt: skip
def test_flops_to_reach_a_loss_are_linear_between_the_evaluations_that_straddle_it(points, target, flops):
    assert first_reach(points, target) == (None if flops is None else pytest.approx(flops))


def test_report_command_and_missing_family(tiny_family, tmp_path, capsys):
    out, _ = tiny_family
    assert main(["report", str(out)]) == 0 and (out / "report.md").is_file()
    assert main(["report", str(tmp_path)]) == 2
    assert "no family.json" in capsys.readouterr().err


def test_consistency_command_writes_json(tiny_family, capsys):
    out, _ = tiny_family
    assert main(["consistency", str(out), "--pairs", "adjacent", "--max-blocks", "2"]) == 0
    assert "KL (mean of both directions)" in capsys.readouterr().out
