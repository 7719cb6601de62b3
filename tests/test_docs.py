"""Every ```python snippet of the README and of the documentation's guides runs.

The snippets of one page run in order, in one namespace, in a temporary folder, with a tiny
``model`` (GPT-2 from a config), its ``tokenizer``, a ``train_dataset`` / ``eval_dataset`` of a few
sentences and a ``data_collator`` standing for the reader's own. A snippet that cannot run here
is not a python block (the guides use ```text or ```bash for those). The site itself is built
with warnings as errors by ``.ci/run`` (``mkdocs build --strict``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SNIPPET = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def snippets(page: Path) -> list[str]:
    return SNIPPET.findall(page.read_text(encoding="utf-8"))


def readers_namespace() -> dict:
    from transformers import DataCollatorForLanguageModeling

    from probattr_monitor.demo.tiny_models import tiny_gpt2

    from .callbacks.helpers import TEXTS, tokenizer

    tok = tokenizer()
    data = [{"input_ids": tok(text)["input_ids"]} for text in TEXTS]
    return {"model": tiny_gpt2(len(tok), seed=0), "tokenizer": tok, "train_dataset": data,
            "eval_dataset": data[:4], "data_collator": DataCollatorForLanguageModeling(tok, mlm=False)}


def test_the_pages_hold_snippets():
    counted = {page.name: len(snippets(page)) for page in PAGES}
    assert counted["README.md"] == 3 and sum(counted.values()) >= 6, counted


def _trained(namespace: dict, folder: Path) -> None:
    callback = namespace["callback"]
    assert callback.last_run is not None and "noise_tokens" in callback.last_run.statistics
    assert (folder / "out" / "checkpoint-4" / "probattr.json").is_file()


def _probed(namespace: dict, folder: Path) -> None:
    result = namespace["result"]
    assert result.prompt == "The capital of France is" and result.tokens and result.response == " Paris"


def _swept(namespace: dict, folder: Path) -> None:
    assert namespace["summary"].recommended["checkpoint"] in ("checkpoint-2", "checkpoint-4")
    assert (folder / "out" / "sweep_summary.json").is_file() and (folder / "out" / "probattr_report.html").is_file()


# What each README snippet says it does, checked after it ran (snippet number -> check).
README_CLAIMS = {1: _trained, 2: _probed, 3: _swept}


@pytest.mark.parametrize("page", [p for p in PAGES if snippets(p)], ids=lambda p: str(p.relative_to(ROOT)))
def test_the_snippets_of_a_page_run(page, tmp_path, monkeypatch):
    """Each snippet runs on its own (a fresh namespace holding only the reader's objects: what it
    uses it imports), in one folder per page (files an earlier snippet wrote are there)."""
    monkeypatch.chdir(tmp_path)
    readers = readers_namespace()
    for index, code in enumerate(snippets(page), start=1):
        namespace = dict(readers)
        exec(compile(code, f"{page.name} snippet {index}", "exec"), namespace)  # noqa: S102
        if page.name == "README.md":
            README_CLAIMS[index](namespace, tmp_path)
