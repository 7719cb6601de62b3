"""The ``scopes`` setting: Jacobian Scopes per scored token in ``probe()``'s results, their JSON, the
CLI table, the run summary the callback and the sweep log, and the report's token details."""

from __future__ import annotations

import json

import pytest
import torch

from probattr_monitor import ProbeSettings, probe
from probattr_monitor.demo.tiny_models import tiny_gpt2
from probattr_monitor.errors import ProbeInputError
from probattr_monitor.monitoring.metrics import run_summary, scalar_logs
from probattr_monitor.probes.engines.scopes import jacobian_scopes
from probattr_monitor.probes.types.result import ProbeResult

SETTINGS = ProbeSettings(max_new_tokens=3, progress=False)


@pytest.fixture(scope="module")
def model(tokenizer):
    return tiny_gpt2(len(tokenizer), seed=3, initializer_range=0.6).eval()


def test_probe_adds_the_named_scopes_equal_to_the_scopes_themselves(model, tokenizer):
    [plain] = probe(model, tokenizer, ["the cat sat on"], settings=SETTINGS)
    scoped_settings = SETTINGS.replace(scopes=["temperature", "semantic"])
    [scoped] = probe(model, tokenizer, ["the cat sat on"], settings=scoped_settings)
    assert all(t.semantic_scope is None and t.fisher_scope is None for t in plain.tokens)
    assert [t.attribution_score for t in scoped.tokens] == [t.attribution_score for t in plain.tokens]
    ids = torch.tensor([scoped.start_token_id, *scoped.prompt_token_ids, *scoped.response_token_ids])
    direct = jacobian_scopes(model, ids, len(scoped.prompt_token_ids), scopes=("semantic", "temperature"))
    assert [t.semantic_scope for t in scoped.tokens] == pytest.approx(direct.aggregate["semantic"].tolist())
    assert [t.temperature_scope for t in scoped.tokens] == pytest.approx(direct.aggregate["temperature"].tolist())
    assert all(t.fisher_scope is None for t in scoped.tokens)
    again = ProbeResult.from_dict(json.loads(scoped.to_json()))
    assert [t.semantic_scope for t in again.tokens] == [t.semantic_scope for t in scoped.tokens]
    summary = run_summary([scoped])
    assert summary["mean_semantic_scope"] == pytest.approx(sum(direct.aggregate["semantic"].tolist()) / len(ids[1:-3]))
    assert summary["mean_fisher_scope"] is None
    logs = scalar_logs([scoped], probe_seconds=1.0)
    assert "probattr/mean_semantic_scope" in logs and "probattr/mean_fisher_scope" not in logs
    assert "probattr/mean_semantic_scope" not in scalar_logs([plain], probe_seconds=1.0)


def test_the_setting_is_checked_and_kept_out_of_old_record_keys():
    assert ProbeSettings(scopes=["fisher", "fisher"]).scopes == ("fisher",)
    assert ProbeSettings(scopes="fisher").scopes == ("fisher",)
    assert "scopes" not in ProbeSettings().result_key(), "records made before the setting existed still match"
    assert ProbeSettings(scopes=("fisher",)).result_key()["scopes"] == ["fisher"]
    assert ProbeSettings.from_dict(ProbeSettings(scopes=("semantic",)).to_dict()).scopes == ("semantic",)
    with pytest.raises(ProbeInputError, match="scopes should be a list of"):
        ProbeSettings(scopes=("gradient",))


def test_the_cli_takes_scopes_and_shows_them(tokenizer, tmp_path, capsys):
    from probattr_monitor.cli import main

    folder = tmp_path / "model"
    tiny_gpt2(len(tokenizer), seed=3, initializer_range=0.6).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    out = tmp_path / "r.json"
    assert main(["attribute", "--model", str(folder), "--prompt", "the cat sat", "--max-new-tokens", "2",
                 "--scopes", "fisher", "temperature", "--no-progress", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "fisher" in printed and "scope" in printed and "semantic" not in printed  # narrow: headers wrap
    [row] = json.loads(out.read_text(encoding="utf-8"))
    assert all(t["fisher_scope"] is not None and t["semantic_scope"] is None for t in row["tokens"])
    assert row["settings"]["scopes"] == ["fisher", "temperature"]
    with pytest.raises(SystemExit):
        main(["attribute", "--model", str(folder), "--prompt", "a", "--scopes", "gradient"])
