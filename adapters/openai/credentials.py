"""The adapter's credentials: the API key, and whatever the base URL carries.

A key is stripped of surrounding whitespace and must then be printable ASCII without
spaces: anything else cannot go in an HTTP header, and the HTTP library's complaint would
quote the header, key included. A base URL's user name and password are sent as HTTP
Basic auth and its query (``?key=...`` tokens, ``api-version``) with every request, but
only its display form, without userinfo and with the query values hidden, is ever shown:
in ``model_id``, messages, logs and the cache key.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Optional
from urllib.parse import unquote, unquote_plus, urlsplit, urlunsplit

from .retry import REDACTED


def _flaw(char: str) -> Optional[str]:
    """What makes ``char`` unfit for a key, if anything."""
    if not char.isascii():
        return "a non-ASCII character"
    if not char.isprintable():
        return "a control character"
    if char.isspace():
        return "a space"
    return None


def clean_key(key: str, source: str) -> str:
    """``key`` without surrounding whitespace; refuses, without quoting it, a key no header can carry."""
    stripped = key.strip()
    for position, char in enumerate(stripped, 1):
        flaw = _flaw(char)
        if flaw:
            raise ValueError(f"the API key from {source} contains {flaw} at position {position} of "
                             f"{len(stripped)} (surrounding whitespace removed); keys are printable ASCII without spaces")
    return stripped


@dataclass(frozen=True)
class EndpointURL:
    """A base URL split into what requests use, what may be shown, and what must never be."""

    request: str                                    # scheme, host, port and path: what the client is given
    display: str                                    # no userinfo, query values hidden: shown and hashed
    query: tuple[tuple[str, str], ...] = field(repr=False)  # sent with every request
    auth: Optional[tuple[str, str]] = field(repr=False)     # user and password, for HTTP Basic auth
    secrets: tuple[str, ...] = field(repr=False)            # password, Basic header, query values


def _split_query(raw: str) -> tuple[list[tuple[str, str]], list[str], list[str]]:
    """A query string's decoded (name, value) pairs, its items with values hidden, and its values as secrets."""
    pairs, shown, secrets = [], [], []
    for item in filter(None, raw.split("&")):
        name, _, value = item.partition("=")
        pairs.append((unquote_plus(name), unquote_plus(value)))
        shown.append(f"{name}={REDACTED if value else ''}")
        secrets += [value, unquote_plus(value)]
    return pairs, shown, secrets


def _split_userinfo(userinfo: str) -> tuple[tuple[str, str], list[str]]:
    """Basic auth credentials from ``user:password``, and the secrets among them with their header."""
    user, _, password = userinfo.partition(":")
    auth = (unquote(user), unquote(password))
    token = base64.b64encode(":".join(auth).encode()).decode()  # as httpx builds the header
    # Without a password the user name is the token (https://TOKEN@host/v1): as secret as a password.
    secrets = [password, auth[1]] if password else [user, auth[0]]
    return auth, secrets + [token, f"Basic {token}"]


def parse_base_url(url: str) -> EndpointURL:
    """Split a base URL into its request form, display form, query and Basic auth credentials."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("the base URL must start with http:// or https:// and name a host, "
                         "e.g. https://api.openai.com/v1")
    userinfo, _, host = parts.netloc.rpartition("@")
    request = urlunsplit((parts.scheme, host, parts.path, "", ""))
    query, shown, secrets = _split_query(parts.query)
    auth = None
    if userinfo:
        auth, more = _split_userinfo(userinfo)
        secrets += more
    display = request + ("?" + "&".join(shown) if shown else "")
    return EndpointURL(request, display, tuple(query), auth, tuple(secrets))
