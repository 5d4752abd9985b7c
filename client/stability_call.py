"""Stability through the service, for both clients: the instance is re-explained under each perturbation
(:func:`multishap.service.audit.stability`), every re-explanation an ordinary Explain call with the same options."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from multishap.service import defaults
from multishap.service.audit import StabilityResult, stability
from multishap.service.audit.stability import PERTURBATIONS

from .explanation import Explanation
from .images import ImageLike, to_pil

# explain() options a re-explanation takes over as given; the image and seed are the perturbation's, and the
# audit parts would only add cost to every re-explanation.
_NOT_PASSED = ("image", "text", "target", "seed", "progress", "dry_run", "candidates", "ground_truth",
               "influence_budget", "faithfulness")


@dataclass(frozen=True)
class StabilityPlan:
    """One stability run: the instance, the perturbations and the explain() options of every re-explanation;
    ``reference`` (an explanation of the same instance and options) stands in for the unperturbed one."""

    image: np.ndarray
    text: str
    target: str
    perturbations: tuple[str, ...]
    repeats: int
    seed: int
    top_k: Optional[int]
    z: float
    options: Mapping[str, Any]
    reference: Optional[Explanation] = None

    def run(self, explain: Callable[..., Explanation]) -> StabilityResult:
        """The stability result, with ``explain`` (a blocking explain()) making each re-explanation."""
        def explain_fn(image: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
            if self.reference is not None and seed == self.reference.seed and np.array_equal(image, self.image):
                return self.reference.phi, self.reference.stderr
            exp = explain(image, self.text, target=self.target, seed=seed, **self.options)
            return exp.phi, exp.stderr

        return stability(explain_fn, perturbations=self.perturbations, repeats=self.repeats, seed=self.seed,
                         image=self.image, top_k=self.top_k, z=self.z)


def stability_call(image: ImageLike, text: str, *, target: str, perturbations: Sequence[str] = PERTURBATIONS,
                   repeats: int = 3, seed: int = defaults.SEED, top_k: Optional[int] = None, z: float = 2.0,
                   reference: Optional[Explanation] = None, **options: Any) -> StabilityPlan:
    """How stable the explanation of this instance is (see :func:`multishap.service.audit.stability`).

    The instance is explained once as it is (or ``reference`` is used: an explanation of it with the same
    ``seed`` and options), then once per repeat of each perturbation: ``seed`` (another estimator seed),
    ``jpeg``, ``noise`` and ``shift`` (the image perturbed, same seed), so it costs ``1 + len(perturbations) *
    repeats`` explanations. ``options`` are explain()'s (grid, method, budget, masking...). Entries of the
    reference within ``z`` standard errors of 0 are left out of the comparison.
    """
    if isinstance(perturbations, str):
        raise TypeError("perturbations must be a list of names, not one string")
    passed = sorted(set(options) & set(_NOT_PASSED))
    if passed:
        raise TypeError(f"stability() sets {', '.join(passed)} itself for every re-explanation")
    pixels = np.asarray(to_pil(image).convert("RGB"))
    if reference is not None:
        _check_reference(reference, pixels, text, seed, options)
    return StabilityPlan(pixels, text, target, tuple(perturbations), repeats, seed, top_k, z, dict(options),
                         reference)


def _check_reference(reference: Explanation, pixels: np.ndarray, text: str, seed: int,
                     options: Mapping[str, Any]) -> None:
    """ValueError unless ``reference`` explains this image and text with this seed and grid."""
    grid = tuple(options.get("grid", defaults.GRID))
    differs = [what for what, same in (
        ("seed", reference.seed == seed),
        ("text", reference.provenance.text in (None, text)),
        ("grid", tuple(reference.grid) == grid),
        ("image", reference.image is None or np.array_equal(reference.image, pixels)),
    ) if not same]
    if differs:
        raise ValueError(f"the reference explanation differs from this stability run in its {', '.join(differs)}: "
                         "give the explanation of the same instance, seed and options")
