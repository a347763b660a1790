"""Helpers for testing code that uses outlast: a DNS server that misbehaves on demand."""

from outlast.testing._dnsserver import DNSServer

__all__ = ["DNSServer"]
