"""Local endpoints that answer like a Kubernetes API server, so the real Kubernetes clients run with no
cluster: one whose caller lacks RBAC (403 to everything, keeping the bodies it was sent), and one that keeps
apps/v1 Deployments in memory (create, replace, list by label, scale), as the headroom backend uses them."""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import kubernetes
import yaml


class _JsonHandler(BaseHTTPRequestHandler):
    def _send(self, code: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


class _ForbiddenApiServer(_JsonHandler):
    """Answers every request like an API server whose caller lacks RBAC, keeping the pod bodies it was sent."""

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.server.received.append({"path": self.path, "body": json.loads(self.rfile.read(length))})
        self._forbidden()

    def do_GET(self) -> None:
        self._forbidden()

    def do_DELETE(self) -> None:
        self._forbidden()

    def _forbidden(self) -> None:
        message = 'pods is forbidden: User "system:anonymous" cannot create resource "pods"'
        self._send(403, _status(403, "Forbidden", message))


DEPLOYMENT_PATH = re.compile(
    r"^/apis/apps/v1/namespaces/([^/]+)/deployments(?:/([^/?]+))?(/scale)?(?:\?(.*))?$"
)


class _DeploymentsApiServer(_JsonHandler):
    """apps/v1 Deployments kept in ``server.deployments`` ((namespace, name) -> object): POST creates (409 if
    present), PUT replaces (404 if absent), GET lists (``labelSelector=key=value``), PATCH .../scale sets
    the replicas. Every request is kept in ``server.received`` as (method, path)."""

    def _route(self) -> tuple[str, str | None, bool, str]:
        self.server.received.append((self.command, self.path))
        match = DEPLOYMENT_PATH.match(self.path)
        if match is None:
            self._send(404, _status(404, "NotFound", f"no route {self.path}"))
            raise LookupError(self.path)
        namespace, name, scale, query = match.groups()
        return namespace, name, bool(scale), query or ""

    def _body(self) -> dict[str, Any]:
        return json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

    def do_POST(self) -> None:
        namespace, _, _, _ = self._route()
        body = self._body()
        key = (namespace, body["metadata"]["name"])
        if key in self.server.deployments:
            self._send(409, _status(409, "AlreadyExists", f"deployments {key[1]!r} already exists"))
            return
        self.server.deployments[key] = body
        self._send(201, body)

    def do_PUT(self) -> None:
        namespace, name, _, _ = self._route()
        body = self._body()
        if (namespace, name) not in self.server.deployments:
            self._send(404, _status(404, "NotFound", f'deployments.apps "{name}" not found'))
            return
        self.server.deployments[(namespace, name)] = body
        self._send(200, body)

    def do_GET(self) -> None:
        namespace, _, _, query = self._route()
        selector = parse_qs(query).get("labelSelector", [""])[0]  # one key=value, as the backend asks
        wanted = dict([selector.split("=", 1)]) if selector else {}
        items = [body for (space, _), body in sorted(self.server.deployments.items())
                 if space == namespace and wanted.items() <= body["metadata"].get("labels", {}).items()]  # fmt: skip
        self._send(200, {"apiVersion": "apps/v1", "kind": "DeploymentList", "metadata": {}, "items": items})

    def do_PATCH(self) -> None:
        namespace, name, scale, _ = self._route()
        body = self._body()
        deployment = self.server.deployments.get((namespace, name))
        if deployment is None or not scale:
            self._send(404, _status(404, "NotFound", f'deployments.apps "{name}" not found'))
            return
        deployment["spec"]["replicas"] = body["spec"]["replicas"]
        self._send(200, {"apiVersion": "autoscaling/v1", "kind": "Scale",
                         "metadata": {"name": name, "namespace": namespace},
                         "spec": {"replicas": body["spec"]["replicas"]},
                         "status": {"replicas": body["spec"]["replicas"]}})  # fmt: skip


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code,
            "message": message}  # fmt: skip


@contextlib.contextmanager
def forbidding_api_server(kubeconfig: Path) -> Iterator[list[dict[str, Any]]]:
    """Serve on a free local port and write a kubeconfig for it at ``kubeconfig``; yields the list of
    requests received. The kubernetes client's global default configuration is restored afterwards."""
    with _serve(_ForbiddenApiServer, kubeconfig) as server:
        yield server.received


@contextlib.contextmanager
def deployments_api_server(kubeconfig: Path) -> Iterator[ThreadingHTTPServer]:
    """As `forbidding_api_server`, for the in-memory Deployments endpoint: yields the server (its
    ``deployments`` and ``received``)."""
    with _serve(_DeploymentsApiServer, kubeconfig) as server:
        server.deployments = {}
        yield server


@contextlib.contextmanager
def _serve(handler: type[BaseHTTPRequestHandler], kubeconfig: Path) -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "local", "cluster": {"server": f"http://127.0.0.1:{server.server_address[1]}"}}
        ],
        "users": [{"name": "anonymous", "user": {}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": "anonymous"}}],
        "current-context": "local",
    }
    kubeconfig.write_text(yaml.safe_dump(config))
    saved = kubernetes.client.Configuration.get_default_copy()
    try:
        yield server
    finally:
        kubernetes.client.Configuration.set_default(saved)
        server.shutdown()
        server.server_close()
        thread.join()
