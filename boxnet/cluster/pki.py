"""The cluster's certificates: a CA made at `swarm init`, a certificate per node (for etcd, as client and as
member, and for the join service), and Docker's join tokens, which carry the CA's digest.

Through `cryptography` (pyca), the library every Python TLS stack builds on; keys are EC P-256. Every
certificate has both serverAuth and clientAuth: an etcd member talks to its own gateway with it.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import ipaddress
import secrets
import string
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from boxnet.errors import Forbidden, InvalidArgument

_BASE36 = string.digits + string.ascii_lowercase
TOKEN_PREFIX = "SWMTKN-1-"


def base36(number: int, width: int) -> str:
    digits = ""
    while number:
        number, digit = divmod(number, 36)
        digits = _BASE36[digit] + digits
    return digits.rjust(width, "0")


def new_node_id() -> str:
    """25 base-36 characters, as swarmkit's node IDs."""
    return base36(secrets.randbits(128), 25)


def new_key() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())  # fmt: skip


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "boxnet")])  # fmt: skip


def new_ca(cluster_id: str) -> tuple[bytes, bytes]:
    """(certificate, key) of a new cluster CA, in PEM."""
    key_pem = new_key()
    key = serialization.load_pem_private_key(key_pem, None)
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(f"boxnet-swarm-ca {cluster_id}"))
            .issuer_name(_name(f"boxnet-swarm-ca {cluster_id}")).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .sign(key, hashes.SHA256()))  # fmt: skip
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def csr_for(key_pem: bytes, node_id: str) -> bytes:
    key = serialization.load_pem_private_key(key_pem, None)
    request = x509.CertificateSigningRequestBuilder().subject_name(_name(node_id)).sign(key, hashes.SHA256())
    return request.public_bytes(serialization.Encoding.PEM)


def sign(ca_cert_pem: bytes, ca_key_pem: bytes, csr_pem: bytes, node_id: str, addresses: list[str],
         days: int = 90) -> bytes:  # fmt: skip
    """A node certificate for the CSR's key, named after the node (the CSR's own subject is not trusted),
    valid for its addresses."""
    try:
        request = x509.load_pem_x509_csr(csr_pem)
    except ValueError as exc:
        raise InvalidArgument(f"certificate request: {exc}") from None
    if not request.is_signature_valid:
        raise InvalidArgument("certificate request: the signature does not match its key")
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, None)
    now = datetime.datetime.now(datetime.UTC)
    sans = [x509.IPAddress(ipaddress.ip_address(a)) for a in dict.fromkeys([*addresses, "127.0.0.1"])]
    cert = (x509.CertificateBuilder().subject_name(_name(node_id)).issuer_name(ca_cert.subject)
            .public_key(request.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(ca_key, hashes.SHA256()))  # fmt: skip
    return cert.public_bytes(serialization.Encoding.PEM)


def ca_digest(ca_cert_pem: bytes) -> str:
    """swarmkit's digest of the CA in a join token: SHA-256 of the PEM, base 36, 50 characters."""
    return base36(int.from_bytes(hashlib.sha256(ca_cert_pem).digest(), "big"), 50)


def new_token(ca_cert_pem: bytes) -> str:
    return f"{TOKEN_PREFIX}{ca_digest(ca_cert_pem)}-{base36(secrets.randbits(128), 25)}"


@dataclass(frozen=True)
class ParsedToken:
    digest: str
    secret: str


def parse_token(token: str) -> ParsedToken:
    parts = token.split("-")
    if not token.startswith(TOKEN_PREFIX) or len(parts) != 4 or len(parts[2]) != 50 or len(parts[3]) != 25 \
            or not all(c in _BASE36 for c in parts[2] + parts[3]):  # fmt: skip
        raise InvalidArgument("invalid join token: expected SWMTKN-1-<50 base-36 characters>-<25 base-36 characters>")
    return ParsedToken(parts[2], parts[3])


def check_ca(token: str, ca_cert_pem: bytes) -> None:
    """The CA a manager sent must be the one the token names (else: a man in the middle, or the wrong swarm)."""
    if not hmac.compare_digest(parse_token(token).digest, ca_digest(ca_cert_pem)):
        raise Forbidden("the manager's CA does not match the join token: wrong swarm, or someone in between")


def role_of(token: str, tokens: dict[str, str]) -> str:
    """"worker" or "manager", whichever of the swarm's tokens this is; Forbidden otherwise."""
    for role, known in tokens.items():
        if hmac.compare_digest(token.encode(), known.encode()):
            return role
    raise Forbidden("invalid join token")
