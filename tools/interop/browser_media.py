#!/usr/bin/env python3
"""Headless Chromium (Debian's /usr/bin/chromium, fake camera) against a
Parley server running with `dev`, driven by Playwright, for what the demo
page does not show: send-side bandwidth estimation from the relay's
transport-wide feedback, codec preferences, and simulcast layers.

usage: browser_media.py BASE_URL MODE [--room R] [--codec VP9|H264|AV1] [--seconds S] [--simulcast] [--top-off]

MODE
  bwe        one page publishes 1280x720 video; waits until its
             candidate pair's availableOutgoingBitrate passes 1 Mbit/s (it
             starts at 300 kbit/s); with --simulcast it publishes the three
             layers of `simulcast` mode instead.
  codec      one page publishes with --codec first (setCodecPreferences),
             a second page receives; waits until it decodes frames of that codec.
  simulcast  one page publishes three layers (rids q, h, f; scaleResolutionDownBy
             4, 2, 1 of 1280x720); a second page receives and asks for
             quality low, then high, then low, waits at each step until
             frames keep decoding and until the decoded width is the lowest
             layer's, then grew, then shrank; records the widths ("widths"),
             which layers the publisher sent and its estimate ("sent"), the
             subscriber's freezes through the switches ("freezes": count,
             total and longest seconds) and each layer's keyframe interval in
             seconds ("keyframeInterval": time since publishing over the
             layer's keyFramesEncoded). With --top-off the publisher then
             turns its upper layers off (setParameters, active: false) and
             the script waits until a relay recording the room must have
             moved to the lowest layer: the upper layers stopped, 2 s passed
             (the relay calls a layer gone after 1 s of silence and then
             asks for a keyframe of the lowest, unless it already records
             it), then up to 10 s for a keyframe of the lowest layer after
             those 2 s (one the relay asked for late; none comes when it
             switched within them, which the recording shows), and 30 frames
             more ("topOff").

Prints one JSON line with what it saw; exit status 0 when every condition was
met before its deadline (S seconds each, default 40), 1 otherwise.
"""
import json
import sys
import time

from playwright.sync_api import sync_playwright

ARGS = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream", "--no-sandbox",
        "--autoplay-policy=no-user-gesture-required"]

# Signalling in the page (docs/protocol.md): auth, `offer` (join), `subscribe`,
# a new `offer` to receive what was subscribed, `quality` for a simulcast layer.
LIB = r"""
window.P = {
  async connect(room, user) {
    const token = (await (await fetch(`/dev/token?user=${user}&room=${room}`)).json()).token;
    const st = { room, next: 1, pending: new Map(), published: [] };
    st.ws = new WebSocket("ws://" + location.host + "/ws");
    st.ws.onmessage = (e) => {
      const m = JSON.parse(e.data);
      const w = m.id !== undefined && st.pending.get(m.id);
      if (w) { st.pending.delete(m.id); m.type === "error" ? w.reject(new Error(m.code + ": " + m.message)) : w.resolve(m); }
      else if (m.type === "track_published") st.published.push(m.track);
    };
    await new Promise((res, rej) => { st.ws.onopen = res; st.ws.onerror = rej; });
    st.call = (type, f = {}) => {
      const id = st.next++;
      st.ws.send(JSON.stringify({ id, type, ...f }));
      return new Promise((resolve, reject) => st.pending.set(id, { resolve, reject }));
    };
    await st.call("auth", { token });
    st.pc = new RTCPeerConnection();
    window.S = st;
    return st;
  },
  async publish(room, user, codec, simulcast) {
    const st = await P.connect(room, user);
    const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 1280, height: 720, frameRate: 30 } });
    const init = { direction: "sendonly", streams: [stream] };
    if (simulcast) init.sendEncodings = [
      { rid: "q", scaleResolutionDownBy: 4, maxBitrate: 150000 },
      { rid: "h", scaleResolutionDownBy: 2, maxBitrate: 500000 },
      { rid: "f", scaleResolutionDownBy: 1, maxBitrate: 1500000 }];
    const tr = st.pc.addTransceiver(stream.getVideoTracks()[0], init);
    if (codec) {
      const caps = RTCRtpSender.getCapabilities("video").codecs;
      const first = caps.filter((c) => c.mimeType.toLowerCase() === "video/" + codec.toLowerCase());
      if (first.length === 0) return "no " + codec + " in this browser";
      tr.setCodecPreferences(first.concat(caps.filter((c) => !first.includes(c))));
    }
    await st.pc.setLocalDescription(await st.pc.createOffer());
    st.joined = await st.call("offer", { room, sdp: st.pc.localDescription.sdp });
    await st.pc.setRemoteDescription({ type: "answer", sdp: st.joined.sdp });
    st.offer = st.pc.localDescription.sdp;
    st.answer = st.joined.sdp;
    return "ok";
  },
  async receive(room, user) {
    const st = await P.connect(room, user);
    st.pc.addTransceiver("video", { direction: "recvonly" });
    await st.pc.setLocalDescription(await st.pc.createOffer());
    st.joined = await st.call("offer", { room, sdp: st.pc.localDescription.sdp });
    await st.pc.setRemoteDescription({ type: "answer", sdp: st.joined.sdp });
    const tracks = st.joined.participants.flatMap((p) => p.tracks).concat(st.published);
    const video = tracks.find((t) => t.kind === "video");
    if (!video) return "no video track in the room";
    st.track = video.id;
    await st.call("subscribe", { track: video.id });
    await st.pc.setLocalDescription(await st.pc.createOffer());
    const again = await st.call("offer", { sdp: st.pc.localDescription.sdp });
    await st.pc.setRemoteDescription({ type: "answer", sdp: again.sdp });
    st.answer = again.sdp;
    return "ok";
  },
  async layers(active) {
    const sender = S.pc.getSenders().find((s) => s.track && s.track.kind === "video");
    const p = sender.getParameters();
    p.encodings.forEach((e, i) => { if (i > 0) e.active = active; });
    await sender.setParameters(p);
  },
  async quality(q) { return (await S.call("quality", { track: S.track, quality: q })).quality; },
  async stats() {
    const out = { outbound: [], inbound: [] };
    const r = await S.pc.getStats();
    const codecs = {};
    r.forEach((s) => { if (s.type === "codec") codecs[s.id] = s.mimeType; });
    r.forEach((s) => {
      if (s.type === "candidate-pair" && s.nominated && s.availableOutgoingBitrate !== undefined)
        out.availableOutgoingBitrate = s.availableOutgoingBitrate;
      if (s.type === "outbound-rtp" && s.kind === "video")
        out.outbound.push({ rid: s.rid || "", bytesSent: s.bytesSent, frameWidth: s.frameWidth || 0, codec: codecs[s.codecId] || "",
                            limitation: s.qualityLimitationReason || "", active: s.active,
                            framesEncoded: s.framesEncoded || 0, keyFramesEncoded: s.keyFramesEncoded || 0 });
      if (s.type === "inbound-rtp" && s.kind === "video")
        out.inbound.push({ framesDecoded: s.framesDecoded || 0, frameWidth: s.frameWidth || 0, frameHeight: s.frameHeight || 0,
                           packetsReceived: s.packetsReceived || 0, codec: codecs[s.codecId] || "", ssrc: s.ssrc,
                           freezeCount: s.freezeCount ?? null, totalFreezesDuration: s.totalFreezesDuration ?? null });
    });
    return out;
  },
};
"""


def main() -> int:
    args = sys.argv[1:]
    opts = {"--room": "media", "--codec": "", "--seconds": "40"}
    for k in list(opts):
        if k in args:
            i = args.index(k)
            opts[k] = args[i + 1]
            del args[i:i + 2]
    simulcast_bwe, top_off = "--simulcast" in args, "--top-off" in args
    for flag in ("--simulcast", "--top-off"):
        if flag in args:
            args.remove(flag)
    base, mode = args[0].rstrip("/"), args[1]
    seconds = float(opts["--seconds"])
    result = {"mode": mode, "ok": False, "steps": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS, headless=True)

        def page():
            pg = browser.new_context(bypass_csp=True).new_page()
            pg.goto(base + "/")
            pg.evaluate(LIB)
            return pg

        watchers = []  # called with every sample wait() takes

        def sample(pg):
            s = pg.evaluate("P.stats()")
            for w in watchers:
                w(pg, s)
            return s

        def wait(what, pg, cond, deadline=None):
            """Polls pg's stats until cond(stats) or the deadline (seconds); records the step."""
            deadline = time.time() + (deadline or seconds)
            s = sample(pg)
            while not cond(s) and time.time() < deadline:
                time.sleep(0.25)
                s = sample(pg)
            ok = cond(s)
            result["steps"].append({"step": what, "ok": ok, "stats": s})
            return ok

        def decoded(s):
            return max([i["framesDecoded"] for i in s["inbound"]] or [0])

        def turn_upper_layers_off(pub):
            pub.evaluate("P.layers(false)")

            def upper(s):
                return sum(o["bytesSent"] for o in s["outbound"] if o["rid"] != "q")

            def low(s):
                return next((o for o in s["outbound"] if o["rid"] == "q"), {"keyFramesEncoded": 0, "framesEncoded": 0})

            # Stopped: two samples half a second apart send nothing more above q.
            deadline = time.time() + seconds
            before = upper(pub.evaluate("P.stats()"))
            while time.time() < deadline:
                time.sleep(0.5)
                now = upper(pub.evaluate("P.stats()"))
                if now == before:
                    break
                before = now
            stopped = now == before
            time.sleep(2)
            first = low(pub.evaluate("P.stats()"))
            # A relay still recording an upper layer asks for a q keyframe now; one that switched
            # in the last 2 s, or was on q already, asks for none: not waited for long.
            keyframed = wait("q: a keyframe after the upper layers stopped", pub,
                             lambda s: low(s)["keyFramesEncoded"] > first["keyFramesEncoded"], deadline=min(seconds, 10))
            keyframe = low(pub.evaluate("P.stats()"))
            ok = wait("q: 30 frames after that", pub,
                      lambda s: low(s)["framesEncoded"] >= keyframe["framesEncoded"] + 30)
            result["topOff"] = {"upperStopped": stopped, "qKeyframe": keyframed, "sent": pub.evaluate("P.stats()")}
            return stopped and ok

        try:
            pub = page()
            sim = mode == "simulcast" or (mode == "bwe" and simulcast_bwe)
            published_at = time.time()
            r = pub.evaluate("([r, c, s]) => P.publish(r, 'pub', c, s)", [opts["--room"], opts["--codec"], sim])
            result["publish"] = r
            if r != "ok":
                result["skip"] = r
                print(json.dumps(result, sort_keys=True), flush=True)
                return 0 if r.startswith("no ") else 1
            result["answer"] = pub.evaluate("S.answer")
            if mode == "bwe":
                first = pub.evaluate("P.stats()")
                result["first"] = first
                result["ok"] = wait("availableOutgoingBitrate > 1 Mbit/s", pub,
                                    lambda s: (s.get("availableOutgoingBitrate") or 0) > 1_000_000)
            else:
                sub = page()
                r = sub.evaluate("([r]) => P.receive(r, 'sub')", [opts["--room"]])
                result["receive"] = r
                if r != "ok":
                    raise RuntimeError(r)
                if mode == "codec":
                    want = "video/" + opts["--codec"].lower()
                    ok = wait("decoding " + want, sub,
                              lambda s: any(i["codec"].lower() == want and i["framesDecoded"] > 20 for i in s["inbound"]))
                    result["sent"] = pub.evaluate("P.stats()")
                    result["ok"] = ok
                else:
                    # Low, high, low: frames keep decoding at every step (no freeze), and the
                    # decoded width follows: larger at high (the browser sends its upper layers
                    # once its bandwidth estimate allows them), back down at low.
                    ok = True
                    widths = []
                    # Freezes (Chromium's inbound-rtp freezeCount, totalFreezesDuration) from just
                    # before the first switch: when the count rises between two samples (0.25 s
                    # apart), the duration added is the longest freeze that ended, or more.
                    freezes = {"reported": False, "longest": 0.0, "count": 0, "total": 0.0, "ends": []}
                    base = {}

                    def freeze_watch(pg, s):
                        if pg != sub:
                            return
                        if any(i["freezeCount"] is None for i in s["inbound"]) or not s["inbound"]:
                            return  # not (yet) reported; "reported" stays False when it never is
                        freezes["reported"] = True
                        c = sum(i["freezeCount"] for i in s["inbound"])
                        d = sum(i["totalFreezesDuration"] for i in s["inbound"])
                        if not base:
                            base.update(count=c, duration=d)
                        elif c > base["count"] + freezes["count"]:
                            added = d - base["duration"] - freezes["total"]
                            freezes["ends"].append({"freezes": c - base["count"] - freezes["count"], "seconds": added})
                            freezes["longest"] = max(freezes["longest"], added)
                        freezes["count"], freezes["total"] = c - base["count"], d - base["duration"]

                    watchers.append(freeze_watch)
                    sample(sub)

                    def width(s):
                        return max([i["frameWidth"] for i in s["inbound"]] or [0])

                    for q in ["low", "high", "low"]:
                        got = sub.evaluate("(q) => P.quality(q)", q)
                        before = decoded(sub.evaluate("P.stats()"))
                        ok = wait(f"quality {q} ({got}): decoding", sub, lambda s, b=before: decoded(s) > b + 15) and ok
                        if not widths:
                            # It starts on whichever layer had the first keyframe: wait for the lowest one's size.
                            def lowest():
                                sent = [o["frameWidth"] for o in pub.evaluate("P.stats()")["outbound"] if o["frameWidth"] > 0]
                                return min(sent or [0])
                            ok = wait(f"quality {q}: width of the lowest layer sent", sub,
                                      lambda s: 0 < width(s) <= lowest()) and ok
                        else:
                            grow = q == "high"
                            ok = wait(f"quality {q}: width {'above' if grow else 'below'} {widths[-1]}", sub,
                                      lambda s, w=widths[-1], g=grow: width(s) > w if g else 0 < width(s) < w) and ok
                        widths.append(width(sub.evaluate("P.stats()")))
                    sample(sub)
                    result["widths"] = widths
                    result["sent"] = pub.evaluate("P.stats()")
                    result["freezes"] = freezes
                    # Each layer's keyframe interval as the publisher encoded it: seconds since
                    # publishing over its keyFramesEncoded (the first and the relay's PLIs).
                    elapsed = time.time() - published_at
                    result["keyframeInterval"] = {o["rid"]: elapsed / o["keyFramesEncoded"]
                                                  for o in result["sent"]["outbound"] if o["keyFramesEncoded"] > 0}
                    if top_off:
                        ok = turn_upper_layers_off(pub) and ok
                    result["ok"] = ok

                    result["ok"] = ok
        except Exception as e:  # noqa: BLE001 - reported in the summary
            result["error"] = str(e)
        browser.close()
    print(json.dumps(result, sort_keys=True), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
