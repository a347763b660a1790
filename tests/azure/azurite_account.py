"""Azurite's development account (public, in Azure's documentation)."""

from __future__ import annotations

ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
TLS_NAME = "azurite-tls.outlast.test"  # the name on the HTTPS Azurite's certificate
