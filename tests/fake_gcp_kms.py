"""A local Cloud KMS over HTTP (the REST API's encrypt and decrypt), for tests.

    with FakeGcpKms() as kms:                   # a real HTTP server on a free port
        os.environ["PSTREAM_GCP_KMS_ENDPOINT"] = kms.endpoint     # http://127.0.0.1:PORT
        ...
        kms.requests                            # [(method, path, json body), ...]

It speaks the JSON of ``POST /v1/{name}:encrypt`` and ``:decrypt`` as google-cloud-kms's REST
transport sends it (bytes as base64, int64 checksums as strings), checks the CRC32C checksums
the way Cloud KMS does (400 on a mismatch), and encrypts for real with AES-GCM under one secret
per CryptoKey name, binding the additional authenticated data. Unknown paths get 404.
"""
from __future__ import annotations

import base64
import json
import re
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import google_crc32c
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PATH = re.compile(r"^/v1/(projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/:]+):(encrypt|decrypt)$")


def _crc(data: bytes) -> str:
    return str(google_crc32c.value(data))


class FakeGcpKms:
    def __init__(self):
        self.requests: list[tuple[str, str, dict]] = []
        self.keys: dict[str, AESGCM] = {}
        self.fail_checksums = False  # answer with a wrong ciphertext checksum (client must refuse)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status: int, body: dict):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                fake.requests.append(("POST", self.path, body))
                match = PATH.match(self.path.split("?", 1)[0])
                if not match:
                    return self._send(404, {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}})
                name, operation = match.groups()
                status, answer = (fake._encrypt if operation == "encrypt" else fake._decrypt)(name, body)
                self._send(status, answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @staticmethod
    def _error(message: str) -> tuple[int, dict]:
        return 400, {"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}}

    def _key(self, name: str) -> AESGCM:
        return self.keys.setdefault(name, AESGCM(secrets.token_bytes(32)))

    def _encrypt(self, name: str, body: dict) -> tuple[int, dict]:
        plaintext = base64.b64decode(body.get("plaintext", ""))
        aad = base64.b64decode(body.get("additionalAuthenticatedData", ""))
        if "plaintextCrc32c" in body and body["plaintextCrc32c"] != _crc(plaintext):
            return self._error("plaintext_crc32c did not match")
        if "additionalAuthenticatedDataCrc32c" in body and body["additionalAuthenticatedDataCrc32c"] != _crc(aad):
            return self._error("additional_authenticated_data_crc32c did not match")
        iv = secrets.token_bytes(12)
        ciphertext = iv + self._key(name).encrypt(iv, plaintext, aad)
        return 200, {
            "name": f"{name}/cryptoKeyVersions/1",
            "ciphertext": base64.b64encode(ciphertext).decode(),
            "ciphertextCrc32c": _crc(ciphertext + (b"!" if self.fail_checksums else b"")),
            "verifiedPlaintextCrc32c": "plaintextCrc32c" in body,
            "verifiedAdditionalAuthenticatedDataCrc32c": "additionalAuthenticatedDataCrc32c" in body,
            "protectionLevel": "SOFTWARE",
        }

    def _decrypt(self, name: str, body: dict) -> tuple[int, dict]:
        ciphertext = base64.b64decode(body.get("ciphertext", ""))
        aad = base64.b64decode(body.get("additionalAuthenticatedData", ""))
        if "ciphertextCrc32c" in body and body["ciphertextCrc32c"] != _crc(ciphertext):
            return self._error("ciphertext_crc32c did not match")
        try:
            plaintext = self._key(name).decrypt(ciphertext[:12], ciphertext[12:], aad)
        except (InvalidTag, ValueError):
            return self._error("Decryption failed: the ciphertext is invalid.")
        return 200, {"plaintext": base64.b64encode(plaintext).decode(), "plaintextCrc32c": _crc(plaintext),
                     "usedPrimary": True, "protectionLevel": "SOFTWARE"}

    def __enter__(self) -> "FakeGcpKms":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
