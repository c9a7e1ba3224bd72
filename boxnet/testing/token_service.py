"""A registry token service for tests, as Docker Hub's auth.docker.io is to its registry: it checks Basic
credentials and returns a JWT (ES256, its certificate in the x5c header) granting what the scope asks,
which distribution's `auth: token` verifies against the certificate in its rootcertbundle. Anonymous
requests get a token that grants nothing."""

from __future__ import annotations

import argparse
import base64
import datetime
import http.server
import json
import os
import secrets
import time
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID


def make_key(directory: str) -> tuple[str, str]:
    """A P-256 key and a self-signed certificate for it; their paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "boxnet test token signer")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))  # fmt: skip
    key_path, cert_path = os.path.join(directory, "token.key"), os.path.join(directory, "token.crt")
    with open(key_path, "wb") as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))  # fmt: skip
    with open(cert_path, "wb") as handle:
        handle.write(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def command(address: str, port: int, key: str, cert: str, issuer: str, service: str, username: str,
            password: str) -> list[str]:  # fmt: skip
    import sys

    return [sys.executable, "-m", "boxnet.testing.token_service", "--address", address, "--port", str(port),
            "--key", key, "--cert", cert, "--issuer", issuer, "--service", service, "--username", username,
            "--password", password]  # fmt: skip


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(key: ec.EllipticCurvePrivateKey, cert_der: bytes, issuer: str, audience: str, subject: str,
          access: list[dict]) -> str:  # fmt: skip
    header = {"typ": "JWT", "alg": "ES256", "x5c": [base64.b64encode(cert_der).decode()]}
    now = int(time.time())
    claims = {"iss": issuer, "sub": subject, "aud": audience, "exp": now + 300, "nbf": now - 10, "iat": now,
              "jti": secrets.token_hex(8), "access": access}  # fmt: skip
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return f"{signing_input}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def main() -> None:
    parser = argparse.ArgumentParser()
    for option in ("address", "key", "cert", "issuer", "service", "username", "password"):
        parser.add_argument(f"--{option}", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    with open(args.key, "rb") as handle:
        key = serialization.load_pem_private_key(handle.read(), None)
    with open(args.cert, "rb") as handle:
        cert_der = x509.load_pem_x509_certificate(handle.read()).public_bytes(serialization.Encoding.DER)
    expected = "Basic " + base64.b64encode(f"{args.username}:{args.password}".encode()).decode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = parse_qs(urlsplit(self.path).query)
            authorization = self.headers.get("Authorization", "")
            if authorization and authorization != expected:
                self.send_response(401)
                self.end_headers()
                return
            access = []
            if authorization:  # the tester gets what it asks; anonymous callers get nothing
                for scope in query.get("scope", []):
                    kind, _, rest = scope.partition(":")
                    name, _, actions = rest.rpartition(":")
                    access.append({"type": kind, "name": name, "actions": actions.split(",")})
            jwt = token(key, cert_der, args.issuer, query.get("service", [args.service])[0],  # type: ignore[arg-type]
                        args.username if authorization else "", access)  # fmt: skip
            body = json.dumps({"token": jwt, "access_token": jwt, "expires_in": 300}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    http.server.ThreadingHTTPServer((args.address, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
