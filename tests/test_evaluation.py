"""The shipped offline lm-eval tasks on a tiny member: through our API, and through plain `lm_eval` (vanilla
checkpoint + --include_path), no network."""

import json
import subprocess
import sys

import pytest

from hf_progressive.analysis.evaluation import TASKS_DIR, evaluate_family, format_evaluation


def test_offline_tasks_run_on_every_member(tiny_family):
    out, ledger = tiny_family
    table = evaluate_family(out, limit=3)
    assert list(table) == list(ledger.members)
    for results in table.values():
        ppl, cloze = results["hfp_gutenberg_ppl"], results["hfp_gutenberg_cloze"]
        assert ppl["bits_per_byte"] > 0 and ppl["word_perplexity"] > 1 and ppl["byte_perplexity"] > 1
        assert 0 <= cloze["acc"] <= 1 and 0 <= cloze["acc_norm"] <= 1
    member = out / "members" / next(iter(ledger.members))
    assert json.loads((member / "eval_results.json").read_text())["results"] == table[member.name]
    assert json.loads((out / "eval_results.json").read_text())["members"] == table
    assert "gutenberg_cloze:acc" in format_evaluation(table)


@pytest.mark.slow  # a full lm-eval CLI run
def test_plain_lm_eval_cli_works_on_a_member(tiny_family):
    out, ledger = tiny_family
    member = out / "members" / list(ledger.members)[-1]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lm_eval",
            "--model",
            "hf",
            "--model_args",
            f"pretrained={member}",
            "--tasks",
            "hfp_gutenberg_cloze",
            "--include_path",
            str(TASKS_DIR),
            "--limit",
            "3",
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "hfp_gutenberg_cloze" in result.stdout and "acc" in result.stdout
