"""The from-scratch student's tokenizer: trained on the cell's own text, and cached by what it
was trained on, so cells with the same text share one.

:func:`train_tokenizer` trains a byte-level BPE tokenizer on a cell's prompts and targets.
Cells of one matrix often train on the very same text (noise seeds, repeated arms), and the
training is seconds of CPU each, so :func:`cached_train_tokenizer` keeps it under the digest of
(the texts in order, the vocabulary size, the trainer's settings and the ``tokenizers`` version
that trains it), as the serialised backend tokenizer (``<digest>.json``), written atomically
(concurrent cells writing the same entry both write the same bytes; the last rename wins). A
cached entry loads into the same ``PreTrainedTokenizerFast`` as a fresh training gives:
identical vocabulary, merges, special tokens and saved files (tested).

The cache folder comes from the environment (:data:`ENV`), which the worker sets for its run
(:func:`harness.caches.use_run_caches`); without it every call trains anew.
Imports only ``tokenizers`` and ``transformers`` inside functions (the worker's path).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness.fsutil import atomic_write_text

SPECIAL_TOKENS = ["<pad>", "</s>", "<unk>"]


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> Any:
    """A byte-level BPE tokenizer trained on ``texts`` (a ``PreTrainedTokenizerFast``)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                                   unk_token="<unk>")


#: Environment variable naming the tokenizer cache folder (unset: no cache).
ENV = "HARNESS_TOKENIZER_CACHE"
#: Bumped whenever :func:`train_tokenizer` changes how it trains.
FORMAT = 1


def trainer_settings() -> dict[str, Any]:
    """What, besides the texts and vocabulary size, decides the trained tokenizer."""
    import tokenizers

    return {"format": FORMAT, "model": "BPE", "unk": "<unk>", "pre_tokenizer": "ByteLevel",
            "add_prefix_space": False, "decoder": "ByteLevel", "special_tokens": SPECIAL_TOKENS,
            "initial_alphabet": "ByteLevel", "tokenizers": tokenizers.__version__}


def digest(texts: Iterable[str], vocab_size: int) -> str:
    """SHA-256 (hex) of the settings, the vocabulary size and every text in order (each
    length-prefixed, so no two lists of texts share a stream)."""
    h = hashlib.sha256()
    h.update(json.dumps({"vocab_size": int(vocab_size), **trainer_settings()},
                        sort_keys=True).encode())
    for text in texts:
        data = text.encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def _wrap(backend: Any) -> Any:
    """The ``PreTrainedTokenizerFast`` around a backend tokenizer, as training builds it."""
    from transformers import PreTrainedTokenizerFast

    pad, eos, unk = SPECIAL_TOKENS
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token=pad, eos_token=eos,
                                   unk_token=unk)


def cached_train_tokenizer(texts: Iterable[str], vocab_size: int,
                           cache_dir: Path | None = None) -> Any:
    """:func:`train_tokenizer`, through the cache.

    Args:
        texts: the training texts (read once; their order counts).
        vocab_size: the target vocabulary size.
        cache_dir: the cache folder; default the :data:`ENV` variable, and without either the
            tokenizer is trained with no cache.

    Returns:
        A ``PreTrainedTokenizerFast`` (loaded when cached, else trained and then cached).
    """
    folder = cache_dir or (Path(os.environ[ENV]) if os.environ.get(ENV) else None)
    if folder is None:
        return train_tokenizer(texts, vocab_size)
    from tokenizers import Tokenizer

    texts = list(texts)
    path = Path(folder) / f"{digest(texts, vocab_size)}.json"
    try:
        return _wrap(Tokenizer.from_str(path.read_text(encoding="utf-8")))
    except Exception:  # not cached yet, or a damaged entry: train and (re)write it
        pass
    tok = train_tokenizer(texts, vocab_size)
    atomic_write_text(path, tok.backend_tokenizer.to_str())
    return tok
