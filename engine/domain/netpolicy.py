"""Where the engine may send HTTP requests it builds from tenant data (SSRF protection).

Status callbacks (``callback_url``) and IVR ``http_lookup`` steps send requests to URLs a
tenant (or a caller's keys, through a lookup's ``{variable}``) decides. Without a rule,
a tenant could make the engine POST to ``127.0.0.1`` (the engine's own neighbours) or GET
``http://169.254.169.254`` (a cloud's metadata service). The rule:

- only ``http`` and ``https`` URLs;
- only globally routable addresses: loopback, link-local, private (RFC 1918, ULA
  ``fc00::/7``), shared (CGNAT ``100.64.0.0/10``), unspecified, multicast, reserved and
  documentation addresses are refused — an IPv6 address carrying an IPv4 one (mapped
  ``::ffff:127.0.0.1``, 6to4 ``2002::/16``, NAT64 ``64:ff9b::/96`` and the local-use
  ``64:ff9b:1::/96``, IPv4-compatible ``::10.0.0.1``) counts as that IPv4 address, and any
  other IPv6 address must be global unicast (``2000::/3``) besides. The standard library's
  ``is_global`` alone is not the rule: its tables differ between Python versions (3.11
  counts ``64:ff9b:1::/48``, ``::a.b.c.d`` and site-local ``fec0::/10`` as global). A
  local-use NAT64 address (RFC 8215, ``64:ff9b:1::/48``) outside ``64:ff9b:1::/96`` is
  refused: which IPv4 address it stands for depends on the site's translator (RFC 6052
  allows several layouts), so it cannot be judged; inside it, the other layouts would read
  an address in ``0.0.0.0/8``, which no translator forwards;
- unless the tenant allows the address with a CIDR (``tenant.outbound_allow_cidrs``, e.g.
  ``10.20.0.0/16`` for an ERP on the private network, ``127.0.0.1/32`` in tests).

It is applied where a URL is accepted (:func:`check_url`: the scheme, and the host when
it is an address, with an error naming the field) and again where the request is sent,
after DNS resolution (:meth:`OutboundPolicy.refusal` on every resolved address, see
:mod:`engine.outbound`), so a name resolving to ``127.0.0.1`` is refused as well.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import urllib.parse
from collections.abc import Iterable

from engine.errors import InvalidInput

__all__ = [
    "ALLOWED_SCHEMES",
    "Network",
    "OutboundPolicy",
    "check_url",
    "parse_cidr",
    "scheme_refusal",
]

ALLOWED_SCHEMES = ("http", "https")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# what the refused kinds are called in an error, most specific first
_KINDS: tuple[tuple[str, str], ...] = (
    ("is_unspecified", "an unspecified address"),
    ("is_loopback", "a loopback address"),
    ("is_link_local", "a link-local address"),
    ("is_multicast", "a multicast address"),
    ("is_private", "a private address"),
    ("is_reserved", "a reserved address"),
)
_NOT_GLOBAL = "not a globally routable address"


_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215, any RFC 6052 layout
# IPv6 addresses whose last 32 bits are the IPv4 address they stand for
_IPV4_IN_LAST_32 = (
    ipaddress.IPv6Network("64:ff9b::/96"),  # RFC 6052's well-known NAT64 prefix
    ipaddress.IPv6Network("64:ff9b:1::/96"),  # RFC 8215's local-use prefix, /96 layout
    ipaddress.IPv6Network("::/96"),  # IPv4-compatible (deprecated); not :: and ::1 below
)
_UNSPECIFIED_OR_LOOPBACK = (ipaddress.IPv6Address("::"), ipaddress.IPv6Address("::1"))


def _ipv4_inside(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address ``ip`` carries (mapped, 6to4, NAT64, IPv4-compatible); None if
    none (``::`` and ``::1`` are themselves, not ``0.0.0.0`` and ``0.0.0.1``)."""
    inside = ip.ipv4_mapped or ip.sixtofour
    if inside is not None:
        return inside
    if ip in _UNSPECIFIED_OR_LOOPBACK:
        return None
    if any(ip in net for net in _IPV4_IN_LAST_32):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _kind(ip: Address) -> str:
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _LOCAL_NAT64:
            return "a local-use NAT64 address outside 64:ff9b:1::/96"
        if ip.is_site_local:
            return "a site-local address"
    return next((name for attr, name in _KINDS if getattr(ip, attr)), _NOT_GLOBAL)


def scheme_refusal(url: str) -> str | None:
    """Why ``url`` is not an http(s) URL with a host; None when it is one. The part of the
    rule that needs no tenant (a menu file's URLs are checked with it as they are read)."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port that is not one
    except ValueError as exc:
        return f"not a valid URL ({exc})"
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        shown = f"{scheme}://" if scheme else "no scheme"
        return f"must be an http or https URL, not {shown}"
    if not host:
        return "has no host"
    return None


def parse_cidr(text: str, *, field: str = "allow_cidr") -> Network:
    """``10.0.0.0/8`` (or one address, ``127.0.0.1`` = ``/32``) as a network; host bits
    must be zero. :class:`InvalidInput` naming ``field`` otherwise."""
    try:
        return ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as exc:
        raise InvalidInput(field, f"not a CIDR like 10.0.0.0/8: {text!r} ({exc})") from None


@dataclasses.dataclass(frozen=True, slots=True)
class OutboundPolicy:
    """The rule above, with the networks a tenant allows beyond global addresses."""

    allow: tuple[Network, ...] = ()

    @classmethod
    def allowing(cls, cidrs: Iterable[str | Network]) -> OutboundPolicy:
        networks = (c if not isinstance(c, str) else parse_cidr(c) for c in cidrs)
        return cls(tuple(sorted(set(networks), key=str)))

    def refusal(self, address: str | Address) -> str | None:
        """Why a request may not go to ``address``; None when it may."""
        try:
            ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        except ValueError:
            return f"{address!r} is not an IP address"
        if isinstance(ip, ipaddress.IPv6Address):  # an IPv4 address inside: judge that
            ip = _ipv4_inside(ip) or ip
        if any(ip.version == net.version and ip in net for net in self.allow):
            return None
        routable = ip in _GLOBAL_UNICAST if isinstance(ip, ipaddress.IPv6Address) else True
        if routable and ip.is_global and not ip.is_multicast:
            return None
        return f"{ip} is {_kind(ip)} (the tenant's outbound_allow_cidrs does not include it)"

    def url_refusal(self, url: str) -> str | None:
        """Why ``url`` may not be requested, judging what is visible without DNS: the
        scheme, a host, and the host's address when it is one. None when it may (a host
        name is then checked on every address it resolves to)."""
        refused = scheme_refusal(url)
        if refused is not None:
            return refused
        host = urllib.parse.urlsplit(url).hostname or ""
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return None  # a name: judged on what it resolves to, when the request is sent
        return self.refusal(ip)


def check_url(url: str, policy: OutboundPolicy, *, field: str) -> str:
    """``url`` if :meth:`OutboundPolicy.url_refusal` has nothing against it, else
    :class:`InvalidInput` naming ``field``."""
    reason = policy.url_refusal(url)
    if reason is not None:
        raise InvalidInput(field, reason)
    return url
