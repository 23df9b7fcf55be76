"""The http check's transport on real sockets: TLS verified against the check's host (SNI + Host header), and a
connection that cannot be made reported as "unreachable from the hook".

A private CA (cryptography) signs a certificate for orders.example.test only; a loopback HTTPS server records the
SNI name and Host header it received. Nothing depends on wall time: the unreachable case is a session that raises
requests' ConnectTimeout, the exception a dropped SYN produces.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from release_train.adapters.check_runners import UNREACHABLE, HttpRequester, Unreachable
from release_train.domain.checks import HookPhase, HookStatus, HttpObservation
from release_train.domain.hook_targets import EcsTarget
from release_train.hooks import HookRequest, RawChecks, ReportResult, TrafficHookService

SERVICE_NAME = "orders.example.test"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_pki(directory: Path) -> tuple[Path, Path, Path]:
    """(CA bundle, server certificate, server key): the certificate is valid for SERVICE_NAME only."""
    # A validity window no test run falls outside of: nothing here depends on today's date.
    now = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("test CA"))
        .issuer_name(_name("test CA"))
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(datetime.datetime(2099, 12, 31, tzinfo=datetime.UTC))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(SERVICE_NAME))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now)
        .not_valid_after(datetime.datetime(2099, 12, 31, tzinfo=datetime.UTC))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(SERVICE_NAME)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


@dataclass
class TlsServer:
    base_url: str  # https://127.0.0.1:<port>: the "load balancer's" address, not the service's name
    ca_bundle: str
    sni: list[str | None] = field(default_factory=list)
    hosts: list[str | None] = field(default_factory=list)


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[TlsServer]:
    ca, cert, key = _write_pki(tmp_path)
    server_state = TlsServer("", str(ca))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            server_state.hosts.append(self.headers.get("Host"))
            body = b'{"status": "ok"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda _sock, name, _ctx: server_state.sni.append(name)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server_state.base_url = f"https://{ipaddress.ip_address('127.0.0.1')}:{server.server_address[1]}"
    yield server_state
    server.shutdown()
    server.server_close()


def _service(target: EcsTarget, checks: list[dict[str, Any]], http: Any) -> TrafficHookService:
    class Deployments:
        def target(self, deployment_id: str) -> EcsTarget:
            return target

    class Reporter:
        def report(self, deployment_id: str, execution_id: str, status: HookStatus) -> ReportResult:
            return ReportResult.REPORTED

    class Checks:
        def load(self, checks_key: str) -> RawChecks:
            import json

            return RawChecks("test", json.dumps({"pre_traffic": checks}))

    return TrafficHookService(Deployments(), Reporter(), Checks(), None, http, None)  # type: ignore[arg-type]


REQUEST = HookRequest("d-1", "exec-1", HookPhase.PRE_TRAFFIC)


def test_given_a_check_naming_the_services_host_when_run_over_tls_then_sni_host_and_verification_use_that_name(
    tls_server: TlsServer,
) -> None:
    target = EcsTarget("d-1", "AppECS-c-orders", "DgpECS-c-orders", "arn:l", base_url=tls_server.base_url)
    check = {"kind": "http", "name": "health", "request": {"path": "/health", "host": SERVICE_NAME}}

    outcome = _service(target, [check], HttpRequester(verify=tls_server.ca_bundle)).handle(REQUEST, 60_000, 5_000)

    assert (outcome.status, outcome.reasons) == (HookStatus.SUCCEEDED, ())
    assert tls_server.sni == [SERVICE_NAME]
    assert tls_server.hosts == [SERVICE_NAME]


def test_given_a_check_without_a_host_when_the_listener_serves_the_services_certificate_then_tls_fails_by_name(
    tls_server: TlsServer,
) -> None:
    requester = HttpRequester(verify=tls_server.ca_bundle)

    with pytest.raises(requests.exceptions.SSLError, match=r"(?i)mismatch"):
        requester.request("GET", tls_server.base_url + "/health", {}, None, timeout_s=10)


def test_given_a_host_and_an_untrusted_certificate_when_run_then_verification_still_fails(
    tls_server: TlsServer,
) -> None:
    requester = HttpRequester()  # the public CA store: the private CA is not in it

    with pytest.raises(requests.exceptions.SSLError, match=r"certificate verify failed: unable to get local issuer"):
        requester.request("GET", tls_server.base_url + "/health", {"Host": SERVICE_NAME}, None, timeout_s=10)


class _DroppedSyn:
    """A session whose connect times out: what requests raises when an internal load balancer drops our SYNs."""

    def request(self, *args: Any, **kwargs: Any) -> HttpObservation:
        raise requests.exceptions.ConnectTimeout("Connection to 10.0.3.17 timed out. (connect timeout=3.0)")


def test_given_a_connection_that_cannot_be_made_when_requested_then_it_says_unreachable_from_the_hook() -> None:
    with pytest.raises(Unreachable) as caught:
        HttpRequester(session=_DroppedSyn()).request("GET", "https://internal-x.elb.amazonaws.com:8443/h", {}, None, 30)

    assert str(caught.value) == f"{UNREACHABLE}: no connection to https://internal-x.elb.amazonaws.com:8443 within 3 s"


def test_given_an_unreachable_test_listener_when_the_hook_runs_then_the_reason_points_at_the_vpc_config() -> None:
    target = EcsTarget("d-1", "AppECS-c-orders", "DgpECS-c-orders", "arn:l", base_url="https://internal-x:8443")
    check = {"kind": "http", "name": "health", "request": {"path": "/health"}}

    outcome = _service(target, [check], HttpRequester(session=_DroppedSyn())).handle(REQUEST, 60_000, 5_000)

    assert outcome.status is HookStatus.FAILED
    assert outcome.reasons == (
        "health: Unreachable: unreachable from the hook (is the hook in the load balancer's VPC? HookSubnetIds): "
        "no connection to https://internal-x:8443 within 3 s",
    )
