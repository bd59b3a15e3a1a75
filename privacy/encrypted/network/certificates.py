"""Deployment setup: a private CA, one certificate per party and per client, the party list, revocation.

`create_deployment` writes::

    DIR/deployment.json                 public: the three parties' addresses
    DIR/ca/{ca,key}.pem                 the CA (key readable by the owner only): keep it with whoever
                                        admits clients; never copy it to a party
    DIR/party-<i>/{ca,cert,key}.pem     what party i needs (its key is readable by the owner only)
    DIR/clients/<name>/{ca,cert,key}.pem   what one client needs (`add_client` makes more)
    DIR/revoked.json                    public: revoked client certificates; copy it to every party

Identities are pinned by role: party i only accepts a peer whose certificate says ``CN=party-<j>`` or
``CN=client:<name>`` under this CA, refuses client certificates listed in revoked.json (read again
whenever it changes), and a client only talks to ``CN=party-<i>`` at the address listed for party i.
`revoke_client` lists a client's certificate serial number in revoked.json; with one certificate per
client, revoking one client leaves the others working.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import json
import os
import re
import ssl

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from privacy import validation
from privacy.atomic_files import write_atomically
from privacy.encrypted.protocol.shares import NUM_PARTIES

DEPLOYMENT_FILE = "deployment.json"
REVOKED_FILE = "revoked.json"
CA_FOLDER = "ca"
CLIENTS_FOLDER = "clients"
CLIENT_PREFIX = "client:"
MAX_VALID_DAYS = 36500
_CLIENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def party_role(index: int) -> str:
    return f"party-{index}"


def client_role(name: str) -> str:
    """The certificate common name of client `name`."""
    return CLIENT_PREFIX + name


def _check_client_name(name: str) -> str:
    if not isinstance(name, str) or not _CLIENT_NAME.fullmatch(name):
        raise ValueError(f"client names are 1-64 letters, digits, '_', '.' or '-' (not first), got {name!r}")
    return name


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
            addresses = tuple((p["host"], p["port"]) for p in data["parties"])
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as err:
            raise ValueError(
                f"{path!r} is not a ppml deployment file ({err.__class__.__name__}); run `ppml encrypted setup` first"
            ) from None
        if len(addresses) != NUM_PARTIES:
            raise ValueError(f"{path!r} lists {len(addresses)} parties, expected {NUM_PARTIES}")
        for i, (host, port) in enumerate(addresses):
            if (
                not isinstance(host, str)
                or not host
                or isinstance(port, bool)
                or not isinstance(port, int)
                or not 0 < port < 65536
            ):
                raise ValueError(f"{path!r}: party {i} needs a host name and a port in 1..65535, got {host!r}:{port!r}")
        return cls(directory, addresses)

    def client_names(self) -> list[str]:
        """Names of the clients with credentials in this folder (revoked ones included)."""
        folder = os.path.join(self.directory, CLIENTS_FOLDER)
        return (
            sorted(n for n in os.listdir(folder) if os.path.isdir(os.path.join(folder, n)))
            if os.path.isdir(folder)
            else []
        )

    def credentials(self, role: str) -> tuple[str, str, str]:
        """(ca, cert, key) paths of `role` ('party-<i>' or 'client:<name>')."""
        if role.startswith(CLIENT_PREFIX):
            folder = os.path.join(self.directory, CLIENTS_FOLDER, _check_client_name(role[len(CLIENT_PREFIX) :]))
        else:
            folder = os.path.join(self.directory, role)
        paths = tuple(os.path.join(folder, name) for name in ("ca.pem", "cert.pem", "key.pem"))
        missing = [p for p in paths if not os.path.exists(p)]
        if missing:
            raise ValueError(f"credentials of {role!r} are missing: {missing}")
        return paths

    def revoked(self) -> frozenset[int]:
        """Serial numbers of revoked client certificates (revoked.json; none if it does not exist).

        Raises:
            ValueError: if revoked.json exists but cannot be read (a party then refuses every client).
        """
        path = os.path.join(self.directory, REVOKED_FILE)
        if not os.path.exists(path):
            return frozenset()
        try:
            with open(path) as fh:
                return frozenset(int(entry["serial"], 16) for entry in json.load(fh)["revoked"])
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as err:
            raise ValueError(f"{path!r} is not a revocation list ({err.__class__.__name__})") from None

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


def peer_serial(sock: ssl.SSLSocket) -> int:
    """The serial number of the verified peer certificate."""
    return int(sock.getpeercert()["serialNumber"], 16)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ppml encrypted inference"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _write(path: str, data: bytes, private: bool = False) -> None:
    if private:
        write_atomically(path, data)  # owner-only
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)


def _validity(valid_days: int) -> tuple[datetime.datetime, datetime.datetime]:
    validation.integer("valid_days", valid_days, minimum=1, maximum=MAX_VALID_DAYS)
    now = datetime.datetime.now(datetime.timezone.utc)
    return now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=valid_days)


def _issue(folder: str, role: str, host: str | None, ca_key, ca_cert: x509.Certificate, valid_days: int) -> int:
    """Writes folder/{ca,cert,key}.pem for `role`, signed by the CA; returns the serial number."""
    start, end = _validity(valid_days)
    key = ec.generate_private_key(ec.SECP256R1())
    serial = x509.random_serial_number()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(role))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if host is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName([_san(host)]), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    _write(os.path.join(folder, "ca.pem"), ca_cert.public_bytes(serialization.Encoding.PEM))
    _write(os.path.join(folder, "cert.pem"), cert.public_bytes(serialization.Encoding.PEM))
    _write(
        os.path.join(folder, "key.pem"),
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        private=True,
    )
    return serial


def create_deployment(
    directory: str, addresses: list[tuple[str, int]], *, clients=("client",), valid_days: int = 365
) -> Deployment:
    """Creates the CA, the party and client certificates and the party list under `directory`.

    Args:
        directory: output folder (created; existing credentials in it are replaced).
        addresses: (host, port) of parties 0, 1, 2.
        clients: names of the clients to admit now (`add_client` admits more later).
        valid_days: certificate lifetime, 1 to 36500 days.

    Raises:
        ValueError: for a wrong number of parties, an invalid port, client name or lifetime.
    """
    if len(addresses) != NUM_PARTIES:
        raise ValueError(f"need exactly {NUM_PARTIES} party addresses, got {len(addresses)}")
    for host, port in addresses:
        validation.integer(f"port of {host!r}", port, minimum=1, maximum=65535)
    for name in clients:
        _check_client_name(name)
    start, end = _validity(valid_days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("ppml encrypted inference CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    ca_folder = os.path.join(directory, CA_FOLDER)
    _write(os.path.join(ca_folder, "ca.pem"), ca_cert.public_bytes(serialization.Encoding.PEM))
    _write(
        os.path.join(ca_folder, "key.pem"),
        ca_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        private=True,
    )
    for i in range(NUM_PARTIES):
        _issue(os.path.join(directory, party_role(i)), party_role(i), addresses[i][0], ca_key, ca_cert, valid_days)
    for name in clients:
        _issue(os.path.join(directory, CLIENTS_FOLDER, name), client_role(name), None, ca_key, ca_cert, valid_days)
    _write(os.path.join(directory, REVOKED_FILE), json.dumps({"revoked": []}).encode())
    _write(
        os.path.join(directory, DEPLOYMENT_FILE),
        json.dumps({"parties": [{"host": h, "port": int(p)} for h, p in addresses]}, indent=2).encode(),
    )
    return Deployment.load(directory)


def _load_ca(directory: str):
    folder = os.path.join(directory, CA_FOLDER)
    try:
        with open(os.path.join(folder, "key.pem"), "rb") as fh:
            key = serialization.load_pem_private_key(fh.read(), password=None)
        with open(os.path.join(folder, "ca.pem"), "rb") as fh:
            return key, x509.load_pem_x509_certificate(fh.read())
    except (OSError, ValueError) as err:
        raise ValueError(
            f"{folder!r} holds no CA key ({err.__class__.__name__}); admit clients on the machine "
            f"where `ppml encrypted setup` ran"
        ) from None


def add_client(directory: str, name: str, *, valid_days: int = 365) -> str:
    """Admits client `name`: its own key and certificate under DIR/clients/<name>/; returns that folder.

    Raises:
        ValueError: if the name is invalid or taken, or DIR/ca/ holds no CA key.
    """
    _check_client_name(name)
    Deployment.load(directory)
    folder = os.path.join(directory, CLIENTS_FOLDER, name)
    if os.path.exists(folder):
        raise ValueError(f"client {name!r} exists already (revoke it and admit a new name)")
    ca_key, ca_cert = _load_ca(directory)
    _issue(folder, client_role(name), None, ca_key, ca_cert, valid_days)
    return folder


def revoke_client(directory: str, name: str) -> int:
    """Lists client `name`'s certificate in DIR/revoked.json; returns its serial number.

    Parties read the list again whenever it changes; copy the file to every party's deployment folder.

    Raises:
        ValueError: if there is no such client or the revocation list is unreadable.
    """
    deployment = Deployment.load(directory)
    try:
        _, cert_path, _ = deployment.credentials(client_role(name))
        with open(cert_path, "rb") as fh:
            serial = x509.load_pem_x509_certificate(fh.read()).serial_number
    except (OSError, ValueError) as err:
        raise ValueError(f"no client {name!r} in {directory!r} ({err})") from None
    path = os.path.join(directory, REVOKED_FILE)
    entries = []
    if os.path.exists(path):
        deployment.revoked()  # refuses an unreadable list before rewriting it
        with open(path) as fh:
            entries = json.load(fh)["revoked"]
    if all(int(e["serial"], 16) != serial for e in entries):
        entries.append({"client": name, "serial": f"{serial:x}"})
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump({"revoked": entries}, fh, indent=2)
    os.replace(tmp, path)
    return serial
