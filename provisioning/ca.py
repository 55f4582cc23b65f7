"""The project's certificate authority and the broker's server certificate.

    ca.key, ca.crt          the CA: created once, it signs the broker's certificate; ca.crt
                            is what every unit gets on its flash to verify the broker
    server.key, server.crt  the broker's (Mosquitto's TLS listener), signed by the CA, for
                            localhost, 127.0.0.1, this host's name and any names given

Keys are EC P-256 (small, fast on an ESP32, and what MicroPython's mbedTLS verifies) and
written 0600. Made with the `cryptography` package. Nothing is overwritten: a folder that
already holds a CA keeps it, so units provisioned earlier still trust the broker.
"""

import datetime
import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 20 * 365  # the CA outlives the units' hardware: ca.crt on a flash is not renewed
SERVER_DAYS = 5 * 365


@dataclass(frozen=True)
class CaPaths:
    dir: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path


def paths(directory):
    d = Path(directory).resolve()
    return CaPaths(d, d / "ca.crt", d / "ca.key", d / "server.crt", d / "server.key")


def _write_key(path, key):
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def _write_cert(path, cert):
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    tmp.replace(path)


def _name(common_name):
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Siaga"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _builder(subject, issuer, public_key, days):
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))  # a unit's clock may lag a little
        .not_valid_after(now + datetime.timedelta(days=days))
    )


def _make_ca(p):
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("Siaga project CA")
    cert = (
        _builder(name, name, key.public_key(), CA_DAYS)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(p.ca_key, key)
    _write_cert(p.ca_cert, cert)


def _alt_names(names):
    out = []
    for n in dict.fromkeys(["localhost", "127.0.0.1", socket.gethostname(), *names]):
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            out.append(x509.DNSName(n))
    return out


def _make_server(p, names):
    ca_key = serialization.load_pem_private_key(p.ca_key.read_bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate(p.ca_cert.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _builder(_name(socket.gethostname()), ca_cert.subject, key.public_key(), SERVER_DAYS)
        .add_extension(x509.SubjectAlternativeName(_alt_names(names)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(p.server_key, key)
    _write_cert(p.server_cert, cert)


def server_names(cert_path):
    """The DNS names and IP addresses a server certificate is good for."""
    cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.DNSName) + [str(a) for a in san.get_values_for_type(x509.IPAddress)]


def ensure_ca(directory, names=()):
    """Create, once, the CA and the broker's certificate in `directory`; returns CaPaths.
    A server certificate that lacks one of `names` (host names or addresses the units
    reach the broker by) is made again, signed by the same CA."""
    p = paths(directory)
    p.dir.mkdir(parents=True, exist_ok=True)
    os.chmod(p.dir, 0o700)
    if p.ca_cert.exists() != p.ca_key.exists():
        raise FileNotFoundError(f"{p.dir} holds half a CA (ca.crt or ca.key is missing): restore it")
    if not p.ca_key.exists():
        _make_ca(p)
    wanted = [str(n) for n in names]
    if not (p.server_cert.exists() and p.server_key.exists()):
        _make_server(p, wanted)
    else:
        have = server_names(p.server_cert)
        if set(wanted) - set(have):
            _make_server(p, [*have, *wanted])
    return p


def ensure_peer_cert(directory, names=()):
    """A certificate for a broker node to talk to the other nodes (peer.key, peer.crt in
    the CA's folder): signed by the project CA, good as server and as client, since a
    clustered broker (NATS routes) verifies both ends. Made once; again, same CA, when a
    name is missing. Returns (cert path, key path)."""
    p = ensure_ca(directory, names=names)
    cert, key = p.dir / "peer.crt", p.dir / "peer.key"
    wanted = [str(n) for n in names]
    if not (cert.exists() and key.exists()) or set(wanted) - set(server_names(cert)):
        _make_peer(p, cert, key, wanted)
    return cert, key


def _make_peer(p, cert_path, key_path, names):
    ca_key = serialization.load_pem_private_key(p.ca_key.read_bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate(p.ca_cert.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    usage = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    cert = (
        _builder(_name(f"{socket.gethostname()} peer"), ca_cert.subject, key.public_key(), SERVER_DAYS)
        .add_extension(x509.SubjectAlternativeName(_alt_names(names)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(key_path, key)
    _write_cert(cert_path, cert)
