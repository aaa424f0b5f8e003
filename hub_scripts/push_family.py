"""Publish a built family to the Hub: one model repo per member (one commit each: weights, config, tokenizer,
generation config, card, growth.json, metrics), a family repo (card + plots), and a Collection listing the members
in size order. Idempotent: rerun after a partial failure and it finishes the job without duplicating anything.

    python hub_scripts/push_family.py out/tiny --namespace my-org --dry-run      # writes the folders, no network
    python hub_scripts/push_family.py out/tiny --namespace my-org --private

The token comes from `huggingface-cli login` or HF_TOKEN, and is never printed."""

import argparse
import json
import shutil
import sys
from pathlib import Path

from _common import is_family, push_folder, smoke_test, stage_family, stage_member
from huggingface_hub import HfApi

from hf_progressive.cards import repo_ids


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="A family directory written by hf-progressive build-family.")
    parser.add_argument("--namespace", required=True, help="User or organisation that will own the repos.")
    parser.add_argument("--prefix", default=None, help="Repo name prefix (default: the recipe name).")
    parser.add_argument("--private", action="store_true", help="Create private repos and collection.")
    parser.add_argument("--dry-run", action="store_true", help="Stage the folders and print the plan; no network.")
    parser.add_argument("--revision", default=None, help="Branch to push to (default: main).")
    parser.add_argument("--endpoint", default=None, help="Hub endpoint (default: huggingface_hub's).")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not is_family(args.out):
        return 2
    ids = repo_ids(args.out, args.namespace, args.prefix)
    staging = args.out / "hub_upload"
    shutil.rmtree(staging, ignore_errors=True)
    for name in ids:
        smoke_test(args.out / "members" / name)
    folders = {ids[name]: stage_member(args.out, name, ids, staging / ids[name].split("/")[1]) for name in ids}
    family_repo = f"{args.namespace}/{args.prefix or _recipe(args.out)}-family"
    folders[family_repo] = stage_family(args.out, ids, staging / family_repo.split("/")[1])
    title = f"{args.prefix or _recipe(args.out)} model family"
    if args.dry_run:
        for repo_id, folder in folders.items():
            files = ", ".join(sorted(p.name for p in folder.iterdir()))
            print(f"would push {repo_id} ({'private' if args.private else 'public'}) in one commit: {files}")
        print(f"would create collection {title!r} in {args.namespace} with, in size order: {', '.join(ids.values())}")
        print(f"staged folders in {staging}")
        return 0
    api = HfApi(endpoint=args.endpoint)
    for repo_id, folder in folders.items():
        status = push_folder(api, repo_id, folder, args.private, args.revision, f"Upload {repo_id} (hf_progressive)")
        print(f"{repo_id}: {status}")
    collection = api.create_collection(
        title,
        namespace=args.namespace,
        private=args.private,
        exists_ok=True,
        description=f"Built with hf_progressive; family card: {family_repo}",
    )
    present = {item.item_id for item in collection.items}
    for repo_id in [*ids.values(), family_repo]:
        if repo_id not in present:
            api.add_collection_item(collection.slug, item_id=repo_id, item_type="model", exists_ok=True)
    print(f"collection: {collection.slug}")
    return 0


def _recipe(out: Path) -> str:
    return json.loads((out / "family.json").read_text())["recipe"]


if __name__ == "__main__":
    sys.exit(main())
