"""The GPU benchmarks run end to end in their CPU smoke mode (tiny models, seconds each).

On a CPU the figures mean nothing; what is checked is that each script runs, writes its JSON
where ``--out`` says, prints its table, and that the comparisons it makes hold where a CPU can
judge them exactly: the harness trainer's losses equal the Hugging Face Trainer's (fp32, same
order), and the harness's label scores equal lm-eval's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

#: each script trains and evaluates real (tiny) models in a subprocess: ~45 s together
pytestmark = pytest.mark.slow


def smoke(script: str, out: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), "--smoke",
                           "--out", str(out)], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    files = list(out.glob("*.json"))
    assert len(files) == 1 and files[0].name.endswith("_smoke.json")
    assert "wrote " + str(files[0]) in proc.stdout
    result = json.loads(files[0].read_text())
    assert result["smoke"] is True and result["environment"]["device"] == "cpu"
    assert result["environment"]["torch"] and result["environment"]["date"]
    return result


def test_gpu_train_smoke(tmp_path):
    res = smoke("gpu_train.py", tmp_path)
    for key in ("a", "b"):
        s = res["sets"][key]
        base = s["variants"]["hf_trainer"]
        assert "error" not in base and base["useful_tokens_per_s"] > 0
        for name, fig in s["variants"].items():
            assert "error" not in fig, (name, fig.get("error"))
            if name != "hf_trainer":
                assert fig["losses_match"], (key, name, fig["window_losses"],
                                             base["window_losses"])
                assert fig["speedup_vs_hf_trainer"] > 0
        packed = s["variants"]["harness_packed"]
        assert packed["padding_fraction"] < base["padding_fraction"]
        assert packed["in_effect"]["packing"] is True
        assert 0 < base["mfu"] < 1
    assert res["headline"]["a"]["speedup_vs_hf_trainer"] > 0


def test_gpu_eval_smoke(tmp_path):
    res = smoke("gpu_eval.py", tmp_path)
    s = res["scoring"]["float32"]
    assert s["shared_vs_per_pair_max_abs_ll_diff"] < 1e-4
    assert s["harness_shared"]["accuracy"] == s["harness_per_pair"]["accuracy"]
    if "error" in s["lm_eval_hflm"]:
        pytest.skip("lm-eval not usable here: " + s["lm_eval_hflm"]["error"][:200])
    assert s["accuracy_identical"] and s["argmax_disagreements_vs_lm_eval"] == 0
    assert s["shared_vs_lm_eval_max_abs_ll_diff"] < 1e-4
    assert s["speedup_vs_lm_eval"] > 0
    gen = res["generation"]["variants"]
    assert "error" not in gen["generate_dynamic_cache"]
    assert gen["generate_dynamic_cache"]["decode_ms_per_token_p50"] > 0


def test_gpu_matrix_smoke(tmp_path):
    res = smoke("gpu_matrix.py", tmp_path)
    (level,) = res["levels"]
    assert level["cells_done"] == 3 and level["cells_failed"] == 0
    assert res["headline"]["total_wall_s"] > 0
    assert any("(seed +1)" in json.dumps(c) or c["cell"].endswith("r1") for c in level["cells"])
