"""Update consistency and eval results on already-published members: re-render each member's card (model-index,
KL to its neighbours) and upload it with eval_results.json and consistency.json, one commit per repo, skipped when
that exact content is already there.

    hf-progressive evaluate out/tiny && hf-progressive consistency out/tiny
    python hub_scripts/push_metrics.py out/tiny --namespace my-org [--dry-run]"""

import argparse
import shutil
import sys
from pathlib import Path

from _common import is_family, push_folder, stage_member
from huggingface_hub import HfApi

from hf_progressive.cards import repo_ids


METRIC_FILES = ("eval_results.json",)  # plus README.md and consistency.json, written by stage_member


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--prefix", default=None)
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--revision", default=None)
    parser.add_argument("--endpoint", default=None)
    args = parser.parse_args(argv)
    if not is_family(args.out):
        return 2
    ids = repo_ids(args.out, args.namespace, args.prefix)
    staging = args.out / "hub_metrics"
    shutil.rmtree(staging, ignore_errors=True)
    api = None if args.dry_run else HfApi(endpoint=args.endpoint)
    for name, repo_id in ids.items():
        folder = stage_member(args.out, name, ids, staging / repo_id.split("/")[1], files=METRIC_FILES)
        if api is None:
            print(f"would update {repo_id}: {', '.join(sorted(p.name for p in folder.iterdir()))}")
            continue
        if not api.repo_exists(repo_id):
            print(f"{repo_id}: not published yet; run push_family.py first", file=sys.stderr)
            return 2
        print(f"{repo_id}: {push_folder(api, repo_id, folder, False, args.revision, 'Update metrics')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
