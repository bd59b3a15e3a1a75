"""Deployment setup: a private CA, one certificate per party and one for clients, and the party list.

`create_deployment` writes::

    DIR/deployment.json          public: the three parties' addresses
    DIR/party-<i>/{ca,cert,key}.pem   what party i needs (its key is readable by the owner only)
    DIR/client/{ca,cert,key}.pem      what a client needs

The CA's private key is used once to sign and then discarded, so nobody can mint further identities;
to add a client or replace a party, run setup again. Identities are pinned by role: party i only
accepts a peer whose certificate says ``CN=party-<j>`` or ``CN=client`` under this CA, and a client only
talks to ``CN=party-<i>`` at the address listed for party i.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import json
import os
import ssl

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from privacy.encrypted.shares import NUM_PARTIES

DEPLOYMENT_FILE = "deployment.json"
CLIENT_ROLE = "client"


def party_role(index: int) -> str:
    return f"party-{index}"


@dataclasses.dataclass(frozen=True)
class Deployment:
    """The public party list and where this machine's credentials are."""

    directory: str
    addresses: tuple

    @classmethod
    def load(cls, directory: str) -> "Deployment":
        """Reads DIR/deployment.json.

        Raises:
            ValueError: if the directory holds no valid deployment.
        """
        path = os.path.join(directory, DEPLOYMENT_FILE)
        try:
            with open(path) as fh:
                data = json.load(fh)
            addresses = tuple((p["host"], int(p["port"])) for p in data["parties"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{path!r} is not a ppml deployment file ({err.__class__.__name__}: {err}); "
                             f"run `ppml encrypted setup` first") from None
        if len(addresses) != NUM_PARTIES:
            raise ValueError(f"{path!r} lists {len(addresses)} parties, expected {NUM_PARTIES}")
        return cls(directory, addresses)

    def credentials(self, role: str) -> tuple[str, str, str]:
        """(ca, cert, key) paths of `role` ('party-<i>' or 'client')."""
        folder = os.path.join(self.directory, role)
        paths = tuple(os.path.join(folder, name) for name in ("ca.pem", "cert.pem", "key.pem"))
        missing = [p for p in paths if not os.path.exists(p)]
        if missing:
            raise ValueError(f"credentials of {role!r} are missing: {missing}")
        return paths

    def tls_context(self, role: str, *, server: bool) -> ssl.SSLContext:
        """Mutually authenticating TLS 1.3 context for `role` (peer identity is checked by `peer_role`)."""
        ca, cert, key = self.credentials(role)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        context.check_hostname = False  # identities are pinned by role (CN) under a private CA
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(ca)
        context.load_cert_chain(cert, key)
        return context


def peer_role(sock: ssl.SSLSocket) -> str:
    """The common name of the verified peer certificate."""
    subject = dict(item[0] for item in sock.getpeercert()["subject"])
    return subject.get("commonName", "")


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ppml encrypted inference"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _write(path: str, data: bytes, private: bool = False) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    mode = 0o600 if private else 0o644
    fd = os.open(path, flags, mode)
    os.fchmod(fd, mode)  # also when the file existed with another mode
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def create_deployment(directory: str, addresses: list[tuple[str, int]], *, valid_days: int = 365) -> Deployment:
    """Creates the CA, the party and client certificates and the party list under `directory`.

    Args:
        directory: output folder (created; existing credentials in it are replaced).
        addresses: (host, port) of parties 0, 1, 2.
        valid_days: certificate lifetime.

    Raises:
        ValueError: for a wrong number of parties or an invalid port.
    """
    if len(addresses) != NUM_PARTIES:
        raise ValueError(f"need exactly {NUM_PARTIES} party addresses, got {len(addresses)}")
    for host, port in addresses:
        if not 0 < int(port) < 65536:
            raise ValueError(f"port of {host!r} must be in 1..65535, got {port!r}")
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("ppml encrypted inference CA")
    ca_cert = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=valid_days))
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .sign(ca_key, hashes.SHA256()))
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    roles = [(party_role(i), addresses[i][0]) for i in range(NUM_PARTIES)] + [(CLIENT_ROLE, None)]
    for role, host in roles:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(_name(role)).issuer_name(ca_name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=valid_days))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
        if host is not None:
            builder = builder.add_extension(x509.SubjectAlternativeName([_san(host)]), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        folder = os.path.join(directory, role)
        os.makedirs(folder, exist_ok=True)
        _write(os.path.join(folder, "ca.pem"), ca_pem)
        _write(os.path.join(folder, "cert.pem"), cert.public_bytes(serialization.Encoding.PEM))
        _write(os.path.join(folder, "key.pem"), key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()), private=True)
    with open(os.path.join(directory, DEPLOYMENT_FILE), "w") as fh:
        json.dump({"parties": [{"host": h, "port": int(p)} for h, p in addresses]}, fh, indent=2)
    return Deployment.load(directory)
