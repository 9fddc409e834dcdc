#!/usr/bin/env python3
"""Payoff through the clients a vendor brings.

Starts `payoff serve` on a loopback port over a fresh data directory, then:

1. validates the served /openapi.json with `openapi-spec-validator`;
2. generates a Python client with `openapi-python-client` and fails if the
   generator skips or warns about any operation;
3. drives that generated client against the running server: creates a
   customer, uploads a contract, sends events and reads them back;
4. sends events with the CNCF CloudEvents SDK in binary and structured mode
   and checks the contract bills them (binary mode sends no Content-Type).

Run by CI in a venv holding `requirements.txt`:

    python3 tests/clients/check.py --payoff target/debug/payoff
"""

import argparse
import http.client
import importlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from openapi_spec_validator import validate
from openapi_spec_validator.readers import read_from_filename


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, server: subprocess.Popen, deadline_s: float = 60) -> None:
    """Polls /healthz until it answers; fails at once if the server exits."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if server.poll() is not None:
            sys.exit(f"payoff serve exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"payoff serve did not answer /healthz within {deadline_s} s")


def generate(doc_path: Path, out: Path) -> None:
    """Generates the client; any warning (a skipped operation) is a failure.

    Contracts, price tables and policies are text bodies (TOML, Cedar): the
    generator is told to send them as bytes, with their own content type.
    """
    config = out.parent / "generator.json"
    config.write_text(json.dumps({
        "content_type_overrides": {
            "application/toml": "application/octet-stream",
            "application/cedar": "application/octet-stream",
        },
        "post_hooks": [],
    }))
    run = subprocess.run(
        [str(Path(sys.executable).parent / "openapi-python-client"), "generate",
         "--path", str(doc_path), "--output-path", str(out), "--meta", "none",
         "--config", str(config), "--fail-on-warning"],
        capture_output=True, text=True,
    )
    text = run.stdout + run.stderr
    if run.returncode != 0 or "WARNING" in text:
        sys.exit(f"openapi-python-client did not take the whole document:\n{text}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--payoff", required=True, help="the payoff binary")
    args = ap.parse_args()
    payoff = str(Path(args.payoff).resolve())

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "data"
        init = subprocess.run([payoff, "--data-dir", str(data), "init"],
                              capture_output=True, text=True, check=True)
        admin = init.stdout.strip().splitlines()[-1]
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [payoff, "--data-dir", str(data), "serve", "--listen", f"127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=open(tmp / "serve.log", "w"),
        )
        try:
            wait_ready(url, server)
            with urllib.request.urlopen(f"{url}/openapi.json") as r:
                doc_bytes = r.read()
            doc_path = tmp / "openapi.json"
            doc_path.write_bytes(doc_bytes)

            spec, _ = read_from_filename(str(doc_path))
            validate(spec)
            operations = sum(
                1 for item in spec["paths"].values()
                for method in item if method in {"get", "post", "put", "patch", "delete"}
            )
            print(f"openapi-spec-validator: valid, {operations} operations")

            out = tmp / "client"
            generate(doc_path, out)
            print("openapi-python-client: every operation generated")
            drive(out, url, admin)
            cloudevents_sdk(url, admin)
        finally:
            server.terminate()
            server.wait(timeout=30)


CONTRACT = """
[contract]
customer = "acme"
currency = "USD"
starts = "2026-11-01"

[[outcome]]
name = "ticket_resolved"
when = 'event.type == "ticket.closed" && event.data.resolved_by == "ai"'
price = { per_unit = "1.50" }
"""


def drive(out: Path, url: str, admin: str) -> None:
    """Uses the generated client as a vendor's integration would."""
    sys.path.insert(0, str(out.parent))
    package = out.name
    client = importlib.import_module(f"{package}.client").AuthenticatedClient(
        base_url=url, token=admin)
    models = importlib.import_module(f"{package}.models")
    types = importlib.import_module(f"{package}.types")

    def op(tag: str, name: str):
        return importlib.import_module(f"{package}.api.{tag}.{name}")

    acme = models.NewCustomer.from_dict({"id": "acme", "name": "Acme"})
    created = op("customers", "create_customer").sync_detailed(client=client, body=acme)
    assert created.status_code == 201, (created.status_code, created.content)
    listed = op("customers", "list_customers").sync(client=client)
    assert [c.id for c in listed.customers] == ["acme"], listed

    # A refused request comes back as a problem document.
    dup = op("customers", "create_customer").sync_detailed(client=client, body=acme)
    assert dup.status_code == 409, dup.status_code
    assert json.loads(dup.content)["code"] == "already_exists", dup.content

    contract = types.File(payload=CONTRACT.encode())
    uploaded = op("billing", "upload_contract").sync_detailed(
        "acme", client=client, body=contract)
    assert uploaded.status_code == 201, (uploaded.status_code, uploaded.content)

    events = [
        models.CloudEvent.from_dict({
            "specversion": "1.0", "id": f"t-{n}", "source": "helpdesk",
            "type": "ticket.closed", "subject": f"T-{n}",
            "time": "2026-11-03T10:00:00Z", "payoffcustomer": "acme",
            "data": {"resolved_by": "ai"},
        })
        for n in range(3)
    ]
    reply = op("events", "ingest_events").sync(client=client, body=events)
    assert reply.accepted == 3, reply
    page = op("events", "list_events").sync(client=client, customer="acme")
    assert sorted(e.event["id"] for e in page.events) == ["t-0", "t-1", "t-2"], page
    print("generated client: customers, a contract and events, and a refusal as documented")


def cloudevents_sdk(url: str, admin: str) -> None:
    """Events as the CNCF CloudEvents SDK sends them; the contract of `drive`
    bills `ticket.closed` with `data.resolved_by`, so each must become an
    outcome (data stored as a string would match no rule)."""
    from cloudevents.v1.conversion import to_binary, to_structured
    from cloudevents.v1.http import CloudEvent

    auth = {"Authorization": f"Bearer {admin}"}
    for n, convert in enumerate((to_binary, to_structured)):
        event = CloudEvent(
            {"type": "ticket.closed", "source": "sdk", "subject": f"SDK-{n}",
             "time": "2026-11-05T10:00:00+00:00", "payoffcustomer": "acme"},
            {"resolved_by": "ai"},
        )
        headers, body = convert(event)
        # http.client sends the SDK's headers as they are (urllib would
        # add a form Content-Type the SDK never sends).
        host = urllib.parse.urlsplit(url).netloc
        connection = http.client.HTTPConnection(host, timeout=30)
        connection.request("POST", "/v1/events", body=body, headers={**headers, **auth})
        reply = connection.getresponse()
        assert reply.status == 200, (reply.status, reply.read())
        assert json.load(reply)["accepted"] == 1
        connection.close()
        request = urllib.request.Request(
            f"{url}/v1/customers/acme/outcomes?subject=SDK-{n}", headers=auth)
        with urllib.request.urlopen(request) as r:
            outcomes = json.load(r)["outcomes"]
        assert len(outcomes) == 1, (convert.__name__, outcomes)
    print("CloudEvents SDK: binary and structured mode events are billed")


if __name__ == "__main__":
    main()
