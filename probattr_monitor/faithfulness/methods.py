"""The attribution methods the paper compares AS with, run through Captum (extra ``faithfulness``).

Each method attributes ``log P(r | p)`` to the feature tokens of a :class:`ResponseScorer`; the
perturbation methods replace a feature by the baseline token (the same deletion operator the
metrics use):

- ``occlusion``: Captum ``FeatureAblation`` (one token at a time);
- ``lime``: Captum ``Lime`` with a weighted least-squares surrogate;
- ``shapley``: Captum ``ShapleyValueSampling``;
- ``input_x_gradient``: Captum ``InputXGradient`` on the input embeddings, summed over the
  embedding dimension;
- ``gradient_shap``: Captum ``GradientShap`` on the input embeddings, the baseline token's
  embeddings as the baseline, summed over the embedding dimension;
- ``reagent``: exists only in Inseq (not a dependency; see the docs' faithfulness guide); skipped with a message;
- ``random``: a seeded random ranking, the floor any method should beat;
- ``semantic_scope``, ``fisher_scope``, ``temperature_scope``: the Jacobian Scopes of
  ``probes.engines.scopes`` aggregated over the response (no Captum needed; Fisher by its low-rank
  variant, rank 8), a magnitude per token: the ranking says which tokens move the response most;
- ``jopa`` and ``joint_as``: *set* methods, which choose the set to remove for each size
  (:func:`select_sets`): JoPA's gradient-guided search (:mod:`.jopa`) and the greedy search for the
  largest joint attribution score ``AS_S`` (``probes.engines.joint.search_joint``). Their per-token scores
  (for the ranking metrics) follow their search order.

AS itself (``attribution_score``) comes from :func:`probattr_monitor.probe`. Every method runs with
torch's and numpy's global RNGs seeded and then restored, so results repeat and the caller's RNG
is untouched.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Callable, Optional

import torch

from ..errors import MethodUnavailable, MissingPackageError, ProbeInputError
from ..probes.types.settings import SCOPE_NAMES
from .scorer import ResponseScorer

CAPTUM_METHODS = ("occlusion", "lime", "shapley", "input_x_gradient", "gradient_shap")
SCOPE_METHODS = tuple(f"{name}_scope" for name in SCOPE_NAMES)
SET_METHODS = ("jopa", "joint_as")
METHODS = ("attribution_score", *CAPTUM_METHODS, "reagent", "random", *SCOPE_METHODS, *SET_METHODS)
DEFAULT_METHODS = ("attribution_score", *CAPTUM_METHODS, "random")
SAMPLES = 50  # LIME and Shapley-value-sampling perturbations, GradientShap samples


def require_captum() -> None:
    """Raise :class:`MissingPackageError` with the install line when Captum is missing."""
    try:
        import captum  # noqa: F401
    except ImportError:
        raise MissingPackageError("the comparison methods", "captum", "faithfulness") from None


def select_sets(method: str, scorer: ResponseScorer, sizes, seed: int = 0, settings=None,
                joint_draws: Optional[int] = None) -> tuple[list[float], dict, dict]:
    """A set method's per-feature scores (its search order), the feature sets it removes
    (``{size: frozenset}`` for each of ``sizes``) and what its search states (settings; for
    ``joint_as`` also the largest set's ``AS_S``, its standard error and the policy).
    ``settings`` (``ProbeSettings``) and ``joint_draws`` (draws per estimate, default
    ``probes.engines.joint.JOINT_DRAWS``) serve ``joint_as``."""
    from .jopa import jopa, order_attributions

    n = scorer.n_features
    sizes = sorted({min(max(1, int(size)), n) for size in sizes})
    if method == "jopa":
        found = jopa(scorer, sizes, seed=seed)
        return order_attributions(found.order, n), dict(found.sets), dict(found.settings)
    if method != "joint_as":
        raise ProbeInputError(f"{method!r} is not a set method; choose from {', '.join(SET_METHODS)}")
    from ..probes.engines.joint import search_joint
    from ..probes.types.settings import ProbeSettings

    settings = (settings or ProbeSettings()).replace(progress=False, seed=seed)
    positions = [int(column) - 1 for column in scorer.columns]  # feature j is prompt position positions[j]
    options: dict[str, Any] = {} if joint_draws is None else {"draws": int(joint_draws),
                                                             "head": max(1, int(joint_draws) // 8)}
    search = search_joint(scorer.model, scorer.sequence, scorer.response_start - 1, max(sizes), settings,
                          candidates=positions, **options)
    path = [positions.index(k) for k in search.positions]
    rest = sorted((j for j in range(n) if j not in path), key=lambda j: -search.singles[positions[j]])
    search_name = "every pair, then greedy forward selection" if max(sizes) >= 2 else "every single"
    details = {"search": search_name, "seed": seed, "policy": search.scores.policy, **options,
               "attribution_score": search.scores.attribution_score,
               "attribution_score_stderr": search.scores.stderrs["attribution_score"],
               "trajectory": search.trajectory, "token_forwards": search.token_forwards}
    return order_attributions(path + rest, n), {size: frozenset(path[:size]) for size in sizes}, details


def attribute(method: str, scorer: ResponseScorer, seed: int = 0, samples: int = SAMPLES) -> list[float]:
    """Per-feature attributions of ``log P(r | p)`` by ``method`` (one of :data:`METHODS` but
    ``attribution_score`` and the :data:`SET_METHODS`, which :func:`select_sets` runs)."""
    if method not in _RUNNERS:
        raise ProbeInputError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    import numpy as np

    numpy_state = np.random.get_state()  # GradientShap draws its interpolation points from numpy
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            np.random.seed(seed)
            values = _RUNNERS[method](scorer, samples)
    finally:
        np.random.set_state(numpy_state)
    return [float(v) for v in values.reshape(-1)]


def _ids(scorer: ResponseScorer) -> torch.Tensor:
    return scorer.features.unsqueeze(0).cpu()


def _occlusion(scorer: ResponseScorer, samples: int) -> torch.Tensor:
    from captum.attr import FeatureAblation

    return FeatureAblation(scorer.log_p_of_ids).attribute(_ids(scorer), baselines=scorer.baseline_id,
                                                          perturbations_per_eval=scorer.batch_size)


def _weighted_least_squares():
    """Captum's interpretable-model interface over a closed-form weighted least-squares fit with an
    intercept (LIME's surrogate; Captum's default needs scikit-learn, its SGD models a learning rate)."""
    from captum._utils.models.model import Model

    class WeightedLeastSquares(Model):
        def fit(self, train_data, **kwargs):
            xs, ys, ws = (torch.cat(parts).double() for parts in zip(*train_data))
            design = torch.cat([xs.reshape(xs.shape[0], -1), torch.ones(xs.shape[0], 1, dtype=torch.float64)], 1)
            root = ws.reshape(-1, 1).clamp_min(0).sqrt()
            ridge = 1e-6 * torch.eye(design.shape[1], dtype=torch.float64)
            gram = (design * root).T @ (design * root) + ridge
            self.coefficients = torch.linalg.solve(gram, (design * root).T @ (ys.reshape(-1, 1) * root)).reshape(-1)
            return None

        def representation(self):
            return self.coefficients[:-1].float().unsqueeze(0)  # the intercept is not an attribution

        def __call__(self, x):
            return x.double() @ self.coefficients[:-1] + self.coefficients[-1]

    return WeightedLeastSquares()


def _lime(scorer: ResponseScorer, samples: int) -> torch.Tensor:
    from captum.attr import Lime

    lime = Lime(scorer.log_p_of_ids, interpretable_model=_weighted_least_squares())
    return lime.attribute(_ids(scorer), baselines=scorer.baseline_id, n_samples=samples,
                          perturbations_per_eval=scorer.batch_size)


def _shapley(scorer: ResponseScorer, samples: int) -> torch.Tensor:
    from captum.attr import ShapleyValueSampling

    return ShapleyValueSampling(scorer.log_p_of_ids).attribute(_ids(scorer), baselines=scorer.baseline_id,
                                                               n_samples=max(1, samples // scorer.n_features),
                                                               perturbations_per_eval=scorer.batch_size)


def _input_x_gradient(scorer: ResponseScorer, samples: int) -> torch.Tensor:
    from captum.attr import InputXGradient

    with torch.enable_grad():
        return InputXGradient(scorer.log_p_of_embeds).attribute(scorer.feature_embeds()).sum(-1).detach()


def _gradient_shap(scorer: ResponseScorer, samples: int) -> torch.Tensor:
    from captum.attr import GradientShap

    baseline = scorer.feature_embeds(torch.full_like(scorer.features, scorer.baseline_id))
    with torch.enable_grad():
        values = GradientShap(scorer.log_p_of_embeds).attribute(scorer.feature_embeds(), baselines=baseline,
                                                                n_samples=max(1, samples // 2))
    return values.sum(-1).detach()


def _reagent(scorer: ResponseScorer, samples: int) -> torch.Tensor:
    if importlib.util.find_spec("inseq") is None:
        raise MethodUnavailable("ReAgent exists only in Inseq, which is not installed (its 0.7.1 wheel pulls CUDA 11 "
                                "packages on Linux: pip install --no-deps inseq==0.7.1 plus its pure-Python needs)")
    raise MethodUnavailable("ReAgent through Inseq is not wired into this version")


def _random(scorer: ResponseScorer, samples: int) -> torch.Tensor:
    return torch.rand(scorer.n_features, dtype=torch.float64)


def _scope(name: str) -> Callable[[ResponseScorer, int], torch.Tensor]:
    def run(scorer: ResponseScorer, samples: int) -> torch.Tensor:
        from ..probes.engines.scopes import jacobian_scopes

        n_prompt = scorer.response_start - 1
        positions = [int(column) - 1 for column in scorer.columns]
        scores = jacobian_scopes(scorer.model, scorer.sequence, n_prompt, positions=positions, scopes=(name,))
        return scores.aggregate[name]

    return run


_RUNNERS: dict[str, Callable[[ResponseScorer, int], torch.Tensor]] = {
    **{f"{name}_scope": _scope(name) for name in SCOPE_NAMES},
    "occlusion": _occlusion, "lime": _lime, "shapley": _shapley, "input_x_gradient": _input_x_gradient,
    "gradient_shap": _gradient_shap, "reagent": _reagent, "random": _random,
}
