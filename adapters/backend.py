"""What an adapter's backend is: the instance types it prepares and scores, and its Score and Answer methods.

A backend turns a decoded instance into players (``prepare``) and answers Score requests
(``score``) and, where it can, Answer requests (``answer``: the model's own answer to the
unmasked instance); a model that runs in this process implements ``forward`` through
:class:`ModelBackend`. Everything else of the Scorer contract (limits, decoding, caching,
metrics) is the servicer's (:mod:`.servicer`, :mod:`.instances`).
"""

from __future__ import annotations

import re
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Generic, Mapping, Optional, Sequence, TypeVar

import numpy as np
from prometheus_client import CollectorRegistry

from multishap.service.math.costs import product_rows
from multishap.service.rpc.errors import Unimplemented
from multishap.v1 import common_pb2, scorer_pb2


@dataclass(frozen=True)
class DecodedInstance:
    """An instance with its image decoded to an (H, W, 3) uint8 array."""

    image: np.ndarray
    text: str
    target: str
    rows: int
    cols: int
    masking: common_pb2.MaskingOptions
    parameters: dict[str, str]
    key: str


State = TypeVar("State")


@dataclass(frozen=True)
class PreparedInstance(Generic[State]):
    """What a backend needs to score an instance repeatedly: its players, and the backend's own
    state of the instance (``PreparedInstance[ItsStateType]``: a game, encoded inputs, a renderer)."""

    decoded: DecodedInstance
    tokens: list[str]
    state: Optional[State] = field(default=None, repr=False)

    @property
    def num_patches(self) -> int:
        return self.decoded.rows * self.decoded.cols

    @property
    def num_players(self) -> int:
        return self.num_patches + len(self.tokens)


@dataclass(frozen=True)
class ScoreCall:
    """What a backend may want to know about the Score request it is answering."""

    job: str = ""
    dry_run: bool = False
    cancelled: threading.Event = field(default_factory=threading.Event)
    deadline: Optional[float] = None  # time.monotonic() by which the caller wants the answer


@dataclass
class ScoreResult:
    """A backend's answer: values, which of them are bounds, and what they cost."""

    values: np.ndarray
    bounded: Optional[np.ndarray] = None
    usage: Optional[common_pb2.Usage] = None


@dataclass
class AnswerResult:
    """A backend's answer to the unmasked instance: the answer, one score per candidate (request order; empty
    without candidates), a generative model's text before extraction, how the answer was reached, and its cost."""

    answer: str
    scores: Sequence[float] = ()
    raw: str = ""
    how: str = ""
    usage: Optional[common_pb2.Usage] = None


def argmax_answer(candidates: Sequence[str], scores: Sequence[float],
                  usage: Optional[common_pb2.Usage] = None) -> AnswerResult:
    """The candidate with the highest score, with every candidate's score; no answer ("") when several tie at the
    top (the model did not choose: e.g. every score is the same bound)."""
    values = [float(v) for v in scores]
    top = max(values)
    tied = sum(v == top for v in values)
    if tied > 1:
        return AnswerResult("", values, how=f"no answer: {tied} of {len(candidates)} candidates tie at the top score",
                            usage=usage)
    return AnswerResult(candidates[values.index(top)], values, how=f"argmax over {len(candidates)} candidates",
                        usage=usage)


class AnswerPattern:
    """How a generative model's text becomes its answer: the operator's regular expression (given at adapter
    start, never by a request), group 1 when it has groups, else the whole match; no pattern: the first line,
    stripped. The pattern is searched, not matched, so it may find the answer anywhere in the text."""

    def __init__(self, pattern: Optional[str] = None) -> None:
        """``pattern``: a Python regular expression; ValueError says why one does not compile."""
        try:
            self.regex = re.compile(pattern) if pattern else None
        except re.error as err:
            raise ValueError(f"the answer pattern {pattern!r} is not a regular expression: {err}") from None

    def extract(self, text: str) -> tuple[str, str]:
        """(answer, note): the extracted answer, and how, for AnswerResult.how."""
        if self.regex is None:
            lines = text.strip().splitlines()
            return (lines[0].strip() if lines else ""), "first line"
        found = self.regex.search(text)
        if found is None:
            return "", "the answer pattern did not match"
        answer = found.group(1) if self.regex.groups else found.group(0)
        return (answer or "").strip(), "answer pattern"


class ScoringBackend(ABC):
    """A model behind the Scorer contract."""

    model_id: str = "unknown"
    score_semantics: str = "score"
    factorised: bool = False
    # Instance parameters the backend reads (name -> what it means); any other is refused.
    parameters: Mapping[str, str] = {}

    def register_metrics(self, registry: CollectorRegistry) -> None:
        """Add backend-specific metrics to the server's registry (none by default)."""

    def spending_caps(self) -> common_pb2.SpendingCaps:
        """What one explanation may spend, as this backend enforces it (no caps by default), for Describe."""
        return common_pb2.SpendingCaps()

    def costs(self) -> scorer_pb2.Costs:
        """What scoring costs here, for Describe: one unit per coalition unless the backend says otherwise."""
        return scorer_pb2.Costs(unit="coalitions", coalition=1.0)

    def preferred_batch(self) -> int:
        """Coalitions per Score call this backend works best with (0: no preference), for Describe."""
        return 0

    def preferred_timeout(self) -> float:
        """Seconds a Score call of ``preferred_batch`` coalitions should be given (0: no preference)."""
        return 0.0

    @abstractmethod
    def prepare(self, instance: DecodedInstance) -> PreparedInstance:
        """Tokenise and set up the instance; raise InvalidArgument for what cannot be scored."""

    @abstractmethod
    def score(self, instance: PreparedInstance, masks: np.ndarray, call: ScoreCall) -> ScoreResult:
        """Answer one Score request: one value per row of the (B, m + n) bool mask array, and its cost."""

    def score_product(self, instance: PreparedInstance, image_masks: np.ndarray, text_masks: np.ndarray,
                      call: ScoreCall) -> ScoreResult:
        """Answer one ScoreProduct request: values of every (image mask, text mask) pair, image-major,
        flattened to (A * B,). By default the A * B coalitions are scored one by one through ``score``."""
        return self.score(instance, product_rows(image_masks, text_masks), call)

    def answer(self, instance: PreparedInstance, candidates: Sequence[str], call: ScoreCall) -> AnswerResult:
        """The model's own answer to the unmasked instance (the Answer RPC). With candidates, each is scored as
        Score scores the full coalition with the candidate in place of what the target is scored on (the caption
        of a dual encoder, the answer of a generative model or VQA classifier), and the highest wins; without,
        the model answers itself (greedy text, top class). By default: Unimplemented, this target cannot answer."""
        raise Unimplemented(f"this target cannot answer: {self.model_id} only scores masked inputs")

    def close(self) -> None:
        """Finish work in flight and release resources (nothing by default)."""


class ModelBackend(ScoringBackend):
    """A model that runs in this process: nothing is billed, so a dry run scores nothing and costs nothing."""

    @abstractmethod
    def forward(self, instance: PreparedInstance, masks: np.ndarray) -> np.ndarray:
        """The model's values for the (B, m + n) bool mask array: one float per row."""

    def forward_product(self, instance: PreparedInstance, image_masks: np.ndarray, text_masks: np.ndarray) -> np.ndarray:
        """The model's (A, B) values of every image mask with every text mask (by default through ``forward``)."""
        return self.forward(instance, product_rows(image_masks, text_masks)).reshape(len(image_masks), len(text_masks))

    def score(self, instance: PreparedInstance, masks: np.ndarray, call: ScoreCall) -> ScoreResult:
        if call.dry_run:
            return ScoreResult(np.zeros(len(masks)))
        return ScoreResult(self.forward(instance, masks))

    def score_product(self, instance: PreparedInstance, image_masks: np.ndarray, text_masks: np.ndarray,
                      call: ScoreCall) -> ScoreResult:
        if call.dry_run:
            return ScoreResult(np.zeros(len(image_masks) * len(text_masks)))
        return ScoreResult(self.forward_product(instance, image_masks, text_masks).ravel())

