"""The from-scratch student's tokenizer: trained on the cell's own text, and cached by what it
was trained on, so cells with the same text share one.

:func:`train_tokenizer` trains a byte-level BPE tokenizer on a cell's prompts and targets.
With ``digits="split"`` (the spec's default) a ``Digits(individual_digits=True)`` pre-tokenizer
runs in front of the byte-level one, so every digit is a token of its own and no BPE merge can
span two digits: ``88213`` is the same five tokens after ``#``, after a space or inside the JSON
answer's quotes, and copying a number is a digit-by-digit copy a small student can learn.
With ``"merged"`` BPE merges digit runs as it likes (``" 882"`` + ``"13"`` in the prompt,
``"88"`` + ``"213"`` in the answer), and copying becomes a lookup between unrelated tokens.
Cells of one matrix often train on the very same text (noise seeds, repeated arms), and the
training is seconds of CPU each, so :func:`cached_train_tokenizer` keeps it under the digest of
(the texts in order, the vocabulary size, the trainer's settings, digit splitting included, and
the ``tokenizers`` version that trains it), as the serialised backend tokenizer
(``<digest>.json``), written atomically (concurrent cells writing the same entry both write the
same bytes; the last rename wins). A cached entry loads into the same
``PreTrainedTokenizerFast`` as a fresh training gives: identical vocabulary, merges, special
tokens and saved files (tested).

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
from typing import Any, Literal, get_args

from harness.fsutil import atomic_write_text

SPECIAL_TOKENS = ["<pad>", "</s>", "<unk>"]

#: How numbers are cut: ``split`` (one token per digit) or ``merged`` (BPE merges digit runs).
DigitsMode = Literal["split", "merged"]


def _check_digits(digits: str) -> None:
    if digits not in get_args(DigitsMode):
        raise ValueError(f"digits must be one of {get_args(DigitsMode)}, not {digits!r}")


def train_tokenizer(texts: Iterable[str], vocab_size: int, digits: DigitsMode = "split") -> Any:
    """A byte-level BPE tokenizer trained on ``texts`` (a ``PreTrainedTokenizerFast``).

    Args:
        texts: the training texts.
        vocab_size: the target vocabulary size (tokens, special tokens included).
        digits: ``split`` puts ``Digits(individual_digits=True)`` in front of the byte-level
            pre-tokenizer (every digit one token); ``merged`` lets BPE merge digit runs.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    _check_digits(digits)
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    # Digits first: it isolates each digit before the byte-level regex runs, which would
    # otherwise glue a leading space to a number (" 88213") and let merges cross digits.
    tok.pre_tokenizer = (byte_level if digits == "merged" else pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), byte_level]))
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


def trainer_settings(digits: DigitsMode = "split") -> dict[str, Any]:
    """What, besides the texts and vocabulary size, decides the trained tokenizer."""
    import tokenizers

    _check_digits(digits)
    # 'merged' is the tokenizer from before digit splitting existed: its settings (and so its
    # cache entries) are the ones written then.
    pre = "ByteLevel" if digits == "merged" else "Sequence[Digits(individual_digits),ByteLevel]"
    return {"format": FORMAT, "model": "BPE", "unk": "<unk>", "pre_tokenizer": pre,
            "add_prefix_space": False, "decoder": "ByteLevel", "special_tokens": SPECIAL_TOKENS,
            "initial_alphabet": "ByteLevel", "tokenizers": tokenizers.__version__}


def digest(texts: Iterable[str], vocab_size: int, digits: DigitsMode = "split") -> str:
    """SHA-256 (hex) of the settings (digit splitting included), the vocabulary size and every
    text in order (each length-prefixed, so no two lists of texts share a stream)."""
    h = hashlib.sha256()
    h.update(json.dumps({"vocab_size": int(vocab_size), **trainer_settings(digits)},
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
                           cache_dir: Path | None = None, digits: DigitsMode = "split") -> Any:
    """:func:`train_tokenizer`, through the cache.

    Args:
        texts: the training texts (read once; their order counts).
        vocab_size: the target vocabulary size.
        digits: ``split`` (one token per digit) or ``merged``; see :func:`train_tokenizer`.
        cache_dir: the cache folder; default the :data:`ENV` variable, and without either the
            tokenizer is trained with no cache.

    Returns:
        A ``PreTrainedTokenizerFast`` (loaded when cached, else trained and then cached).
    """
    folder = cache_dir or (Path(os.environ[ENV]) if os.environ.get(ENV) else None)
    if folder is None:
        return train_tokenizer(texts, vocab_size, digits)
    from tokenizers import Tokenizer

    texts = list(texts)
    path = Path(folder) / f"{digest(texts, vocab_size, digits)}.json"
    try:
        return _wrap(Tokenizer.from_str(path.read_text(encoding="utf-8")))
    except Exception:  # not cached yet, or a damaged entry: train and (re)write it
        pass
    tok = train_tokenizer(texts, vocab_size, digits)
    atomic_write_text(path, tok.backend_tokenizer.to_str())
    return tok
