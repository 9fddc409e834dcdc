#!/usr/bin/env python3
"""Payoff through the clients a vendor brings.

Starts `payoff serve` on a loopback port over a fresh data directory, then:

1. validates the served /openapi.json with `openapi-spec-validator`;
2. generates a Python client with `openapi-python-client` and fails if the
   generator skips or warns about any operation;
3. drives that generated client against the running server: creates a
   customer, uploads a contract, sends events and reads them back;
4. sends events with the CNCF CloudEvents SDK in binary and structured mode
   and checks the contract bills them (binary mode sends no Content-Type);
5. calls models through Payoff's gateway with the official `openai` SDK
   (chat, streaming, embeddings, responses, models, an unknown model, a
   budget stop) against a local upstream speaking OpenAI's wire format, and
   checks each call's `llm.call` record;
6. exports GenAI spans with the OpenTelemetry Python SDK through its
   OTLP/HTTP exporters, protobuf and JSON, and checks the `llm.call`,
   `tool.call` and `agent.run` records they become;
7. connects the MCP Python SDK's client through Payoff's MCP gateway to
   a server written with the same SDK (FastMCP, streamable HTTP) and checks
   which tools are shown, which calls are relayed, refused or wait for a
   person's approval, and the action records they leave.

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
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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
            "application/x-protobuf": "application/octet-stream",
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

    upstream = ThreadingHTTPServer(("127.0.0.1", 0), FakeUpstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "data"
        (tmp / "payoff.toml").write_text(GATEWAY_TOML.format(port=upstream.server_port))
        env = {**os.environ, "FAKE_UPSTREAM_KEY": UPSTREAM_KEY}
        init = subprocess.run([payoff, "--data-dir", str(data), "init"], cwd=tmp, env=env,
                              capture_output=True, text=True, check=True)
        admin = init.stdout.strip().splitlines()[-1]
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [payoff, "--data-dir", str(data), "serve", "--listen", f"127.0.0.1:{port}"],
            cwd=tmp, env=env,
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
            openai_sdk(url, admin)
            opentelemetry_sdk(url, admin)
            mcp_sdk(url, admin)
        finally:
            server.terminate()
            server.wait(timeout=30)
            upstream.shutdown()


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


UPSTREAM_KEY = "sk-upstream-secret"
GATEWAY_TOML = """
[[gateway.upstream]]
name = "fake"
base_url = "http://127.0.0.1:{port}/v1"
api_key_env = "FAKE_UPSTREAM_KEY"
models = ["fake-chat", "fake-embed"]
timeout_ms = 10000

[egress]
allow = ["127.0.0.0/8"]
"""
# What the fake upstream was asked, for the checks.
SEEN: list = []


class FakeUpstream(BaseHTTPRequestHandler):
    """An upstream speaking OpenAI's wire format: chat completions (JSON,
    or server-sent events ending with a usage chunk only when asked, as
    OpenAI does), embeddings and responses, all with usage."""

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        SEEN.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        usage = {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17,
                 "prompt_tokens_details": {"cached_tokens": 4},
                 "completion_tokens_details": {"reasoning_tokens": 2}}
        if self.path == "/v1/chat/completions" and body.get("stream"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            base = {"id": "chatcmpl-2", "object": "chat.completion.chunk", "created": 0, "model": "fake-chat"}
            for word in ["hello", " world"]:
                chunk = {**base, "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
            if body.get("stream_options", {}).get("include_usage"):
                self.wfile.write(f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")
            return
        if self.path == "/v1/chat/completions":
            answer = {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "fake-chat",
                      "choices": [{"index": 0, "finish_reason": "stop",
                                   "message": {"role": "assistant", "content": "hello"}}],
                      "usage": usage}
        elif self.path == "/v1/embeddings":
            answer = {"object": "list", "model": "fake-embed",
                      "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3]}],
                      "usage": {"prompt_tokens": 3, "total_tokens": 3}}
        elif self.path == "/v1/responses":
            answer = {"id": "resp_1", "object": "response", "created_at": 0, "model": "fake-chat",
                      "status": "completed",
                      "output": [{"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                                  "content": [{"type": "output_text", "text": "hello", "annotations": []}]}],
                      "usage": {"input_tokens": 7, "output_tokens": 1, "total_tokens": 8,
                                "input_tokens_details": {"cached_tokens": 0},
                                "output_tokens_details": {"reasoning_tokens": 0}}}
        else:
            self.send_error(404)
            return
        raw = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


def call(url: str, method: str, path: str, key: str, body=None):
    request = urllib.request.Request(
        f"{url}{path}", method=method, headers={"Authorization": f"Bearer {key}",
                                                "Content-Type": "application/json"},
        data=None if body is None else json.dumps(body).encode())
    with urllib.request.urlopen(request) as r:
        return json.load(r)


def openai_sdk(url: str, admin: str) -> None:
    """An agent on the official `openai` SDK, only its base URL and key
    changed: every call answered as the upstream answered, and recorded."""
    import openai

    agent_key = call(url, "POST", "/v1/keys", admin, {"role": "agent", "customer": "acme"})["key"]
    client = openai.OpenAI(base_url=f"{url}/gateway/v1", api_key=agent_key, max_retries=0,
                           default_headers={"x-payoff-agent": "sdk-agent"})
    ask = [{"role": "user", "content": "Say hello"}]

    listed = {m.id for m in client.models.list()}
    assert listed == {"fake-chat", "fake-embed"}, listed

    reply = client.chat.completions.create(
        model="fake-chat", messages=ask,
        extra_headers={"x-payoff-subject": "GW-1", "x-payoff-outcome": "ticket_resolved"})
    assert reply.choices[0].message.content == "hello", reply
    assert reply.usage.prompt_tokens == 12

    chunks = list(client.chat.completions.create(
        model="fake-chat", messages=ask, stream=True, extra_headers={"x-payoff-subject": "GW-2"}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "hello world", text
    # The client did not ask for usage; the gateway did, and passes it on.
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5, chunks[-1]
    streamed = [s for s in SEEN if s["body"].get("stream")]
    assert streamed and streamed[-1]["body"]["stream_options"] == {"include_usage": True}, streamed

    vectors = client.embeddings.create(model="fake-embed", input="hello")
    assert vectors.data[0].embedding == [0.1, 0.2, 0.3], vectors
    answer = client.responses.create(model="fake-chat", input="Say hello")
    assert answer.output_text == "hello", answer
    assert all(s["auth"] == f"Bearer {UPSTREAM_KEY}" for s in SEEN), SEEN

    try:
        client.chat.completions.create(model="no-such-model", messages=ask)
        raise AssertionError("an unknown model was served")
    except openai.NotFoundError as e:
        assert "no-such-model" in str(e), e
    calls_before = len(SEEN)
    call(url, "PUT", "/v1/customers/acme/budgets", admin, {"agents": {"capped": {"limit": "0"}}})
    capped = openai.OpenAI(base_url=f"{url}/gateway/v1", api_key=agent_key, max_retries=0,
                           default_headers={"x-payoff-agent": "capped"})
    try:
        capped.chat.completions.create(model="fake-chat", messages=ask)
        raise AssertionError("a call past its budget went out")
    except openai.RateLimitError as e:
        assert "budget" in str(e), e
    assert len(SEEN) == calls_before, "the upstream was called past the budget"

    events = call(url, "GET", "/v1/events?customer=acme&type=llm.call&limit=100", admin)["events"]
    records = [e["event"]["data"] for e in events if e["event"]["data"].get("via") == "gateway"]
    assert len(records) == 4, records
    by_subject = {r.get("subject"): r for r in records}
    one = by_subject["GW-1"]
    assert (one["input_tokens"], one["cached_input_tokens"], one["reasoning_tokens"],
            one["output_tokens"]) == (12, 4, 2, 5), one
    assert (one["upstream"], one["agent"], one["outcome"], one["result"], one["status"]) == \
        ("fake", "sdk-agent", "ticket_resolved", "ok", 200), one
    two = by_subject["GW-2"]
    assert (two["stream"], two["output_tokens"], two["result"]) == (True, 5, "ok"), two
    endpoints = sorted(r["endpoint"] for r in records)
    assert endpoints == ["chat/completions", "chat/completions", "embeddings", "responses"], endpoints
    print("openai SDK: chat, streaming, embeddings, responses and models through the gateway, "
          "each call recorded with its tokens; unknown models and spent budgets refused")



def opentelemetry_sdk(url: str, admin: str) -> None:
    """An agent instrumented with OpenTelemetry, its exporter pointed at
    Payoff with its key: its GenAI spans become ledger records, its other
    spans are skipped, and nothing of the prompt is kept."""
    from opentelemetry.exporter.otlp.json.http.trace_exporter import OTLPSpanExporter as JsonExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as ProtobufExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
    from opentelemetry.trace import Status, StatusCode

    class Recording(SpanExporter):
        """The SDK's exporter, with what each export came to."""

        def __init__(self, inner):
            self.inner, self.results = inner, []

        def export(self, spans):
            result = self.inner.export(spans)
            self.results.append(result)
            return result

        def shutdown(self):
            self.inner.shutdown()

    agent_key = call(url, "POST", "/v1/keys", admin, {"role": "agent", "customer": "acme"})["key"]
    for encoding, exporter_class in (("protobuf", ProtobufExporter), ("json", JsonExporter)):
        exporter = Recording(exporter_class(endpoint=f"{url}/v1/traces",
                                            headers={"Authorization": f"Bearer {agent_key}"}))
        provider = TracerProvider(resource=Resource.create({"service.name": f"otel-{encoding}"}))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracer = provider.get_tracer("payoff-check")
        subject = {"payoff.subject": f"OT-{encoding}"}
        with tracer.start_as_current_span("invoke_agent helper", attributes={
                "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "helper", **subject}):
            with tracer.start_as_current_span("chat gpt-4o-mini", attributes={
                    "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 1000,
                    "gen_ai.usage.output_tokens": 200, "gen_ai.usage.cache_read.input_tokens": 600,
                    "gen_ai.usage.reasoning.output_tokens": 50,
                    "gen_ai.input.messages": '[{"role": "user", "content": "a private question"}]',
                    **subject}):
                pass
            with tracer.start_as_current_span("execute_tool lookup", attributes={
                    "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup", **subject}) as span:
                span.set_status(Status(StatusCode.ERROR, "lookup failed"))
            with tracer.start_as_current_span("GET /health"):
                pass
        provider.shutdown()
        assert exporter.results == [SpanExportResult.SUCCESS] * 4, (encoding, exporter.results)

        events = call(url, "GET", f"/v1/events?customer=acme&subject=OT-{encoding}", admin)["events"]
        by_type = {e["event"]["type"]: e["event"] for e in events}
        assert sorted(by_type) == ["agent.run", "llm.call", "tool.call"], (encoding, events)
        llm = by_type["llm.call"]["data"]
        assert (llm["model"], llm["input_tokens"], llm["output_tokens"], llm["cached_input_tokens"],
                llm["reasoning_tokens"], llm["agent"], llm["via"]) == \
            ("gpt-4o-mini", 1000, 200, 600, 50, f"otel-{encoding}", "otlp"), llm
        assert "private question" not in json.dumps(events), "a prompt reached the ledger"
        tool = by_type["tool.call"]["data"]
        assert (tool["tool"], tool["result"], tool["error"]) == ("lookup", "error", "lookup failed"), tool
        run = by_type["agent.run"]
        assert (run["data"]["agent"], run["source"]) == ("helper", f"otlp/otel-{encoding}"), run
        assert llm["parent_span_id"] == run["data"]["span_id"], (llm, run)
    print("OpenTelemetry SDK: GenAI spans exported over OTLP/HTTP, protobuf and JSON, "
          "become model call, tool call and agent run records; other spans skipped")




MCP_SCHEMA = """
action "lookup_order" appliesTo { principal: [Payoff::Agent], resource: [Payoff::McpServer],
  context: { "order_id": String } };
action "refund_order" appliesTo { principal: [Payoff::Agent], resource: [Payoff::McpServer],
  context: { "order_id": String, "amount": Long } };
action "delete_order" appliesTo { principal: [Payoff::Agent], resource: [Payoff::McpServer],
  context: { "order_id": String } };
"""
MCP_RULES = """
@id("lookups") permit(principal, action == Action::"lookup_order", resource);
@id("refunds") @approval permit(principal, action == Action::"refund_order", resource)
when { context.amount < 100 };
@id("never_delete") forbid(principal, action == Action::"delete_order", resource);
"""


def mcp_sdk(url: str, admin: str) -> None:
    """An agent on the MCP Python SDK reaches a FastMCP server through
    Payoff: only the tools its rules allow, every call an action."""
    import anyio
    import uvicorn
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client
    from mcp.server.fastmcp import FastMCP
    from mcp.shared.exceptions import McpError

    import logging
    logging.getLogger("httpx").setLevel(logging.WARNING)
    calls: list = []
    shop = FastMCP("shop", host="127.0.0.1", log_level="WARNING")

    @shop.tool()
    def lookup_order(order_id: str) -> str:
        calls.append(("lookup_order", order_id))
        return f"order {order_id}: shipped"

    @shop.tool()
    def refund_order(order_id: str, amount: int) -> str:
        calls.append(("refund_order", order_id, amount))
        return f"refunded {amount} on {order_id}"

    @shop.tool()
    def delete_order(order_id: str) -> str:
        calls.append(("delete_order", order_id))
        return "deleted"

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(shop.streamable_http_app(), host="127.0.0.1",
                                           port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the FastMCP server did not start"
        time.sleep(0.05)

    call(url, "PUT", "/v1/customers/acme/mcp-servers/shop", admin,
         {"url": f"http://127.0.0.1:{port}/mcp"})
    call(url, "POST", "/v1/customers/acme/action-rules", admin,
         {"schema": MCP_SCHEMA, "rules": MCP_RULES})
    agent_key = call(url, "POST", "/v1/keys", admin, {"role": "agent", "customer": "acme"})["key"]
    approver = call(url, "POST", "/v1/keys", admin,
                    {"role": "customer_admin", "customer": "acme"})["key"]

    def approve_when_asked() -> None:
        """A person at the approvals queue: approves the refund once it waits."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            queue = call(url, "GET", "/v1/approvals?status=pending", approver)["approvals"]
            waiting = [a for a in queue if a.get("kind") == "action"]
            if waiting:
                call(url, "POST", f"/v1/approvals/{waiting[0]['id']}/approve", approver, {})
                return
            time.sleep(0.1)

    async def agent() -> None:
        headers = {"Authorization": f"Bearer {agent_key}", "x-payoff-agent": "support",
                   "x-payoff-subject": "order/o-1"}
        async with streamablehttp_client(f"{url}/mcp/shop", headers=headers) as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                tools = sorted(t.name for t in (await session.list_tools()).tools)
                assert tools == ["lookup_order", "refund_order"], tools

                looked = await session.call_tool("lookup_order", {"order_id": "o-1"})
                assert not looked.isError and looked.content[0].text == "order o-1: shipped", looked

                refused = await session.call_tool("refund_order", {"order_id": "o-1", "amount": 500})
                assert refused.isError and "refused" in refused.content[0].text, refused

                try:
                    await session.call_tool("delete_order", {"order_id": "o-1"})
                    raise AssertionError("a forbidden tool was called")
                except McpError as e:
                    assert "unknown tool" in str(e), e

                person = threading.Thread(target=approve_when_asked)
                person.start()
                refunded = await session.call_tool("refund_order", {"order_id": "o-1", "amount": 40})
                person.join()
                assert not refunded.isError, refunded
                assert refunded.content[0].text == "refunded 40 on o-1", refunded

    anyio.run(agent)
    server.should_exit = True
    assert calls == [("lookup_order", "o-1"), ("refund_order", "o-1", 40)], calls
    events = call(url, "GET", "/v1/events?customer=acme&type=payoff.action.completed&limit=100",
                  admin)["events"]
    done = sorted(e["event"]["data"]["type"] for e in events)
    assert done == ["lookup_order", "refund_order"], done
    assert all(e["event"]["data"]["status"] == "succeeded" and e["event"]["subject"] == "order/o-1"
               for e in events), events
    print("MCP SDK: through the gateway to a FastMCP server, only allowed tools listed, a refused "
          "call, an unknown one, a refund approved by a person while the call waited; each an action")


if __name__ == "__main__":
    main()
