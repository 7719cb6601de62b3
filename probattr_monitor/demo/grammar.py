"""A hidden Markov model over English-like sentences, with a hidden topic.

Hidden states are (topic, syntactic slot). The topic (``farm`` or ``town``) is drawn once per
sentence and never changes, so content words depend on each other through it; determiners,
adjectives and prepositions do not depend on the topic. Every word is one token of the demo's
word-level tokenizer, so the process's probabilities are exactly computable (see ``truth.py``).

A sentence is ``w_1 .. w_T "."`` followed by EOS; the model sees ``<s> w_1 .. "." </s>``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BOS, EOS, PAD = "<s>", "</s>", "<pad>"
TOPICS = ("farm", "town")
DETERMINERS = ["the", "a", "every", "one"]
ADJECTIVES = ["big", "small", "red", "old", "quiet", "happy", "green", "tall"]
PREPOSITIONS = ["near", "under", "behind", "with"]
ADVERBS = ["quickly", "slowly", "often"]
SHARED_NOUNS = ["dog", "cat", "bird", "house", "tree"]
SUBJECTS = {"farm": ["farmer", "horse", "cow", "goat"], "town": ["teacher", "child", "driver", "baker"]}
OBJECTS = {"farm": ["field", "barn", "tractor", "fence"], "town": ["car", "street", "shop", "bus"]}
TRANSITIVE = {"farm": ["feeds", "ploughs", "chases"], "town": ["drives", "visits", "paints"]}
INTRANSITIVE = {"farm": ["grazes", "sleeps"], "town": ["waits", "shops"]}

# syntactic slots and their transitions (the same in both topics)
SLOTS = ("s_det", "s_adj", "s_noun", "v_t", "v_i", "o_det", "o_adj", "o_noun", "prep", "p_det", "p_noun", "adv",
         "end", "eos")
MAX_SENTENCE_WORDS = 64  # a bound on the sampling loop, never reached in practice

TRANSITIONS = {
    "s_det": {"s_adj": 0.4, "s_noun": 0.6},
    "s_adj": {"s_adj": 0.15, "s_noun": 0.85},
    "s_noun": {"v_t": 0.6, "v_i": 0.4},
    "v_t": {"o_det": 1.0},
    "o_det": {"o_adj": 0.35, "o_noun": 0.65},
    "o_adj": {"o_noun": 1.0},
    "o_noun": {"end": 0.5, "prep": 0.3, "adv": 0.2},
    "v_i": {"adv": 0.3, "prep": 0.3, "end": 0.4},
    "adv": {"end": 0.7, "prep": 0.3},
    "prep": {"p_det": 1.0},
    "p_det": {"p_noun": 1.0},
    "p_noun": {"end": 1.0},
    "end": {"eos": 1.0},
    "eos": {"eos": 1.0},
}


def _emissions(slot: str, topic: str) -> dict[str, float]:
    """Emission distribution of a slot in a topic: uniform over its words, shared nouns mixed in."""
    if slot in ("s_det", "o_det", "p_det"):
        words = {"the": 0.5, "a": 0.3, "every": 0.1, "one": 0.1}
        return words
    if slot in ("s_adj", "o_adj"):
        return {w: 1 / len(ADJECTIVES) for w in ADJECTIVES}
    if slot == "s_noun":
        return _mix(SUBJECTS[topic], SHARED_NOUNS[:3], 0.7)
    if slot in ("o_noun", "p_noun"):
        return _mix(OBJECTS[topic], SHARED_NOUNS, 0.6)
    if slot == "v_t":
        return {w: 1 / 3 for w in TRANSITIVE[topic]}
    if slot == "v_i":
        return {w: 1 / 2 for w in INTRANSITIVE[topic]}
    if slot == "prep":
        return {w: 1 / len(PREPOSITIONS) for w in PREPOSITIONS}
    if slot == "adv":
        return {w: 1 / len(ADVERBS) for w in ADVERBS}
    if slot == "end":
        return {".": 1.0}
    return {EOS: 1.0}


def _mix(topical: list[str], shared: list[str], weight: float) -> dict[str, float]:
    probs = {w: weight / len(topical) for w in topical}
    probs.update({w: (1 - weight) / len(shared) for w in shared})
    return probs


@dataclass(frozen=True)
class HiddenMarkovGrammar:
    """The HMM as arrays over its hidden states and its words.

    Attributes:
        words: the emitted symbols (EOS included), index = column of ``emission``.
        states: ``(topic, slot)`` pairs.
        initial: ``(S,)`` distribution of the first hidden state (after BOS).
        transition: ``(S, S)``, row-stochastic.
        emission: ``(S, W)``, row-stochastic.
    """

    words: tuple
    states: tuple
    initial: np.ndarray
    transition: np.ndarray
    emission: np.ndarray

    @classmethod
    def build(cls) -> "HiddenMarkovGrammar":
        """The demo's grammar: its hidden states (topic x slot), vocabulary and emission and transition tables."""
        vocabulary = sorted({w for topic in TOPICS for slot in SLOTS for w in _emissions(slot, topic)} - {EOS})
        words = tuple(vocabulary + [EOS])
        states = tuple((topic, slot) for topic in TOPICS for slot in SLOTS)
        index = {state: i for i, state in enumerate(states)}
        word_index = {w: i for i, w in enumerate(words)}
        initial = np.zeros(len(states))
        transition = np.zeros((len(states), len(states)))
        emission = np.zeros((len(states), len(words)))
        for topic in TOPICS:
            initial[index[(topic, "s_det")]] = 1 / len(TOPICS)
            for slot in SLOTS:
                for target, p in TRANSITIONS[slot].items():
                    transition[index[(topic, slot)], index[(topic, target)]] = p
                for word, p in _emissions(slot, topic).items():
                    emission[index[(topic, slot)], word_index[word]] = p
        return cls(words, states, initial, transition, emission)

    def sample(self, rng: np.random.Generator) -> list[str]:
        """One sentence, ``w_1 .. "."`` (EOS not included), cut at :data:`MAX_SENTENCE_WORDS` words
        (the adjective slots loop with probability 0.15: a cut sentence has probability below 1e-40)."""
        state = rng.choice(len(self.states), p=self.initial)
        sentence: list[str] = []
        for _ in range(MAX_SENTENCE_WORDS):
            word = self.words[rng.choice(len(self.words), p=self.emission[state])]
            if word == EOS:
                break
            sentence.append(word)
            state = rng.choice(len(self.states), p=self.transition[state])
        return sentence

    @staticmethod
    def topic_of(sentence: str) -> str:
        """The topic of a sentence: every sentence has one verb, and verbs belong to one topic."""
        words = set(sentence.split())
        return next(t for t in TOPICS if words & set(TRANSITIVE[t] + INTRANSITIVE[t]))

    def corpus(self, count: int, seed: int) -> list[str]:
        """``count`` sentences as text, reproducible from ``seed``."""
        rng = np.random.default_rng(seed)
        return [" ".join(self.sample(rng)) for _ in range(count)]


def word_tokenizer(grammar: HiddenMarkovGrammar, extra_words: int = 0):
    """A word-level tokenizer whose tokens are exactly the grammar's words (+ BOS, PAD), and
    ``extra_words`` made-up words the grammar never emits (``zq0x``, ``zq1x``, ...): a vocabulary of
    real size whose extra mass a model must learn to give up."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocabulary = {BOS: 0, EOS: 1, PAD: 2}
    for word in [*grammar.words, *(f"zq{i}x" for i in range(extra_words))]:
        vocabulary.setdefault(word, len(vocabulary))
    backend = Tokenizer(models.WordLevel(vocab=vocabulary, unk_token=None))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   clean_up_tokenization_spaces=False)
