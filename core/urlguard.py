"""Which URLs the server may call on a user's behalf (webhooks): http(s) only, and only hosts whose
every address is public. Loopback, private, link-local (cloud metadata at 169.254.169.254),
multicast, reserved and unspecified addresses are refused, as are private IPv4 addresses inside
IPv6 (::ffff:10.0.0.1, 6to4, NAT64), Teredo tunnels, and the special-purpose blocks that `is_global`
gets wrong (site-local fec0::/10, 192.0.0.0/24, ...): anything else would let a user make the server
reach its own network (SSRF).

The API checks a URL when it is registered; the sender checks the addresses again when it
connects (worker.webhooks), because what a name resolves to can change after registration."""
from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

MAX_URL = 2048


class UrlRefused(ValueError):
    """The URL is not one the server will call; the message says why (shown to the user)."""


class Unresolvable(UrlRefused):
    """The host name resolves to no address (now: DNS may answer later)."""


_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052: the last 32 bits are the IPv4 address
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215

# Blocks that the IANA special-purpose address registries (IPv4 and IPv6) mark not globally reachable,
# or that are deprecated, where the standard library's `is_global` (whose tables lag the registries and
# differ between Python versions) calls some of their addresses global. Checked before its flags.
_NOT_GLOBAL = [(ipaddress.ip_network(net), what) for net, what in (
    ("192.0.0.0/24", "an IETF protocol assignment (RFC 6890: 192.0.0.8 dummy, DS-Lite, NAT64 discovery, anycast)"),
    ("192.88.99.0/24", "a deprecated 6to4 relay anycast address (RFC 7526)"),
    ("fec0::/10", "a site-local address (deprecated, RFC 3879: a private network's)"),
    ("3fff::/20", "a documentation address (RFC 9637)"),
)]


def _ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:  # an IPv6 scope (fe80::1%eth0) is link-local anyway; a URL's host may keep its brackets
        return ipaddress.ip_address(address.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def address_refused(address: str) -> str | None:
    """Why an IP address may not be called (None: it may): "<address> is <its kind>"."""
    ip = _ip(address)
    if ip is None:
        return f"{address!r} is not an IP address"
    kind = _refused_kind(ip)
    return None if kind is None else f"{ip} is {kind}"


def _refused_kind(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """What kind of address `ip` is, when it may not be called ("a loopback address", ...)."""
    if isinstance(ip, ipaddress.IPv6Address):
        # IPv4 reached through IPv6 (mapped, 6to4, NAT64) is judged as that IPv4 address; Teredo and
        # local-use NAT64 tunnels to places the server cannot judge are refused outright, not left to
        # the standard library's tables (which differ between Python versions).
        if ip.teredo is not None:
            return "a Teredo tunnel address"
        if ip in _NAT64_LOCAL:
            return "a local-use NAT64 address"
        inner = ip.ipv4_mapped or ip.sixtofour or (
            ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in _NAT64_WELL_KNOWN else None)
        if inner is not None:
            return _refused_kind(inner)
    for net, what in _NOT_GLOBAL:
        if ip.version == net.version and ip in net:
            return what
    for flag, what in (("is_loopback", "loopback"), ("is_link_local", "link-local"), ("is_multicast", "multicast"),
                       ("is_unspecified", "unspecified"), ("is_reserved", "reserved"), ("is_private", "private")):
        if getattr(ip, flag):
            return f"{'an' if what[0] in 'aeiou' else 'a'} {what} address"
    if not ip.is_global:  # shared address space (100.64/10) and the like
        return "not a public address"
    return None


def split_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) URL; UrlRefused for anything else."""
    if not isinstance(url, str) or not url:
        raise UrlRefused("url must be a non-empty string")
    if len(url) > MAX_URL:
        raise UrlRefused(f"url is longer than {MAX_URL} characters")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise UrlRefused("url must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise UrlRefused(f"url is not a valid URL: {e}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UrlRefused("url must be an http:// or https:// URL")
    if parts.username is not None or parts.password is not None:
        raise UrlRefused("url must not carry a user name or password (the signature authenticates the sender)")
    host = parts.hostname
    if not host:
        raise UrlRefused("url has no host")
    return scheme, host, port or (443 if scheme == "https" else 80)


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (an IP literal: itself); Unresolvable when it resolves to none."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError) as e:
        raise Unresolvable(f"the host {host!r} does not resolve: {e}") from None
    out: list[str] = []
    for info in infos:
        addr = str(info[4][0])
        if addr not in out:
            out.append(addr)
    if not out:
        raise Unresolvable(f"the host {host!r} does not resolve")
    return out


def vetted_addresses(host: str, port: int, allow_private: bool) -> list[str]:
    """The addresses to connect to for `host`: all of them when private ones are allowed, else all
    of them only if every one is public (one private address among public ones is still a way in)."""
    addresses = resolve(host, port)
    if not allow_private:
        for addr in addresses:
            kind = _refused_kind(_ip(addr))  # resolve() gives addresses only
            if kind:
                # the kind, never the address: a user must not learn what the server's DNS says of its names
                what = f"the address {host}" if _ip(host) else f"the host {host!r} resolves to an address that"
                raise UrlRefused(f"{what} is {kind}; webhooks only go to public addresses")
    return addresses


def check_url(url: str, allow_private: bool) -> str:
    """The URL, if the server may call it: http(s), and (unless private addresses are allowed)
    a host whose every address is public. UrlRefused says why not."""
    _scheme, host, port = split_url(url)
    if not allow_private:
        vetted_addresses(host, port, allow_private=False)
    return url


def reaches_private(url: str) -> bool:
    """Whether the (already checked) URL's host resolves to an address that is not public now."""
    _scheme, host, port = split_url(url)
    try:
        return any(_refused_kind(_ip(a)) for a in resolve(host, port))
    except Unresolvable:
        return False
