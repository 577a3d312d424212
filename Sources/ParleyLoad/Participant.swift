import Glibc
import ParleyCore
import ParleyIO
import ParleyProtocol
import ParleyRTP
import ParleySRTP
import ParleySTUN

/// One track a participant publishes: its RTP state, its schedule, and a
/// small ring of what it sent (sequence → timestamp, send time, size,
/// marker), so a NACKed packet is rebuilt byte for byte (same payload, same
/// header: SRTP then protects the same plaintext under the same index).
final class OutTrack {
    let ssrc: UInt32
    let payloadType: UInt8
    let clockRate: UInt32
    let isVideo: Bool
    var sequence: UInt16
    var timestamp: UInt32
    /// Packets sent (not counting retransmissions); the extended sequence of
    /// the last one is `firstSequence + sent - 1`.
    var sent: Int64 = 0
    let firstSequence: UInt16
    var octets: Int = 0
    /// Next due time (monotonic ns).
    var due: UInt64 = 0
    var frameIndex = 0
    var keyframeRequested = false
    static let ringSize = 256
    var ring: [(timestamp: UInt32, sendTime: Int64, size: UInt16, marker: Bool, sequence: UInt16)]

    init(ssrc: UInt32, payloadType: UInt8, clockRate: UInt32, isVideo: Bool) {
        self.ssrc = ssrc
        self.payloadType = payloadType
        self.clockRate = clockRate
        self.isVideo = isVideo
        sequence = UInt16.random(in: 0...UInt16.max)
        firstSequence = sequence
        timestamp = UInt32.random(in: 0...UInt32.max)
        ring = isVideo ? Array(repeating: (0, 0, 0, false, 0), count: Self.ringSize) : []
    }

    var lastExtendedSequence: Int64 { Int64(firstSequence) + sent - 1 }
}

/// One received track: RFC 3550 statistics (A.1 validation, A.8 jitter),
/// extended sequence numbers, and a 1024-packet window to tell duplicates
/// from packets that arrive late (reordered).
final class Subscription {
    let ssrc: UInt32
    let clockRate: UInt32
    var stats: RTPReceiveStatistics
    var unwrapper = RTPSequenceUnwrapper()
    var firstExtended: Int64 = -1
    var highestExtended: Int64 = -1
    /// Unique packets received.
    var received: Int64 = 0
    /// Window bits: bit (ext mod 1024) set when that sequence was received.
    var window = [UInt64](repeating: 0, count: 16)
    /// For the per-second loss: expected and received at the last sample.
    var expectedAtSample: Int64 = 0
    var receivedAtSample: Int64 = 0

    init(ssrc: UInt32, clockRate: UInt32) {
        self.ssrc = ssrc
        self.clockRate = clockRate
        stats = RTPReceiveStatistics(clockRate: clockRate, probation: 0)
    }

    var expected: Int64 { firstExtended < 0 ? 0 : highestExtended - firstExtended + 1 }

    enum Arrival { case fresh, reordered, duplicate, tooOld }

    /// Records `seq`; says whether it is new (in order or late) or a duplicate.
    func record(_ seq: UInt16) -> Arrival {
        let ext = unwrapper.unwrap(seq)
        if firstExtended < 0 {
            firstExtended = ext
            highestExtended = ext
            set(ext)
            received = 1
            return .fresh
        }
        if ext > highestExtended {
            // Clear the bits of the sequence numbers skipped over (and of this one).
            let gap = ext - highestExtended
            if gap >= 1024 {
                for i in 0..<16 { window[i] = 0 }
            } else {
                var s = highestExtended + 1
                while s <= ext { clear(s); s += 1 }
            }
            highestExtended = ext
            set(ext)
            received += 1
            return .fresh
        }
        if ext < firstExtended || highestExtended - ext >= 1024 { return .tooOld }
        if isSet(ext) { return .duplicate }
        set(ext)
        received += 1
        return .reordered
    }

    @inline(__always) private func bit(_ ext: Int64) -> (Int, UInt64) {
        let b = Int(ext & 1023)
        return (b >> 6, 1 << UInt64(b & 63))
    }
    @inline(__always) private func set(_ ext: Int64) { let (w, m) = bit(ext); window[w] |= m }
    @inline(__always) private func clear(_ ext: Int64) { let (w, m) = bit(ext); window[w] &= ~m }
    @inline(__always) private func isSet(_ ext: Int64) -> Bool { let (w, m) = bit(ext); return window[w] & m != 0 }
}

/// A synthetic participant, as a real client does it: a token, a TLS
/// WebSocket, `auth` and `join`, a STUN latch (answering the relay's
/// consent check), SRTP both ways; publishers send Opus every 20 ms and
/// video frames as bursts of ≤ 1200-byte packets, everyone sends RTCP
/// (SR/RR) every second, and publishers answer NACK and PLI.
/// Loop-bound: every method runs on its worker's loop.
final class LoadParticipant: SignallingClientHandler, UDPSocketHandler {
    unowned let worker: LoadWorker
    /// The room to join; nil: the token's (tokens from a file).
    let room: String?
    /// The participant's name: ours, or the token's `sub` once `auth` says it.
    private(set) var name: String
    let token: String
    let publishes: Bool
    let bindIP: String?

    private(set) var client: SignallingClient?
    private var socket: UDPSocket?
    private var relay = SocketAddress.ipv4Loopback(port: 0)
    private var send: SRTPContext?
    private var receive: SRTPContext?
    private var ufrag: [UInt8] = [], pwd: [UInt8] = [], consentUfrag: [UInt8] = [], consentPwd: [UInt8] = []
    private var stunTransaction = STUNTransactionID.random()
    private var stunSentAt: UInt64 = 0
    private var stunAttempts = 0
    private var nextSTUN: UInt64 = .max
    private(set) var latched = false
    private var publishAnswered = false
    private var startedAt: UInt64 = 0
    private(set) var gotFirstMedia = false
    private(set) var joined = false
    private(set) var failed = false
    private var stopped = false
    private var sendingStopped = false
    private(set) var audio: OutTrack?
    private(set) var video: OutTrack?
    private(set) var subscriptions: [UInt32: Subscription] = [:]
    private var subscribedTracks: Set<String> = []
    private var nextRTCP: UInt64 = .max
    private var reportSSRC: UInt32 = 0
    private var audioFrame = 0

    init(worker: LoadWorker, room: String?, name: String, token: String, publishes: Bool, bindIP: String?) {
        self.worker = worker
        self.room = room
        self.name = name
        self.token = token
        self.publishes = publishes
        self.bindIP = bindIP
    }

    var isSending: Bool { latched && publishAnswered && !sendingStopped }

    // MARK: Signalling

    func start() {
        startedAt = MonotonicTime.now().nanoseconds
        let local = bindIP.flatMap { SocketAddress(ip: $0, port: 0) }
        do {
            let c = try SignallingClient.connect(to: worker.plan.server, host: worker.plan.host, path: worker.plan.path,
                                                 tls: worker.plan.tls, on: worker.loop, localAddress: local, handler: self)
            client = c
            c.keepaliveInterval = .seconds(20)
            c.request(.auth(token: token, room: room)) { [weak self] r in
                guard let self else { return }
                switch r {
                case .success(let reply): if let p = reply["participant"]?.stringValue { self.name = p }
                case .failure(let e): self.fail("auth", e)
                }
            }
            c.request(.join(room: room, publish: publishes, subscribe: true, suite: worker.plan.suite.sdesName)) { [weak self] r in
                guard let self else { return }
                switch r {
                case .success(let reply): self.joined(reply)
                case .failure(let e): self.fail("join", e)
                }
            }
        } catch {
            worker.stats.error("connect")
            failed = true
        }
    }

    private func fail(_ what: String, _ e: SignallingClientError) {
        guard !stopped else { return }
        switch e {
        case .refused(_, let s): worker.stats.error("\(what): \(s.code.rawValue)")
        case .timedOut: worker.stats.error("\(what): timeout")
        case .closed: worker.stats.error("\(what): closed")
        case .failed: worker.stats.error("\(what): failed")
        }
        failed = true
    }

    private func joined(_ reply: JSONValue) {
        guard !stopped else { return }
        let host = reply["media"]?["host"]?.stringValue ?? "127.0.0.1"
        guard let port = reply["media"]?["port"]?.intValue, let relay = SocketAddress(ip: host == "0.0.0.0" ? worker.plan.server.ipString : host, port: UInt16(port)),
              let sendKey = reply["srtp"]?["send"]?.stringValue, let receiveKey = reply["srtp"]?["receive"]?.stringValue,
              let suiteName = reply["srtp"]?["suite"]?.stringValue, let suite = SRTPSuite(sdesName: suiteName) else {
            worker.stats.error("join: unusable reply")
            failed = true
            return
        }
        self.relay = worker.plan.mediaVia ?? relay
        ufrag = Array((reply["ice"]?["ufrag"]?.stringValue ?? "").utf8)
        pwd = Array((reply["ice"]?["pwd"]?.stringValue ?? "").utf8)
        consentUfrag = Array((reply["ice"]?["consentUfrag"]?.stringValue ?? "").utf8)
        consentPwd = Array((reply["ice"]?["consentPwd"]?.stringValue ?? "").utf8)
        do {
            send = try SRTPContext(material: SRTPKeyMaterial(suite: suite, inlineKeyParams: sendKey), direction: .outbound,
                                   allowRetransmit: true)
            receive = try SRTPContext(material: SRTPKeyMaterial(suite: suite, inlineKeyParams: receiveKey), direction: .inbound)
        } catch {
            worker.stats.error("join: srtp keys")
            failed = true
            return
        }
        let audioSSRC = UInt32(reply["ssrcs"]?["audio"]?.intValue ?? 0)
        let videoSSRC = UInt32(reply["ssrcs"]?["video"]?.intValue ?? 0)
        reportSSRC = audioSSRC
        let bind = bindIP.flatMap { SocketAddress(ip: $0, port: 0) }
            ?? (relay.family == .ipv4 ? SocketAddress.ipv4Any(port: 0) : SocketAddress.ipv6Any(port: 0))
        do {
            socket = try UDPSocket(loop: worker.loop, bindTo: bind, options: worker.socketOptions, handler: self)
        } catch {
            worker.stats.error("udp socket")
            failed = true
            return
        }
        joined = true
        worker.stats.c.joined += 1
        worker.stats.c.joinReply.record(MonotonicTime.now().nanoseconds &- startedAt)
        sendBindingRequest(now: MonotonicTime.now().nanoseconds)
        worker.wake(self)
        // Tracks already in the room.
        for p in reply["participants"]?.arrayValue ?? [] {
            for t in p["tracks"]?.arrayValue ?? [] { subscribe(t) }
        }
        guard publishes else { publishAnswered = true; return }
        var tracks: [TrackDescription] = []
        if worker.plan.audio {
            audio = OutTrack(ssrc: audioSSRC, payloadType: 111, clockRate: 48_000, isVideo: false)
            tracks.append(TrackDescription(kind: .audio, codec: "opus", payloadType: 111, clockRate: 48_000, channels: 2, ssrc: audioSSRC))
        }
        if worker.plan.video != nil {
            video = OutTrack(ssrc: videoSSRC, payloadType: 96, clockRate: 90_000, isVideo: true)
            tracks.append(TrackDescription(kind: .video, codec: "VP8", payloadType: 96, clockRate: 90_000, ssrc: videoSSRC))
        }
        client?.request(.publish(tracks)) { [weak self] r in
            guard let self else { return }
            switch r {
            case .success: self.publishAnswered = true; self.startSchedule(); self.worker.wake(self)
            case .failure(let e): self.fail("publish", e)
            }
        }
    }

    private func subscribe(_ track: JSONValue) {
        guard let id = track["id"]?.stringValue, let ssrc = track["ssrc"]?.intValue,
              track["participant"]?.stringValue != name, !subscribedTracks.contains(id) else { return }
        if subscribedTracks.isEmpty { worker.stats.c.subscribers += 1 }
        subscribedTracks.insert(id)
        let clockRate = UInt32(track["clockRate"]?.intValue ?? 90_000)
        subscriptions[UInt32(ssrc)] = Subscription(ssrc: UInt32(ssrc), clockRate: max(1, clockRate))
        worker.stats.c.subscriptions += 1
        client?.request(.subscribe(track: id)) { [weak self] r in
            if case .failure(let e) = r { self?.fail("subscribe", e) }
        }
    }

    func signallingClient(_ client: SignallingClient, received event: JSONValue) {
        switch event["type"]?.stringValue {
        case "track_published":
            if joined, let t = event["track"] { subscribe(t) }
        case "error":
            worker.stats.error("event: \(event["code"]?.stringValue ?? "error")")
        default: break
        }
    }

    func signallingClient(_ client: SignallingClient, didCloseWith code: UInt16?, reason: String?) {
        self.client = nil
        guard !stopped else { return }
        worker.stats.error(code.map { "closed: \($0)" } ?? "closed: connection lost")
        failed = true
    }

    // MARK: Schedule (called by the worker's tick)

    private func startSchedule() {
        let now = MonotonicTime.now().nanoseconds
        // A random phase, so participants do not all send in the same tick.
        let phase = UInt64.random(in: 0..<20_000_000)
        audio?.due = now + phase
        if let v = video, let p = worker.plan.video {
            v.due = now + UInt64.random(in: 0..<(1_000_000_000 / UInt64(p.framesPerSecond)))
        }
    }

    /// Where the worker keeps this participant, and the wheel tick it is
    /// next visited at (0: none). Worker only.
    var wheelIndex = 0
    var scheduledTick: UInt64 = 0

    /// Sends what is due at `now` and flushes the socket's batch; returns
    /// when it is next due (.max: never, until something wakes it).
    func tick(now: UInt64) -> UInt64 {
        guard !stopped, !sendingStopped, let socket else { return .max }
        defer { if socket.sendBatch.count > 0 { worker.stats.c.flushes += 1; socket.sendBatch.flush() } }
        if !latched, now >= nextSTUN { sendBindingRequest(now: now) }
        if now >= nextRTCP { sendRTCP(now: now, socket: socket) }
        var next = latched ? nextRTCP : min(nextRTCP, nextSTUN)
        guard isSending else { return next }
        if let a = audio, now >= a.due {
            worker.stats.c.lateness.record(now - a.due)
            var n = 0
            while a.due <= now {
                if n < 5 { sendAudio(a, socket: socket) } else { worker.stats.c.scheduleSkips += 1 }
                n += 1
                a.due += 20_000_000
            }
        }
        if let v = video, let p = worker.plan.video, now >= v.due {
            worker.stats.c.lateness.record(now - v.due)
            let interval = 1_000_000_000 / UInt64(p.framesPerSecond)
            var n = 0
            while v.due <= now {
                if n < 2 { sendVideoFrame(v, profile: p, socket: socket) } else { worker.stats.c.scheduleSkips += 1 }
                n += 1
                v.due += interval
            }
        }
        if let a = audio { next = min(next, a.due) }
        if let v = video { next = min(next, v.due) }
        return next
    }

    private func sendAudio(_ a: OutTrack, socket: UDPSocket) {
        let frames = worker.media.opusFrames
        let frame = frames[audioFrame % frames.count]
        audioFrame += 1
        frame.withUnsafeBytes { payload in
            emit(a, payload: payload, marker: audioFrame == 1, sendTime: realtimeNanoseconds(), socket: socket)
        }
        a.timestamp &+= 960
    }

    private func sendVideoFrame(_ v: OutTrack, profile: VideoProfile, socket: UDPSocket) {
        let sizes = profile.frameBytes
        let key = v.keyframeRequested || v.frameIndex % profile.framesPerKeyframe == 0
        if key { worker.stats.c.keyframes += 1 }
        v.keyframeRequested = false
        v.frameIndex += 1
        var left = key ? sizes.key : sizes.delta
        let max = MediaSource.maxVideoPayload
        let packets = (left + max - 1) / max
        let each = (left + packets - 1) / packets
        let sendTime = realtimeNanoseconds()
        worker.media.videoPayload.withUnsafeBytes { payload in
            for i in 0..<packets {
                let n = Swift.min(each, left)
                left -= n
                emit(v, payload: UnsafeRawBufferPointer(rebasing: payload[0..<n]), marker: i == packets - 1,
                     sendTime: sendTime, socket: socket, firstOfFrame: i == 0, keyframe: key)
            }
        }
        v.timestamp &+= 90_000 / UInt32(profile.framesPerSecond)
    }

    /// Writes one RTP packet into the socket's send batch, protects it in
    /// place and remembers it (video) for a NACK. No allocation.
    private func emit(_ t: OutTrack, payload: UnsafeRawBufferPointer, marker: Bool, sendTime: Int64, socket: UDPSocket,
                      firstOfFrame: Bool = false, keyframe: Bool = false) {
        guard let send else { return }
        let seq = t.sequence
        var wrote = 0
        socket.sendBatch.append(to: relay, maxLength: 1500) { buf in
            let p = buf.baseAddress!
            LoadRTP.writeHeader(p, marker: marker, payloadType: t.payloadType, sequence: seq, timestamp: t.timestamp,
                                ssrc: t.ssrc, sendTime: sendTime)
            (p + LoadRTP.headerSize).copyMemory(from: payload.baseAddress!, byteCount: payload.count)
            if t.isVideo {
                // VP8 payload descriptor (RFC 7741): S on a frame's first packet; the
                // VP8 header's P bit (0: keyframe) in the first payload byte after it.
                (p + LoadRTP.headerSize).storeBytes(of: firstOfFrame ? 0x10 : 0x00, as: UInt8.self)
                if firstOfFrame, payload.count > 1 {
                    (p + LoadRTP.headerSize + 1).storeBytes(of: keyframe ? 0x00 : 0x01, as: UInt8.self)
                }
            }
            let length = LoadRTP.headerSize + payload.count
            guard let n = try? send.protectRTP(buf, length: length) else { return 0 }
            wrote = n
            return n
        }
        guard wrote > 0 else { worker.stats.c.srtpFailures += 1; return }
        if t.isVideo {
            t.ring[Int(seq) % OutTrack.ringSize] = (t.timestamp, sendTime, UInt16(payload.count), marker, seq)
        }
        t.sequence &+= 1
        t.sent += 1
        t.octets += payload.count
        worker.stats.c.rtpSent += 1
        worker.stats.c.bytesSent += wrote
    }

    /// Resends a NACKed video packet from the ring: the same bytes as before.
    private func retransmit(_ seq: UInt16, socket: UDPSocket) {
        guard let v = video else { return }
        let e = v.ring[Int(seq) % OutTrack.ringSize]
        guard e.sequence == seq, e.size > 0, let send else { return }
        var wrote = 0
        worker.media.videoPayload.withUnsafeBytes { payload in
            socket.sendBatch.append(to: relay, maxLength: 1500) { buf in
                let p = buf.baseAddress!
                LoadRTP.writeHeader(p, marker: e.marker, payloadType: v.payloadType, sequence: seq, timestamp: e.timestamp,
                                    ssrc: v.ssrc, sendTime: e.sendTime)
                (p + LoadRTP.headerSize).copyMemory(from: payload.baseAddress!, byteCount: Int(e.size))
                // The descriptor bytes as first sent are not kept; rebuild them the same way.
                (p + LoadRTP.headerSize).storeBytes(of: 0x00, as: UInt8.self)
                guard let n = try? send.protectRTP(buf, length: LoadRTP.headerSize + Int(e.size)) else { return 0 }
                wrote = n
                return n
            }
        }
        if wrote > 0 { worker.stats.c.retransmitted += 1; worker.stats.c.bytesSent += wrote }
    }

    // MARK: STUN

    private func sendBindingRequest(now: UInt64) {
        guard let socket, stunAttempts < 20 else {
            if stunAttempts == 20 { stunAttempts += 1; worker.stats.error("stun: no answer") }
            nextSTUN = .max
            return
        }
        if stunAttempts == 0 { stunSentAt = now }
        stunAttempts += 1
        let username = ufrag + Array(":load".utf8)
        socket.sendBatch.append(to: relay, maxLength: 512) { buf in
            (try? BindingCheck.writeRequest(into: buf, transactionID: stunTransaction, username: username, key: pwd)) ?? 0
        }
        socket.sendBatch.flush()
        nextSTUN = now + 500_000_000
    }

    private func handleSTUN(_ bytes: UnsafeRawBufferPointer, from source: SocketAddress, socket: UDPSocket) {
        guard let m = try? STUNMessageView(parsing: bytes) else { worker.stats.c.malformed += 1; return }
        if m.type == .bindingRequest {
            // The relay's consent check: answer it from this socket (RFC 7675).
            var n: Int? = nil
            socket.sendBatch.append(to: source, maxLength: 512) { out in
                n = BindingCheck.answer(bytes, from: STUNAddress(source), ufrag: consentUfrag, key: consentPwd, into: out)
                return n ?? 0
            }
            if n != nil { worker.stats.c.consentAnswers += 1 } else { worker.stats.error("stun: unanswerable check") }
            return
        }
        guard m.transactionID == stunTransaction, !latched else { return }
        if BindingCheck.isAuthenticatedSuccess(m, key: pwd) {
            latched = true
            nextSTUN = .max
            let now = MonotonicTime.now().nanoseconds
            worker.stats.c.stunRTT.record(now - stunSentAt)
            worker.stats.c.latched += 1
            nextRTCP = now + 1_000_000_000
            if publishAnswered && (audio != nil || video != nil) { startSchedule() }
            worker.wake(self)
        } else if m.type == .bindingError {
            worker.stats.error("stun: refused")
            nextSTUN = .max
        }
    }

    // MARK: Receiving

    func udpSocket(_ socket: UDPSocket, didReceive batch: UDPReceiveBatch) {
        let now = MonotonicTime.now().nanoseconds
        let wall = realtimeNanoseconds()
        for i in 0..<batch.count {
            let d = batch[i]
            let bytes = d.bytes
            switch MediaDemultiplexer.classify(bytes) {
            case .stun: handleSTUN(bytes, from: d.source, socket: socket)
            case .rtp: receiveRTP(UnsafeMutableRawBufferPointer(mutating: bytes), now: now, wall: wall)
            case .rtcp: receiveRTCP(UnsafeMutableRawBufferPointer(mutating: bytes), socket: socket)
            default: worker.stats.c.malformed += 1
            }
        }
        if socket.sendBatch.count > 0 { socket.sendBatch.flush() }
    }

    func udpSocket(_ socket: UDPSocket, didFail error: SystemError) {
        worker.stats.c.udpErrors += 1
    }

    private func receiveRTP(_ buf: UnsafeMutableRawBufferPointer, now: UInt64, wall: Int64) {
        guard let receive else { return }
        let length: Int
        do { length = try receive.unprotectRTP(buf, length: buf.count) } catch {
            worker.stats.c.srtpFailures += 1
            return
        }
        let bytes = UnsafeRawBufferPointer(rebasing: buf[0..<length])
        guard let view = try? RTPPacketView(parsing: bytes), let sub = subscriptions[view.ssrc] else {
            worker.stats.c.malformed += 1
            return
        }
        switch sub.record(view.sequenceNumber) {
        case .duplicate: worker.stats.c.duplicates += 1; return
        case .tooOld: worker.stats.c.duplicates += 1; return
        case .reordered: worker.stats.c.reordered += 1
        case .fresh: break
        }
        sub.stats.update(sequenceNumber: view.sequenceNumber, timestamp: view.timestamp, arrivalTime: now)
        worker.stats.c.rtpReceived += 1
        worker.stats.c.bytesReceived += buf.count
        if let t = view.extensionElement(id: LoadRTP.sendTimeID), t.count == 8 {
            var v: UInt64 = 0
            for k in 0..<8 { v = v << 8 | UInt64(t[k]) }
            let latency = wall - Int64(bitPattern: v)
            worker.stats.recordLatency(latency > 0 ? UInt64(latency) : 0)
        }
        if !gotFirstMedia {
            gotFirstMedia = true
            worker.stats.c.firstMedia += 1
            worker.stats.c.join.record(now &- startedAt)
        }
    }

    private func receiveRTCP(_ buf: UnsafeMutableRawBufferPointer, socket: UDPSocket) {
        guard let receive else { return }
        let length: Int
        do { length = try receive.unprotectRTCP(buf, length: buf.count) } catch {
            worker.stats.c.srtpFailures += 1
            return
        }
        worker.stats.c.rtcpReceived += 1
        guard let compound = try? RTCPCompoundView(parsing: UnsafeRawBufferPointer(rebasing: buf[0..<length])) else {
            worker.stats.c.malformed += 1
            return
        }
        for packet in compound {
            guard let typed = try? RTCPPacket(packet) else { continue }
            switch typed {
            case .pictureLossIndication(let pli):
                worker.stats.c.plis += 1
                if video?.ssrc == pli.mediaSSRC { video?.keyframeRequested = true }
            case .fullIntraRequest:
                worker.stats.c.plis += 1
                video?.keyframeRequested = true
            case .genericNACK(let nack):
                worker.stats.c.nacks += 1
                if video?.ssrc == nack.mediaSSRC {
                    for seq in nack.lostSequenceNumbers { retransmit(seq, socket: socket) }
                }
            default: break
            }
        }
    }

    // MARK: RTCP

    /// One compound packet a second: a sender report per published track
    /// (RFC 3550 §6.4.1), or a receiver report, with report blocks for up
    /// to 31 received tracks.
    private func sendRTCP(now: UInt64, socket: UDPSocket) {
        nextRTCP = now + 1_000_000_000
        guard latched, let send else { return }
        var blocks: [RTCPReportBlock] = []
        for sub in subscriptions.values where sub.firstExtended >= 0 && blocks.count < 31 {
            blocks.append(sub.stats.makeReportBlock(ssrc: sub.ssrc, now: now))
        }
        var packets: [RTCPPacket] = []
        let ntp = Self.ntpNow()
        for t in [audio, video].compactMap({ $0 }) where t.sent > 0 {
            packets.append(.senderReport(RTCPSenderReport(ssrc: t.ssrc, ntpTimestamp: ntp, rtpTimestamp: t.timestamp,
                                                          packetCount: UInt32(truncatingIfNeeded: t.sent),
                                                          octetCount: UInt32(truncatingIfNeeded: t.octets),
                                                          reports: packets.isEmpty ? blocks : [])))
        }
        if packets.isEmpty { packets.append(.receiverReport(RTCPReceiverReport(ssrc: reportSSRC, reports: blocks))) }
        var wrote = 0
        socket.sendBatch.append(to: relay, maxLength: 1500) { buf in
            guard let n = try? RTCPPacket.writeCompound(packets, into: buf),
                  n + SRTPSuite.maxOverhead <= buf.count, let m = try? send.protectRTCP(buf, length: n) else { return 0 }
            wrote = m
            return m
        }
        if wrote > 0 { worker.stats.c.rtcpSent += 1 }
    }

    static func ntpNow() -> UInt64 {
        let ns = realtimeNanoseconds()
        let seconds = UInt64(ns / 1_000_000_000) + 2_208_988_800
        let fraction = (UInt64(ns % 1_000_000_000) << 32) / 1_000_000_000
        return seconds << 32 | fraction
    }

    // MARK: Stopping

    /// Stops sending (media ends for everyone at once, so receivers can drain).
    func stopSending() { sendingStopped = true }

    /// Leaves the room and closes the socket and the connection.
    func finish() {
        stopped = true
        socket?.close()
        socket = nil
        // Close once `leave` is answered: a close without it would leave the
        // media session to the server's reconnect grace period.
        if let c = client {
            c.request(.leave, timeout: .seconds(2)) { _ in c.close() }
        }
    }
}
