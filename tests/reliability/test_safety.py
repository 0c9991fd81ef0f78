"""Nothing runs that should not: pickled checkpoints are refused, remote code stays off."""

from __future__ import annotations

import pytest

from harness.students.build import build_from_config, load_checkpoint, train_tokenizer


def _tiny(tmp_path, safe: bool):
    tok = train_tokenizer(["hello world", "Answer: yes"], 280)
    model = build_from_config({"layers": 1, "hidden": 16, "heads": 2, "max_position": 32},
                              tok, seed=0)
    model.save_pretrained(tmp_path, safe_serialization=safe)
    tok.save_pretrained(tmp_path)
    return tmp_path


def test_safetensors_checkpoint_loads(tmp_path):
    model, tok = load_checkpoint(_tiny(tmp_path, safe=True))
    assert model.config.num_hidden_layers == 1 and tok.eos_token == "</s>"


def test_pickled_checkpoint_is_refused(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    folder = _tiny(tmp_path, safe=True)
    state = AutoModelForCausalLM.from_pretrained(folder).state_dict()
    for f in folder.glob("*.safetensors"):
        f.unlink()
    torch.save(state, folder / "pytorch_model.bin")  # a pickle: could run code when loaded
    with pytest.raises(OSError):
        load_checkpoint(folder)


def test_remote_code_is_off_unless_asked(tmp_path, monkeypatch):
    import transformers

    seen = {}

    def spy(path, **kw):
        seen.update(kw)
        raise OSError("stop here")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", spy)
    with pytest.raises(OSError):
        load_checkpoint(tmp_path)
    assert seen["trust_remote_code"] is False and seen["local_files_only"] is True
