import ParleyCore
import ParleyIO
import ParleyRTP
import ParleySTUN

/// The relay on one event loop: that loop's media socket, the rooms pinned
/// to the loop, and the packet path.
///
/// Datagrams arrive in `recvmmsg` batches and are demultiplexed by their
/// first byte (RFC 7983): STUN goes to the Binding responder, RTP and RTCP
/// to the sender's `Router`. The sender is found by source address among
/// latched participants only; anything else is dropped and counted. Media
/// moves to a new address only after a consent check there succeeds (or an
/// SRTP packet from there authenticates): see docs/protocol.md. Every
/// forwarded copy is queued on the socket's `sendmmsg` batch, flushed once
/// at the end of the receive batch. One clock read per batch.
///
/// Loop-bound: every method must run on `loop` (use `Relay` from other threads).
public final class RelayWorker: UDPSocketHandler, @unchecked Sendable {
    /// The loop this worker and its rooms live on.
    public let loop: EventLoop
    /// Index of this worker (its loop) in the relay.
    public let index: Int
    /// The media endpoint announced to clients (`host:port`).
    public private(set) var endpoint: String = ""
    /// The bound media address.
    public var localAddress: SocketAddress { socket.localAddress }

    let config: RelayConfig
    let metrics: RelayMetrics
    private(set) var socket: UDPSocket!
    private(set) var rooms: [String: Router] = [:]
    private var byAddress: [SocketAddress: Participant] = [:]
    /// RTCP addresses latched apart from the media address (ffmpeg's RTP port + 1).
    private var byRTCPAddress: [SocketAddress: Participant] = [:]
    /// Consent checks in flight, by the transaction ID of the relay's request.
    private var consentChecks: [STUNTransactionID: Participant] = [:]
    /// Retransmits consent checks while any is in flight.
    private var consentTimer: TimerHandle?
    private var byUfrag: [String: Participant] = [:]
    private var byID: [ParticipantID: Participant] = [:]
    private var nextParticipant: UInt32 = 1
    private var housekeeping: TimerHandle?
    private let responder = BindingResponder(software: "parley", alwaysFingerprint: true)
    /// Limits unauthenticated STUN answers to addresses nobody latched.
    private let stunLimiter: SourceRateLimiter?
    /// Scratch space for RTCP we build (RR, PLI, FIR) and STUN responses
    /// before queuing copies.
    private let scratch: UnsafeMutableRawBufferPointer
    /// Scratch space for the relay's own Binding requests (consent checks),
    /// apart from `scratch`, which holds the response they precede.
    private let checkScratch: UnsafeMutableRawBufferPointer
    // Per batch: the one clock read, and tallies flushed to metrics at the end.
    private var nowNs: UInt64 = 0
    private var nowMs: UInt64 = 0
    private var tally = BatchCounters()
    /// Residence times (socket arrival → `sendmmsg` done) while measured.
    private var residence = LatencyHistogram()

    /// Binds the media socket on `loop` and starts housekeeping. Loop only.
    public init(loop: EventLoop, index: Int, bindTo address: SocketAddress, config: RelayConfig) throws(RelayError) {
        loop.preconditionInLoop()
        self.loop = loop
        self.index = index
        self.config = config
        metrics = RelayMetrics(config.metrics)
        stunLimiter = config.stunRateLimit.map(SourceRateLimiter.init)
        scratch = .allocate(byteCount: 1500, alignment: 16)
        checkScratch = .allocate(byteCount: 512, alignment: 16)
        var opts = UDPSocket.Options()
        opts.batchSize = config.batchSize
        // A full send batch flushes; each flush groups what it holds by
        // subscriber into UDP GSO runs.
        opts.sendBatchSize = config.sendBatchSize
        opts.receiveBufferSize = config.socketBufferSize
        opts.sendBufferSize = config.socketBufferSize
        opts.metrics = config.metrics
        do {
            socket = try UDPSocket(loop: loop, bindTo: address, options: opts, handler: self)
        } catch {
            // self is fully initialised here, so deinit frees the scratch buffers.
            throw .bindFailed(address: address.description, reason: error.message)
        }
        let bound = socket.localAddress
        if let host = config.announcedHost {
            endpoint = host.contains(":") ? "[\(host)]:\(bound.port)" : "\(host):\(bound.port)"
        } else {
            endpoint = bound.description
        }
        tickClock()
        housekeeping = loop.scheduleRepeatingTimer(every: config.housekeepingInterval) { [weak self] in self?.runHousekeeping() }
    }

    deinit {
        scratch.deallocate()
        checkScratch.deallocate()
    }

    /// Closes every room and the socket. Loop only.
    public func close() {
        loop.preconditionInLoop()
        for name in Array(rooms.keys) { _ = closeRoom(name) }
        if let h = housekeeping { loop.cancelTimer(h); housekeeping = nil }
        if let h = consentTimer { loop.cancelTimer(h); consentTimer = nil }
        socket?.close()
    }

    // MARK: Control (loop only)

    /// Number of rooms on this loop.
    public var roomCount: Int { rooms.count }

    /// Opens a room on this loop.
    public func createRoom(_ name: String) -> Result<RoomInfo, RelayError> {
        loop.preconditionInLoop()
        guard !name.isEmpty, name.utf8.count <= 128 else { return .failure(.invalidRequest("room names are 1-128 bytes")) }
        guard rooms[name] == nil else { return .failure(.roomExists(name)) }
        guard rooms.count < config.maxRoomsPerLoop else { return .failure(.tooManyRooms(limit: config.maxRoomsPerLoop)) }
        rooms[name] = Router(name: name, config: config, participantsGauge: metrics.roomGauge(name))
        metrics.rooms.inc()
        return .success(RoomInfo(name: name, loopIndex: index, endpoint: endpoint))
    }

    /// Closes a room, removing its participants.
    public func closeRoom(_ name: String) -> Result<Void, RelayError> {
        loop.preconditionInLoop()
        guard let r = rooms[name] else { return .failure(.noSuchRoom(name)) }
        for p in r.participants { remove(p) }
        rooms[name] = nil
        metrics.rooms.dec()
        return .success(())
    }

    /// Adds a participant publishing `tracks` to room `room`; it receives
    /// every other participant's tracks and they receive its tracks.
    public func addParticipant(room: String, tracks: [TrackSpec]) -> Result<ParticipantGrant, RelayError> {
        loop.preconditionInLoop()
        guard let r = rooms[room] else { return .failure(.noSuchRoom(room)) }
        var ufrag = Credentials.random(8)
        while byUfrag[ufrag] != nil { ufrag = Credentials.random(8) }
        let id = ParticipantID(rawValue: UInt32(index & 0xFF) << 24 | nextParticipant)
        nextParticipant = nextParticipant >= 0xFF_FFFF ? 1 : nextParticipant + 1
        let p: Participant
        do {
            // The consent ufrag has 16 characters: never one of the relay's 8-character
            // ufrags, so a consent check reflected back at the relay authenticates as nobody.
            p = try r.addParticipant(id: id, ufrag: ufrag, password: Credentials.random(24),
                                     consentUfrag: Credentials.random(16), consentPassword: Credentials.random(24),
                                     tracks: tracks, nowMs: MonotonicTime.now().milliseconds)
        } catch {
            return .failure(error)
        }
        byUfrag[ufrag] = p
        byID[id] = p
        metrics.participants.inc()
        return .success(ParticipantGrant(id: id, room: room, endpoint: endpoint, ufrag: p.ufrag, password: p.password,
                                         consentUfrag: p.consentUfrag, consentPassword: p.consentPassword,
                                         tracks: p.published.map(\.info)))
    }

    /// Removes a participant from its room.
    public func removeParticipant(room: String, _ id: ParticipantID) -> Result<Void, RelayError> {
        loop.preconditionInLoop()
        switch participant(room, id) {
        case .failure(let e): return .failure(e)
        case .success(let p): remove(p); return .success(())
        }
    }

    /// Starts or stops delivery of track `ssrc` to participant `subscriber`.
    public func setSubscribed(room: String, subscriber: ParticipantID, ssrc: UInt32, _ subscribed: Bool) -> Result<Void, RelayError> {
        loop.preconditionInLoop()
        switch participant(room, subscriber) {
        case .failure(let e): return .failure(e)
        case .success(let p):
            do {
                try p.router.setSubscribed(p, ssrc: ssrc, subscribed)
            } catch {
                return .failure(error)
            }
            if subscribed, p.address != nil, let t = p.router.tracksBySSRC[ssrc], t.kind == .video {
                tickClock()
                requestKeyframe(t, fir: false) // the new subscriber's decoder needs one
                flush()
            }
            return .success(())
        }
    }

    /// Reads the monotonic clock into `nowNs`/`nowMs`: once per receive
    /// batch, per housekeeping run, and in control calls that send.
    @inline(__always) private func tickClock() {
        nowNs = MonotonicTime.now().nanoseconds
        nowMs = nowNs / 1_000_000
    }

    /// Publisher-side mute of track `ssrc` (nothing is forwarded while muted).
    public func setMuted(room: String, ssrc: UInt32, _ muted: Bool) -> Result<Void, RelayError> {
        loop.preconditionInLoop()
        guard let r = rooms[room] else { return .failure(.noSuchRoom(room)) }
        return Result { () throws(RelayError) in try r.setMuted(ssrc: ssrc, muted) }
    }

    /// Installs (or clears) a participant's SRTP hooks.
    public func setCrypto(room: String, participant id: ParticipantID, _ crypto: ParticipantCrypto?) -> Result<Void, RelayError> {
        loop.preconditionInLoop()
        switch participant(room, id) {
        case .failure(let e): return .failure(e)
        case .success(let p):
            p.crypto = crypto
            p.router.addressChanged(p) // destinations note who needs a per-subscriber copy
            return .success(())
        }
    }

    /// Starts (or with nil stops) the room's recorder tap.
    public func setTap(room: String, _ tap: RTPTap?) -> Result<Void, RelayError> {
        loop.preconditionInLoop()
        guard let r = rooms[room] else { return .failure(.noSuchRoom(room)) }
        r.tap = tap
        return .success(())
    }

    /// Counts as activity from the participant (see `Relay.keepAlive`).
    public func keepAlive(room: String, _ id: ParticipantID) -> Result<Void, RelayError> {
        loop.preconditionInLoop()
        return participant(room, id).map { $0.lastSeenMs = MonotonicTime.now().milliseconds }
    }

    /// A snapshot of a room.
    public func stats(room: String) -> Result<RoomStats, RelayError> {
        loop.preconditionInLoop()
        guard let r = rooms[room] else { return .failure(.noSuchRoom(room)) }
        return .success(r.stats(loopIndex: index))
    }

    /// Latches `address` for a participant without STUN: for trusted
    /// in-process callers only (the bench, which drives fixed addresses).
    func latchForTrustedCaller(room: String, _ id: ParticipantID, address: SocketAddress) -> Result<Void, RelayError> {
        switch participant(room, id) {
        case .failure(let e): return .failure(e)
        case .success(let p):
            tickClock()
            latch(p, address)
            flush()
            return .success(())
        }
    }

    private func participant(_ room: String, _ id: ParticipantID) -> Result<Participant, RelayError> {
        guard rooms[room] != nil else { return .failure(.noSuchRoom(room)) }
        guard let p = byID[id], p.router.name == room else { return .failure(.noSuchParticipant(id)) }
        return .success(p)
    }

    private func remove(_ p: Participant) {
        guard !p.removed else { return }
        p.router.removeParticipant(p)
        if let a = p.address, byAddress[a] === p { byAddress[a] = nil }
        forgetRTCPAddress(p)
        if let c = p.consent { consentChecks[c.transactionID] = nil; p.consent = nil }
        byUfrag[p.ufrag] = nil
        byID[p.id] = nil
        metrics.participants.dec()
    }

    /// Sets `p`'s media address (after a consent check or an authenticated
    /// SRTP packet) and rebuilds the destinations that include it. An
    /// address belongs to one participant. A separate RTCP address is kept
    /// only when it is the new media port + 1.
    private func latch(_ p: Participant, _ address: SocketAddress) {
        if p.address == address { return }
        if let old = p.address, byAddress[old] === p { byAddress[old] = nil }
        let rtcpBesideIt = address.port < UInt16.max && p.rtcpAddress == address.withPort(address.port + 1)
        if !rtcpBesideIt { forgetRTCPAddress(p) }
        if let other = byAddress[address], other !== p {
            other.address = nil
            other.router.addressChanged(other)
        }
        p.address = address
        byAddress[address] = p
        p.router.addressChanged(p)
        config.onEvent?(.participantLatched(room: p.router.name, participant: p.id, address: address.description))
        // It can receive now: its decoders need a keyframe of every video
        // track it gets (throttled like a subscriber's own PLI).
        for t in p.receiving where t.kind == .video { requestKeyframe(t, fir: false) }
    }

    // MARK: Packet path

    public func udpSocket(_ socket: UDPSocket, didReceive batch: UDPReceiveBatch) {
        tickClock()
        for i in 0..<batch.count {
            let d = batch[i]
            let bytes = d.bytes
            tally.packetsIn += 1
            tally.bytesIn += bytes.count
            switch MediaDemultiplexer.classify(bytes) {
            case .rtp:
                guard let p = byAddress[d.source] else {
                    // Not latched: an SRTP packet that authenticates with its SSRC owner's key latches.
                    if let (p, plain) = latchBySRTP(bytes, from: d.source) {
                        p.packetsIn += 1
                        p.bytesIn += bytes.count
                        forwardRTP(from: p, plain, plaintext: true)
                    }
                    continue
                }
                p.lastSeenMs = nowMs
                p.packetsIn += 1
                p.bytesIn += bytes.count
                forwardRTP(from: p, bytes)
            case .rtcp:
                guard let p = byAddress[d.source] ?? byRTCPAddress[d.source] else {
                    // Not latched: SRTCP from a participant's media port + 1 that authenticates latches its RTCP address.
                    if let (p, plain) = latchRTCPBySRTCP(bytes, from: d.source) {
                        p.packetsIn += 1
                        p.bytesIn += bytes.count
                        handleRTCP(from: p, plain, plaintext: true)
                    }
                    continue
                }
                p.lastSeenMs = nowMs
                p.packetsIn += 1
                p.bytesIn += bytes.count
                handleRTCP(from: p, bytes)
            case .stun:
                handleSTUN(bytes, from: d.source)
            default:
                // RTP's first byte but too short to classify: malformed; anything else: not ours.
                tally.drop((128...191).contains(bytes.first ?? 0) ? .malformed : .unknownProtocol)
            }
        }
        flush()
        if socket.receiveTimestamps { recordResidence(batch) }
    }

    /// Residence of each datagram of `batch`: from the kernel queuing it on
    /// our socket to the end of the flush that sent its copies (one clock
    /// read per batch). This is the relay's added latency: waiting in the
    /// socket queue, our processing, and handing every copy to the kernel.
    private func recordResidence(_ batch: UDPReceiveBatch) {
        let now = realtimeNanoseconds()
        for i in 0..<batch.count {
            let at = batch.receivedAtNanoseconds(i)
            if at > 0 { residence.record(UInt64(Swift.max(0, now - at))) }
        }
    }

    /// Starts (or stops) measuring residence times: turns on kernel receive
    /// timestamps on the media socket (they cost a control message per
    /// datagram, so they are off unless asked for). Loop only.
    public func setResidenceMeasurement(_ on: Bool) throws(SystemError) {
        loop.preconditionInLoop()
        try socket.setReceiveTimestamps(on)
    }

    /// The residence times measured since the last call, and a fresh start. Loop only.
    public func takeResidence() -> LatencyHistogram {
        loop.preconditionInLoop()
        defer { residence.reset() }
        return residence
    }

    /// Sends what is queued and moves the batch tallies to the metrics.
    private func flush() {
        // Count first: whoever receives what we send may read the metrics.
        tally.flush(to: metrics)
        tally = BatchCounters()
        socket.sendBatch.flush()
    }

    /// Queues `bytes` for `dest`: by reference when nobody needs a private
    /// copy, else copied (and protected with the subscriber's hook).
    @inline(__always)
    private func queue(_ bytes: UnsafeRawBufferPointer, to dest: SocketAddress, subscriber: Participant?,
                       isRTCP: Bool, byReference: Bool) {
        if let c = subscriber?.crypto {
            socket.sendBatch.append(to: dest) { buf in
                guard bytes.count <= buf.count else { return 0 }
                buf.copyMemory(from: bytes)
                return c.protect(buf, bytes.count, isRTCP) ?? 0
            }
        } else if byReference {
            socket.sendBatch.appendNoCopy(bytes, to: dest)
        } else {
            socket.sendBatch.append(bytes, to: dest)
        }
        tally.packetsOut += 1
        tally.bytesOut += bytes.count
    }

    /// Runs the inbound crypto hook, if any: returns the plaintext view or nil (dropped).
    @inline(__always)
    private func inbound(_ p: Participant, _ bytes: UnsafeRawBufferPointer, isRTCP: Bool) -> UnsafeRawBufferPointer? {
        guard let c = p.crypto else { return bytes }
        let m = UnsafeMutableRawBufferPointer(mutating: bytes)
        guard let n = c.unprotect(m, isRTCP), n <= bytes.count else { tally.drop(.authFailed); return nil }
        return UnsafeRawBufferPointer(rebasing: bytes[0..<n])
    }

    /// An RTP packet from an address nobody has latched (DESIGN.md: an SRTP
    /// packet that authenticates with the participant's key latches, so tools
    /// without STUN, like ffmpeg, can publish). The SSRC names the candidate
    /// publisher; only one with an SRTP hook qualifies, and only if the packet
    /// authenticates (and is no replay). Anything else is dropped and counted,
    /// and never latches. Returns the publisher and the plaintext.
    private func latchBySRTP(_ bytes: UnsafeRawBufferPointer, from source: SocketAddress) -> (Participant, UnsafeRawBufferPointer)? {
        guard bytes.count >= 12 else { tally.drop(.malformed); return nil }
        guard config.srtpLatching, let p = publisher(ofSSRC: bytes.u32(8)), p.crypto != nil else {
            tally.drop(.unknownSource)
            return nil
        }
        guard let plain = inbound(p, bytes, isRTCP: false) else { return nil } // counted as auth_failed
        p.lastSeenMs = nowMs
        latch(p, source)
        return (p, plain)
    }

    /// The participant publishing `ssrc` in any room of this loop.
    private func publisher(ofSSRC ssrc: UInt32) -> Participant? {
        for r in rooms.values {
            if let t = r.tracksBySSRC[ssrc] { return t.publisher }
        }
        return nil
    }

    /// RTCP from an address nobody has latched. Tools without RTCP-mux
    /// (ffmpeg) send RTCP from their RTP port + 1 (RFC 3550 §11). The
    /// candidate is the participant whose media address is the port below,
    /// else the publisher of the sender SSRC (ffmpeg's first sender report
    /// goes out before its first RTP packet). An SRTCP packet that
    /// authenticates with the candidate's key and is no replay (the SRTCP
    /// index check runs first) latches its RTCP address. Returns the
    /// participant and the plaintext.
    private func latchRTCPBySRTCP(_ bytes: UnsafeRawBufferPointer, from source: SocketAddress) -> (Participant, UnsafeRawBufferPointer)? {
        guard bytes.count >= 8 else { tally.drop(.malformed); return nil }
        let below = source.port > 1 ? byAddress[source.withPort(source.port - 1)] : nil
        guard let p = below ?? publisher(ofSSRC: bytes.u32(4)), p.crypto != nil else {
            tally.drop(.unknownSource)
            return nil
        }
        guard let plain = inbound(p, bytes, isRTCP: true) else { return nil } // counted as auth_failed
        forgetRTCPAddress(p)
        p.rtcpAddress = source
        byRTCPAddress[source] = p
        p.lastSeenMs = nowMs
        metrics.rtcpLatches.inc()
        return (p, plain)
    }

    private func forgetRTCPAddress(_ p: Participant) {
        guard let a = p.rtcpAddress else { return }
        if byRTCPAddress[a] === p { byRTCPAddress[a] = nil }
        p.rtcpAddress = nil
    }

    private func forwardRTP(from p: Participant, _ raw: UnsafeRawBufferPointer, plaintext: Bool = false) {
        guard let bytes = plaintext ? raw : inbound(p, raw, isRTCP: false) else { return }
        guard let rtp = try? RTPPacketView(parsing: bytes) else { tally.drop(.malformed); return }
        guard let t = p.publishedTrack(rtp.ssrc) else { tally.drop(.unknownSSRC); return }
        let seq = rtp.sequenceNumber
        t.statistics.update(sequenceNumber: seq, timestamp: rtp.timestamp, arrivalTime: nowNs)
        t.packetsIn += 1
        t.bytesIn += bytes.count
        p.router.packetsIn += 1
        guard !t.muted else { tally.drop(.muted); return }
        t.retransmission?.store(bytes, sequence: seq, nowMs: nowMs) // after mute: a NACK must not reveal muted media
        if let tap = p.router.tap { tap.packet(t.ssrc, t.kind, bytes) }
        let n = t.destinations.count
        guard n > 0 else { return }
        if t.needsPerDestinationCopy || p.crypto != nil {
            // The receive buffer now holds plaintext (or some subscriber needs its own SRTP): copy per destination.
            for i in 0..<n {
                queue(bytes, to: t.destinations[i], subscriber: t.destinationParticipants[i], isRTCP: false, byReference: false)
            }
        } else {
            t.destinations.withUnsafeBufferPointer { dests in
                for d in dests { socket.sendBatch.appendNoCopy(bytes, to: d) }
            }
            tally.packetsOut += n
            tally.bytesOut += n * bytes.count
        }
        t.packetsForwarded += n
        p.router.packetsOut += n
    }

    private func handleRTCP(from p: Participant, _ raw: UnsafeRawBufferPointer, plaintext: Bool = false) {
        guard let bytes = plaintext ? raw : inbound(p, raw, isRTCP: true) else { return }
        guard let compound = try? RTCPCompoundView(parsing: bytes) else { tally.drop(.malformed); return }
        metrics.rtcpIn.inc()
        let router = p.router
        var senderReportTrack: Track?
        for pkt in compound {
            switch pkt.packetType {
            case RTCP.PacketType.senderReport:
                guard let s = pkt.senderSSRC, let t = p.publishedTrack(s), let ntp = pkt.senderReportNTPTimestamp else { continue }
                t.statistics.senderReportReceived(ntpTimestamp: ntp, arrivalTime: nowNs)
                senderReportTrack = t
            case RTCP.PacketType.transportFeedback where pkt.count == RTCP.Format.genericNACK:
                guard let m = pkt.mediaSSRC, let t = router.tracksBySSRC[m], let budget = t.retransmissionBudget(for: p),
                      let dest = p.address else { continue }
                answerNACK(pkt, track: t, budget: budget, subscriber: p, dest: dest)
            case RTCP.PacketType.payloadFeedback where pkt.count == RTCP.Format.pictureLossIndication:
                guard let m = pkt.mediaSSRC, let t = router.tracksBySSRC[m], t.isSubscribed(p) else { continue }
                requestKeyframe(t, fir: false)
            case RTCP.PacketType.payloadFeedback where pkt.count == RTCP.Format.fullIntraRequest:
                // RFC 5104 §4.3.1.2: FCI entries of (SSRC, seq nr, reserved).
                let b = pkt.body
                var off = 8
                while off + 8 <= b.count {
                    let ssrc = b.u32(off)
                    if let t = router.tracksBySSRC[ssrc], t.isSubscribed(p) { requestKeyframe(t, fir: true) }
                    off += 8
                }
            default:
                continue // RR, SDES, BYE, APP, REMB: consumed here
            }
        }
        // Publishers' SR go to the track's receivers (lip sync needs the NTP↔RTP mapping).
        if let t = senderReportTrack, !t.muted {
            for i in 0..<t.destinations.count {
                let s = t.destinationParticipants[i]
                queue(bytes, to: s.rtcpAddress ?? t.destinations[i], subscriber: s, isRTCP: true, byReference: p.crypto == nil)
            }
        }
    }

    /// Resends what subscriber `p` lost, as far as its budget for `t` allows
    /// (see `RetransmissionBudget`): the answer never grows with the NACK.
    private func answerNACK(_ pkt: RTCPPacketView, track t: Track, budget: RetransmissionBudget,
                            subscriber p: Participant, dest: SocketAddress) {
        guard let ring = t.retransmission else { return }
        let maxAge = UInt64(config.retransmissionMaxAge.millisecondsRoundedUp)
        let interval = UInt64(config.retransmissionResendInterval.millisecondsRoundedUp)
        budget.refill(from: ring, percent: config.retransmissionBudgetPercent)
        var served = 0, missed = 0, duplicate = 0, overBudget = 0
        RTCPGenericNACK.forEachLost(in: pkt) { seq in
            guard let stored = ring.packet(sequence: seq, nowMs: nowMs, maxAgeMs: maxAge) else { missed += 1; return }
            switch budget.admit(sequence: seq, bytes: stored.count, nowMs: nowMs, intervalMs: interval) {
            case .resend:
                // Copied: the ring slot may be overwritten before the batch is flushed.
                queue(stored, to: dest, subscriber: p, isRTCP: false, byReference: false)
                served += 1
            case .duplicate: duplicate += 1
            case .overBudget: overBudget += 1
            }
        }
        t.publisher.router.nacksServed += served
        if served > 0 { metrics.nacksServed.inc(served) }
        if missed > 0 { metrics.nacksMissed.inc(missed) }
        if duplicate > 0 { metrics.nacksDuplicate.inc(duplicate) }
        if overBudget > 0 { metrics.nacksOverBudget.inc(overBudget) }
    }

    /// Forwards a keyframe request to the publisher of `t`, at most one per
    /// `keyframeRequestInterval` per track (mediasoup does the same).
    private func requestKeyframe(_ t: Track, fir: Bool) {
        let router = t.publisher.router
        let interval = UInt64(config.keyframeRequestInterval.millisecondsRoundedUp)
        if let last = t.lastKeyframeRequestMs, nowMs &- last < interval {
            router.keyframeRequestsThrottled += 1
            metrics.keyframeThrottled.inc()
            return
        }
        guard let dest = t.publisher.rtcpDestination else { return }
        t.lastKeyframeRequestMs = nowMs
        router.keyframeRequestsForwarded += 1
        metrics.keyframeForwarded.inc()
        let n: Int
        if fir {
            t.firSequence &+= 1
            let f = RTCPFullIntraRequest(senderSSRC: router.relaySSRC, entries: [RTCPFIREntry(ssrc: t.ssrc, sequenceNumber: t.firSequence)])
            n = (try? f.write(into: scratch)) ?? 0
        } else {
            n = (try? RTCPPictureLossIndication(senderSSRC: router.relaySSRC, mediaSSRC: t.ssrc).write(into: scratch)) ?? 0
        }
        guard n > 0 else { return }
        queue(UnsafeRawBufferPointer(rebasing: scratch[0..<n]), to: dest, subscriber: t.publisher, isRTCP: true, byReference: false)
    }

    private func handleSTUN(_ bytes: UnsafeRawBufferPointer, from source: SocketAddress) {
        // Any STUN from a latched address (consent checks, keepalive
        // indications) counts as activity for the timeout; it moves nothing.
        let latched = byAddress[source]
        latched?.lastSeenMs = nowMs
        guard let m = try? STUNMessageView(parsing: bytes) else { tally.drop(.stunRejected); return }
        switch m.type.messageClass {
        case .successResponse, .errorResponse:
            consentAnswered(m, from: source)
            return
        case .indication:
            tally.drop(.stunRejected) // keepalive: nothing to answer
            return
        case .request:
            break
        }
        // With USERNAME: ICE short-term credentials (authenticate, then check
        // consent at a new address). Without: plain public-address discovery,
        // no session change. The answer is built in `scratch` and queued
        // after any consent check, so a client reads the check first.
        let out = UnsafeMutableRawBufferPointer(rebasing: scratch[0..<512])
        let stunSource = STUNAddress(source)
        var outcome: BindingOutcome<Participant>?
        if m.username != nil {
            outcome = try? responder.respond(to: bytes, from: stunSource, into: out) { username in
                self.lookup(username).map { STUNCredential(key: $0.key, participant: $0) }
            }
        } else if let o = try? responder.respond(to: bytes, from: stunSource, into: out) {
            switch o {
            case .success(let n, _): outcome = .success(length: n, participant: nil)
            case .errorResponse(let n, let c): outcome = .errorResponse(length: n, code: c)
            }
        }
        // An answer that authenticates nobody, to an address nobody latched,
        // may be aimed at a spoofed victim: limited per source IP.
        var rateLimited = false
        if let o = outcome, latched == nil, let l = stunLimiter {
            var authenticated = false
            if case .success(_, _?) = o { authenticated = true }
            if !authenticated, !l.admit(source, nowNs: nowNs) {
                outcome = nil
                rateLimited = true
            }
        }
        switch outcome {
        case .success(let n, let who)?:
            metrics.stunBindings.inc()
            if let p = who { authenticatedBinding(p, m.transactionID, from: source) }
            send(UnsafeRawBufferPointer(rebasing: out[0..<n]), to: source)
        case .errorResponse(let n, _)?:
            send(UnsafeRawBufferPointer(rebasing: out[0..<n]), to: source)
            tally.drop(.stunRejected)
        case nil:
            tally.drop(rateLimited ? .stunRateLimited : .stunRejected)
        }
    }

    /// Queues a copy of a packet the relay built itself.
    private func send(_ bytes: UnsafeRawBufferPointer, to dest: SocketAddress) {
        socket.sendBatch.append(bytes, to: dest)
        tally.packetsOut += 1
        tally.bytesOut += bytes.count
    }

    /// An authenticated Binding request from `p`. A transaction ID seen
    /// before is a retransmission or a replay (RFC 8489 §6.3.4): it is
    /// answered, and moves nothing. From the latched address it refreshes the
    /// session; from any other, it starts a consent check there (RFC 7675):
    /// the request proves the sender knows the password, not that the source
    /// address is theirs, nor that it wants media.
    private func authenticatedBinding(_ p: Participant, _ id: STUNTransactionID, from source: SocketAddress) {
        guard p.recentTransactions.insert(id) else { metrics.stunReplays.inc(); return }
        if p.address == source {
            p.lastSeenMs = nowMs
        } else if p.consent?.address != source {
            startConsentCheck(p, to: source)
        }
    }

    /// Sends the relay's own Binding request to `address` with `p`'s
    /// consent credentials; it replaces a check in flight to another address.
    private func startConsentCheck(_ p: Participant, to address: SocketAddress) {
        if let old = p.consent {
            consentChecks[old.transactionID] = nil
            metrics.consentFailed.inc()
        }
        let c = ConsentCheck(address: address, transactionID: .random(), attempts: 0)
        p.consent = c
        consentChecks[c.transactionID] = p
        sendConsentRequest(p)
        // Its own flush: it leaves before the Binding response queued next
        // (one GSO run would carry both as one datagram until segmentation).
        flush()
        if consentTimer == nil {
            consentTimer = loop.scheduleRepeatingTimer(every: config.consentRetransmitInterval) { [weak self] in
                self?.retransmitConsentChecks()
            }
        }
    }

    /// Sends (or resends, with the same transaction ID, RFC 8489 §6.2.1) `p`'s consent check.
    private func sendConsentRequest(_ p: Participant) {
        guard var c = p.consent,
              let n = try? BindingCheck.writeRequest(into: checkScratch, transactionID: c.transactionID,
                                                     username: p.consentUsername, key: p.consentKey) else { return }
        send(UnsafeRawBufferPointer(rebasing: checkScratch[0..<n]), to: c.address)
        c.attempts += 1
        p.consent = c
        metrics.consentRequests.inc()
    }

    /// The consent timer: resends each check in flight, and gives up on one
    /// after `consentMaxAttempts` requests (media stays where it was).
    func retransmitConsentChecks() {
        tickClock()
        for p in Array(consentChecks.values) {
            guard let c = p.consent else { continue }
            if c.attempts >= config.consentMaxAttempts {
                consentChecks[c.transactionID] = nil
                p.consent = nil
                metrics.consentFailed.inc()
            } else {
                sendConsentRequest(p)
            }
        }
        if consentChecks.isEmpty, let h = consentTimer {
            loop.cancelTimer(h)
            consentTimer = nil
        }
        flush()
    }

    /// A STUN response: the answer to a consent check when its transaction ID
    /// is one in flight, it comes from the checked address, and it is a
    /// success whose MESSAGE-INTEGRITY verifies with the participant's
    /// consent password. Then, and only then, media moves there.
    private func consentAnswered(_ m: STUNMessageView, from source: SocketAddress) {
        guard let p = consentChecks[m.transactionID], let c = p.consent, c.address == source,
              BindingCheck.isAuthenticatedSuccess(m, key: p.consentKey) else {
            tally.drop(.stunRejected)
            return
        }
        consentChecks[c.transactionID] = nil
        p.consent = nil
        metrics.consentSucceeded.inc()
        p.lastSeenMs = nowMs
        latch(p, source)
    }

    /// USERNAME is `ufrag` or `ufrag:peer-ufrag` (RFC 8445 §7.2.2).
    private func lookup(_ username: UnsafeRawBufferPointer) -> Participant? {
        var end = username.count
        if let colon = username.firstIndex(of: UInt8(ascii: ":")) { end = colon }
        guard end > 0, end <= 64 else { return nil }
        let ufrag = String(decoding: UnsafeRawBufferPointer(rebasing: username[0..<end]), as: UTF8.self)
        return byUfrag[ufrag]
    }

    // MARK: Housekeeping

    /// Removes timed-out participants and sends RRs to publishers (the
    /// repeating timer calls it; tests may too, on the loop).
    func runHousekeeping(checkTimeouts: Bool = true) {
        tickClock()
        let timeout = UInt64(config.participantTimeout.millisecondsRoundedUp)
        for r in rooms.values {
            for p in r.participants {
                if checkTimeouts, timeout > 0, nowMs &- p.lastSeenMs > timeout {
                    remove(p)
                    metrics.timeouts.inc()
                    config.onEvent?(.participantTimedOut(room: r.name, participant: p.id))
                    continue
                }
                sendReceiverReport(to: p, router: r)
            }
        }
        flush()
    }

    /// RFC 3550 §6.4.2: one RR per publisher with a block per track it sends us.
    private func sendReceiverReport(to p: Participant, router r: Router) {
        guard let dest = p.rtcpDestination, !p.published.isEmpty else { return }
        var blocks: [RTCPReportBlock] = []
        for t in p.published where t.packetsIn > 0 {
            blocks.append(t.statistics.makeReportBlock(ssrc: t.ssrc, now: nowNs))
        }
        guard !blocks.isEmpty else { return }
        let rr = RTCPReceiverReport(ssrc: r.relaySSRC, reports: Array(blocks.prefix(31)))
        guard let n = try? rr.write(into: scratch), n > 0 else { return }
        queue(UnsafeRawBufferPointer(rebasing: scratch[0..<n]), to: dest, subscriber: p, isRTCP: true, byReference: false)
        metrics.receiverReports.inc()
    }
}
