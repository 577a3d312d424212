#!/usr/bin/env python3
"""Headless Chromium (Debian's /usr/bin/chromium) joins a Parley room through
the demo page, driven by Playwright, with a fake camera and microphone.

usage: browser_call.py BASE_URL [--room R] [--pages N] [--seconds S] [--screenshot FILE] [--expect video|audio]
                       [--simulcast] [--quality low|medium|high] [--leave] [--udp-off-pages K]

Opens N pages (default 2) at BASE_URL/?room=R&user=pageK&autojoin=1 (the
server must run with `dev`, for /dev/token), waits until every page
decodes video from the others (or S seconds pass, default 30), samples
each page's inbound stats (getStats) twice a second apart, saves a
screenshot of the first page, and prints one JSON line:

  {"pages": [{"user": …, "status": …, "first": {kind: stats}, "last": {kind: stats}}, …]}

With --simulcast the pages send video in three layers (the demo's
?simulcast=1); with --quality the first page then picks that quality in its
Quality selector, and the script waits until the relay answered for every
simulcast track it receives and (low) until it decodes the smallest picture
another page sends; "quality" in the output says what it saw.

With --udp-off-pages K the last K pages run in a second Chromium whose
WebRTC sends no UDP (its IP handling policy disable_non_proxied_udp, with
no proxy: ICE-TCP only); each page's "path" says which transport it got.

With --leave the last page, once every page decodes, presses Leave; the
script waits until each other page shows one tile fewer and no empty tile
(it offered again on participant_left): "left" in the output has the
leaver's user and status and what the others showed then ("others").
Then the leaver presses Enter again (the same user, a new call) and the
script waits until every page decodes all the others again, in as many
tiles, and samples.

Exit status 0 when every page's video framesDecoded and packetsReceived grew
(--expect audio: its audio packetsReceived grew and audioLevel > 0: a room
where only audio comes in, from ffmpeg).
"""
import json
import sys
import time

from playwright.sync_api import sync_playwright

ARGS = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream", "--no-sandbox",
        "--autoplay-policy=no-user-gesture-required"]


def main() -> int:
    args = sys.argv[1:]
    simulcast, leave = "--simulcast" in args, "--leave" in args
    for flag in ("--simulcast", "--leave"):
        if flag in args:
            args.remove(flag)
    opts = {"--room": "demo", "--pages": "2", "--seconds": "30", "--screenshot": "", "--expect": "video", "--quality": "",
            "--udp-off-pages": "0"}
    for k in list(opts):
        if k in args:
            i = args.index(k)
            opts[k] = args[i + 1]
            del args[i:i + 2]
    base = args[0].rstrip("/")
    n, seconds = int(opts["--pages"]), float(opts["--seconds"])
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS, headless=True)
        udp_off = int(opts["--udp-off-pages"])
        tcp_browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                        args=ARGS + ["--webrtc-ip-handling-policy=disable_non_proxied_udp"]) if udp_off else None
        pages, users = [], [f"page{k}" for k in range(n)]
        for k in range(n):
            b = tcp_browser if k >= n - udp_off else browser
            page = b.new_context(ignore_https_errors=True).new_page()  # the self-signed certificate over https:// and wss://
            page.goto(f"{base}/?room={opts['--room']}&user={users[k]}&autojoin=1" + ("&simulcast=1" if simulcast else ""))
            pages.append(page)

        def stats(page):
            return page.evaluate("() => window.parley && window.parley.stats") or {}

        def decoding(page):
            if opts["--expect"] == "audio":
                a = stats(page).get("audio") or {}
                return (a.get("packetsReceived") or 0) > 25 and (a.get("audioLevel") or 0) > 0
            st = stats(page)
            v = st.get("video") or {}
            # Every other page's video decodes here (one stream per publisher).
            return (v.get("framesDecoded") or 0) > 10 and (st.get("videoStreamsDecoding") or 0) >= n - 1

        def until(cond):
            deadline = time.time() + seconds
            while time.time() < deadline and not all(cond(pg) for pg in pages):
                time.sleep(0.2)

        def tidy(page):
            st = stats(page)
            return st.get("tiles") == n and st.get("emptyTiles") == 0

        until(decoding)
        left = None
        if leave:
            leaver, user = pages.pop(), users.pop()
            leaver.click("#leave")
            n -= 1
            until(tidy)
            left = {"user": user, "status": leaver.inner_text("#status"), "others": [stats(pg) for pg in pages]}
            leaver.click("#enter button")
            pages.append(leaver)
            users.append(user)
            n += 1
            until(lambda pg: decoding(pg) and tidy(pg))
        quality = None
        if opts["--quality"]:
            q = opts["--quality"]
            pages[0].select_option("#quality", q)

            def picked():
                st = stats(pages[0])
                rids = list((st.get("quality") or {}).values())
                smallest = min([w for pg in pages[1:] for w in (stats(pg).get("sentWidths") or [])] or [0])
                width = (st.get("video") or {}).get("frameWidth") or 0
                return rids, width, smallest

            deadline = time.time() + seconds
            while time.time() < deadline:
                rids, width, smallest = picked()
                if len(rids) == n - 1 and (q != "low" or (width > 0 and width <= smallest)):
                    break
                time.sleep(0.25)
            rids, width, smallest = picked()
            quality = {"rids": rids, "frameWidth": width, "smallestSent": smallest}
        first = [stats(pg) for pg in pages]
        time.sleep(2)
        last = [stats(pg) for pg in pages]
        if opts["--screenshot"]:
            pages[0].screenshot(path=opts["--screenshot"])
        result = {"pages": [{"user": users[k], "status": pages[k].inner_text("#status"),
                             "first": first[k], "last": last[k]} for k in range(n)]}
        if quality is not None:
            result["quality"] = quality
        if left is not None:
            result["left"] = left
        browser.close()
        if tcp_browser:
            tcp_browser.close()
    print(json.dumps(result, sort_keys=True), flush=True)

    def grew(k, kind, field):
        return ((result["pages"][k]["last"].get(kind) or {}).get(field) or 0) > ((result["pages"][k]["first"].get(kind) or {}).get(field) or 0)

    if opts["--expect"] == "audio":
        ok = all(grew(k, "audio", "packetsReceived") and ((result["pages"][k]["last"].get("audio") or {}).get("audioLevel") or 0) > 0
                 for k in range(n))
    else:
        ok = all(grew(k, "video", "framesDecoded") and grew(k, "video", "packetsReceived") for k in range(n))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
