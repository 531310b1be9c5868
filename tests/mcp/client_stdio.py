"""MCP end-to-end over stdio with the official Python SDK: launches `backlog-bridge mcp`.

    client_stdio.py --bin PATH --agent operator|viewer [--mode legacy|auto]
                    [--schemas FILE] [--existing ID] -- [global flags for the binary…]

The binary inherits this process's environment (config and ops dirs come after `--`).
Prints one JSON summary line; exits 1 with the failed assertion otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

from mcp import Client, StdioServerParameters

import scenario


async def main() -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--bin", required=True)
    p.add_argument("--agent", required=True, choices=["operator", "viewer"])
    p.add_argument("--mode", default="legacy", help="legacy (initialize handshake) or auto")
    p.add_argument("--schemas", help="JSON file: action -> params_schema, from `plugins list`")
    p.add_argument("--existing", help="an item id the viewer reads")
    p.add_argument("flags", nargs="*")
    args = p.parse_args()

    server = StdioServerParameters(
        command=args.bin,
        args=[*args.flags, "mcp", "--agent", args.agent],
        env=dict(os.environ),
    )
    async with Client(server, mode=args.mode, read_timeout_seconds=60) as client:
        if args.agent == "operator":
            schemas = None
            if args.schemas:
                with open(args.schemas) as f:
                    schemas = json.load(f)
            return await scenario.operator(client, f"stdio-{args.mode}", schemas)
        return await scenario.viewer(client, args.existing)


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
    sys.stdout.flush()
