"""A stand-in for the W&B server at the network boundary, on 127.0.0.1.

It answers the GraphQL operations and HTTP calls that ``wandb.sweep``, ``wandb.agent`` and a
run's ``wandb.init``/``log``/``finish`` make, the way W&B's server answers them, and records
every request so that tests can check what the SDK asked. It is not a search engine: the runs
the agent is given (``commands``) are set by the test.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import yaml


@dataclass
class FakeWandbServer:
    """Runs while the context is open; ``url`` goes in ``WANDB_BASE_URL``."""

    runs: list[dict[str, Any]]  # {"args": {...}} (and "program" for program sweeps)
    program: str | None = None
    requests: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    sweep_config: str | None = None
    history: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    given: int = 0
    url: str = ""

    def operations(self) -> list[str]:
        return [name for kind, name, _ in self.requests if kind == "graphql"]

    def variables(self, operation: str) -> list[dict[str, Any]]:
        return [v for kind, name, v in self.requests if kind == "graphql" and name == operation]

    # ---- answers

    def answer(self, name: str, v: dict[str, Any], port: int) -> dict[str, Any]:
        if name == "Viewer":
            return {
                "viewer": {
                    "id": "1",
                    "entity": "team",
                    "username": "me",
                    "email": None,
                    "flags": "{}",
                    "teams": {"edges": []},
                }
            }
        if name == "UpsertSweep":
            self.sweep_config = v.get("config")
            return {
                "upsertSweep": {
                    "sweep": {"name": "sw1", "id": "U3dlZXA6MQ=="},
                    "configValidationWarnings": [],
                }
            }
        if name == "CreateAgent":
            return {"createAgent": {"agent": {"id": "QWdlbnQ6MQ=="}}}
        if name == "Heartbeat":
            commands = []
            if self.given < len(self.runs):
                run = self.runs[self.given]
                self.given += 1
                commands = [
                    {
                        "type": "run",
                        "run_id": f"run{self.given}",
                        "program": self.program,
                        "args": {k: {"value": x} for k, x in run["args"].items()},
                    }
                ]
            return {
                "agentHeartbeat": {
                    "agent": {"id": "QWdlbnQ6MQ==", "state": "RUNNING"},
                    "commands": json.dumps(commands),
                }
            }
        if name == "UpsertBucket":
            return {
                "upsertBucket": {
                    "inserted": True,
                    "bucket": {
                        "id": "QnVja2V0OjE=",
                        "name": v.get("name"),
                        "displayName": v.get("name"),
                        "description": None,
                        "config": "{}",
                        "sweepName": v.get("sweep"),
                        "historyLineCount": 0,
                        "eventsLineCount": 0,
                        "summaryMetrics": "{}",
                        "project": {
                            "id": "UHJvamVjdDox",
                            "name": v.get("project"),
                            "entity": {"id": "RW50aXR5OjE=", "name": v.get("entity")},
                        },
                    },
                }
            }
        if name == "CreateRunFiles":
            files = [
                {"name": f, "uploadUrl": f"http://127.0.0.1:{port}/upload/{f}"}
                for f in v.get("files", [])
            ]
            return {
                "createRunFiles": {"runID": "QnVja2V0OjE=", "uploadHeaders": [], "files": files}
            }
        if name == "ServerFeaturesQuery":
            return {"serverInfo": {"features": []}}
        if name == "OrganizationCoreWeaveOrganizationID":
            return {"entity": {"organization": None}}
        if "sweep" in name.lower() and self.sweep_config is not None:
            return {
                "project": {
                    "sweep": {
                        "id": "U3dlZXA6MQ==",
                        "name": "sw1",
                        "config": self.sweep_config,
                        "state": "RUNNING",
                        "bestLoss": None,
                        "runCount": self.given,
                        "runCountExpected": None,
                        "controller": None,
                        "scheduler": None,
                        "priorRuns": {"edges": []},
                        "runs": {"edges": []},
                    }
                }
            }
        return {}

    def file_stream(self, path: str, body: dict[str, Any]) -> None:
        run = path.split("/")[-2]
        rows = body.get("files", {}).get("wandb-history.jsonl", {}).get("content", [])
        self.history.setdefault(run, []).extend(json.loads(r) for r in rows)

    def config_sent(self) -> dict[str, Any]:
        assert self.sweep_config is not None
        loaded: dict[str, Any] = yaml.safe_load(self.sweep_config)
        return loaded


def _handler(server: FakeWandbServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _reply(self, obj: Any) -> None:
            out = json.dumps(obj).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length", 0)))

        def do_PUT(self) -> None:  # noqa: N802 (http.server's name)
            self._body()
            server.requests.append(("upload", self.path, {}))
            self._reply({})

        def do_POST(self) -> None:  # noqa: N802
            raw = self._body()
            if self.path.startswith("/graphql"):
                query = json.loads(raw)
                found = re.search(r"(?:query|mutation)\s+(\w+)", query.get("query", ""))
                name = found.group(1) if found else "?"
                variables = query.get("variables") or {}
                server.requests.append(("graphql", name, variables))
                port = self.server.server_address[1]
                self._reply({"data": server.answer(name, variables, int(port))})
            elif "/file_stream" in self.path:
                server.requests.append(("file_stream", self.path, {}))
                server.file_stream(self.path, json.loads(raw))
                self._reply({"exitcode": None, "limits": {}})
            else:  # the SDK's own telemetry
                self._reply({})

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


def serve(server: FakeWandbServer) -> Iterator[FakeWandbServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(server))
    server.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
