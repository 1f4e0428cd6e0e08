"""IPv4, IPv6 and MAC addresses as integers: parsing, formatting, and the 16-byte keys the store sorts.

An address space is a closed integer interval [first, last]. The store keeps every address as a
16-byte big-endian key (`key`), so the byte order both SQLite (memcmp on BLOBs) and PostgreSQL
(bytea) sort by is the numeric order, whatever the family: a /64 or a /8 is never enumerated,
only compared.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

from poolvisor.domain.errors import InvalidInputError

Family = Literal["ipv4", "ipv6", "mac"]
BITS: dict[str, int] = {"ipv4": 32, "ipv6": 128, "mac": 48}
KEY_BYTES = 16
MAX_TEXT = 64  # longest address/prefix text accepted (an IPv6 prefix is at most 43 characters)
# Locally administered, unicast MACs (second-lowest bit of the first octet set, lowest clear):
# 02:00:00:00:00:00 .. 02:ff:ff:ff:ff:ff, 2^40 addresses for NICs.
MAC_FIRST = 0x02_00_00_00_00_00
MAC_LAST = 0x02_FF_FF_FF_FF_FF


def key(value: int) -> bytes:
    """The 16-byte big-endian key of an address (what the store indexes and compares)."""
    return value.to_bytes(KEY_BYTES, "big")


def unkey(b: bytes) -> int:
    return int.from_bytes(bytes(b), "big")


@dataclass(frozen=True)
class Subnet:
    """A parsed CIDR: its family, network integer, prefix length and the address interval."""

    family: Family
    network: int
    prefixlen: int

    @property
    def bits(self) -> int:
        return BITS[self.family]

    @property
    def first(self) -> int:
        return self.network

    @property
    def last(self) -> int:
        return self.network | ((1 << (self.bits - self.prefixlen)) - 1)

    @property
    def size(self) -> int:
        return 1 << (self.bits - self.prefixlen)

    def usable(self) -> tuple[int, int]:
        """Host addresses: IPv4 drops the network and broadcast addresses (except /31, /32);
        IPv6 drops the subnet-router anycast address (the all-zero host part; except /127, /128)."""
        if self.family == "ipv4":
            return (self.first + 1, self.last - 1) if self.prefixlen <= 30 else (self.first, self.last)
        return (self.first + 1, self.last) if self.prefixlen <= 126 else (self.first, self.last)

    def contains(self, value: int) -> bool:
        return self.first <= value <= self.last

    def overlaps(self, other: Subnet) -> bool:
        return self.family == other.family and self.first <= other.last and other.first <= self.last

    def __str__(self) -> str:
        return f"{fmt(self.family, self.network)}/{self.prefixlen}"


def parse_subnet(text: str, *, strict: bool = True) -> Subnet:
    """'10.0.0.0/24' or '2001:db8::/64'. strict: host bits must be zero (a typo otherwise)."""
    if not isinstance(text, str) or not text or len(text) > MAX_TEXT or "/" not in text:
        raise InvalidInputError(f"invalid subnet {_show(text)}: expected ADDRESS/PREFIXLEN, e.g. 10.0.0.0/24")
    try:
        net = ipaddress.ip_network(text.strip(), strict=strict)
    except ValueError as e:
        raise InvalidInputError(f"invalid subnet {_show(text)}: {e}") from None
    family: Family = "ipv4" if net.version == 4 else "ipv6"
    return Subnet(family, int(net.network_address), net.prefixlen)


def parse_ip(text: str, family: Family | None = None) -> tuple[Family, int]:
    """An IPv4 or IPv6 address; with `family`, it must be of that family."""
    if not isinstance(text, str) or not text or len(text) > MAX_TEXT:
        raise InvalidInputError(f"invalid IP address {_show(text)}")
    try:
        a = ipaddress.ip_address(text.strip())
    except ValueError:
        raise InvalidInputError(f"invalid IP address {_show(text)}") from None
    fam: Family = "ipv4" if a.version == 4 else "ipv6"
    if family is not None and fam != family:
        raise InvalidInputError(f"{text} is an {fam} address; this needs {family}")
    return fam, int(a)


def parse_mac(text: str) -> int:
    ok = isinstance(text, str) and len(text) <= MAX_TEXT
    parts = text.strip().replace("-", ":").split(":") if ok else []
    if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdefABCDEF" for c in p)
                                  for p in parts):
        raise InvalidInputError(f"invalid MAC address {_show(text)}: expected six hex octets, "
                                "e.g. 02:00:00:00:00:01")
    return int("".join(parts), 16)


def parse_address(family: Family, text: str) -> int:
    """An address of the given family (MACs included)."""
    if family == "mac":
        if isinstance(text, str) and _looks_ip(text):  # the other family: say so, as parse_ip does
            raise InvalidInputError(f"{text} is an IP address; this needs mac")
        return parse_mac(text)
    if isinstance(text, str) and _looks_mac(text):
        raise InvalidInputError(f"{text} is a MAC address; this needs {family}")
    return parse_ip(text, family)[1]


def _looks_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip())
    except ValueError:
        return False
    return True


def _looks_mac(text: str) -> bool:
    try:
        parse_mac(text)
    except InvalidInputError:
        return False
    return True


def fmt(family: str, value: int) -> str:
    if family == "ipv4":
        return str(ipaddress.IPv4Address(value))
    if family == "ipv6":
        return str(ipaddress.IPv6Address(value))
    return ":".join(f"{(value >> s) & 0xFF:02x}" for s in range(40, -8, -8))


def _show(text: object) -> str:
    s = repr(text)
    return s if len(s) <= 80 else s[:77] + "..."
