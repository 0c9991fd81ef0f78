"""Build a student: a local Hugging Face checkpoint, or a from-scratch causal LM with a tokenizer
trained on the experiment's own text.

Imports only torch, transformers and tokenizers (the GPU worker's path). Never touches the
network: checkpoints load with ``local_files_only=True``, weights via safetensors, and
``trust_remote_code`` only when the YAML opts in.

Sequence layout shared by training, scoring and generation (no BOS token)::

    encode(prompt + "\\n") + encode(target) + [eos]

The loss covers the target tokens and the EOS.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

# the tokenizer's home is harness.students.tokenizer; imported here for build's callers
from harness.students.tokenizer import (  # noqa: F401
    SPECIAL_TOKENS,
    cached_train_tokenizer,
    train_tokenizer,
)

if TYPE_CHECKING:
    from harness.store.cell_spec import StudentPart


def build_from_config(cfg: dict[str, Any], tokenizer: Any, seed: int) -> Any:
    """A randomly initialised (seeded) Llama-style causal LM sized by the YAML's ``config``
    (weights drawn with standard deviation ``init_std`` when given)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    hidden = int(cfg["hidden"])
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden,
        intermediate_size=int(cfg.get("intermediate") or 4 * hidden),
        num_hidden_layers=int(cfg["layers"]), num_attention_heads=int(cfg["heads"]),
        num_key_value_heads=int(cfg.get("kv_heads") or cfg["heads"]),
        max_position_embeddings=int(cfg["max_position"]), tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    if cfg.get("init_std"):  # unset (absent from older manifests): transformers' 0.02
        config.initializer_range = float(cfg["init_std"])
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def load_checkpoint(path: Path, trust_remote_code: bool = False) -> tuple[Any, Any]:
    """A local checkpoint folder -> (model, tokenizer); never the network."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True,
                                              trust_remote_code=trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True,
                                                 trust_remote_code=trust_remote_code,
                                                 use_safetensors=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def build_student(student: StudentPart, texts: list[str], seed: int,
                  base_dir: Path | None = None) -> tuple[Any, Any]:
    """The student of a cell from its effective ``student`` spec.

    Args:
        student: the manifest's ``spec.student`` (``model`` path or ``config`` map).
        texts: training texts (prompts and targets) for the tokenizer of a from-scratch student.
        seed: initialisation seed.
        base_dir: folder relative ``model`` paths are resolved against.
    """
    if student.model:
        path = Path(student.model)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        return load_checkpoint(path, student.trust_remote_code)
    cfg = student.config
    if cfg is None:  # the experiment model requires one of the two; a hand-edited manifest
        raise ValueError("spec.student has neither 'model' nor 'config'")
    # The effective spec leaves 'digits' out for merged (so those cells keep their earlier
    # ids; harness.experiment.student), hence a manifest without the key is a merged student.
    digits = cfg.get("digits", "merged")
    # trained, or the cached twin
    tokenizer = cached_train_tokenizer(texts, int(cfg["vocab"]), digits=digits)
    return build_from_config(cfg, tokenizer, seed), tokenizer
