"""A tokenizer's vocabulary as a comparable value: token ids frozen with one tokenizer mean the
same text under another only when both map every token string to the same id (and agree on
the special tokens). Used wherever ids cross from one model to another (a reference's frozen
responses scored on a run's checkpoints)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Optional

_SPECIAL = ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id")


@dataclass(frozen=True)
class Vocabulary:
    """``size``: ``len(tokenizer)`` (added tokens included); ``digest``: SHA-256 of the sorted
    ``token -> id`` map; ``special``: the BOS, EOS, PAD and UNK ids (``None`` where absent)."""

    size: int
    digest: str
    special: tuple

    @classmethod
    def of(cls, tokenizer) -> "Vocabulary":
        """The vocabulary of a Hugging Face tokenizer (``get_vocab()``)."""
        items = sorted((str(token), int(index)) for token, index in tokenizer.get_vocab().items())
        digest = hashlib.sha256(json.dumps(items, ensure_ascii=False).encode("utf-8")).hexdigest()
        special = tuple(getattr(tokenizer, name, None) for name in _SPECIAL)
        return cls(size=len(tokenizer), digest=digest, special=special)

    def difference(self, other: "Vocabulary") -> Optional[str]:
        """``None`` when token ids mean the same under both; else what differs, in words."""
        if self.size != other.size:
            return f"{self.size:,} tokens against {other.size:,}"
        if self.digest != other.digest:
            return "the same size but other token-to-id maps"
        for name, mine, theirs in zip(_SPECIAL, self.special, other.special):
            if mine != theirs:
                return f"{name.removesuffix('_id')} {mine} against {theirs}"
        return None
