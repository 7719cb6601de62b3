"""``log P(r | p)`` with some prompt tokens replaced: the value function every faithfulness
metric and every perturbation method reads, batched and cached.

The scored sequence is ``[s] + p + r`` (the maths guide); only the ``positions`` of the prompt (the user's
tokens under a chat template) are features. A feature is removed by putting the baseline token in
its place (:func:`baseline_token_id`), so no position ever shifts.
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence

import torch

from ..probes.engines.engine import model_device


def baseline_token_id(tokenizer) -> int:
    """The replacement token: ``unk``, else ``pad``, else ``eos`` (the first the tokenizer has)."""
    for name in ("unk_token_id", "pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, name, None)
        if isinstance(value, int):
            return value
    from ..errors import ProbeInputError

    raise ProbeInputError("the tokenizer has no unk, pad or eos token to replace removed tokens with; set "
                          "tokenizer.pad_token (or unk_token) to the token that stands for a removed one")


class ResponseScorer:
    """``log P(r | s, p')`` for prompts ``p'`` that differ from ``p`` at the feature positions.

    Args:
        model: the causal LM (eval mode).
        start, prompt_ids, response_ids: the scored sequence.
        positions: the prompt positions that are features (in feature order).
        baseline_id: the token a removed feature becomes.
        batch_size: sequences per forward pass.
    """

    def __init__(self, model, start: int, prompt_ids: Sequence[int], response_ids: Sequence[int],
                 positions: Sequence[int], baseline_id: int, batch_size: int = 32) -> None:
        self.model, self.baseline_id, self.batch_size = model, int(baseline_id), batch_size
        self.device = model_device(model)
        self.sequence = torch.tensor([start, *prompt_ids, *response_ids], device=self.device)
        self.columns = torch.tensor([1 + k for k in positions], device=self.device)  # feature -> sequence index
        self.response_start = 1 + len(prompt_ids)
        self.features = self.sequence[self.columns].clone()  # (P,) original feature ids
        self._cache: dict[frozenset, float] = {}
        self.forwards = 0

    @property
    def n_features(self) -> int:
        """How many prompt tokens can be removed (the scored positions)."""
        return int(self.columns.shape[0])

    def _response_log_p(self, logits: torch.Tensor) -> torch.Tensor:
        """``(B,)`` sum of the response tokens' log-probabilities from ``(B, L, V)`` logits."""
        log_probs = torch.log_softmax(logits[:, self.response_start - 1:-1].float(), dim=-1)
        targets = self.sequence[self.response_start:].expand(logits.shape[0], -1)
        return log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1).sum(-1)

    def log_p_of_ids(self, feature_ids: torch.Tensor) -> torch.Tensor:
        """``(B,)`` ``log P(r | ...)`` with the features set to ``feature_ids`` (``(B, P)``); no gradients."""
        feature_ids = feature_ids.to(self.device).long().reshape(-1, self.n_features)
        out = []
        with torch.no_grad():
            for chunk in feature_ids.split(self.batch_size):
                batch = self.sequence.repeat(chunk.shape[0], 1)
                batch[:, self.columns] = chunk
                out.append(self._response_log_p(self.model(input_ids=batch).logits))
                self.forwards += chunk.shape[0]
        return torch.cat(out).cpu()

    def log_p_of_embeds(self, feature_embeds: torch.Tensor) -> torch.Tensor:
        """``(B,)`` ``log P(r | ...)`` with the features' input embeddings set to ``feature_embeds``
        (``(B, P, d)``), differentiable (for gradient methods)."""
        embed = self.model.get_input_embeddings()
        rows = feature_embeds.shape[0]
        full = embed(self.sequence).detach().unsqueeze(0).repeat(rows, 1, 1)
        index = self.columns.view(1, -1, 1).expand(rows, -1, full.shape[-1])
        full = full.scatter(1, index, feature_embeds.to(full.dtype))
        self.forwards += rows
        return self._response_log_p(self.model(inputs_embeds=full).logits)

    def feature_embeds(self, ids: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``(1, P, d)`` input embeddings of the features (or of ``ids``)."""
        with torch.no_grad():
            return self.model.get_input_embeddings()(self.features if ids is None else ids).unsqueeze(0).clone()

    def value(self, removed: frozenset) -> float:
        """``log P(r | p with the features in removed replaced)``, cached."""
        if removed not in self._cache:
            self.prefetch([removed])
        return self._cache[removed]

    def prefetch(self, subsets: Iterable[frozenset]) -> None:
        """Compute the values of ``subsets`` not yet cached, in batches."""
        todo = [s for s in dict.fromkeys(subsets) if s not in self._cache]
        if not todo:
            return
        ids = self.features.repeat(len(todo), 1)
        for row, subset in enumerate(todo):
            for j in subset:
                ids[row, j] = self.baseline_id
        for subset, value in zip(todo, self.log_p_of_ids(ids).tolist()):
            self._cache[subset] = float(value)
