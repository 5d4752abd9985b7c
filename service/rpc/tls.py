"""TLS for every server and channel: the settings, checked PEM files, and the credentials built from them.

A server's certificate is reloaded without a restart: :func:`server_credentials` gives gRPC a fetcher
that it calls before every new connection's handshake; the fetcher looks at the files' status (mtime,
size, inode, so a Kubernetes secret's symlink swap counts) and re-reads them only when one changed.
New files that do not check out (half written, or a key that does not match its chain) are logged by
path and the server goes on with the certificates it has. Connections already open keep theirs.

A channel with a bearer token sends it as ``authorization: Bearer ...`` call credentials: over TLS, or
over gRPC's local credentials to a loopback address; never in the clear over the network.
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import grpc

from multishap.service.rpc.watched import FileStamps

log = logging.getLogger("multishap")


@dataclass(frozen=True)
class ServerTLS:
    """A server's certificate chain and key (PEM files); with ``client_ca``, clients must present a
    certificate that CA signed (mutual TLS)."""

    cert: Path
    key: Path
    client_ca: Optional[Path] = None


@dataclass(frozen=True)
class ClientTLS:
    """How a client checks the server: ``ca`` (PEM bundle; None: the system's roots), an optional
    client certificate and key for mutual TLS, and ``server_name`` to expect in the server's
    certificate instead of the address's host."""

    ca: Optional[Path] = None
    cert: Optional[Path] = None
    key: Optional[Path] = None
    server_name: Optional[str] = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ValueError("a TLS client certificate needs its key and a key its certificate: give both or neither")
        if self.server_name is not None and (not self.server_name or any(c.isspace() for c in self.server_name)):
            raise ValueError(f"the TLS server name must be a host name without spaces; got {self.server_name[:80]!r}")


TLSArg = Union[None, bool, ClientTLS]


def _read(path: Path, what: str) -> bytes:
    """The bytes of a PEM file; ValueError naming the file (never its content) when it cannot be read."""
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise ValueError(f"the TLS {what} file {str(path)!r} cannot be read: {err.strerror}") from None


def _check_chain(cert: Path, key: Path) -> None:
    """ValueError unless ``cert`` is a PEM chain and ``key`` an unencrypted PEM key that matches it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(str(cert), str(key), password=lambda: b"")
    except (ssl.SSLError, ValueError, TypeError):
        raise ValueError(f"the TLS certificate {str(cert)!r} and key {str(key)!r} are not a PEM certificate chain "
                         f"and the unencrypted PEM private key that matches it") from None


def _check_ca(path: Path, data: bytes) -> None:
    """ValueError unless ``data`` (read from ``path``) holds at least one PEM certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cadata=data.decode("ascii"))
    except (ssl.SSLError, ValueError, UnicodeDecodeError):
        raise ValueError(f"the TLS CA file {str(path)!r} is not a bundle of PEM certificates") from None


def _pair(cert: Path, key: Path) -> tuple[bytes, bytes]:
    """The key and chain bytes, checked."""
    key_bytes, chain = _read(key, "key"), _read(cert, "certificate")
    _check_chain(cert, key)
    return key_bytes, chain


def _ca(path: Path) -> bytes:
    data = _read(path, "CA")
    _check_ca(path, data)
    return data


class _Reloader:
    """Re-reads a server's PEM files when their status changes; gRPC calls it before each handshake."""

    def __init__(self, tls: ServerTLS) -> None:
        self._tls = tls
        self._stamps = FileStamps(p for p in (tls.cert, tls.key, tls.client_ca) if p is not None)
        self.initial = self._configuration()

    def _configuration(self) -> grpc.ServerCertificateConfiguration:
        key, chain = _pair(self._tls.cert, self._tls.key)
        client_ca = None if self._tls.client_ca is None else _ca(self._tls.client_ca)
        return grpc.ssl_server_certificate_configuration([(key, chain)], root_certificates=client_ca)

    def __call__(self) -> Optional[grpc.ServerCertificateConfiguration]:
        if not self._stamps.changed():
            return None
        try:
            configuration = self._configuration()
        except ValueError as err:
            log.warning("TLS files changed but were not reloaded (keeping the current ones): %s", err)
            return None
        log.info("TLS certificate reloaded from %s", self._tls.cert)
        return configuration


def server_credentials(tls: ServerTLS) -> grpc.ServerCredentials:
    """Credentials that serve ``tls``'s chain, reloaded when its files change, and require a client
    certificate when it names a client CA; ValueError when a file is missing or not PEM."""
    reloader = _Reloader(tls)
    return grpc.dynamic_ssl_server_credentials(reloader.initial, reloader,
                                               require_client_authentication=tls.client_ca is not None)


def client_tls(tls: TLSArg) -> Optional[ClientTLS]:
    """``tls`` as the SDK takes it (None or False: plaintext, True: the system's roots) as settings."""
    if tls is None or tls is False:
        return None
    if tls is True:
        return ClientTLS()
    if not isinstance(tls, ClientTLS):
        raise ValueError(f"tls must be None, True or a ClientTLS; got {type(tls).__name__}")
    return tls


def check_client_tls(tls: ClientTLS) -> ClientTLS:
    """``tls`` once its files are read and checked (as a configuration is loaded); ValueError naming the file."""
    _ssl_credentials(tls)
    return tls


def _ssl_credentials(tls: ClientTLS) -> grpc.ChannelCredentials:
    roots = None if tls.ca is None else _ca(tls.ca)
    if tls.cert is None or tls.key is None:
        return grpc.ssl_channel_credentials(root_certificates=roots)
    key, chain = _pair(tls.cert, tls.key)
    return grpc.ssl_channel_credentials(root_certificates=roots, private_key=key, certificate_chain=chain)


def is_loopback(address: str) -> bool:
    """Whether every host a gRPC target names is this machine (127.0.0.0/8, ::1, localhost, a unix socket)."""
    target = address.strip()
    if target.startswith(("unix:", "unix-abstract:")):
        return True
    for scheme in ("dns:///", "ipv4:", "ipv6:"):
        if target.startswith(scheme):
            target = target[len(scheme):]
            break
    hosts = []
    for part in target.split(","):
        part = part.strip()
        if part.startswith("["):
            hosts.append(part[1:part.find("]")] if "]" in part else part[1:])
        else:
            hosts.append(part.rsplit(":", 1)[0] if part.count(":") == 1 else part)
    return bool(hosts) and all(_loopback_host(h) for h in hosts)


def _loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def channel_credentials(address: str, tls: Optional[ClientTLS],
                        token: Optional[str]) -> Optional[grpc.ChannelCredentials]:
    """The credentials of a channel to ``address``: None for plaintext without a token; TLS (with the
    token as call credentials); or a token over local credentials to a loopback address. ValueError
    for a token that would travel in the clear to another machine, or a bad PEM file."""
    if token is not None:
        if not token or any(c.isspace() or not c.isprintable() for c in token):
            raise ValueError("the bearer token must be one word of printable characters (no spaces or new lines)")
        if tls is None and not is_loopback(address):
            raise ValueError(f"a bearer token is only sent over TLS to {address[:80]!r}, which is not a loopback "
                             f"address: turn TLS on (tls=True or a ClientTLS, --tls or --tls-ca)")
    if tls is None:
        if token is None:
            return None
        transport = grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP)
    else:
        transport = _ssl_credentials(tls)
    if token is None:
        return transport
    return grpc.composite_channel_credentials(transport, grpc.access_token_call_credentials(token))


def channel_options(tls: Optional[ClientTLS], options: Sequence[tuple[str, Any]] = ()) -> list[tuple[str, Any]]:
    """``options`` plus the server-name override of ``tls`` when it has one."""
    extra = [] if tls is None or tls.server_name is None else [("grpc.ssl_target_name_override", tls.server_name)]
    return list(options) + extra


def open_channel(address: str, tls: Optional[ClientTLS] = None, token: Optional[str] = None,
                 options: Sequence[tuple[str, Any]] = ()) -> grpc.Channel:
    """A blocking channel to ``address`` (see :func:`channel_credentials`)."""
    credentials = channel_credentials(address, tls, token)
    if credentials is None:
        return grpc.insecure_channel(address, options=list(options))
    return grpc.secure_channel(address, credentials, options=channel_options(tls, options))


def open_aio_channel(address: str, tls: Optional[ClientTLS] = None, token: Optional[str] = None,
                     options: Sequence[tuple[str, Any]] = ()) -> grpc.aio.Channel:
    """An asyncio channel to ``address`` (see :func:`channel_credentials`)."""
    credentials = channel_credentials(address, tls, token)
    if credentials is None:
        return grpc.aio.insecure_channel(address, options=list(options))
    return grpc.aio.secure_channel(address, credentials, options=channel_options(tls, options))
