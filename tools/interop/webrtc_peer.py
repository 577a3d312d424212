#!/usr/bin/env python3
"""A WebRTC peer nobody here wrote (aiortc) joins a Parley room.

usage: webrtc_peer.py URL TOKEN [--seconds S] [--tone HZ] [--no-video]

Connects to URL (ws://.../ws) with Python's `websockets`, sends `auth` with
TOKEN, then `offer` with aiortc's SDP offer (an Opus sine tone of HZ, and
VP8 video unless --no-video), applies the SDP answer from the reply,
subscribes to every track already in the room and to each one published
later, and for S seconds decodes what arrives. Then it prints one JSON line:

  {"ice": …, "dtls": …, "audio_frames": N, "loud_frames": N, "audio_hz": F,
   "video_frames": N, "tracks": [ids subscribed], "answer_lines": N}

audio_hz is estimated from zero crossings of the loud frames. Exit status
0 when ICE and DTLS connected, else 1.
"""
import asyncio
import fractions
import json
import math
import sys
import time
from array import array

import av
import websockets
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription, VideoStreamTrack
from aiortc.mediastreams import MediaStreamError

RATE = 48000
SAMPLES = 960  # 20 ms


class Tone(MediaStreamTrack):
    """A sine tone, paced in real time like aiortc's own AudioStreamTrack."""
    kind = "audio"

    def __init__(self, hz: float):
        super().__init__()
        self.hz = hz
        self.n = 0
        self.start = None

    async def recv(self):
        if self.start is None:
            self.start = time.time()
        else:
            wait = self.start + self.n / RATE - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
        data = array("h", (int(8000 * math.sin(2 * math.pi * self.hz * (self.n + i) / RATE)) for i in range(SAMPLES)))
        frame = av.AudioFrame(format="s16", layout="mono", samples=SAMPLES)
        frame.planes[0].update(data.tobytes())
        frame.sample_rate = RATE
        frame.pts = self.n
        frame.time_base = fractions.Fraction(1, RATE)
        self.n += SAMPLES
        return frame


class Stats:
    def __init__(self):
        self.audio_frames = 0
        self.loud_frames = 0
        self.crossings = 0
        self.loud_samples = 0
        self.video_frames = 0


async def consume_audio(track, stats: Stats):
    try:
        while True:
            frame = await track.recv()
            stats.audio_frames += 1
            pcm = frame.to_ndarray() if hasattr(frame, "to_ndarray") else None
            # Packed s16 (interleaved when stereo): take the first channel.
            raw = array("h", bytes(frame.planes[0]))
            channels = len(frame.layout.channels)
            mono = raw[::channels][: frame.samples]
            if not mono:
                continue
            rms = math.sqrt(sum(s * s for s in mono) / len(mono))
            if rms > 500:
                stats.loud_frames += 1
                stats.loud_samples += len(mono)
                stats.crossings += sum(1 for a, b in zip(mono, mono[1:]) if (a < 0) != (b < 0))
            del pcm
    except MediaStreamError:
        pass


async def consume_video(track, stats: Stats):
    try:
        while True:
            await track.recv()
            stats.video_frames += 1
    except MediaStreamError:
        pass


async def main() -> int:
    args = sys.argv[1:]
    seconds, tone, video = 5.0, 880.0, True
    if "--seconds" in args:
        i = args.index("--seconds"); seconds = float(args[i + 1]); del args[i:i + 2]
    if "--tone" in args:
        i = args.index("--tone"); tone = float(args[i + 1]); del args[i:i + 2]
    if "--no-video" in args:
        args.remove("--no-video"); video = False
    url, token = args

    stats = Stats()
    pc = RTCPeerConnection()
    pc.addTrack(Tone(tone))
    if video:
        pc.addTrack(VideoStreamTrack())
    tasks = []

    @pc.on("track")
    def on_track(track):
        tasks.append(asyncio.ensure_future(consume_audio(track, stats) if track.kind == "audio" else consume_video(track, stats)))

    async with websockets.connect(url, open_timeout=10) as ws:
        pending = {}
        events = asyncio.Queue()
        next_id = [0]

        async def reader():
            async for text in ws:
                m = json.loads(text)
                if "id" in m and m["id"] in pending:
                    pending.pop(m["id"]).set_result(m)
                else:
                    await events.put(m)

        read_task = asyncio.ensure_future(reader())

        async def call(msg):
            next_id[0] += 1
            msg["id"] = next_id[0]
            fut = asyncio.get_event_loop().create_future()
            pending[msg["id"]] = fut
            await ws.send(json.dumps(msg))
            reply = await asyncio.wait_for(fut, 15)
            if reply.get("ok") is not True:
                raise RuntimeError(f"{msg['type']} refused: {reply}")
            return reply

        await call({"type": "auth", "token": token})
        await pc.setLocalDescription(await pc.createOffer())
        reply = await call({"type": "offer", "sdp": pc.localDescription.sdp})
        answer = reply["sdp"]
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

        subscribed = []

        async def subscribe(track_id):
            if track_id not in subscribed:
                subscribed.append(track_id)
                await call({"type": "subscribe", "track": track_id})

        for p in reply.get("participants", []):
            for t in p.get("tracks", []):
                await subscribe(t["id"])

        deadline = time.time() + seconds
        while time.time() < deadline:
            try:
                ev = await asyncio.wait_for(events.get(), max(0.05, deadline - time.time()))
            except asyncio.TimeoutError:
                break
            if ev.get("type") == "track_published":
                await subscribe(ev["track"]["id"])

        result = {
            "ice": pc.iceConnectionState,
            "dtls": pc.connectionState,
            "audio_frames": stats.audio_frames,
            "loud_frames": stats.loud_frames,
            "audio_hz": round(stats.crossings * RATE / (2 * stats.loud_samples)) if stats.loud_samples else 0,
            "video_frames": stats.video_frames,
            "tracks": subscribed,
            "answer_lines": len(answer.splitlines()),
        }
        await pc.close()
        for t in tasks:
            t.cancel()
        read_task.cancel()
    print(json.dumps(result, sort_keys=True), flush=True)
    return 0 if result["ice"] == "completed" or result["dtls"] == "connected" else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
