import Foundation
import ParleyAuth
import ParleyCore
import ParleyHTTP
import ParleyWeb

/// The demo page at `/`: a plain-JavaScript example of the protocol for
/// browsers (an `offer` over `/ws`, subscriptions, mute, screen share,
/// stats), with no build step and nothing from a CDN. `/dev/token` hands
/// out tokens only when the server runs with `dev` (loopback only).
public enum DemoRoutes {
    public static func install(on router: HTTPRouter, dev: Bool, secret: [UInt8]) {
        let csp = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self' ws: wss:; "
            + "media-src 'self' blob: mediastream:; img-src 'self' data:"
        router.add("GET", .exact("/"), sync: { _ in
            var r = HTTPServerResponse.text(.ok, DemoPage.html, contentType: "text/html; charset=utf-8")
            r.headers.add("Content-Security-Policy", csp)
            return r
        })
        router.add("GET", .exact("/demo.js"), sync: { _ in
            .text(.ok, DemoPage.script, contentType: "text/javascript; charset=utf-8")
        })
        guard dev else { return }
        // Development only: anyone who can reach the (loopback) listener gets a publishing token for any room.
        router.add("GET", .exact("/dev/token"), sync: { req in
            let user = req.queryValue("user") ?? "", room = req.queryValue("room") ?? ""
            guard isName(user), isName(room) else {
                return .error(.badRequest, "user and room must be 1-64 letters, digits, '-' or '_'")
            }
            let now = Int64(Date().timeIntervalSince1970)
            let token = JWT.sign(TokenClaims(subject: user, room: room, issuedAt: now, expiresAt: now + 3600, canPublish: true),
                                 secret: secret)
            return .json(.ok, ["token": .string(token), "user": .string(user), "room": .string(room)])
        })
    }

    static func isName(_ s: String) -> Bool {
        (1...64).contains(s.utf8.count) && s.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x2D || c == 0x5F
        }
    }
}

enum DemoPage {
    static let html = """
    <!doctype html>
    <html lang="en">
    <head>
    <meta charset="utf-8">
    <title>Parley demo</title>
    <style>
      body { font: 14px system-ui, sans-serif; margin: 1em; }
      #tiles { display: flex; flex-wrap: wrap; gap: 8px; }
      .tile { width: 320px; } .tile video { width: 320px; height: 240px; background: #222; }
      #stats { font: 12px monospace; white-space: pre; }
    </style>
    </head>
    <body>
    <h1>Parley</h1>
    <form id="enter">
      <label>Room <input id="room" value="demo"></label>
      <label>Name <input id="user"></label>
      <button>Enter</button>
    </form>
    <p>
      <button id="mute" disabled>Mute</button>
      <button id="share" disabled>Share screen</button>
      <button id="leave" disabled>Leave</button>
      <label>Quality <select id="quality" disabled>
        <option value="high">high</option><option value="medium">medium</option><option value="low">low</option>
      </select></label>
      <span id="status">not connected</span>
    </p>
    <div id="tiles"></div>
    <div id="stats"></div>
    <script src="/demo.js"></script>
    </body>
    </html>

    """

    static let script = #"""
    // Parley demo: join a room from a browser with the signalling protocol
    // (docs/protocol.md): auth, then `offer` with the SDP offer; the reply
    // holds the SDP answer. Subscribe to every track in the room, and offer
    // again with a receiving transceiver for each: the answer says which
    // track (SSRC, and its publisher as the stream) goes out on which.
    // ?simulcast=1 sends video in three layers (rids q, h, f); the Quality
    // selector asks for one layer of every simulcast track received. When
    // tracks go (unpublished, or their publisher left) it offers again, and
    // their tiles go with what the answer no longer announces.
    "use strict";
    const $ = (id) => document.getElementById(id);
    const params = new URLSearchParams(location.search);
    $("room").value = params.get("room") || "demo";
    $("user").value = params.get("user") || "guest" + Math.floor(Math.random() * 10000);
    const state = { ws: null, pc: null, nextId: 1, pending: new Map(), subscribed: new Map(), sections: {}, muted: false, quality: {},
                    audioTrack: null, audioId: null, stats: {}, wanted: { audio: 0, video: 0 }, negotiating: Promise.resolve() };
    window.parley = state;

    function call(type, fields = {}) {
      const id = state.nextId++;
      state.ws.send(JSON.stringify({ id, type, ...fields }));
      return new Promise((resolve, reject) => state.pending.set(id, { resolve, reject }));
    }

    function onMessage(event) {
      const m = JSON.parse(event.data);
      const waiting = m.id !== undefined && state.pending.get(m.id);
      if (waiting) {
        state.pending.delete(m.id);
        m.type === "error" ? waiting.reject(new Error(m.code + ": " + m.message)) : waiting.resolve(m);
      } else if (m.type === "track_published") {
        subscribe(m.track);
      } else if (m.type === "track_unpublished") {
        forget((t) => t.id === m.track);
      } else if (m.type === "participant_left") {
        forget((t) => t.participant === m.participant);
      }
    }

    async function subscribe(track) {
      if (state.subscribed.has(track.id)) return;
      state.subscribed.set(track.id, track);
      await call("subscribe", { track: track.id });
      if (track.rids && $("quality").value !== "high") await setQuality(track, $("quality").value);
      state.wanted[track.kind] += 1;
      renegotiate();
    }

    // Subscribed tracks that went away: the relay ended those subscriptions;
    // a new offer frees their sections, whose receivers then leave their
    // streams (removetrack: the tile goes once its stream is empty).
    function forget(gone) {
      let any = false;
      for (const t of state.subscribed.values()) {
        if (!gone(t)) continue;
        state.subscribed.delete(t.id);
        delete state.quality[t.id];
        state.wanted[t.kind] -= 1;
        any = true;
      }
      if (any) renegotiate();
    }

    // One receiving transceiver per subscribed track of each kind, then a new
    // offer (client-initiated renegotiation); one negotiation at a time.
    function renegotiate() {
      state.negotiating = state.negotiating.then(async () => {
        const pc = state.pc;
        for (const kind of ["audio", "video"]) {
          const have = pc.getTransceivers().filter((t) => t.receiver.track.kind === kind && t.direction !== "sendonly").length;
          for (let i = have; i < state.wanted[kind]; i++) pc.addTransceiver(kind, { direction: "recvonly" });
        }
        await pc.setLocalDescription(await pc.createOffer());
        const reply = await call("offer", { sdp: pc.localDescription.sdp });
        state.sections = reply.sections; // which track is on which mid
        await pc.setRemoteDescription({ type: "answer", sdp: reply.sdp });
      }).catch((err) => { $("status").textContent = String(err); });
      return state.negotiating;
    }

    // `quality` for a simulcast track: the relay sends that layer from its next keyframe.
    async function setQuality(track, quality) {
      const reply = await call("quality", { track: track.id, quality });
      state.quality[track.id] = reply.rid;
    }

    function tileFor(stream) {
      let video = document.querySelector(`video[data-stream="${stream.id}"]`);
      if (!video) {
        const tile = document.createElement("div");
        tile.className = "tile";
        video = document.createElement("video");
        video.autoplay = true; video.playsInline = true; video.dataset.stream = stream.id;
        tile.append(video);
        $("tiles").append(tile);
      }
      return video;
    }

    async function enter(room, user) {
      $("status").textContent = "connecting";
      const token = params.get("token") ||
        (await (await fetch(`/dev/token?user=${encodeURIComponent(user)}&room=${encodeURIComponent(room)}`)).json()).token;
      state.ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
      state.ws.onmessage = onMessage;
      await new Promise((resolve, reject) => { state.ws.onopen = resolve; state.ws.onerror = reject; });
      await call("auth", { token });

      const simulcast = params.get("simulcast") === "1";
      const local = state.local = await navigator.mediaDevices.getUserMedia({ audio: true, video: simulcast ? { width: 1280, height: 720 } : true });
      tileFor(local).srcObject = local;
      tileFor(local).muted = true;
      const pc = state.pc = new RTCPeerConnection();
      for (const t of local.getTracks()) {
        if (simulcast && t.kind === "video") {
          // Lowest first, as the relay reads them.
          pc.addTransceiver(t, { streams: [local], sendEncodings: [
            { rid: "q", scaleResolutionDownBy: 4 }, { rid: "h", scaleResolutionDownBy: 2 }, { rid: "f" }] });
        } else {
          pc.addTrack(t, local);
        }
      }
      state.audioTrack = local.getAudioTracks()[0];
      // What the relay forwards arrives on our transceivers' receivers: video
      // in a tile per publisher (the answer's msid stream), audio in an
      // element per receiver (it plays even while no video comes; a receiver
      // freed by a track that went is reused, and announced again, for the next).
      pc.ontrack = (e) => {
        if (e.track.kind === "audio") {
          if (document.querySelector(`audio[data-track="${e.track.id}"]`)) return;
          const audio = document.createElement("audio");
          audio.autoplay = true; audio.dataset.track = e.track.id;
          audio.srcObject = new MediaStream([e.track]);
          document.body.append(audio);
        } else if (e.streams.length > 0) {
          const stream = e.streams[0];
          // A tile once media comes (a receiver nothing is sent to stays muted)
          // on a section the answer gave a track, gone when its stream loses
          // its last track (renegotiated elsewhere). A section whose track went
          // is no one's: Chromium moves its receiver to a stream of its own, not shown.
          const show = () => {
            if (state.sections[e.transceiver.mid] && stream.getTracks().includes(e.track)) tileFor(stream).srcObject = stream;
          };
          if (!e.track.muted) show(); else e.track.addEventListener("unmute", show, { once: true });
          stream.onremovetrack = () => {
            const v = document.querySelector(`video[data-stream="${stream.id}"]`);
            if (v && stream.getTracks().length === 0) v.parentElement.remove();
          };
        }
      };
      pc.onconnectionstatechange = () => { $("status").textContent = pc.connectionState; };

      await pc.setLocalDescription(await pc.createOffer());
      const joined = await call("offer", { room, sdp: pc.localDescription.sdp });
      await pc.setRemoteDescription({ type: "answer", sdp: joined.sdp });
      state.audioId = (joined.tracks.find((t) => t.kind === "audio") || {}).id;
      for (const p of joined.participants) for (const t of p.tracks) await subscribe(t);
      for (const b of ["mute", "share", "quality", "leave"]) $(b).disabled = false;
      state.statsTimer = setInterval(showStats, 1000);
    }

    // `leave`: the others get participant_left at once. Everything of the call
    // ends here; Enter starts a new one.
    async function leave() {
      for (const b of ["mute", "share", "quality", "leave"]) $(b).disabled = true;
      clearInterval(state.statsTimer);
      await call("leave").catch(() => {});
      state.ws.close();
      state.pc.close();
      for (const t of state.local.getTracks()) t.stop();
      $("tiles").replaceChildren();
      for (const a of document.querySelectorAll("audio")) a.remove();
      Object.assign(state, { pending: new Map(), subscribed: new Map(), sections: {}, muted: false, quality: {}, wanted: { audio: 0, video: 0 },
                             negotiating: Promise.resolve() });
      $("mute").textContent = "Mute";
      $("status").textContent = "left";
      $("enter").querySelector("button").disabled = false;
    }

    async function showStats() {
      const lines = [];
      const stats = { videoStreamsDecoding: 0 };
      const report = await state.pc.getStats();
      // The selected candidate pair: UDP, or TCP (ICE-TCP) when UDP does not get through.
      report.forEach((r) => {
        const pair = r.type === "transport" && r.selectedCandidatePairId && report.get(r.selectedCandidatePairId);
        const remote = pair && report.get(pair.remoteCandidateId);
        if (remote) {
          stats.path = { protocol: remote.protocol, address: remote.address, port: remote.port };
          lines.push(`path: ${remote.protocol} ${remote.address}:${remote.port}`);
        }
      });
      report.forEach((r) => {
        if (r.type === "inbound-rtp") {
          // Summed over the streams of a kind (audioLevel: the loudest).
          const s = stats[r.kind] = stats[r.kind] || { packetsReceived: 0, packetsLost: 0, framesDecoded: 0, audioLevel: 0, bytesReceived: 0 };
          s.packetsReceived += r.packetsReceived || 0;
          s.packetsLost += r.packetsLost || 0;
          s.framesDecoded += r.framesDecoded || 0;
          s.bytesReceived += r.bytesReceived || 0;
          s.audioLevel = Math.max(s.audioLevel, r.audioLevel || 0);
          s.frameWidth = Math.max(s.frameWidth || 0, r.frameWidth || 0);
          if (r.kind === "video" && r.framesDecoded > 0) stats.videoStreamsDecoding += 1;
          lines.push(`in  ${r.kind}: ${r.packetsReceived} packets, ${r.packetsLost} lost` +
                     (r.kind === "video" ? `, ${r.framesDecoded} frames` : `, level ${r.audioLevel}`));
        } else if (r.type === "outbound-rtp") {
          if (r.kind === "video" && r.frameWidth) (stats.sentWidths = stats.sentWidths || []).push(r.frameWidth);
          lines.push(`out ${r.kind}: ${r.packetsSent} packets`);
        }
      });
      stats.tiles = document.querySelectorAll(".tile").length;
      stats.audioElements = document.querySelectorAll("audio").length;
      stats.emptyTiles = Array.from(document.querySelectorAll(".tile video")).filter((v) => !v.srcObject || v.srcObject.getTracks().length === 0).length;
      stats.quality = state.quality;
      state.stats = stats;
      $("stats").textContent = lines.join("\n");
    }

    $("enter").onsubmit = (e) => {
      e.preventDefault();
      $("enter").querySelector("button").disabled = true;
      enter($("room").value, $("user").value).catch((err) => { $("status").textContent = String(err); });
    };

    $("leave").onclick = () => leave().catch((err) => { $("status").textContent = String(err); });

    $("mute").onclick = async () => {
      state.muted = !state.muted;
      state.audioTrack.enabled = !state.muted;
      if (state.audioId) await call("mute", { track: state.audioId, muted: state.muted });
      $("mute").textContent = state.muted ? "Unmute" : "Mute";
    };

    $("quality").onchange = async () => {
      for (const track of state.subscribed.values()) if (track.rids) await setQuality(track, $("quality").value);
    };

    $("share").onclick = async () => {
      const screen = await navigator.mediaDevices.getDisplayMedia({ video: true });
      const sender = state.pc.getSenders().find((s) => s.track && s.track.kind === "video");
      await sender.replaceTrack(screen.getVideoTracks()[0]);
    };

    if (params.get("autojoin")) $("enter").requestSubmit();
    """#
}
