"""Where mail for a domain goes: MX lookup with dnspython (RFC 5321 §5.1, RFC 7505).

* MX records are tried by preference, the lowest first; hosts of equal preference are
  shuffled to spread the load (RFC 5321 §5.1).
* No MX record (an empty answer): the domain itself is the implicit MX with preference 0,
  reached through its A/AAAA records (RFC 5321 §5.1).
* A *null MX* (one record ``0 .``) says the domain accepts no mail: a permanent failure
  (RFC 7505 §3, reply ``556 5.1.10``).
* A domain that does not exist (NXDOMAIN) is a permanent failure (``5.1.2``); a timeout or
  a server failure is temporary: the entry is retried.
* MX hosts (or the implicit MX) of which none has an address — each answered NXDOMAIN or
  no A/AAAA, none timed out — are a permanent failure (RFC 5321 §5.1, ``5.4.4``).

The resolver is ours to configure (``[outbound] dns_nameservers`` and ``dns_port``), so the
tests point it at a DNS server on loopback; empty means the system's resolv.conf. DKIM
verification uses the same settings (:meth:`DnsSettings.txt_lookup`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver


class DnsTemporaryError(Exception):
    """The lookup failed for now (timeout, SERVFAIL): retry later."""


class DnsPermanentError(Exception):
    """The domain does not exist, or accepts no mail (null MX)."""

    def __init__(self, message: str, enhanced: str) -> None:
        super().__init__(message)
        self.enhanced = enhanced


@dataclass(frozen=True)
class DnsSettings:
    """How we query DNS: ``nameservers`` empty means the system's configuration."""

    nameservers: Sequence[str] = ()
    port: int = 53
    timeout: float = 10.0

    def _configure(self, resolver: dns.resolver.Resolver | dns.asyncresolver.Resolver) -> None:
        if self.nameservers:
            resolver.nameservers = list(self.nameservers)
            resolver.port = self.port
        resolver.lifetime = self.timeout
        resolver.timeout = min(self.timeout, 3.0)

    def async_resolver(self) -> dns.asyncresolver.Resolver:
        resolver = dns.asyncresolver.Resolver(configure=not self.nameservers)
        self._configure(resolver)
        return resolver

    def sync_resolver(self) -> dns.resolver.Resolver:
        resolver = dns.resolver.Resolver(configure=not self.nameservers)
        self._configure(resolver)
        return resolver

    def txt_lookup(self, name: str) -> bytes | None:
        """The concatenated strings of the first TXT record at ``name`` (blocking), or None
        if there is none; :class:`DnsTemporaryError` on a timeout or server failure."""
        try:
            answer = self.sync_resolver().resolve(name, "TXT")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
            raise DnsTemporaryError(f"TXT {name}: {exc.__class__.__name__}") from None
        for rdata in answer:
            return b"".join(rdata.strings)
        return None


@dataclass(frozen=True, slots=True)
class MxHost:
    """One host to try, with its addresses in the order to try them."""

    name: str
    preference: int
    addresses: tuple[str, ...] = field(default=())


class MxResolver:
    """Resolves a destination domain to the hosts to try, in order."""

    def __init__(self, settings: DnsSettings, *, rng: random.Random | None = None) -> None:
        self.settings = settings
        self.resolver = settings.async_resolver()
        self.rng = rng or random.Random()  # noqa: S311 - load spreading, not security

    async def hosts(self, domain: str) -> list[MxHost]:
        """The MX hosts of ``domain`` with their addresses (hosts without any are dropped).

        Raise :class:`DnsPermanentError` or :class:`DnsTemporaryError`.
        """
        try:
            answer = await self.resolver.resolve(domain, "MX")
        except dns.resolver.NXDOMAIN:
            raise DnsPermanentError(f"domain {domain} does not exist", "5.1.2") from None
        except dns.resolver.NoAnswer:
            # RFC 5321 §5.1: no MX, the domain is its own implicit MX.
            records = [(0, domain)]
        except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
            raise DnsTemporaryError(f"MX {domain}: {exc.__class__.__name__}") from None
        else:
            records = [
                (int(r.preference), r.exchange.to_text(omit_final_dot=True))
                for r in answer
            ]
        exchanges = order_mx(records, self.rng)
        if not exchanges:
            # RFC 7505 §3: a null MX ("0 .") says the domain accepts no mail.
            raise DnsPermanentError(
                f"domain {domain} does not accept mail (null MX, RFC 7505)", "5.1.10"
            )
        hosts: list[MxHost] = []
        temporary: list[str] = []
        for preference, name in exchanges:
            try:
                addresses = await self.addresses(name)
            except DnsTemporaryError as exc:
                temporary.append(str(exc))
                continue
            if addresses:
                hosts.append(MxHost(name, preference, addresses))
        if not hosts and temporary:
            raise DnsTemporaryError(f"{domain}: {'; '.join(temporary)}")
        if not hosts:
            # RFC 5321 §5.1: MX records none of which is usable, or an unusable implicit
            # MX, "MUST be reported as an error" — every host answered that it has no
            # address, which retrying will not change: 5.4.4 "unable to route"
            # (RFC 3463 §3.5).
            raise DnsPermanentError(
                f"domain {domain}: no address for any of its mail hosts "
                f"({', '.join(name for _, name in exchanges)})", "5.4.4")
        return hosts

    async def addresses(self, host: str) -> tuple[str, ...]:
        """A then AAAA addresses of ``host`` (an address literal passes through).

        One type failing for now does not hide the other's addresses: a name server that
        times out on AAAA (there are such) must not make a host with a working A record
        unusable. :class:`DnsTemporaryError` only when no address was found and a lookup
        failed temporarily.
        """
        out: list[str] = []
        failed: list[str] = []
        for rdtype in ("A", "AAAA"):
            try:
                answer = await self.resolver.resolve(host, rdtype)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                continue
            except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
                failed.append(f"{rdtype} {host}: {exc.__class__.__name__}")
                continue
            out.extend(r.to_text() for r in answer)
        if not out and failed:
            raise DnsTemporaryError("; ".join(failed))
        return tuple(out)


def order_mx(records: Sequence[tuple[int, str]], rng: random.Random) -> list[tuple[int, str]]:
    """MX records by preference, equal preferences shuffled; null-MX targets (".") dropped.

    Returns ``[]`` for a null MX (RFC 7505 §3) — and for a record set with only "." targets.
    """
    usable = [(p, name.rstrip(".").lower()) for p, name in records if name.rstrip(".")]
    shuffled = list(usable)
    rng.shuffle(shuffled)
    return sorted(shuffled, key=lambda r: r[0])
