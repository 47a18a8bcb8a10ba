"""SSRF guard for the fetcher: never open a connection to a private, loopback or otherwise non-public address.

Reddit links are chosen by strangers, so a link (or a redirect it answers with) may point at the cloud metadata
service (``http://169.254.169.254/``), the build machine itself or the private network it sits in. Checking the URL
is not enough: a public hostname can resolve to a private address, and a rebinding DNS server can answer the check
and the connection differently. So the check lives in the httpx network backend: it resolves the host once, vets
every address, and connects to a vetted IP address itself. httpcore still wraps TLS with the hostname, so SNI and
certificate checks are unchanged. Every hop of a redirect chain opens its connection through the same backend.

Each (host, port) is resolved and vetted once per backend (one backend per fetch_to_warc call, so once per shard);
later connections reuse the vetted addresses, so a shard of 10k URLs on one host asks DNS once, and every address
connected to is still one the policy passed. Failed resolutions and refusals are not cached: a retry resolves
again. The cache outlives DNS TTLs only for the length of one shard.
"""
from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass

import anyio
import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Checked in this order; the first that applies names the refusal. "not_global" catches what the others miss,
# such as the carrier-grade NAT range 100.64.0.0/10.
_BLOCKED_PROPERTIES = ("unspecified", "loopback", "link_local", "multicast", "reserved", "private", "site_local")


def block_reason(ip: IPAddress) -> str | None:
    """Why a connection to ``ip`` is refused (``"loopback"``, ``"private"``, …), or None for a public address.

    IPv6 addresses that embed an IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``, 6to4 ``2002::/16``) are judged by the
    IPv4 address they reach.
    """
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is not None:
            return block_reason(embedded)
    for prop in _BLOCKED_PROPERTIES:
        if getattr(ip, f"is_{prop}", False):
            return prop
    return None if ip.is_global else "not_global"


class BlockedAddressError(Exception):
    """The host resolved only to addresses the policy refuses; raised before any connection is opened."""

    def __init__(self, host: str, ip: str, reason: str) -> None:
        super().__init__(
            f"refused to connect to {host} at {ip} ({reason} address); "
            "list the host, IP or network in FetchConfig.allow_hosts if it is meant to be fetched"
        )
        self.host, self.ip, self.reason = host, ip, reason


@dataclass(frozen=True)
class AddressPolicy:
    """Which non-public destinations are nevertheless allowed: exact hostnames, or IP networks (a bare IP is a /32)."""

    allowed_names: frozenset[str] = frozenset()
    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_allow_hosts(cls, allow_hosts: Iterable[str]) -> AddressPolicy:
        """Split ``FetchConfig.allow_hosts`` entries into IP networks (``"10.0.0.0/8"``, ``"::1"``) and hostnames."""
        names, networks = set(), []
        for entry in allow_hosts:
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                names.add(_canonical_name(entry))
        return cls(frozenset(names), tuple(networks))

    def vet(self, host: str, addresses: Iterable[IPAddress]) -> list[IPAddress]:
        """The addresses of ``host`` that may be connected to; raises BlockedAddressError when there are none.

        A host whose name is allowed may use any address. Otherwise each address must be public or inside an
        allowed network; refused addresses are dropped, so a name resolving to a public and a private address is
        only ever reached at the public one.
        """
        addresses = list(addresses)
        if _canonical_name(host) in self.allowed_names:
            return addresses
        vetted, refused = [], []
        for ip in addresses:
            reason = None if any(ip in net for net in self.allowed_networks) else block_reason(ip)
            (refused if reason else vetted).append((ip, reason))
        if not vetted:
            ip, reason = refused[0]
            raise BlockedAddressError(host, str(ip), reason)
        return [ip for ip, _ in vetted]


def _canonical_name(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that resolves, vets (AddressPolicy) and connects to the vetted IP address."""

    def __init__(self, policy: AddressPolicy, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._policy = policy
        self._inner = inner or httpcore.AnyIOBackend()
        self._vetted: dict[tuple[str, int], list[IPAddress]] = {}
        self._resolving: dict[tuple[str, int], anyio.Lock] = {}  # first connections to a host wait for one lookup

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if not 0 < port < 65536:  # else getaddrinfo/connect raise OverflowError (in an ExceptionGroup from anyio)
            raise httpcore.ConnectError(f"cannot connect to {host} on port {port}: ports are 1-65535")
        last_error: Exception | None = None
        for ip in await self._vetted_addresses(host, port, timeout):
            try:
                return await self._inner.connect_tcp(str(ip), port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:  # try the host's next address
                last_error = exc
        assert last_error is not None  # vet() returns at least one address or raises
        raise last_error

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError(f"unix sockets are never fetched ({path})")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)

    async def _vetted_addresses(self, host: str, port: int, timeout: float | None) -> list[IPAddress]:
        """The addresses of ``host`` the policy passed, resolved on the first connection to (host, port) only."""
        key = (host, port)
        lock = self._resolving.setdefault(key, anyio.Lock())
        async with lock:
            vetted = self._vetted.get(key)
            if vetted is None:
                vetted = self._vetted[key] = self._policy.vet(host, await resolve(host, port, timeout))
        return vetted


async def resolve(host: str, port: int, timeout: float | None) -> list[IPAddress]:
    """The distinct addresses ``host`` resolves to, in resolver order; httpcore's connect errors when it does not."""
    try:
        return [ipaddress.ip_address(host.strip("[]"))]  # an address already: no lookup (a thread hop each)
    except ValueError:  # a name, or a spelling only the resolver reads ("127.1"): ask it
        pass
    try:
        with anyio.fail_after(timeout):
            infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except TimeoutError as exc:
        raise httpcore.ConnectTimeout(f"resolving {host} took longer than {timeout} s") from exc
    except (OSError, UnicodeError) as exc:  # socket.gaierror is an OSError
        raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
    unique = dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos)
    return list(unique)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """``httpx.AsyncHTTPTransport`` whose connections all go through GuardedNetworkBackend.

    httpx has no public parameter for the network backend, so the connection pool is rebuilt with one after the
    parent has set up request/response mapping. Environment proxies are ignored (a proxy would be the only address
    vetted, which would defeat the guard).
    """

    def __init__(self, policy: AddressPolicy, limits: httpx.Limits) -> None:
        super().__init__(trust_env=False, limits=limits)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedNetworkBackend(policy),
        )
