"""Certificates for tests of TLS clients: a test CA and a certificate it signed for
127.0.0.1, good for a server and for a client (mTLS), made with the openssl command.
A CA-signed certificate rather than a self-signed one: rustls (the Temporal SDK's TLS)
refuses a self-signed certificate as a server's own."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Certificates:
    ca: Path
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_certificates(folder: Path) -> Certificates:
    """Certificates in ``folder``; the test is skipped without the openssl command."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    ca, ca_key = folder / "ca.pem", folder / "ca.key"
    cert, key, request = folder / "cert.pem", folder / "key.pem", folder / "cert.csr"
    _openssl(
        *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
        *("-keyout", str(ca_key), "-out", str(ca), "-subj", "/CN=openjules test CA"),
        *("-addext", "basicConstraints=critical,CA:TRUE"),
        *("-addext", "keyUsage=critical,keyCertSign,cRLSign"),
    )
    _openssl(
        *("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(request)),
        *("-subj", "/CN=127.0.0.1"),
    )
    extensions = folder / "leaf.cnf"
    extensions.write_text(
        "basicConstraints=CA:FALSE\n"
        "subjectAltName=IP:127.0.0.1\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
    )
    _openssl(
        *("x509", "-req", "-in", str(request), "-CA", str(ca), "-CAkey", str(ca_key)),
        *("-CAcreateserial", "-days", "1", "-out", str(cert), "-extfile", str(extensions)),
    )
    return Certificates(ca=ca, cert=cert, key=key)
