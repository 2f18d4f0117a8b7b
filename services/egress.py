"""Where connectors may deliver: the destination policy of http connectors, the bucket rule of s3 ones.

Connectors run tenant-chosen destinations from inside the service's network, so an http connector
may only reach public addresses. The control API applies the policy when a connector is created and
the worker at every connection, to the addresses the host resolves to at that moment (so a name that
is re-pointed after creation, DNS rebinding, does not get through).

- Refused: loopback, link-local, private, unique-local, shared (CGNAT), multicast, unspecified,
  reserved and documentation ranges, and the IPv6 forms that embed one of those IPv4 addresses
  (IPv4-mapped, IPv4-compatible, NAT64, 6to4).
- `SLUICE_CONNECTOR_ALLOWED_NETWORKS` (CIDRs) lets networks through anyway, e.g. an on-premises
  receiver; `make run` allows loopback.
- Whatever that setting says, never: the cloud metadata addresses, and the service's own endpoints.
  Those are the hosts and ports of SLUICE_DATABASE_URL, SLUICE_REDIS_URL, SLUICE_AWS_ENDPOINT_URL and
  SLUICE_SERVICE_ENDPOINTS (the APIs, the worker's metrics): their ports are refused on every address
  that is not public, and on the addresses their hosts resolve to.

Pure functions over the settings; the only I/O is name resolution.
"""

import ipaddress
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as LookupTimeout
from dataclasses import dataclass
from functools import cache
from urllib.parse import urlsplit

from psycopg2.extensions import parse_dsn

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Instance metadata and credential endpoints of the clouds (AWS IMDS and ECS/EKS credentials, GCP and
# Azure IMDS, Azure WireServer, Alibaba, Oracle): refused even inside an allowed network.
METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",
        "169.254.170.2",
        "169.254.170.23",
        "fd00:ec2::254",
        "fd00:ec2::23",
        "168.63.129.16",
        "100.100.100.200",
        "192.0.0.192",
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SERVICE_HOSTS_TTL = 60.0  # the service's own hosts are looked up again at most once a minute

REFUSED = "is not a destination connectors may reach (see docs/pipelines.md)"


@dataclass(frozen=True)
class Policy:
    allowed: tuple[Network, ...]
    service: tuple[tuple[str, int], ...]  # (host, port) of the service's own endpoints


def parse_networks(text: str) -> tuple[Network, ...]:
    """'10.1.0.0/16, ::1/128' -> networks; ValueError names a malformed one."""
    networks = []
    for item in _items(text):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not a network (CIDR)") from None
    return tuple(networks)


def parse_endpoints(text: str) -> tuple[tuple[str, int], ...]:
    """'api.internal:8001, [::1]:8000' -> (host, port) pairs; ValueError names a malformed one."""
    endpoints = []
    for item in _items(text):
        parts = urlsplit(f"//{item}")
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or port is None:
            raise ValueError(f"{item!r} is not host:port")
        endpoints.append((parts.hostname, port))
    return tuple(endpoints)


def _items(text: str) -> list[str]:
    return [item.strip() for item in (text or "").split(",") if item.strip()]


@cache
def policy(settings) -> Policy:
    """The policy the settings describe (settings are frozen, so this is built once per process)."""
    return Policy(
        allowed=parse_networks(settings.connector_allowed_networks),
        service=(*_service_urls(settings), *parse_endpoints(settings.service_endpoints)),
    )


def _service_urls(settings) -> list[tuple[str, int]]:
    """Postgres, Redis and the AWS endpoint, from their settings (a Unix socket is no concern)."""
    found = []
    dsn = parse_dsn(settings.database_url)
    port = int(dsn.get("port") or 5432)
    found += [
        (host, port) for host in (dsn.get("host") or "").split(",") if host and not host.startswith("/")
    ]
    for url, default_port in ((settings.redis_url, 6379), (settings.aws_endpoint_url, None)):
        parts = urlsplit(url or "")
        if parts.hostname:
            found.append((parts.hostname, parts.port or default_port or _scheme_port(parts.scheme)))
    return found


def _scheme_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


# --- addresses --------------------------------------------------------------------------------------


def _unmapped(address: Address) -> Address:
    """An IPv4-mapped IPv6 address (::ffff:a.b.c.d) reaches that very IPv4 host: use the IPv4 one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries: mapped, compatible, NAT64 or 6to4."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    packed = int(address)
    if address in _NAT64 or (packed >> 32 == 0 and packed > 1):  # NAT64, or ::a.b.c.d (compatible)
        return ipaddress.IPv4Address(packed & 0xFFFFFFFF)
    return None


def is_public(address: Address) -> bool:
    """On the public internet: not loopback, link-local, private, multicast, reserved and the like."""
    embedded = _embedded_ipv4(address)
    if embedded is not None and not is_public(embedded):
        return False
    return address.is_global and not (
        address.is_multicast or address.is_reserved or address.is_unspecified or address.is_link_local
    )


def refusal(policy: Policy, address: Address, port: int) -> str | None:
    """Why a connection to address:port is refused (for the worker's log), or None when allowed."""
    address = _unmapped(address)
    if address in METADATA:
        return "a cloud metadata address"
    public = is_public(address)
    for host, service_port in policy.service:
        if port == service_port and (not public or address in _service_addresses(host)):
            return f"the service's own endpoint {host}:{service_port}"
    if not public and not any(address in network for network in policy.allowed):
        return "not a public address, and not in SLUICE_CONNECTOR_ALLOWED_NETWORKS"
    return None


_resolved: dict[str, tuple[float, frozenset]] = {}


def _service_addresses(host: str) -> frozenset:
    now = time.monotonic()
    hit = _resolved.get(host)
    if hit is None or hit[0] < now:
        try:
            found = frozenset(_unmapped(a) for a in resolve(host, 0))
        except OSError:
            found = frozenset()
        hit = _resolved[host] = (now + _SERVICE_HOSTS_TTL, found)
    return hit[1]


_lookups = ThreadPoolExecutor(max_workers=4, thread_name_prefix="sluice-lookup")


def resolve(host: str, port: int, timeout: float | None = None) -> list[Address]:
    """The addresses `host` has now, in the resolver's order; OSError if it has none.

    With a timeout the lookup runs on a small pool of its own and TimeoutError ends the wait (a
    tenant's slow name server must not hold a request); without, it runs in the caller's thread.
    """
    try:
        return [ipaddress.ip_address(host)]  # a literal needs no lookup
    except ValueError:
        pass
    if timeout is not None:
        try:
            return _lookups.submit(resolve, host, port).result(timeout)
        except LookupTimeout:
            raise TimeoutError(f"no answer for {host} in {timeout}s") from None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (UnicodeError, ValueError) as exc:  # a label too long, a NUL: no such host
        raise OSError(str(exc)) from None
    addresses = []
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def url_refusal(policy: Policy, url: str, lookup_seconds: float) -> str | None:
    """When a connector is created: why its URL's host is refused now, or None.

    A name that does not resolve (yet), or not in time, passes: the worker checks every connection.
    """
    parts = urlsplit(url)
    port = parts.port or _scheme_port(parts.scheme)
    try:
        addresses = resolve(parts.hostname or "", port, lookup_seconds)
    except OSError:
        return None
    if any(refusal(policy, address, port) for address in addresses):
        return f"{parts.hostname} {REFUSED}"
    return None


# --- s3 -----------------------------------------------------------------------------------------------


def bucket_refusal(settings, bucket: str, authority: str) -> str | None:
    """Why an s3 connector may not write to `bucket` with that authority ('keys', 'role', 'service')."""
    if bucket == settings.exports_bucket:
        return "the service's exports bucket is never a connector's destination"
    if authority == "service" and bucket not in _items(settings.connector_s3_service_buckets):
        return (
            "give the connector credentials (accessKeyId and secretAccessKey, or roleArn): the service's "
            "own are used only for buckets the operator lists in SLUICE_CONNECTOR_S3_SERVICE_BUCKETS"
        )
    return None


def service_bucket_root(app_id: int) -> str:
    """Where an app's objects go in a bucket written with the service's credentials, which apps share."""
    return f"apps/{app_id}/"
