"""Throw-away certificates for TLS tests: a CA and a server certificate for 127.0.0.1/localhost.

Why trustme: it makes a CA and leaf certificates in memory in milliseconds, with the SANs
RFC 5922 checks need (IP and DNS names), so no test ships a key or depends on a clock-bound
certificate file. trustme is a *test* extra (setup.cfg ``[test]``): it is imported lazily here
and its absence is reported with the install line.

``server_context()`` gives Twisted ``CertificateOptions`` for :func:`sipcore.transport.listen_tls`;
``client_context(hostname)`` gives ``optionsForClientTLS`` trusting only this CA (hostname
verification on) for :func:`sipcore.transport.connect_tls`; ``export_ca(path)`` writes the CA
PEM a real phone or a third-party softphone can be told to trust; ``export_server(cert, key)``
writes the server chain and key for a real server (kamailio) in a lab.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["TestPKI", "server_options"]


def _trustme() -> Any:
    try:
        import trustme
    except ImportError as e:  # pragma: no cover - trustme is in the test extra
        raise ImportError(
            "sipcore.tls needs trustme for test certificates: pip install trustme "
            "(or pip install -e '.[test]')"
        ) from e
    return trustme


class TestPKI:
    """A test CA and one server certificate for ``hosts`` (default 127.0.0.1 and localhost)."""

    __test__ = False  # not a pytest test class despite the name

    def __init__(self, hosts: tuple[str, ...] = ("127.0.0.1", "localhost"), *, organization: str = "sipharness test CA"):
        if not hosts:
            raise ValueError("TestPKI needs at least one host name or IP for the server certificate")
        trustme = _trustme()
        self.hosts = tuple(hosts)
        self.ca = trustme.CA(organization_name=organization)
        self.server_cert = self.ca.issue_cert(*self.hosts)

    @property
    def ca_pem(self) -> bytes:
        return self.ca.cert_pem.bytes()

    def server_context(self) -> Any:
        """``twisted.internet.ssl.CertificateOptions`` presenting the server certificate."""
        chain = b"".join(blob.bytes() for blob in self.server_cert.cert_chain_pems)
        return server_options(chain, self.server_cert.private_key_pem.bytes())

    def client_context(self, hostname: str = "127.0.0.1") -> Any:
        """Client TLS options trusting only this CA and checking ``hostname`` (IP or DNS name)."""
        from twisted.internet import ssl

        return ssl.optionsForClientTLS(hostname, trustRoot=ssl.Certificate.loadPEM(self.ca_pem))

    def export_ca(self, path: str | Path) -> Path:
        """Write the CA certificate (PEM bundle) to ``path``; return the path."""
        path = Path(path)
        path.write_bytes(self.ca_pem)
        return path

    def export_server(self, cert_path: str | Path, key_path: str | Path) -> tuple[Path, Path]:
        """Write the server chain (PEM) and its private key, for a real server in a lab."""
        cert_path, key_path = Path(cert_path), Path(key_path)
        cert_path.write_bytes(b"".join(b.bytes() for b in self.server_cert.cert_chain_pems))
        key_path.write_bytes(self.server_cert.private_key_pem.bytes())
        key_path.chmod(0o600)
        return cert_path, key_path


def server_options(chain_pem: bytes, key_pem: bytes) -> Any:
    """``twisted.internet.ssl.CertificateOptions`` presenting the first certificate of
    ``chain_pem`` (PEM, leaf first, then its intermediates) with the key ``key_pem`` (PEM,
    unencrypted); ValueError when either cannot be read or the key is not the leaf's."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from twisted.internet import ssl

    chain = x509.load_pem_x509_certificates(chain_pem)
    key = load_pem_private_key(key_pem, None)
    if key.public_key() != chain[0].public_key():
        raise ValueError("the private key is not the one of the chain's first certificate")
    if not _context_takes(chain[0]):  # an older pyOpenSSL: its own objects
        from OpenSSL import crypto

        return ssl.CertificateOptions(privateKey=crypto.PKey.from_cryptography_key(key),
                                      certificate=crypto.X509.from_cryptography(chain[0]),
                                      extraCertChain=[crypto.X509.from_cryptography(c) for c in chain[1:]])
    return ssl.CertificateOptions(privateKey=key, certificate=chain[0], extraCertChain=chain[1:])


_TAKES_CRYPTOGRAPHY: list[bool] = []  # the answer of _context_takes, once known


def _context_takes(certificate: Any) -> bool:
    """Whether this pyOpenSSL's ``Context`` takes cryptography's certificate and key objects
    (since 24.3; its own X509 and PKey are deprecated there, a DeprecationWarning for every TLS
    listener a test opens): asked once, by trying ``certificate``, so an older pyOpenSSL keeps working."""
    if not _TAKES_CRYPTOGRAPHY:
        from OpenSSL import SSL

        try:
            SSL.Context(SSL.TLS_METHOD).use_certificate(certificate)
        except TypeError:
            _TAKES_CRYPTOGRAPHY.append(False)
        else:
            _TAKES_CRYPTOGRAPHY.append(True)
    return _TAKES_CRYPTOGRAPHY[0]
