"""Publishing: cards render and parse back with the right base_model chain; push_family.py against a loopback
stand-in for the Hub API (no network): the sequence of calls, one commit per repo, and a rerun after an injected
failure that completes without duplicates."""

import re
import sys
from pathlib import Path

from hub_mock import FakeHub
from huggingface_hub import ModelCard, metadata_load

from hf_progressive.hub.cards import family_card, member_card, repo_ids


ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT / "hub_scripts"))

import push_family  # noqa: E402


def test_member_cards_parse_back_with_the_base_model_chain(tiny_family, tmp_path):
    out, ledger = tiny_family
    ids = repo_ids(out, "org", "fam")
    names = list(ledger.members)
    for k, name in enumerate(names):
        path = tmp_path / f"{name}.md"
        member_card(out, name, ids).save(path)
        card, metadata = ModelCard.load(path), metadata_load(path)
        assert card.data.base_model == (ids[names[k - 1]] if k else None)
        assert metadata.get("base_model") == (ids[names[k - 1]] if k else None)
        assert metadata["library_name"] == "transformers" and "hf_progressive" in metadata["tags"]
        assert ledger.members[name].parent in (None, names[k - 1])
        assert "```yaml\n" in card.text and "name: test" in card.text  # the exact recipe
    family = family_card(out, ids, ["kl_heatmap.png"])
    assert all(repo in family.text for repo in ids.values())


def test_cards_carry_eval_results_as_model_index(tiny_family, tmp_path):
    out, ledger = tiny_family
    from hf_progressive.analysis.evaluation import evaluate_member

    name = list(ledger.members)[-1]
    evaluate_member(out / "members" / name, ["hfp_gutenberg_cloze"], limit=2)
    path = tmp_path / "card.md"
    member_card(out, name, repo_ids(out, "org")).save(path)
    results = ModelCard.load(path).data.eval_results
    assert {(r.dataset_type, r.metric_type) for r in results} >= {("hfp_gutenberg_cloze", "acc")}
    assert "model-index" in metadata_load(path)


def _push(out: Path, hub: FakeHub, *extra: str) -> int:
    return push_family.main([str(out), "--namespace", "org", "--prefix", "fam", "--endpoint", hub.url, *extra])


def test_dry_run_stages_folders_without_network(tiny_family, capsys):
    out, ledger = tiny_family
    assert (
        push_family.main(
            [str(out), "--namespace", "org", "--prefix", "fam", "--dry-run", "--endpoint", "http://127.0.0.1:9"]
        )
        == 0
    )
    printed = capsys.readouterr().out
    for name in ledger.members:
        folder = out / "hub_upload" / f"fam-{name}"
        assert {"README.md", "model.safetensors", "config.json", "growth.json", "tokenizer.json"} <= {
            p.name for p in folder.iterdir()
        }
        assert f"would push org/fam-{name}" in printed
    assert "would create collection 'fam model family'" in printed


def test_push_family_against_a_fake_hub_and_rerun_after_failure(tiny_family, monkeypatch, capsys):
    out, ledger = tiny_family
    monkeypatch.setenv("HF_TOKEN", "hf_secret_test_token")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    names = list(ledger.members)
    repos = [f"org/fam-{n}" for n in names] + ["org/fam-family"]
    with FakeHub() as hub:
        hub.fail = ("POST", f"/api/models/org/fam-{names[1]}/commit")
        assert _push(out, hub) == 1  # the Hub's error, as one line
        err = capsys.readouterr().err
        (line,) = [line for line in err.splitlines() if "error:" in line]  # progress bars aside, one line
        assert re.search("422|injected", line) and "Traceback" not in err
        assert len(hub.commits(repos[0])) == 2 and len(hub.commits(repos[1])) == 1  # initial + ours / initial only
        hub.calls.clear()
        assert _push(out, hub) == 0
        sequence = [
            (m, p)
            for m, p in hub.calls
            if p == "/api/repos/create" or p.endswith("/commit/main") or p.startswith("/api/collections")
        ]
        expected = []
        for repo in repos:  # each repo is created (idempotently) before its commit; the finished one is not re-sent
            expected.append(("POST", "/api/repos/create"))
            if repo != repos[0]:
                expected.append(("POST", f"/api/models/{repo}/commit/main"))
        expected += [("POST", "/api/collections")] + [
            ("POST", f"/api/collections/{slug}/items") for slug in hub.collections for _ in repos
        ]
        assert sequence == expected
        for repo in repos:
            commits = hub.commits(repo)
            assert len(commits) == 2, (repo, commits)  # the repo's initial commit + exactly one upload
            assert "README.md" in hub.repos[repo]["files"]
        for repo in repos[:-1]:
            assert {"model.safetensors", "config.json", "tokenizer.json", "growth.json"} <= set(
                hub.repos[repo]["files"]
            )
        (collection,) = hub.collections.values()
        assert collection["items"] == repos  # size order, the family repo last, no duplicates
        assert _push(out, hub) == 0  # a third run changes nothing
        assert all(len(hub.commits(repo)) == 2 for repo in repos)
        assert list(hub.collections.values())[0]["items"] == repos
    printed = capsys.readouterr()
    assert "hf_secret_test_token" not in printed.out + printed.err
    for folder in (out / "hub_upload").iterdir():
        assert all("hf_secret_test_token" not in p.read_text(errors="ignore") for p in folder.glob("*.md"))


def test_push_metrics_updates_published_members_once(tiny_family, monkeypatch, tmp_path):
    import push_metrics

    from hf_progressive.analysis.report import family_consistency

    out, ledger = tiny_family
    family_consistency(out, max_blocks=4)
    monkeypatch.setenv("HF_TOKEN", "hf_secret_test_token")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    args = [str(out), "--namespace", "org", "--prefix", "pm"]
    with FakeHub() as hub:
        assert push_metrics.main([*args, "--endpoint", hub.url]) == 2  # nothing published yet
        assert push_family.main([*args, "--endpoint", hub.url]) == 0
        before = {repo: len(hub.commits(repo)) for repo in hub.repos}
        family_consistency(out, max_blocks=2)  # new measurements to publish
        assert push_metrics.main([*args, "--endpoint", hub.url]) == 0
        assert push_metrics.main([*args, "--endpoint", hub.url]) == 0  # idempotent
        for name in ledger.members:
            repo = f"org/pm-{name}"
            assert len(hub.commits(repo)) == before[repo] + 1 and hub.commits(repo)[0]["title"] == "Update metrics"
