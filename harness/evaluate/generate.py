"""Greedy generation of answers (torch only), and parsing them after the answer marker.

Units that are not scored by log-likelihood are generated greedily, stopping at EOS or at the
end of the answer line, and the answer is parsed after the marker
(:func:`harness.answers.parse_answer`).

Answers are generated in left-padded batches with ``model.generate`` (the default); with
``decode_path="static_compiled"`` or ``"static_eager"`` they are generated one prompt at a time
through one static KV cache (:mod:`.static_decode`), with the same greedy tokens.
"""

from __future__ import annotations

from typing import Any

from harness.answers import parse_answer


def stop_token_ids(tokenizer: Any) -> list[int]:
    """EOS and every vocabulary token whose text contains a newline (end of the answer line)."""
    ids = {tokenizer.eos_token_id}
    for tok, idx in tokenizer.get_vocab().items():
        if "\n" in tokenizer.convert_tokens_to_string([tok]):
            ids.add(idx)
    return sorted(i for i in ids if i is not None)


def generate(model: Any, tokenizer: Any, prompts: list[str], device: Any, max_new_tokens: int,
             batch_size: int = 32, max_len: int = 512,
             cache_implementation: str | None = None, decode_path: str | None = None
             ) -> list[str]:
    """Greedy generations (the text after ``prompt + "\\n"``), batched with left padding.

    Generation stops at EOS or at the first token containing a newline, so only the answer
    line is produced whatever the target format. ``cache_implementation="static"`` gives
    ``model.generate`` a preallocated KV cache (on CUDA transformers then compiles the decode
    step); None keeps its default dynamic cache. ``decode_path`` ``static_compiled`` or
    ``static_eager`` generates batch 1 through :class:`~.static_decode.StaticDecoder`
    instead (``batch_size`` and ``cache_implementation`` then do not apply).
    """
    import torch

    stops = stop_token_ids(tokenizer)
    encoded = tokenizer([p + "\n" for p in prompts], add_special_tokens=False)["input_ids"]
    encoded = [e[-(max_len - max_new_tokens):] for e in encoded]
    if decode_path and decode_path != "dynamic_eager":
        return _generate_static(model, tokenizer, encoded, max_new_tokens, stops, decode_path)
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    texts: list[str] = [""] * len(prompts)
    pad = tokenizer.pad_token_id
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            width = max(len(encoded[i]) for i in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for k, i in enumerate(idx):
                seq = encoded[i]
                ids[k, width - len(seq):] = torch.tensor(seq)
                mask[k, width - len(seq):] = 1
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                 max_new_tokens=max_new_tokens, do_sample=False,
                                 eos_token_id=stops, pad_token_id=pad,
                                 **({"cache_implementation": cache_implementation}
                                    if cache_implementation else {}))
            for k, i in enumerate(idx):
                texts[i] = tokenizer.decode(out[k, width:], skip_special_tokens=True)
    return texts


def _generate_static(model: Any, tokenizer: Any, encoded: list[list[int]], max_new_tokens: int,
                     stops: list[int], path: str) -> list[str]:
    """Batch-1 greedy generations of the encoded prompts through one static cache."""
    from harness.evaluate.static_decode import static_decoder_for

    decoder = static_decoder_for(model, [len(e) for e in encoded], max_new_tokens, path)
    return [tokenizer.decode(decoder.decode(e, max_new_tokens, stops).tokens,
                             skip_special_tokens=True) for e in encoded]


def parse_answers(texts: list[str], marker: str) -> list[str | None]:
    """The answer of each generation (None when the marker is missing)."""
    return [parse_answer(t, marker) for t in texts]
