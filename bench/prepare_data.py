"""The token store at scale (BENCHMARKS.md, "Token store"): prepare-data on ~50M and ~500M-token corpora made by
repeating and perturbing the shared Gutenberg text (written to --work, never committed).

    python bench/prepare_data.py                      # ~25 minutes on 2 CPU cores, ~6 GB in --work
    python bench/prepare_data.py --sizes 5e6 --skip-arrow   # a quick smoke run

Per corpus size and worker count: wall time, tokens/s, peak RSS of the whole process tree (sampled every 0.1 s), and
bytes per token on disk; the ceiling is the same tokenizer's own batch-encode rate on the same text (its Rust
threads on every core); then the time and RSS for a stage to open its window at the end of the largest store; and,
at the smallest size, the same blocks written as a `datasets` Arrow dataset (save_to_disk / load_from_disk) for the
choice of format. Results: stdout and --work/results.json; a rerun skips the (size, --num-proc) runs it holds.
Each run's row also records the ceiling measured with it (`of_ceiling`), since the ceiling is re-measured per size."""

import argparse
import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import yaml


ROOT = Path(__file__).resolve().parents[1]
GUTENBERG = ROOT.parent / "shared" / "data" / "gutenberg" / "train.jsonl"
SEQ_LEN, VOCAB = 1024, 16384


def build_corpus(folder: Path, tokens: int, chars_per_token: float) -> Path:
    """JSONL shards of Gutenberg documents, repeated until ~`tokens`; copy k of a document has its words rotated by k
    and a copy marker, so no two copies tokenize the same."""
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / "done").is_file():
        return folder
    docs = [json.loads(line)["text"] for line in GUTENBERG.open()]
    target, written, copy, shard = tokens * chars_per_token, 0, 0, None
    while written < target:
        if copy % 8 == 0:
            shard = (folder / f"part-{copy // 8:04d}.jsonl").open("w")
        for text in docs:
            words = text.split(" ")
            k = copy % max(1, len(words))
            line = json.dumps({"text": f"[copy {copy}] " + " ".join(words[k:] + words[:k])})
            shard.write(line + "\n")
            written += len(line)
        copy += 1
        if copy % 8 == 0:
            shard.close()
    shard.close()
    (folder / "done").write_text(str(copy))
    return folder


def recipe_file(work: Path, corpus: str, tokenizer: Path) -> Path:
    path = work / f"recipe-{Path(corpus).parent.name}.yaml"
    spec = {
        "name": "bench",
        "vocab_size": VOCAB,
        "seq_len": SEQ_LEN,
        "tokenizer": {"path": str(tokenizer)},
        "data": {"train": corpus, "validation": "holdout", "holdout_documents": 50, "validation_blocks": 64},
        "members": [{"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 1,
                     "num_key_value_heads": 1}],
    }  # fmt: skip
    path.write_text(yaml.safe_dump(spec))
    return path


def measure(command: list[str]) -> dict:
    """Wall seconds and the peak summed RSS of the process tree of `command`."""
    start, peak = time.perf_counter(), 0
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    root = psutil.Process(process.pid)
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.1)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    out, _ = process.communicate()
    done.set()
    thread.join()
    if process.returncode:
        raise SystemExit(f"{command} failed ({process.returncode})")
    return {"wall_s": time.perf_counter() - start, "peak_rss_mb": peak / 2**20, "stdout": out.strip()}


def ceiling(tokenizer_dir: Path, corpus: Path, max_docs: int = 20_000, repeats: int = 3) -> float:
    """The tokenizer's own batch-encode rate (tokens/s; batches of 256 documents, its Rust threads on every core) on
    the first `max_docs` documents of the corpus (~15M tokens), the best of `repeats` passes."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    docs = []
    for shard in sorted(corpus.glob("part-*.jsonl")):
        docs += [json.loads(line)["text"] for line in shard.open()]
        if len(docs) >= max_docs:
            break
    docs, rates = docs[:max_docs], []
    for _ in range(repeats):
        start, tokens = time.perf_counter(), 0
        for i in range(0, len(docs), 256):
            tokens += sum(len(ids) + 1 for ids in tokenizer(docs[i : i + 256], add_special_tokens=False)["input_ids"])
        rates.append(tokens / (time.perf_counter() - start))
    return max(rates)


OPEN_WINDOW = """
import json, sys, time, psutil
from hf_progressive.family.budget import Window
from hf_progressive.data.blocks import BlockWindow
from hf_progressive.data.token_store import TokenStore
before = psutil.Process().memory_info().rss  # after the imports: what opening the window itself costs
start = time.perf_counter()
store = TokenStore.open(sys.argv[1])
n = len(store.train)
window = BlockWindow(store.train, Window(n - 64, 64, n))  # the last 64 blocks: a stage at the end of the store
batch = [window[i]["input_ids"] for i in range(16)]
done = time.perf_counter()
delta = (psutil.Process().memory_info().rss - before) / 2**20
print(json.dumps({"open_and_first_batch_s": done - start, "rss_delta_mb": delta, "blocks": n}))
"""


def open_window(store: Path) -> dict:
    """Time and RSS for a stage to open its window at the end of `store`, in a fresh process."""
    opened = subprocess.run([sys.executable, "-c", OPEN_WINDOW, str(store)], capture_output=True, text=True)
    return json.loads(opened.stdout)


def arrow_store(store: Path, out: Path) -> dict:
    """The same training blocks as a datasets Arrow dataset (Sequence of uint16), written and read back."""
    import datasets
    import numpy as np

    from hf_progressive.data.token_store import TokenStore

    train = TokenStore.open(store).train
    features = datasets.Features({"input_ids": datasets.Sequence(datasets.Value("uint16"), length=SEQ_LEN)})

    def rows():
        for start in range(0, len(train), 1024):
            for row in np.asarray(train[start : start + 1024]):
                yield {"input_ids": row}

    start = time.perf_counter()
    dataset = datasets.Dataset.from_generator(rows, features=features, cache_dir=str(out / "cache"))
    dataset.save_to_disk(str(out / "arrow"))
    written = time.perf_counter() - start
    start = time.perf_counter()
    loaded = datasets.load_from_disk(str(out / "arrow")).with_format("numpy")
    last = loaded[len(loaded) - 16 :]["input_ids"]
    read = time.perf_counter() - start
    assert np.array_equal(last, np.asarray(train[-16:]))
    size = sum(p.stat().st_size for p in (out / "arrow").rglob("*") if p.is_file())
    return {"write_s": written, "open_and_read_s": read, "bytes_per_token": size / train.size}


def remeasure(work: Path) -> None:
    """The ceiling and the window opening again, and every run's fraction of the ceiling (results.json rewritten)."""
    results = json.loads((work / "results.json").read_text())
    results["open_window"] = {store.name: open_window(store) for store in sorted(work.glob("store-*-p1"))}
    results["ceiling_tokens_per_s"] = ceiling(work / "tokenizer", sorted(work.glob("corpus-*"))[0])
    for run in results["runs"]:
        run["of_ceiling"] = run["tokens_per_s"] / results["ceiling_tokens_per_s"]
    (work / "results.json").write_text(json.dumps(results, indent=1))
    print(json.dumps({"ceiling_tokens_per_s": results["ceiling_tokens_per_s"], "open_window": results["open_window"]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/hfp-prepare-bench"))
    parser.add_argument("--sizes", default="5e7,5e8", help="Approximate corpus sizes in tokens.")
    parser.add_argument("--procs", default="1,2")
    parser.add_argument("--skip-arrow", action="store_true")
    parser.add_argument("--ceiling-only", action="store_true", help="Re-measure ceiling and window opening only.")
    args = parser.parse_args()
    if args.ceiling_only:  # after a full run, on an idle machine: the ceiling and the window opening again
        return remeasure(args.work)
    args.work.mkdir(parents=True, exist_ok=True)
    from hf_progressive.data.documents import iter_texts
    from hf_progressive.data.spec import DataSpec
    from hf_progressive.data.tokenizer import train_bpe

    tokenizer = args.work / "tokenizer"
    if not tokenizer.is_dir():
        train_bpe(iter_texts(DataSpec(train=str(GUTENBERG)), "train"), VOCAB, 4_000_000).save_pretrained(tokenizer)
    from transformers import AutoTokenizer

    lines = random.Random(0).sample(GUTENBERG.read_text().splitlines(), 200)
    sample = " ".join(json.loads(line)["text"] for line in lines)
    chars_per_token = len(sample) / len(AutoTokenizer.from_pretrained(tokenizer)(sample).input_ids)
    saved = args.work / "results.json"  # resumable: finished (size, procs) rows are kept and skipped
    results = json.loads(saved.read_text()) if saved.is_file() else {"runs": []}
    results.update(seq_len=SEQ_LEN, vocab=VOCAB, chars_per_token=chars_per_token)
    for size in [int(float(s)) for s in args.sizes.split(",")]:
        corpus = build_corpus(args.work / f"corpus-{size:.0e}".replace("+", ""), size, chars_per_token)
        recipe = recipe_file(args.work, str(corpus / "part-*.jsonl"), tokenizer)
        results["ceiling_tokens_per_s"] = ceiling(tokenizer, corpus)  # the same documents at every size
        for procs in [int(p) for p in args.procs.split(",")]:
            if any(run["size"] == size and run["procs"] == procs for run in results["runs"]):
                continue
            store = args.work / f"store-{size:.0e}-p{procs}".replace("+", "")
            cli = [sys.executable, "-m", "hf_progressive", "prepare-data", str(recipe), "--out", str(store)]
            run = measure([*cli, "--num-proc", str(procs), "--overwrite"])
            manifest = json.loads((store / "manifest.json").read_text())
            tokens = manifest["train_blocks"] * SEQ_LEN
            on_disk = sum(p.stat().st_size for p in store.rglob("*") if p.is_file())
            row = {"size": size, "procs": procs, "tokens": tokens, **run, "tokens_per_s": tokens / run["wall_s"]}
            row["bytes_per_token"] = on_disk / tokens
            row["of_ceiling"] = row["tokens_per_s"] / results["ceiling_tokens_per_s"]
            print(json.dumps({k: v for k, v in row.items() if k != "stdout"}), flush=True)
            results["runs"].append(row)
            saved.write_text(json.dumps(results, indent=1))
    results["open_window"] = {store.name: open_window(store) for store in sorted(args.work.glob("store-*-p1"))}
    print(json.dumps(results["open_window"]), flush=True)
    if not args.skip_arrow:
        first = args.work / f"store-{int(float(args.sizes.split(',')[0])):.0e}-p1".replace("+", "")
        results["arrow"] = arrow_store(first, args.work / "arrow")
        print(json.dumps(results["arrow"]), flush=True)
    saved.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
