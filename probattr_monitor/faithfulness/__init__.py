"""Faithfulness of AS against the methods the paper compares it with (paper section 5).

``evaluate_faithfulness(model, tokenizer, prompts)`` scores AS and the Captum methods and computes
Deletion / normalised AOPC, Comprehensiveness, Sufficiency and Infidelity with replacement as the
deletion operator (``metrics``); ``print_faithfulness`` and ``plot_faithfulness`` show the result.
The Captum methods need the ``faithfulness`` extra; the metrics, AS, the Jacobian Scopes and the set
methods (JoPA, the joint-AS search) need nothing more. ``select_tokens`` returns the set a set method
removes at a given size or sparsity (``probattr-monitor joint``).
"""

from .joint_run import select_tokens
from .metrics import (
    aopc,
    aopc_bounds,
    comprehensiveness,
    infidelity,
    normalised_aopc,
    probability_faithfulness,
    sufficiency,
)
from .output import plot_faithfulness, print_faithfulness
from .run import FaithfulnessResult, evaluate_faithfulness

__all__ = ["FaithfulnessResult", "aopc", "aopc_bounds", "comprehensiveness", "evaluate_faithfulness", "infidelity",
           "normalised_aopc", "plot_faithfulness", "print_faithfulness", "probability_faithfulness", "select_tokens",
           "sufficiency"]
