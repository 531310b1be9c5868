"""MCP end-to-end over Streamable HTTP with the official Python SDK.

    client_http.py URL KEY --scenario operator|viewer [--mode legacy|auto] [--existing ID]

URL is the MCP endpoint (e.g. http://127.0.0.1:8000/mcp); KEY the agent's API key, sent as
`Authorization: Bearer KEY` (empty: no header, for `serve --anonymous-agent`). `operator`
expects a full-access agent (read, write, admin), `viewer` a read-only one. Prints one JSON
summary line; exits 1 with the failed assertion otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

import scenario


async def main() -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("key")
    p.add_argument("--scenario", required=True, choices=["operator", "viewer"])
    p.add_argument("--mode", default="legacy", help="legacy (initialize handshake) or auto")
    p.add_argument("--existing", help="an item id the viewer reads")
    args = p.parse_args()

    headers = {"Authorization": f"Bearer {args.key}"} if args.key else {}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(60, read=120)) as http:
        transport = streamable_http_client(args.url, http_client=http)
        async with Client(transport, mode=args.mode, read_timeout_seconds=60) as client:
            if args.scenario == "operator":
                return await scenario.operator(client, f"http-{args.mode}", None)
            return await scenario.viewer(client, args.existing)


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
    sys.stdout.flush()
