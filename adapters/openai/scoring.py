"""From an endpoint's log-probabilities to the score of the target answer.

Two ways to read the answer's probability:

- **top log-probabilities** (any OpenAI-compatible endpoint): ask for one completion token
  with ``top_logprobs`` alternatives and add up the probabilities of the listed tokens that
  are the target (after stripping whitespace and ignoring case, or exactly, or by token id
  where a server returns ids). When the target is not listed, its probability is at most
  that of the least likely listed token per spelling, and at most what the listed ones
  leave over: the score is the bound ``min(s * p_k, 1 - sum of listed p)``, where s is the
  number of spellings that match (1 for exact and token-id matching; for normalized
  matching the lower, Capitalised and UPPER forms, each with and without a leading space),
  ``1 - sum`` alone when fewer than k were listed; the row is flagged as bounded.
- **prompt log-probabilities** (vLLM's ``prompt_logprobs``): send the answer as the start of
  the assistant's reply and read the log-probabilities of its own tokens, so multi-token
  answers are scored exactly: the sum over the trailing prompt tokens that spell the answer.

The score is the probability, or its natural log (``score="logprob"``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

from multishap.service.rpc.errors import shown

MATCHES = ("normalized", "exact")
SCORES = ("prob", "logprob")
TOKEN_ID_PREFIX = "token_id:"
_FLOOR = 1e-300


class MalformedAnswer(Exception):
    """The endpoint's answer is not valid JSON (cut off, a proxy's error page): worth retrying."""


class UnusableAnswer(Exception):
    """Valid JSON without what scoring needs (no log-probabilities): retrying would pay again for nothing."""

    def __init__(self, message: str, prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
        super().__init__(message)
        self.prompt_tokens, self.completion_tokens = prompt_tokens, completion_tokens


@dataclass(frozen=True)
class Answer:
    """What is kept of one paid answer: enough to score any target without paying again, or the text of a
    greedy completion (the model's own answer)."""

    top: tuple[tuple[str, float], ...] = ()        # (token, logprob) alternatives of the first token
    prompt_tail: tuple[tuple[str, float], ...] = ()  # (decoded token, logprob) of the prompt's last tokens
    prompt_tokens: int = 0
    completion_tokens: int = 0
    text: str = ""                                 # a greedy completion's message content

    def to_json(self) -> dict[str, Any]:
        return {"top": [list(t) for t in self.top], "prompt_tail": [list(t) for t in self.prompt_tail],
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens, "text": self.text}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Answer":
        return cls(tuple((str(t), float(lp)) for t, lp in data["top"]),
                   tuple((str(t), float(lp)) for t, lp in data["prompt_tail"]),
                   int(data["prompt_tokens"]), int(data["completion_tokens"]), str(data.get("text", "")))


@dataclass(frozen=True)
class ScoringOptions:
    """How a paid answer becomes a score."""

    score: str = "prob"
    match: str = "normalized"
    top_logprobs: int = 20
    prompt_logprobs: bool = False
    target_token_ids: frozenset[int] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if self.score not in SCORES:
            raise ValueError(f"score must be one of {', '.join(SCORES)}; got {self.score!r}")
        if self.match not in MATCHES:
            raise ValueError(f"match must be one of {', '.join(MATCHES)}; got {self.match!r}")
        if not 1 <= self.top_logprobs <= 20:
            raise ValueError(f"top_logprobs must be between 1 and 20 (the API's limit); got {self.top_logprobs}")


def _normalize(token: str) -> str:
    return token.strip().casefold()


def _is_target(token: str, target: str, options: ScoringOptions) -> bool:
    if options.target_token_ids:
        return token.startswith(TOKEN_ID_PREFIX) and token[len(TOKEN_ID_PREFIX):].isdigit() \
            and int(token[len(TOKEN_ID_PREFIX):]) in options.target_token_ids
    if options.match == "exact":
        return token == target
    return _normalize(token) == _normalize(target)


def probability(answer: Answer, target: str, options: ScoringOptions) -> tuple[float, bool]:
    """(p, bounded): the target's probability, or the documented upper bound when it was not listed."""
    if options.prompt_logprobs:
        return math.exp(prompt_logprob(answer.prompt_tail, target)), False
    listed = [math.exp(lp) for _, lp in answer.top]
    hits = [p for (token, _), p in zip(answer.top, listed) if _is_target(token, target, options)]
    if hits:
        return min(1.0, math.fsum(hits)), False
    rest = max(0.0, 1.0 - math.fsum(listed))
    if len(listed) >= options.top_logprobs:
        return min(spellings(target, options) * min(listed), rest), True
    return rest, True


def spellings(target: str, options: ScoringOptions) -> int:
    """How many distinct unlisted tokens could be the target, for the missing-target bound."""
    if options.target_token_ids or options.match == "exact":
        return 1
    word = target.strip()
    forms = {word.lower(), word.capitalize(), word.upper()}
    return len(forms) * 2


def score(answer: Answer, target: str, options: ScoringOptions) -> tuple[float, bool]:
    """(score, bounded) in the unit the options ask for."""
    p, bounded = probability(answer, target, options)
    return (math.log(max(p, _FLOOR)) if options.score == "logprob" else p), bounded


def prompt_logprob(tail: tuple[tuple[str, float], ...], target: str) -> float:
    """Sum of the log-probabilities of the trailing prompt tokens that spell ``target``."""
    wanted, text, total = target.strip(), "", 0.0
    for token, logprob in reversed(tail):
        text, total = token + text, total + logprob
        if text.strip() == wanted:
            return total
        if len(text.strip()) > len(wanted):
            break
    raise UnusableAnswer(
        f"the prompt's last tokens {shown(''.join(t for t, _ in tail))} do not end with the target {shown(target)}: "
        "the server's chat template must leave the assistant's answer open (continue_final_message)"
    )


def _usage(body: dict[str, Any]) -> tuple[int, int]:
    usage = body.get("usage") or {}
    return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)


def parse_answer(body: Any, options: ScoringOptions, target: str, tail_length: int = 64) -> Answer:
    """The parts of a chat-completion JSON body that scoring needs; UnusableAnswer when absent."""
    if not isinstance(body, dict):
        raise UnusableAnswer(f"the answer is JSON but not an object ({type(body).__name__})")
    prompt_tokens, completion_tokens = _usage(body)
    if options.prompt_logprobs:
        entries = body.get("prompt_logprobs")
        if not isinstance(entries, list) or not entries:
            raise UnusableAnswer("the answer has no prompt_logprobs: the server does not support them (vLLM does; "
                                 "turn the prompt-logprobs option off for other servers)",
                                 prompt_tokens, completion_tokens)
        tail = []
        for entry in entries[-tail_length:]:
            if not isinstance(entry, dict) or not entry:
                continue
            first = next(iter(entry.values()))
            tail.append((str(first.get("decoded_token", "")), float(first["logprob"])))
        try:
            prompt_logprob(tuple(tail), target)
        except UnusableAnswer as exc:
            raise UnusableAnswer(str(exc), prompt_tokens, completion_tokens) from None
        return Answer(prompt_tail=tuple(tail), prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
    try:
        first = body["choices"][0]["logprobs"]["content"][0]
        top = tuple((str(t["token"]), float(t["logprob"])) for t in first["top_logprobs"])
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise UnusableAnswer(
            "the answer has no top log-probabilities for its first token "
            f"(missing {exc.args[0] if exc.args else type(exc).__name__!r}): the model or server must support "
            "logprobs=true with top_logprobs", prompt_tokens, completion_tokens
        ) from None
    if not top:
        top = ((str(first.get("token", "")), float(first.get("logprob", 0.0))),)
    return Answer(top=top, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)


def parse_text(body: Any) -> Answer:
    """The message text of a greedy chat completion (the model's own answer); UnusableAnswer when there is none."""
    if not isinstance(body, dict):
        raise UnusableAnswer(f"the answer is JSON but not an object ({type(body).__name__})")
    prompt_tokens, completion_tokens = _usage(body)
    try:
        text = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        text = None
    if not isinstance(text, str):
        raise UnusableAnswer("the answer has no message text", prompt_tokens, completion_tokens)
    return Answer(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, text=text)


def bounded_note(options: ScoringOptions) -> Optional[str]:
    """What a bounded score means under these options, for Describe's score semantics."""
    if options.prompt_logprobs:
        return None
    return (f"min(spellings x p of the {options.top_logprobs}th listed token, 1 - sum of listed) when the target "
            "is not listed")
