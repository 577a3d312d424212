#!/usr/bin/env python3
"""Join a Parley room with Python's `websockets` client (a peer nobody here wrote).

usage: ws_join.py URL TOKEN [--cafile CERT.pem]

Connects to URL (ws:// or wss://.../ws), sends `auth` with TOKEN, then `join`,
then `ping`, and prints one JSON line per reply to stdout. With wss:// and
--cafile the server certificate must chain to CERT.pem (a self-signed
certificate is its own CA); the host name is not checked, the chain is.
Exit status 0 when every reply had "ok": true.
"""
import asyncio
import json
import ssl
import sys

import websockets


async def main() -> int:
    args = sys.argv[1:]
    cafile = None
    if "--cafile" in args:
        i = args.index("--cafile")
        cafile = args[i + 1]
        del args[i:i + 2]
    url, token = args
    ctx = None
    if url.startswith("wss://"):
        ctx = ssl.create_default_context(cafile=cafile)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_REQUIRED
    ok = True
    async with websockets.connect(url, ssl=ctx, open_timeout=10) as ws:
        for n, msg in enumerate([{"type": "auth", "token": token},
                                 {"type": "join", "publish": True, "subscribe": True},
                                 {"type": "ping"}], start=1):
            msg["id"] = n
            await ws.send(json.dumps(msg))
            while True:
                reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if reply.get("id") == n:
                    break
            print(json.dumps(reply, sort_keys=True), flush=True)
            if reply.get("ok") is not True:
                ok = False
                break
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
