"""Bearer-token authentication of a server's callers, against a file of hashed tokens.

The tokens file has one line per identity, ``#`` starting a comment::

    alice sha256:<64 hex digits>                            # may call everything
    bob   sha256:<64 hex digits> methods=ListTargets        # may call only these methods
    carol sha256:<64 hex digits> max_in_flight=2            # at most 2 metered calls at once

Only the SHA-256 of each token is stored (``multishap token new IDENTITY`` makes a token and its
line); the file is re-read when it changes. :class:`TokenAuthenticator` is a server interceptor: a call without ``authorization: Bearer
<token>`` metadata is refused UNAUTHENTICATED, an unknown token too, a method the identity may not
call PERMISSION_DENIED, and a metered call (an explanation) over the identity's ``max_in_flight``
RESOURCE_EXHAUSTED. It raises the classes of :mod:`.errors`, so the interceptor of :mod:`.runtime`
around it answers, counts and logs them like any handler's error; the token itself is never logged.
Health checks and server reflection need no token (probes). Handlers read the caller's identity
with :func:`current_identity`, and the RPC's log line carries it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import threading
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Sequence

import grpc

from multishap.service.rpc.errors import MethodNotAllowed, MissingToken, ResourceExhausted, UnknownToken
from multishap.service.rpc.runtime import annotate
from multishap.service.rpc.watched import FileStamps

# How identities and method names are spelled in the tokens file.
IDENTITY_RULE = "1 to 64 letters, digits, _ . @ - (starting with a letter or digit)"
# Services any caller may call without a token: probes and tooling.
OPEN_SERVICES = ("grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection",
                 "grpc.reflection.v1.ServerReflection")
IDENTITY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
METHOD = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
_BEARER = "bearer "

log = logging.getLogger("multishap")
_identity: ContextVar[str] = ContextVar("multishap_identity", default="")


def current_identity() -> str:
    """The identity whose token authenticated the RPC this thread is serving ("" when auth is off)."""
    return _identity.get()


def token_digest(token: str) -> str:
    """How the tokens file stores ``token``: ``sha256:`` and the hex SHA-256 of its UTF-8 bytes."""
    return "sha256:" + hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Identity:
    """One line of the tokens file: who, the token's digest, the methods allowed (None: all) and how many
    metered calls may be in flight at once (None: no bound)."""

    name: str
    digest: bytes
    methods: Optional[frozenset[str]] = None
    max_in_flight: Optional[int] = None


def _parse_line(where: str, text: str) -> Optional[Identity]:
    """The identity a line declares, None for a blank or comment line; ValueError naming ``where``."""
    words = text.split("#", 1)[0].split()
    if not words:
        return None
    if len(words) < 2 or not IDENTITY.fullmatch(words[0]) or not _DIGEST.fullmatch(words[1]):
        raise ValueError(f"{where}: expected 'IDENTITY sha256:<64 lowercase hex digits> [methods=A,B] "
                         f"[max_in_flight=N]' (an identity of {IDENTITY_RULE})")
    methods, max_in_flight = None, None
    for word in words[2:]:
        key, _, value = word.partition("=")
        if key == "methods" and methods is None:
            names = [m for m in value.split(",") if m]
            if not names or not all(METHOD.fullmatch(m) for m in names):
                raise ValueError(f"{where}: methods= needs method names separated by commas, e.g. "
                                 f"methods=ListTargets,Explain")
            methods = frozenset(names)
        elif key == "max_in_flight" and max_in_flight is None:
            if not value.isdigit() or int(value) < 1:
                raise ValueError(f"{where}: max_in_flight= needs a whole number of at least 1")
            max_in_flight = int(value)
        else:
            raise ValueError(f"{where}: unknown or repeated setting {key[:40]!r}; known: methods=, max_in_flight=")
    return Identity(words[0], _DIGEST.fullmatch(words[1]).group(1).encode("ascii"), methods, max_in_flight)


def load_tokens(path: Path) -> tuple[Identity, ...]:
    """The identities of a tokens file; ValueError naming the file and line when one is wrong."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or "not UTF-8 text"
        raise ValueError(f"the tokens file {str(path)!r} cannot be read: {reason}") from None
    identities, names = [], set()
    for n, line in enumerate(text.splitlines(), 1):
        identity = _parse_line(f"{path}:{n}", line)
        if identity is None:
            continue
        if identity.name in names:
            raise ValueError(f"{path}:{n}: identity {identity.name!r} is listed twice")
        names.add(identity.name)
        identities.append(identity)
    if not identities:
        raise ValueError(f"the tokens file {str(path)!r} lists no identity: add lines made by multishap token new")
    return tuple(identities)


class TokenFile:
    """The identities of a tokens file, re-read when its mtime, size or inode changes (a Kubernetes secret's
    update), so tokens are added and revoked without a restart; a changed file that does not parse is
    logged and the identities before it stay."""

    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        self._stamps = FileStamps([self._path])
        self._identities = load_tokens(self._path)
        self._lock = threading.Lock()

    def __call__(self) -> tuple[Identity, ...]:
        with self._lock:
            if self._stamps.changed():
                try:
                    self._identities = load_tokens(self._path)
                    log.info("tokens file %s reloaded: %d identities", self._path, len(self._identities))
                except ValueError as err:
                    log.warning("tokens file changed but was not reloaded (keeping the identities before): %s", err)
            return self._identities


class TokenAuthenticator(grpc.ServerInterceptor):
    """Checks every call's bearer token (except :data:`OPEN_SERVICES`'); sets :func:`current_identity`.

    ``identities`` gives the identities each call is checked against (a :class:`TokenFile`, or a fixed
    list); ``metered`` are the full method paths (``/package.Service/Method``) whose calls in flight count
    against an identity's ``max_in_flight``.
    """

    def __init__(self, identities: Callable[[], Sequence[Identity]], metered: Iterable[str] = ()) -> None:
        self._identities = identities
        self._metered = frozenset(metered)
        self._in_flight: dict[str, int] = {}
        self._lock = threading.Lock()

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        path = handler_call_details.method
        if handler is None or path.lstrip("/").split("/", 1)[0] in OPEN_SERVICES:
            return handler
        method = path.rsplit("/", 1)[-1]
        metered = path in self._metered
        kinds = [("unary_unary", grpc.unary_unary_rpc_method_handler, False),
                 ("unary_stream", grpc.unary_stream_rpc_method_handler, True),
                 ("stream_unary", grpc.stream_unary_rpc_method_handler, False),
                 ("stream_stream", grpc.stream_stream_rpc_method_handler, True)]
        for attribute, make, streams in kinds:
            behaviour = getattr(handler, attribute)
            if behaviour is not None:
                wrap = self._wrap_stream if streams else self._wrap_unary
                return make(wrap(behaviour, method, metered), request_deserializer=handler.request_deserializer,
                            response_serializer=handler.response_serializer)
        return handler

    def _identify(self, context: grpc.ServicerContext) -> Identity:
        """The identity whose token the call carries; else the refusal's error."""
        values = [v for k, v in context.invocation_metadata() if k == "authorization"]
        if len(values) != 1 or not isinstance(values[0], str) or not values[0].lower().startswith(_BEARER):
            raise MissingToken()
        digest = hashlib.sha256(values[0][len(_BEARER):].strip().encode("utf-8")).hexdigest().encode("ascii")
        found = None
        for identity in self._identities():
            if hmac.compare_digest(identity.digest, digest):
                found = identity
        if found is None:
            raise UnknownToken()
        return found

    def _admit(self, identity: Identity) -> None:
        """Count one more metered call of ``identity``; RESOURCE_EXHAUSTED past its ``max_in_flight``."""
        with self._lock:
            count = self._in_flight.get(identity.name, 0)
            if identity.max_in_flight is not None and count >= identity.max_in_flight:
                raise ResourceExhausted(f"identity {identity.name!r} already has max_in_flight={count} explanations "
                                        f"in flight; wait for one to finish", limit="max_in_flight")
            self._in_flight[identity.name] = count + 1

    def _release(self, identity: Identity) -> None:
        with self._lock:
            self._in_flight[identity.name] -= 1

    def _begin(self, context: grpc.ServicerContext, method: str, metered: bool) -> Identity:
        """Authenticate and admit the call; its identity goes into the RPC's log line, refused or not."""
        identity = self._identify(context)
        annotate(identity=identity.name)
        if identity.methods is not None and method not in identity.methods:
            raise MethodNotAllowed(identity.name, method)
        if metered:
            self._admit(identity)
        _identity.set(identity.name)
        return identity

    def _wrap_unary(self, behaviour: Callable, method: str, metered: bool) -> Callable:
        def wrapped(request, context):
            identity = self._begin(context, method, metered)
            try:
                return behaviour(request, context)
            finally:
                _identity.set("")
                if metered:
                    self._release(identity)

        return wrapped

    def _wrap_stream(self, behaviour: Callable, method: str, metered: bool) -> Callable:
        def wrapped(request, context) -> Iterator:
            identity = self._begin(context, method, metered)
            try:
                for reply in behaviour(request, context):
                    yield reply
                    _identity.set(identity.name)
            finally:
                _identity.set("")
                if metered:
                    self._release(identity)

        return wrapped


def authenticator(path: Path, metered: Iterable[str] = ()) -> TokenAuthenticator:
    """The interceptor for the tokens file at ``path`` (see :func:`load_tokens`)."""
    return TokenAuthenticator(TokenFile(path), metered)
