"""What the MCP end-to-end clients check, shared by client_stdio.py and client_http.py.

Each scenario talks to a connected `mcp.Client` through the official Python SDK only, raises
AssertionError (exit 1) on the first behaviour that differs, and returns a summary that the
driver prints as one JSON line on stdout for the Rust test to check against the store.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from mcp import Client
from mcp.shared.exceptions import MCPError

TOOL = "backlog_tool"
READS = {"get", "list", "events", "dashboard"}
WRITES = {"create", "upsert", "set_status", "add_comment"}
ADMIN = {"auto_generate_weekly", "auto_generate_daily", "cleanup"}
JSONRPC_INVALID_PARAMS = -32602


def name(action: str) -> str:
    return f"{TOOL}_{action}"


async def tools(client: Client) -> dict[str, Any]:
    listing = await client.list_tools()
    assert listing.next_cursor is None, "one page expected"
    return {t.name: t for t in listing.tools}


async def ok(client: Client, action: str, args: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(name(action), args)
    assert not result.is_error, f"{action} {args}: {result}"
    structured = result.structured_content
    assert isinstance(structured, dict), f"{action}: structuredContent {structured!r}"
    texts = [c.text for c in result.content if c.type == "text"]
    assert len(texts) == 1 and json.loads(texts[0]) == structured, f"{action}: text {texts!r}"
    return structured


async def err(client: Client, action: str, args: dict[str, Any], code: str, *says: str) -> str:
    """A tool result with isError and the error object, as text and structured."""
    result = await client.call_tool(name(action), args)
    assert result.is_error, f"{action} should fail with {code}: {result}"
    error = result.structured_content
    assert isinstance(error, dict) and set(error) == {"error", "code"}, f"{action}: {error!r}"
    assert error["code"] == code, f"{action}: expected {code}, got {error}"
    texts = [c.text for c in result.content if c.type == "text"]
    assert len(texts) == 1 and json.loads(texts[0]) == error, f"{action}: text {texts!r}"
    for s in says:
        assert s in error["error"], f"{action}: {error['error']!r} does not mention {s!r}"
    return error["error"]


async def total(client: Client) -> int:
    return (await ok(client, "list", {"limit": 1}))["total"]


def check_annotations(listed: dict[str, Any]) -> None:
    for action in READS:
        a = listed[name(action)].annotations
        assert a.read_only_hint is True and a.idempotent_hint is True, f"{action}: {a}"
    for action in WRITES | ADMIN:
        a = listed[name(action)].annotations
        assert a.read_only_hint is False, f"{action}: {a}"
    assert listed[name("cleanup")].annotations.destructive_hint is True
    for action in ("create", "upsert", "set_status", "add_comment"):
        assert listed[name(action)].annotations.destructive_hint is False, action
    assert listed[name("upsert")].annotations.idempotent_hint is True
    assert listed[name("create")].annotations.idempotent_hint is False


async def operator(client: Client, tag: str, schemas: dict[str, Any] | None) -> dict[str, Any]:
    """A full-access agent (read, write, admin): every tool, calls, tool errors, schema checks."""
    listed = await tools(client)
    assert set(listed) == {name(a) for a in READS | WRITES | ADMIN}, sorted(listed)
    check_annotations(listed)
    for t in listed.values():
        assert t.description, t.name
        assert t.input_schema.get("type") == "object", t.name
    if schemas is not None:
        # inputSchema is the component's own schema, byte for byte after parsing.
        for action, schema in schemas.items():
            assert listed[name(action)].input_schema == schema, action

    tag = f"{tag}-{uuid.uuid4().hex[:8]}"  # reruns on the same store stay independent
    before = await total(client)
    prod_before = (await ok(client, "dashboard", {"env": "prod"}))["total"]
    item = await ok(
        client,
        "create",
        {
            "env": "prod",
            "service": "gateway",
            "category": "refactor",
            "title": f"MCP end-to-end ({tag})",
            "dedupe_key": f"mcp:e2e:{tag}",
            "tags": ["mcp"],
        },
    )
    assert item["id"].startswith("bl_") and item["status"] == "open", item
    got = await ok(client, "get", {"id": item["id"]})
    assert got == item, (got, item)
    with_events = await ok(client, "get", {"id": item["id"], "include_events": True})
    assert [e["type"] for e in with_events["events"]] == ["created"], with_events
    dashboard = await ok(client, "dashboard", {"env": "prod"})
    assert dashboard["total"] == prod_before + 1, dashboard

    # Tool errors carry the error codes.
    await err(client, "get", {"id": "bl_000000000000"}, "not_found")
    await err(client, "create", {"env": "prod", "service": "gateway", "category": "refactor",
                                 "title": "again", "dedupe_key": f"mcp:e2e:{tag}"}, "conflict")
    await ok(client, "set_status", {"id": item["id"], "status": "done"})
    await err(client, "set_status", {"id": item["id"], "status": "blocked"}, "conflict", "done", "blocked")

    # Schema violations: a clear error naming the place, and nothing written.
    base = {"env": "prod", "service": "gateway", "category": "refactor", "title": "bad"}
    await err(client, "create", {**base, "title": 123}, "invalid_input", "/title")
    await err(client, "create", {**base, "bogus": True}, "invalid_input", "bogus")
    await err(client, "create", {**base, "title": "x" * 201}, "invalid_input", "/title")
    await err(client, "create", {"env": "prod"}, "invalid_input", "service")
    await err(client, "list", {"status": "cancelled"}, "invalid_input", "/status")
    await err(client, "create", {**base, "meta": {"blob": "x" * (1 << 20)}}, "payload_too_large", "limit")
    assert await total(client) == before + 1, "a refused call wrote something"

    # A tool that does not exist is a protocol error, not a tool result.
    try:
        await client.call_tool("backlog_tool_nope", {})
    except MCPError as e:
        assert e.error.code == JSONRPC_INVALID_PARAMS, e.error
        assert "backlog_tool_nope" in e.error.message, e.error
    else:
        raise AssertionError("an unknown tool name must be a JSON-RPC error")

    return {"created": item["id"], "protocol_version": client.protocol_version}


async def viewer(client: Client, existing: str | None) -> dict[str, Any]:
    """A read-only agent: sees only read tools; writes and admin calls are forbidden."""
    listed = await tools(client)
    assert set(listed) == {name(a) for a in READS}, sorted(listed)
    for t in listed.values():
        assert t.annotations.read_only_hint is True, t.name
    await err(client, "create", {"env": "prod", "service": "gateway", "category": "refactor",
                                 "title": "denied"}, "forbidden", "tools.backlog.write", "viewer")
    await err(client, "cleanup", {}, "forbidden", "tools.backlog.admin")
    # Denied before the schema is looked at: the order (see docs/actions.md; 403 before 400).
    await err(client, "create", {"bogus": 1}, "forbidden", "tools.backlog.write")
    if existing:
        got = await ok(client, "get", {"id": existing})
        assert got["id"] == existing, got
    dashboard = await ok(client, "dashboard", {})
    assert "total" in dashboard, dashboard
    return {"tools": sorted(listed), "protocol_version": client.protocol_version}
