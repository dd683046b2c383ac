"""The Agora pool sampler's search: exact torch against faiss (and `datasets.Dataset.add_faiss_index`), by pool size.

For each pool size (default 60,000 rows of 384-dim unit vectors, MiniLM's width) and number of queries (dev errors
of one expansion), the median time of: `nearest_rows(index="exact")` (a matrix product and top-k in torch),
`nearest_rows(index="faiss")` (faiss `IndexFlatIP`, built per call as the sampler does in the student's space), and a
bare `datasets.Dataset.add_faiss_index` + `search_batch`; both `nearest_rows` backends must return the same rows.
For scale, it also times embedding real SST-2 train rows with MiniLM's first 2 layers (the benchmark's student),
which the sampler does before every search in the student's space.

    OMP_NUM_THREADS=1 python benchmarks/agora_pool_index.py --threads 1 --out benchmarks/results/agora_pool_index
    python benchmarks/agora_pool_index.py --quick    # a few seconds
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path


os.environ.setdefault("HF_HUB_OFFLINE", "1")

import datasets  # noqa: E402
import torch  # noqa: E402


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hf_bort.agora.pool import embed_rows, nearest_rows  # noqa: E402


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_search(rows: int, dim: int, queries: list[int], k: int, repeats: int) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    pool = torch.nn.functional.normalize(torch.randn(rows, dim, generator=generator), dim=-1)
    available = torch.ones(rows, dtype=torch.bool)
    available[::50] = False  # rows taken by earlier expansions
    table = datasets.Dataset.from_dict({"vector": pool.numpy()})
    results = []
    for count in queries:
        query = torch.nn.functional.normalize(torch.randn(count, dim, generator=generator), dim=-1)
        row = {
            "pool_rows": rows,
            "dim": dim,
            "queries": count,
            "k": k,
            **_timings(query, pool, available, table, k, repeats),
        }
        results.append(row)
        print(json.dumps(row), flush=True)
    return results


def _timings(query, pool, available, table, k: int, repeats: int) -> dict[str, float]:
    exact = nearest_rows(query, pool, k, available, "exact")
    assert exact == nearest_rows(query, pool, k, available, "faiss"), "faiss and torch disagree"

    def bare_datasets():
        copy = table.select(range(len(table)))  # add_faiss_index attaches to the object: never to a caller's
        copy.add_faiss_index("vector", metric_type=1)  # faiss.METRIC_INNER_PRODUCT
        copy.search_batch("vector", query.numpy(), k)

    return {
        "exact_torch_s": _median_seconds(lambda: nearest_rows(query, pool, k, available, "exact"), repeats),
        "faiss_flat_s": _median_seconds(lambda: nearest_rows(query, pool, k, available, "faiss"), repeats),
        "datasets_add_faiss_index_s": _median_seconds(bare_datasets, repeats),
    }


def time_embedding(rows: int, max_length: int) -> dict:
    """Seconds to embed `rows` real SST-2 train rows with MiniLM's first 2 layers, as the student's space needs."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from hf_bort.glue import get_task, load_glue
    from hf_bort.testing import offline_minilm_dir

    shared = Path(os.environ.get("HF_BORT_SHARED", REPO.parent / "shared"))
    train = load_glue(get_task("sst2"), shared / "data" / "glue", ("train",))["train"].select(range(rows))
    config = BertConfig.from_pretrained(offline_minilm_dir(), num_hidden_layers=2)
    model = BertModel.from_pretrained(offline_minilm_dir(), config=config)
    tokenizer = AutoTokenizer.from_pretrained(offline_minilm_dir())
    texts = [(text,) for text in train["sentence"]]
    start = time.perf_counter()
    embed_rows(model, tokenizer, texts, max_length)
    seconds = time.perf_counter() - start
    return {"rows": rows, "max_length": max_length, "seconds": seconds, "rows_per_s": rows / seconds}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[60_000])
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, nargs="+", default=[1, 16, 64, 256, 1024])
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--embed-rows", type=int, default=5000, help="Real rows embedded for scale (0: skip).")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="Folder for index.json (default: print only).")
    parser.add_argument("--quick", action="store_true", help="2,000 rows, 1 and 64 queries, no embedding.")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.queries, args.repeats, args.embed_rows = [2000], [1, 64], 1, 0
    torch.set_num_threads(args.threads)
    result = {"threads": args.threads, "search": []}
    for rows in args.rows:
        result["search"] += time_search(rows, args.dim, args.queries, args.k, args.repeats)
    if args.embed_rows:
        result["embedding"] = time_embedding(args.embed_rows, 64)
        print(json.dumps(result["embedding"]))
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "index.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
