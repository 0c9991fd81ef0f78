"""Tokenizers trained on a cell's text are cached by digest and load byte-identical; the worker
points the cache (and torch's compile caches) at its run folder."""

from __future__ import annotations

import filecmp
import shutil
from pathlib import Path

import pytest

from harness import caches
from harness.students import tokenizer as tc
from harness.students.build import train_tokenizer
from tests.helpers.cell_spec import student_part

TEXTS = ["where is my parcel\n", "Answer: shipping", "I was charged twice for order 88213\n",
         "Answer: billing\nReason: a duplicate charge", "reset my password\n", "Answer: account",
         "héllo wörld — ünïcode 🙂\n", "Answer: ESCALATE"] * 3


def saved(tok, folder: Path) -> Path:
    tok.save_pretrained(folder)
    return folder


def test_without_a_cache_folder_it_trains_every_time(monkeypatch):
    monkeypatch.delenv(tc.ENV, raising=False)
    calls = []
    monkeypatch.setattr(tc, "train_tokenizer", lambda t, v, d: calls.append(v) or
                        train_tokenizer(t, v, d))
    for _ in range(2):
        assert len(tc.cached_train_tokenizer(TEXTS, 300)) == len(train_tokenizer(TEXTS, 300))
    assert calls == [300, 300]


def test_cached_tokenizer_is_byte_identical_to_a_fresh_one(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = tc.cached_train_tokenizer(iter(TEXTS), 300, cache)  # any iterable, read once
    (entry,) = cache.glob("*.json")
    assert entry.name == tc.digest(TEXTS, 300) + ".json"

    def no_training(*a, **k):
        raise AssertionError("trained although cached")

    monkeypatch.setattr(tc, "train_tokenizer", no_training)
    monkeypatch.setenv(tc.ENV, str(cache))  # the worker's way of passing the folder
    loaded = tc.cached_train_tokenizer(TEXTS, 300)
    fresh = train_tokenizer(TEXTS, 300)
    a, b = saved(fresh, tmp_path / "fresh"), saved(loaded, tmp_path / "loaded")
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir()) and "tokenizer.json" in names
    match, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    assert mismatch == [] and errors == [] and sorted(match) == names
    assert saved(first, tmp_path / "first") and filecmp.cmp(
        a / "tokenizer.json", tmp_path / "first" / "tokenizer.json", shallow=False)
    for text in TEXTS[:8]:
        assert loaded(text)["input_ids"] == fresh(text)["input_ids"]
    assert (loaded.pad_token_id, loaded.eos_token_id, loaded.unk_token_id) == (
        fresh.pad_token_id, fresh.eos_token_id, fresh.unk_token_id)


def test_digest_covers_texts_order_vocab_and_trainer(monkeypatch):
    base = tc.digest(TEXTS, 300)
    assert tc.digest(TEXTS, 301) != base
    assert tc.digest(TEXTS[::-1], 300) != base
    assert tc.digest(["ab", "c"], 300) != tc.digest(["a", "bc"], 300)
    assert tc.digest(TEXTS, 300, "merged") != base  # digit splitting is part of the key
    monkeypatch.setattr(tc, "FORMAT", tc.FORMAT + 1)
    assert tc.digest(TEXTS, 300) != base


def test_merged_digits_keep_the_earlier_trainer_settings():
    # merged is the tokenizer from before the setting: its cache entries are still found
    assert tc.trainer_settings("merged")["pre_tokenizer"] == "ByteLevel"
    assert tc.trainer_settings("split")["pre_tokenizer"] != "ByteLevel"
    with pytest.raises(ValueError, match="digits"):
        tc.trainer_settings("grouped")  # type: ignore[arg-type]


#: Text full of recurring numbers, so BPE has every reason to merge digit runs.
NUMBERS = [f"Customer: order #{n} was charged ${n % 1000}.{n % 100:02d} twice\n"
           f'Answer: {{"amount":"{n % 1000}.{n % 100:02d}","order_id":"{n}"}}'
           for n in (88213, 88214, 30213, 88290, 4210, 88213, 30213) * 20]


def test_split_digits_make_every_digit_one_token_in_prompt_and_answer():
    tok = train_tokenizer(NUMBERS, 400, "split")
    prompt = tok("Customer: order #88213 costs $42.10\n", add_special_tokens=False)["input_ids"]
    answer = tok('Answer: {"amount":"42.10","order_id":"88213"}',
                 add_special_tokens=False)["input_ids"]
    digit = {tok.convert_tokens_to_ids(d): d for d in "0123456789"}
    assert tok.unk_token_id not in digit

    def digits_of(ids: list[int]) -> list[str]:
        return [digit[i] for i in ids if i in digit]

    # every digit of the text is its own token, whatever stands before it (#, $, a quote)
    assert digits_of(prompt) == list("882134210")
    assert digits_of(answer) == list("421088213")
    assert not any(c.isdigit() for t in tok.convert_ids_to_tokens(prompt + answer)
                   if t not in digit.values() for c in t)
    assert tok.decode(answer) == 'Answer: {"amount":"42.10","order_id":"88213"}'


def test_merged_digits_cut_one_number_differently_in_prompt_and_answer():
    # what split digits exist to prevent: multi-digit tokens that differ by context
    tok = train_tokenizer(NUMBERS, 400, "merged")
    prompt = tok.convert_ids_to_tokens(tok("order #88213", add_special_tokens=False)["input_ids"])
    answer = tok.convert_ids_to_tokens(tok('"order_id":"88213"',
                                           add_special_tokens=False)["input_ids"])
    assert any(sum(c.isdigit() for c in t) > 1 for t in prompt + answer)


def test_the_cache_keeps_split_and_merged_tokenizers_apart(tmp_path):
    split = tc.cached_train_tokenizer(NUMBERS, 400, tmp_path, digits="split")
    merged = tc.cached_train_tokenizer(NUMBERS, 400, tmp_path, digits="merged")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{tc.digest(NUMBERS, 400, d)}.json" for d in ("split", "merged"))
    again = tc.cached_train_tokenizer(NUMBERS, 400, tmp_path, digits="split")
    text = "order 88213"
    assert again(text)["input_ids"] == split(text)["input_ids"] != merged(text)["input_ids"]


def test_a_damaged_entry_is_retrained_and_rewritten(tmp_path):
    entry = tmp_path / (tc.digest(TEXTS, 300) + ".json")
    entry.write_text("{not json", encoding="utf-8")
    tok = tc.cached_train_tokenizer(TEXTS, 300, tmp_path)
    assert entry.read_text(encoding="utf-8") == tok.backend_tokenizer.to_str()
    assert [p.name for p in tmp_path.iterdir()] == [entry.name]  # no temporary left behind


@pytest.fixture
def clean_env(monkeypatch):
    """Every variable use_run_caches sets, restored after the test; none set by the user."""
    for key in caches._MANAGED + (caches.ENV,):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(caches, "_USER_SET", {})
    return monkeypatch


def test_run_caches_live_in_the_run_folder(tmp_path, clean_env):
    import os

    cell = tmp_path / "runs" / "exp" / "cells" / "abc"
    env = caches.use_run_caches(cell)
    root = tmp_path / "runs" / "exp" / "cache"
    assert env[caches.TOKENIZER_ENV] == str(root / "tokenizers")
    assert env["TORCHINDUCTOR_CACHE_DIR"] == str(root / "torchinductor")
    assert env["TORCHINDUCTOR_FX_GRAPH_CACHE"] == env["TORCHINDUCTOR_AUTOGRAD_CACHE"] == "1"
    assert os.environ[caches.TOKENIZER_ENV] == env[caches.TOKENIZER_ENV]
    # a cell folder outside a run folder: its parent; the manifest's paths win; then the env
    assert caches.cache_root(tmp_path / "x" / "cell") == tmp_path / "x" / "cache"
    assert caches.cache_root(cell, {"cache": "/c"}) == Path("/c")
    clean_env.setenv(caches.ENV, str(tmp_path / "shared"))
    assert caches.use_run_caches(cell)["TRITON_CACHE_DIR"] == str(tmp_path / "shared/triton")
    clean_env.setenv(caches.ENV, "off")
    assert caches.use_run_caches(cell) == {}


def test_a_variable_the_user_exported_is_kept(tmp_path, clean_env):
    clean_env.setenv("TORCHINDUCTOR_CACHE_DIR", "/mine")
    clean_env.setattr(caches, "_USER_SET", {"TORCHINDUCTOR_CACHE_DIR": "/mine"})
    env = caches.use_run_caches(tmp_path / "cells" / "c")
    assert env["TORCHINDUCTOR_CACHE_DIR"] == "/mine"
    assert env[caches.TOKENIZER_ENV] == str(tmp_path / "cache" / "tokenizers")


def test_worker_reuses_the_tokenizer_with_identical_results(tiny, tmp_path, clean_env):
    from harness.cli import main
    from harness.worker import run_cell
    from tests.helpers import TINY_STUDENT, route_data

    train, ev = route_data(16, 6)
    path = tiny(spec={"student": TINY_STUDENT, "evaluation": {"latency_runs": 1,
                                                              "latency_batch_size": 2}},
                samples=train, eval=ev)
    cells = tmp_path / "run" / "cells"
    assert main(["compose", str(path), "--out", str(cells),
                 "--cell", "judged/answer_only/x1/s0"]) == 0
    first = next(cells.iterdir())
    twin = cells / "twin"
    shutil.copytree(first, twin)
    run_cell(first, device="cpu", threads=1)
    (entry,) = (tmp_path / "run" / "cache" / "tokenizers").glob("*.json")
    stamp = entry.stat().st_mtime_ns
    clean_env.setattr(tc, "train_tokenizer", lambda *a, **k: pytest.fail("retrained"))
    run_cell(twin, device="cpu", threads=1)
    assert entry.stat().st_mtime_ns == stamp
    for name in ("predictions.jsonl", "model/tokenizer.json", "model/model.safetensors"):
        assert filecmp.cmp(first / name, twin / name, shallow=False), name


def test_a_student_follows_its_manifest_and_reloads_with_split_digits(tmp_path, monkeypatch):
    from transformers import AutoTokenizer

    from harness.students.build import build_student

    monkeypatch.delenv(tc.ENV, raising=False)
    config = {"arch": "llama", "layers": 1, "hidden": 32, "heads": 2, "vocab": 400,
              "max_position": 64}
    _, split = build_student(student_part({"config": {**config, "digits": "split"}}), NUMBERS, 0)
    # a manifest without the key was written for a merged student (the effective spec drops it)
    _, merged = build_student(student_part({"config": config}), NUMBERS, 0)
    text = 'Answer: {"order_id":"88213"}'
    assert split(text)["input_ids"] == train_tokenizer(NUMBERS, 400, "split")(text)["input_ids"]
    assert merged(text)["input_ids"] == train_tokenizer(NUMBERS, 400, "merged")(text)["input_ids"]
    split.save_pretrained(tmp_path / "model")
    reloaded = AutoTokenizer.from_pretrained(tmp_path / "model", local_files_only=True)
    assert reloaded(text)["input_ids"] == split(text)["input_ids"]
