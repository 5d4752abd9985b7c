"""A local chat-completions endpoint whose "model" is a synthetic game, with fault injection.

It speaks the OpenAI chat-completions API over real HTTP (no streaming). For each request
it decodes the coalition from what it received, independently of the adapter's renderer:
every patch of the PNG must equal the photo or the baseline exactly, every word of the
prompt the original word or the placeholder; anything else is a 400. The answer's log-
probability of the target is ``logprob_of(game(coalition))``, so an explanation through
the adapter can be checked against the game's exact interactions.

Faults are drawn per request from a seeded generator: 429 with retry-after(-ms), 500,
answers slower than the client's timeout, malformed JSON and dropped connections, and on
request answers without log-probabilities ("unusable"). A request must carry the API key
(or, when given, HTTP Basic credentials) and any required query parameters; a refusal
echoes the credentials it got, as some servers do, so tests can check they go no further. The
server counts requests per coalition and records arrival times, to measure its own rate.
It bills ~4 characters a token plus OpenAI's image rule (85 + 170 per 512-pixel tile). A
request without log-probabilities (a model's own answer) gets a two-line text whose first
line is "Answer: " and the most likely token.
Used by the tests and by ``bench/openai.py``; also handy to rehearse an audit offline.
"""

from __future__ import annotations

import base64
import io
import json
import random
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Optional
from urllib.parse import parse_qsl

import numpy as np
from PIL import Image, ImageFilter

FAULTS = ("429", "500", "slow", "malformed", "drop")  # the transient ones; "unusable" (no logprobs) is another


@dataclass(frozen=True)
class FaultPlan:
    """Which share of requests fail, and how."""

    rate: float = 0.0
    kinds: tuple[str, ...] = FAULTS
    retry_after_ms: int = 20
    slow_seconds: float = 1.0
    seed: int = 0


@dataclass(frozen=True)
class SimulatedTask:
    """The instance the endpoint expects, as the adapter is configured to render it."""

    image: np.ndarray           # (H, W, 3) uint8, as sent in the Instance
    text: str
    target: str
    rows: int
    cols: int
    template: str = "{text}\nAnswer with one word."
    placeholder: str = "___"
    image_size: int = 512
    baseline: str = "zero"      # zero (black), mean or blur
    blur_radius: float = 30.0


@dataclass
class Traffic:
    """What the server saw."""

    arrivals: list[float] = field(default_factory=list)
    received: Counter = field(default_factory=Counter)   # coalition bytes -> requests
    answered: Counter = field(default_factory=Counter)   # coalition bytes -> 200 answers
    faults: Counter = field(default_factory=Counter)
    unauthorized: int = 0

    def summary(self) -> str:
        """One line on what arrived: requests, answers, refused keys and each injected fault."""
        faults = ", ".join(f"{count} {kind}" for kind, count in sorted(self.faults.items())) or "none"
        return (f"{len(self.arrivals)} requests, {sum(self.answered.values())} answered, "
                f"{self.unauthorized} refused for their key; injected faults: {faults}")

    def max_in_window(self, seconds: float) -> int:
        """Most requests that arrived within any window of ``seconds``."""
        times = sorted(self.arrivals)
        best, lo = 0, 0
        for hi, t in enumerate(times):
            while t - times[lo] >= seconds:
                lo += 1
            best = max(best, hi - lo + 1)
        return best


class _Expected:
    """The photo and baseline as they should arrive, and the grid, computed from the task alone."""

    def __init__(self, task: SimulatedTask) -> None:
        h, w = task.image.shape[:2]
        scale = min(1.0, task.image_size / max(h, w))
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        original = Image.fromarray(task.image).convert("RGB")
        sent = original if size == (w, h) else original.resize(size, Image.BICUBIC)
        self.photo = np.asarray(sent, dtype=np.uint8)
        if task.baseline == "zero":
            self.base = np.zeros_like(self.photo)
        elif task.baseline == "mean":
            mean = (np.asarray(sent, dtype=np.float32) / 255.0).mean(axis=(0, 1))
            self.base = np.broadcast_to(np.round(mean * 255.0).astype(np.uint8), self.photo.shape)
        else:
            blurred = original.filter(ImageFilter.GaussianBlur(task.blur_radius))
            self.base = np.asarray(blurred.resize(size, Image.BICUBIC), dtype=np.uint8)
        ys = np.round(np.linspace(0, size[1], task.rows + 1)).astype(int)
        xs = np.round(np.linspace(0, size[0], task.cols + 1)).astype(int)
        self.cells = [(ys[r], ys[r + 1], xs[c], xs[c + 1]) for r in range(task.rows) for c in range(task.cols)]
        self.words = task.text.split()
        head, _, tail = task.template.partition("{text}")
        self.head, self.tail, self.placeholder = head, tail, task.placeholder

    def decode(self, image: np.ndarray, prompt: str) -> np.ndarray:
        if image.shape != self.photo.shape:
            raise ValueError(f"the image is {image.shape[1]}x{image.shape[0]}, expected "
                             f"{self.photo.shape[1]}x{self.photo.shape[0]}")
        patches = []
        for k, (y0, y1, x0, x1) in enumerate(self.cells):
            got = image[y0:y1, x0:x1]
            if np.array_equal(got, self.photo[y0:y1, x0:x1]):
                patches.append(True)
            elif np.array_equal(got, self.base[y0:y1, x0:x1]):
                patches.append(False)
            else:
                raise ValueError(f"patch {k} is neither the photo nor the baseline")
        if not (prompt.startswith(self.head) and prompt.endswith(self.tail)):
            raise ValueError("the prompt does not follow the template")
        words = prompt[len(self.head): len(prompt) - len(self.tail)].split()
        if len(words) != len(self.words):
            raise ValueError(f"the prompt has {len(words)} words, expected {len(self.words)}")
        tokens = []
        for got, want in zip(words, self.words):
            if got not in (want, self.placeholder):
                raise ValueError(f"word {got!r} is neither {want!r} nor the placeholder")
            tokens.append(got == want)
        return np.array(patches + tokens, dtype=bool)


class SimulatedEndpoint:
    """A threaded HTTP server on 127.0.0.1 speaking /v1/chat/completions."""

    def __init__(self, task: SimulatedTask, game: Callable[[np.ndarray], np.ndarray],
                 logprob_of: Callable[[float], float], api_key: str = "sk-test", faults: FaultPlan = FaultPlan(),
                 latency: float = 0.0, missing: Optional[Callable[[np.ndarray], bool]] = None,
                 port: int = 0, basic: Optional[tuple[str, str]] = None,
                 query: Optional[dict[str, str]] = None) -> None:
        self.task, self.game, self.logprob_of = task, game, logprob_of
        self.api_key, self.faults, self.latency = api_key, faults, latency
        token = base64.b64encode(":".join(basic).encode()).decode() if basic else None
        self.authorization = f"Basic {token}" if basic else f"Bearer {api_key}"
        self.query = query or {}
        self.missing = missing or (lambda mask: False)
        self.expected = _Expected(task)
        self.traffic = Traffic()
        self._lock = threading.Lock()
        self._rng = random.Random(faults.seed)
        handler = type("Handler", (_Handler,), {"endpoint": self})
        self._server = _Server(("127.0.0.1", port), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "SimulatedEndpoint":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def authorized(self, authorization: str, query: str) -> bool:
        """Whether a request carries the expected Authorization header and query parameters."""
        given = dict(parse_qsl(query, keep_blank_values=True))
        return authorization == self.authorization and all(given.get(k) == v for k, v in self.query.items())

    def draw_fault(self) -> Optional[str]:
        with self._lock:
            if self.faults.rate and self._rng.random() < self.faults.rate:
                return self._rng.choice(self.faults.kinds)
        return None

    def answer(self, body: dict) -> tuple[int, dict]:
        """(HTTP status, JSON) for a well-formed request."""
        messages = body.get("messages") or []
        user = next((m for m in messages if m.get("role") == "user"), None)
        if user is None or not isinstance(user.get("content"), list):
            return 400, _error("the request needs a user message with image and text parts")
        try:
            url = next(p["image_url"]["url"] for p in user["content"] if p.get("type") == "image_url")
            prompt = next(p["text"] for p in user["content"] if p.get("type") == "text")
            png = base64.b64decode(url.split(",", 1)[1])
            image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
            mask = self.expected.decode(image, prompt)
        except (StopIteration, KeyError, IndexError, ValueError, OSError) as exc:
            return 400, _error(f"could not read the masked input: {exc}")
        key = np.packbits(mask).tobytes()
        with self._lock:
            self.traffic.received[key] += 1
        value = float(self.game(mask[None, :])[0])
        logprob = float(self.logprob_of(value))
        tiles = -(-image.shape[0] // 512) * -(-image.shape[1] // 512)
        usage = {"prompt_tokens": len(prompt) // 4 + 85 + 170 * tiles, "completion_tokens": 1}
        usage["total_tokens"] = usage["prompt_tokens"] + 1
        if "prompt_logprobs" in body:
            reply = _prompt_logprobs_reply(body, self.task.target, logprob)
        elif not body.get("logprobs"):
            reply = _plain_reply(self.task.target, logprob, self.missing(mask))
        else:
            reply = _top_logprobs_reply(self.task.target, logprob, int(body.get("top_logprobs") or 0),
                                        self.missing(mask), bool(body.get("return_tokens_as_token_ids")))
        reply.update(id="chatcmpl-sim", object="chat.completion", created=int(time.time()),
                     model=body.get("model", "sim"), usage=usage)
        with self._lock:
            self.traffic.answered[key] += 1
        return 200, reply


def game_endpoint(image: bytes, text: str, target: str, rows: int, cols: int, family: str, seed: int, api_key: str,
                  faults: FaultPlan = FaultPlan(), latency: float = 0.0, port: int = 0, **render) -> SimulatedEndpoint:
    """An endpoint whose "model" is the synthetic game ``family`` (seeded) over this instance's patches and words,
    for rehearsing an audit offline (``multishap simulator``).

    The target's log-probability is v(S) - shift, with shift = sum of |a_T| + 0.5 so that it stays below 0;
    a constant changes no interaction, so the adapter's ``--score logprob`` explanation is the game's exact
    Phi. ``render`` takes SimulatedTask's template, placeholder, image_size and baseline, which must match
    the adapter's options. Only games with Moebius terms (not mlp or bilinear) have such a bound.
    """
    from multishap.service.math.games import FAMILIES, MobiusGame, make_game

    try:
        pixels = np.asarray(Image.open(io.BytesIO(image)).convert("RGB"))
    except OSError as exc:
        raise ValueError(f"the image could not be decoded ({type(exc).__name__})") from None
    if family not in FAMILIES:
        raise ValueError(f"unknown game family {family!r}; choose one of {', '.join(FAMILIES)}")
    game = make_game(family, rows * cols, len(text.split()), seed)
    if not isinstance(game, MobiusGame):
        raise ValueError(f"the simulator needs a game with Moebius terms, whose values it can bound below 0; "
                         f"{family} has none")
    unknown = sorted(set(faults.kinds) - set(FAULTS) - {"unusable"})
    if unknown:
        raise ValueError(f"unknown fault kind {unknown[0]!r}; choose from {', '.join(FAULTS)}, unusable")
    shift = sum(abs(coef) for _, coef in game.terms) + 0.5
    task = SimulatedTask(pixels, text, target, rows, cols, **render)
    return SimulatedEndpoint(task, game, lambda value: value - shift, api_key=api_key, faults=faults,
                             latency=latency, port=port)


TARGET_TOKEN_ID = 9454


def _error(message: str, kind: str = "invalid_request_error") -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def _distractors(count: int, mass: float, as_ids: bool) -> list[dict]:
    """``count`` other tokens sharing ``mass`` of probability, in decreasing order."""
    weights = np.arange(count, 0, -1, dtype=np.float64)
    probs = mass * weights / weights.sum()
    return [{"token": f"token_id:{1000 + i}" if as_ids else f"other{i}", "logprob": float(np.log(p)), "bytes": None}
            for i, p in enumerate(probs)]


def _top_logprobs_reply(target: str, logprob: float, k: int, missing: bool, as_ids: bool) -> dict:
    """The target split over two spellings (" Yes" and "yes"), the rest to distractors."""
    p = float(np.exp(logprob))
    if missing:
        top = _distractors(max(k, 1), (1.0 - p) * 0.9, as_ids)
    else:
        spellings = [f"token_id:{TARGET_TOKEN_ID}"] if as_ids else [" " + target.capitalize(), target.lower()]
        shares = [1.0] if as_ids else [0.75, 0.25]
        hits = [{"token": s, "logprob": logprob + float(np.log(w)), "bytes": None} for s, w in zip(spellings, shares)]
        top = sorted(hits + _distractors(max(k - len(hits), 0), (1.0 - p) * 0.5, as_ids),
                     key=lambda t: -t["logprob"])[: max(k, 1)]
    first = dict(top[0])
    content = [{**first, "top_logprobs": top[:k] if k else []}]
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": first["token"]},
                         "logprobs": {"content": content}, "finish_reason": "length"}]}


def _plain_reply(target: str, logprob: float, missing: bool) -> dict:
    """A completion without log-probabilities: "Answer: <the most likely token>" and a second line."""
    word = _top_logprobs_reply(target, logprob, 1, missing, False)["choices"][0]["message"]["content"].strip()
    text = f"Answer: {word}\nThe simulator answers with its most likely token."
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}


def _prompt_logprobs_reply(body: dict, target: str, logprob: float) -> dict:
    """vLLM's prompt_logprobs: a null, a few template tokens, then the answer in 3-character tokens."""
    last = (body.get("messages") or [{}])[-1]
    if last.get("role") != "assistant" or last.get("content") != target:
        return {"choices": [], "prompt_logprobs": None}
    pieces = [target[i: i + 3] for i in range(0, len(target), 3)]
    entries: list = [None] + [{str(10 + i): {"logprob": -1.0, "rank": 1, "decoded_token": t}}
                              for i, t in enumerate(["<|user|>", " ...", "<|assistant|>"])]
    entries += [{str(100 + i): {"logprob": logprob / len(pieces), "rank": 1, "decoded_token": piece}}
                for i, piece in enumerate(pieces)]
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": "."}, "finish_reason": "length"}],
            "prompt_logprobs": entries}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # a burst of new connections must not be refused

    def handle_error(self, request, client_address) -> None:
        """A client that gave up on a slow answer closed its end: nothing to report; the rest is."""
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    endpoint: SimulatedEndpoint
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's name
        pass

    def _send(self, status: int, payload: bytes, headers: Optional[dict] = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        ep = self.endpoint
        with ep._lock:
            ep.traffic.arrivals.append(time.monotonic())
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        path, _, query = self.path.partition("?")
        if path.rstrip("/") != "/v1/chat/completions":
            return self._send(404, json.dumps(_error(f"no route {self.path}")).encode())
        authorization = self.headers.get("Authorization", "")
        if not ep.authorized(authorization, query):
            with ep._lock:
                ep.traffic.unauthorized += 1
            given = authorization.removeprefix("Bearer ") + (f" with ?{query}" if query else "")
            return self._send(401, json.dumps(_error(f"Incorrect API key provided: {given}.",
                                                     "invalid_api_key")).encode())
        fault = ep.draw_fault()
        if fault:
            with ep._lock:
                ep.traffic.faults[fault] += 1
        if fault == "drop":
            self.close_connection = True
            return
        if fault == "429":
            return self._send(429, json.dumps(_error("Rate limit reached", "rate_limit_exceeded")).encode(),
                              {"retry-after-ms": str(ep.faults.retry_after_ms), "retry-after": "1"})
        if fault == "500":
            return self._send(500, json.dumps(_error("The server had an error", "server_error")).encode())
        if fault == "slow":
            time.sleep(ep.faults.slow_seconds)
        elif ep.latency:
            time.sleep(ep.latency)
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            return self._send(400, json.dumps(_error("the body is not JSON")).encode())
        status, reply = ep.answer(body)
        if fault == "unusable":
            for choice in reply.get("choices", []):
                choice.pop("logprobs", None)
        payload = json.dumps(reply).encode()
        if fault == "malformed":
            payload = payload[: len(payload) // 2]
        self._send(status, payload)
