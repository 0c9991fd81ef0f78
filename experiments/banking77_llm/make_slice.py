"""Cut the committed prompt slice of BANKING77 (CC BY 4.0) for the banking77_llm experiment.

Five intents, 16 training queries and 8 test queries each, drawn with a fixed seed from the
dataset's own train.csv and test.csv; writes prompts/train.jsonl and prompts/eval.jsonl (the
prompts files of ``generate:``) and copies the licence. Standard library only, byte-identical
per seed. Run once; the output is committed:

    python experiments/banking77_llm/make_slice.py [--data ../shared/datasets/banking77]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
INTENTS = ["card_arrival", "exchange_rate", "lost_or_stolen_card", "pin_blocked",
           "top_up_failed"]
TRAIN_PER_INTENT, EVAL_PER_INTENT = 16, 8


def _rows(path: Path) -> dict[str, list[str]]:
    """Query texts per intent (one line each: embedded newlines collapsed)."""
    out: dict[str, list[str]] = {i: [] for i in INTENTS}
    with path.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            if row["category"] in out:
                out[row["category"]].append(" ".join(row["text"].split()))
    return out


def _prompts(rows: dict[str, list[str]], per_intent: int, prefix: str, rng: random.Random
             ) -> list[dict[str, object]]:
    picked = [(intent, text) for intent in INTENTS
              for text in rng.sample(sorted(set(rows[intent])), per_intent)]
    rng.shuffle(picked)
    return [{"id": f"{prefix}-{k:03d}", "unit": "intent",
             "prompt": f"Customer message: {text}\nWhich intent is this?",
             "reference": intent, "tags": {"source": "real", "intent": intent}}
            for k, (intent, text) in enumerate(picked)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=HERE.parents[2] / "shared/datasets/banking77")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    out = HERE / "prompts"
    out.mkdir(exist_ok=True)
    for name, csv_name, n, prefix in (("train", "train.csv", TRAIN_PER_INTENT, "tr"),
                                      ("eval", "test.csv", EVAL_PER_INTENT, "ev")):
        rows = _prompts(_rows(args.data / csv_name), n, prefix, rng)
        (out / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows),
                                           encoding="utf-8")
    shutil.copyfile(args.data / "LICENSE", out / "LICENSE")
    shutil.copyfile(args.data / "SOURCE.md", out / "SOURCE.md")


if __name__ == "__main__":
    main()
