"""Local servers that speak the cloud storage APIs, for tests: S3, GCS and Azure Blob.

    from cloud_servers import AzuriteServer, GcsEmulator, MotoS3Server
    with MotoS3Server() as s3:
        s3.create_bucket("exports")
        options = PipelineOptions(s3.beam_flags())   # --s3_endpoint_url=..., keys, region
        ...                                          # write s3://exports/... through Beam
        s3.objects("exports")                        # {key: bytes}, read back with boto3

- ``MotoS3Server``: moto's server mode. Authentication is enforced: the server gets an IAM user
  with an access key allowed ``s3:*``, then every request must be signed with that key, so wrong
  credentials fail as they would on AWS. (The server process fixes one moto/werkzeug mismatch in
  how moto re-computes signatures: it sees paths and queries decoded. Beam and boto3, the
  client side, are untouched.)
- ``GcsEmulator``: the ``gcp-storage-emulator`` package, in memory. Beam finds it through
  ``STORAGE_EMULATOR_HOST``; ``beam_env(directory)`` also writes an application-default
  credentials file whose token never needs refreshing, so nothing leaves this machine.
- ``AzuriteServer``: Azurite's blob service from npm (``tests/install_azurite.sh`` installs it
  into ``.cache/azurite`` on first use), with a storage account and a random key of its own;
  Beam reaches it with ``--azure_connection_string``.

Each server is a child process listening on 127.0.0.1 on a port the OS picks (port 0); the
server prints the port it got and the wrapper reads it, so parallel test workers never collide.
A server that cannot run on this machine raises ``ServerUnavailable`` with the reason; the
fixtures in conftest.py turn that into a skip, or into a failure when ``CLOUD_SERVERS_REQUIRED=1``.
"""
from __future__ import annotations

import base64
import collections
import fcntl
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"


class ServerUnavailable(RuntimeError):
    """The server cannot run on this machine; the message says why."""


def unique_name(prefix: str) -> str:
    """A bucket or container name that is valid on S3, GCS and Azure and unique per call."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class LocalServer:
    """A child process that prints the port it listens on; subclasses say how to start it."""

    name = "server"
    ready_pattern: re.Pattern

    def __init__(self):
        self.port: int | None = None
        self.log: collections.deque[str] = collections.deque(maxlen=200)
        self._process: subprocess.Popen | None = None
        self._ready = threading.Event()
        self._workdir = tempfile.TemporaryDirectory(prefix=f"{self.name}-")

    # -- subclass hooks
    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict:
        return dict(os.environ)

    def after_start(self) -> None:
        """Set-up that needs the running server (users, keys)."""

    # -- life cycle
    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, timeout: float = 60.0) -> "LocalServer":
        command = self.command()
        try:
            self._process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                cwd=self._workdir.name, env=self.environment())
        except OSError as exc:
            raise ServerUnavailable(f"{self.name}: cannot start {command[0]}: {exc.strerror}") from None
        threading.Thread(target=self._read_output, name=f"{self.name}-output", daemon=True).start()
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if self._process.poll() is not None or time.monotonic() > deadline:
                code = self._process.poll()
                self.stop()
                time.sleep(0.1)  # let the reader thread take the last lines
                tail = "".join(list(self.log)[-15:])
                raise ServerUnavailable(f"{self.name} did not start (exit code {code}):\n{tail}")
        self._wait_for_port(deadline)
        self.after_start()
        return self

    def _read_output(self) -> None:
        for line in self._process.stdout:
            self.log.append(line)
            if self.port is None:
                match = self.ready_pattern.search(line)
                if match:
                    self.port = int(match.group(1))
                    self._ready.set()

    def _wait_for_port(self, deadline: float) -> None:
        while True:
            try:
                socket.create_connection((HOST, self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise ServerUnavailable(f"{self.name} printed port {self.port} but does not accept connections")
                time.sleep(0.05)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self._workdir.cleanup()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


_MOTO_MAIN = """
import sys
from urllib.parse import parse_qsl, quote, unquote, urlsplit, urlunsplit

import moto.iam.access_control as access_control

_create_aws_request = access_control.IAMRequestBase._create_aws_request


def _as_signed(self):
    # moto recomputes the signature from werkzeug's request.url, an IRI in which '%2F' in the
    # query and '%3A' in the path are already decoded; SigV4 signs the encoded form. Re-encode
    # both as the client did, or listings with a prefix like 'dir/' and keys with ':' (window
    # start times) fail with SignatureDoesNotMatch.
    parts = urlsplit(self._path)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = "&".join(quote(k, safe="-_.~") + "=" + quote(v, safe="-_.~") for k, v in pairs)
    self._path = urlunsplit(("", "", quote(unquote(parts.path), safe="/~"), query, ""))
    return _create_aws_request(self)


access_control.IAMRequestBase._create_aws_request = _as_signed
from moto.server import main
main(sys.argv[1:])
"""


class MotoS3Server(LocalServer):
    """moto's S3 server with authentication on; ``access_key_id``/``secret_access_key`` are valid."""

    name = "moto-s3"
    ready_pattern = re.compile(r"Running on http://127\.0\.0\.1:(\d+)")
    region = "us-east-1"

    def __init__(self):
        super().__init__()
        self.access_key_id = ""
        self.secret_access_key = ""

    def command(self):
        try:
            import flask  # noqa: F401  (moto[server] brings it)
            import moto.server  # noqa: F401
        except ImportError as exc:
            raise ServerUnavailable(f"moto's server mode is not installed ({exc.name}): pip install 'moto[server]'")
        return [sys.executable, "-c", _MOTO_MAIN, "-H", HOST, "-p", "0"]

    def _client(self, service: str, key_id: str = "setup", secret: str = "setup"):
        import boto3
        return boto3.client(service, endpoint_url=self.endpoint, region_name=self.region,
                            aws_access_key_id=key_id, aws_secret_access_key=secret)

    def after_start(self):
        # Until authentication is switched on, moto accepts any key: create the user and its key.
        iam = self._client("iam")
        iam.create_user(UserName="beam-tests")
        key = iam.create_access_key(UserName="beam-tests")["AccessKey"]
        iam.put_user_policy(UserName="beam-tests", PolicyName="s3-all", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        self.access_key_id, self.secret_access_key = key["AccessKeyId"], key["SecretAccessKey"]
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset-auth", data=b"0", method="POST",
                                         headers={"Content-Type": "text/plain"})
        urllib.request.urlopen(request, timeout=10).read()  # from now on every request is checked

    def client(self):
        """A boto3 S3 client with the valid key (for set-up and reading results, not for the code under test)."""
        return self._client("s3", self.access_key_id, self.secret_access_key)

    def beam_flags(self, key_id: str | None = None, secret: str | None = None) -> list[str]:
        return [f"--s3_endpoint_url={self.endpoint}", f"--s3_region_name={self.region}",
                f"--s3_access_key_id={key_id or self.access_key_id}",
                f"--s3_secret_access_key={secret or self.secret_access_key}"]

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def objects(self, bucket: str, prefix: str = "") -> dict[str, bytes]:
        s3 = self.client()
        found = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                found[item["Key"]] = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        return found


_GCS_MAIN = """
import sys
from gcp_storage_emulator.server import create_server
server = create_server("127.0.0.1", 0, in_memory=True)
server.start()
print("gcs emulator listening on", server._api._httpd.server_address[1], flush=True)
sys.stdin.read()   # runs until the parent closes stdin or ends the process
server.stop()
"""


class GcsEmulator(LocalServer):
    """gcp-storage-emulator in memory; it does not check credentials."""

    name = "gcs-emulator"
    ready_pattern = re.compile(r"gcs emulator listening on (\d+)")

    def command(self):
        try:
            import gcp_storage_emulator  # noqa: F401
        except ImportError:
            raise ServerUnavailable("gcp-storage-emulator is not installed: pip install gcp-storage-emulator")
        return [sys.executable, "-c", _GCS_MAIN]

    def client(self):
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage
        return storage.Client(project="test", credentials=AnonymousCredentials(),
                              client_options={"api_endpoint": self.endpoint})

    @staticmethod
    def write_credentials_file(directory: str | Path) -> str:
        """Application-default credentials with a token that is valid until 2099: never refreshed."""
        path = Path(directory) / "gcs-emulator-credentials.json"
        path.write_text(json.dumps({
            "type": "authorized_user", "client_id": "emulator", "client_secret": "emulator",
            "refresh_token": "emulator", "token": "emulator-token", "expiry": "2099-01-01T00:00:00Z"}))
        return str(path)

    def beam_env(self, directory: str | Path) -> dict[str, str]:
        """Environment under which Beam's gs:// file system talks to this emulator."""
        return {"STORAGE_EMULATOR_HOST": self.endpoint,
                "GOOGLE_APPLICATION_CREDENTIALS": self.write_credentials_file(directory)}

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(name)
        return name

    def objects(self, bucket: str, prefix: str = "") -> dict[str, bytes]:
        client = self.client()
        return {blob.name: blob.download_as_bytes() for blob in client.list_blobs(bucket, prefix=prefix or None)}


def azurite_blob_command() -> str:
    """Path of ``azurite-blob``, installed on first use by tests/install_azurite.sh (under a lock)."""
    cache = REPO / ".cache"
    cache.mkdir(exist_ok=True)
    with open(cache / "azurite.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test workers install once
        proc = subprocess.run(["bash", str(REPO / "tests" / "install_azurite.sh")],
                              capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise ServerUnavailable(f"Azurite could not be installed (exit {proc.returncode}): "
                                f"{proc.stderr.strip()[-800:]}")
    return proc.stdout.strip().splitlines()[-1]


class AzuriteServer(LocalServer):
    """Azurite's blob service with one storage account and a random key."""

    name = "azurite"
    ready_pattern = re.compile(r"listens on http://127\.0\.0\.1:(\d+)")
    account = "pstreamtests"

    def __init__(self):
        super().__init__()
        self.account_key = base64.b64encode(secrets.token_bytes(64)).decode("ascii")

    def command(self):
        return [azurite_blob_command(), "--blobHost", HOST, "--blobPort", "0", "--disableTelemetry",
                "--inMemoryPersistence", "--extentMemoryLimit", "256", "--skipApiVersionCheck"]

    def environment(self):
        return {**os.environ, "AZURITE_ACCOUNTS": f"{self.account}:{self.account_key}"}

    def connection_string(self, account_key: str | None = None) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={self.account};"
                f"AccountKey={account_key or self.account_key};BlobEndpoint={self.endpoint}/{self.account};")

    def client(self):
        from azure.storage.blob import BlobServiceClient
        return BlobServiceClient.from_connection_string(self.connection_string())

    def create_container(self, name: str) -> str:
        self.client().create_container(name)
        return name

    def objects(self, container: str, prefix: str = "") -> dict[str, bytes]:
        client = self.client().get_container_client(container)
        return {blob.name: client.download_blob(blob.name).readall()
                for blob in client.list_blobs(name_starts_with=prefix or None)}
