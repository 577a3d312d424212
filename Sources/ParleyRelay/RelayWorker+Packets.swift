import ParleyCore
import ParleyIO
import ParleyRTP

/// The packet path: a receive batch demultiplexed, RTP forwarded to each
/// track's destinations, and the SRTP hooks run in place. Loop only.
extension RelayWorker {
    public func udpSocket(_ socket: UDPSocket, didReceive batch: UDPReceiveBatch) {
        tickClock()
        for i in 0..<batch.count {
            let d = batch[i]
            handleDatagram(d.bytes, from: d.source)
        }
        flush()
        if socket.receiveTimestamps { recordResidence(batch) }
    }

    /// One datagram from `source` (a UDP peer, or a frame of a TCP media
    /// connection under its synthetic address): demultiplexed and handled.
    /// The caller reads the clock before and flushes after.
    @inline(__always)
    func handleDatagram(_ bytes: UnsafeRawBufferPointer, from source: SocketAddress) {
        tally.packetsIn += 1
        tally.bytesIn += bytes.count
        switch MediaDemultiplexer.classify(bytes) {
        case .rtp:
            guard let p = byAddress[source] else {
                // Not latched: an SRTP packet that authenticates with its SSRC owner's key latches.
                if let (p, plain) = latchBySRTP(bytes, from: source) {
                    p.packetsIn += 1
                    p.bytesIn += bytes.count
                    forwardRTP(from: p, plain, plaintext: true)
                }
                return
            }
            p.lastSeenMs = nowMs
            p.packetsIn += 1
            p.bytesIn += bytes.count
            forwardRTP(from: p, bytes)
        case .rtcp:
            guard let p = byAddress[source] ?? byRTCPAddress[source] else {
                // Not latched: SRTCP from a participant's media port + 1 that authenticates latches its RTCP address.
                if let (p, plain) = latchRTCPBySRTCP(bytes, from: source) {
                    p.packetsIn += 1
                    p.bytesIn += bytes.count
                    handleRTCP(from: p, plain, plaintext: true)
                }
                return
            }
            p.lastSeenMs = nowMs
            p.packetsIn += 1
            p.bytesIn += bytes.count
            handleRTCP(from: p, bytes)
        case .stun:
            handleSTUN(bytes, from: source)
        case .dtls:
            handleDTLS(bytes, from: source)
        default:
            // RTP's first byte but too short to classify: malformed; anything else: not ours.
            tally.drop((128...191).contains(bytes.first ?? 0) ? .malformed : .unknownProtocol)
        }
    }

    /// Residence of each datagram of `batch`: from the kernel queuing it on
    /// our socket to the end of the flush that sent its copies (one clock
    /// read per batch). This is the relay's added latency: waiting in the
    /// socket queue, our processing, and handing every copy to the kernel.
    func recordResidence(_ batch: UDPReceiveBatch) {
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



    /// Runs the inbound crypto hook, if any: returns the plaintext view or nil (dropped).
    @inline(__always)
    func inbound(_ p: Participant, _ bytes: UnsafeRawBufferPointer, isRTCP: Bool) -> UnsafeRawBufferPointer? {
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
    func latchBySRTP(_ bytes: UnsafeRawBufferPointer, from source: SocketAddress) -> (Participant, UnsafeRawBufferPointer)? {
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
    func publisher(ofSSRC ssrc: UInt32) -> Participant? {
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
    func latchRTCPBySRTCP(_ bytes: UnsafeRawBufferPointer, from source: SocketAddress) -> (Participant, UnsafeRawBufferPointer)? {
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

    func forwardRTP(from p: Participant, _ raw: UnsafeRawBufferPointer, plaintext: Bool = false) {
        guard let bytes = plaintext ? raw : inbound(p, raw, isRTCP: false) else { return }
        guard let rtp = try? RTPPacketView(parsing: bytes) else { tally.drop(.malformed); return }
        // Transport-wide feedback counts every packet the publisher sent on its transport, whatever the SSRC.
        if p.transportFeedback != nil, let seq = p.extensions?.transportSequenceNumber(rtp) {
            p.transportFeedback!.record(seq, arrivalMicroseconds: Int64(nowNs / 1000))
            p.transportFeedbackSSRC = rtp.ssrc
        }
        guard let t = p.publishedTrack(rtp.ssrc) else {
            if let (t, layer) = simulcastLayer(p, rtp) { forwardSimulcast(from: p, t, layer: layer, rtp, bytes); return }
            tally.drop(p.isGranted(rtp.ssrc) ? .unpublished : .unknownSSRC)
            return
        }
        let seq = rtp.sequenceNumber
        t.statistics.update(sequenceNumber: seq, timestamp: rtp.timestamp, arrivalTime: nowNs)
        t.packetsIn += 1
        t.bytesIn += bytes.count
        p.room.packetsIn += 1
        guard !t.muted else { tally.drop(.muted); return }
        t.retransmission?.store(bytes, sequence: seq, nowMs: nowMs) // after mute: a NACK must not reveal muted media
        if let tap = p.room.tap { tap.packet(t.ssrc, t.kind, bytes, wallNowNs) }
        let n = t.destinations.count
        guard n > 0 else { return }
        if t.needsPerDestinationCopy || p.crypto != nil {
            // The receive buffer now holds plaintext (or some subscriber needs its own SRTP): copy per destination.
            for i in 0..<n {
                let s = t.destinationParticipants[i]
                queue(bytes, to: t.destinations[i], subscriber: s, isRTCP: false, byReference: false,
                      payloadType: t.destinationPayloadTypes[i], extensions: p.extensions)
            }
        } else {
            t.destinations.withUnsafeBufferPointer { dests in
                for d in dests { socket.sendBatch.appendNoCopy(bytes, to: d) }
            }
            tally.packetsOut += n
            tally.bytesOut += n * bytes.count
        }
        t.packetsForwarded += n
        p.room.packetsOut += n
    }

    /// The simulcast track and layer of an RTP packet whose SSRC is no
    /// track's: a layer SSRC seen before, or one its rid extension names
    /// (learned then: at most one SSRC per layer).
    func simulcastLayer(_ p: Participant, _ rtp: RTPPacketView) -> (Track, Int)? {
        for t in p.published {
            guard let sc = t.simulcast else { continue }
            if let l = sc.layer(ssrc: rtp.ssrc) { return (t, l) }
        }
        guard let ext = p.extensions, ext.rid != 0, let rid = rtp.extensionElement(id: ext.rid) else { return nil }
        for t in p.published {
            guard let sc = t.simulcast, let l = sc.layer(rid: rid), sc.ssrcs[l] == nil else { continue }
            sc.ssrcs[l] = rtp.ssrc
            metrics.simulcastLayersLearned.inc()
            // Subscribers waiting for a first picture: this layer's keyframe may start them.
            if t.subscribers.contains(where: { t.layerChoice(for: $0)?.current == nil }) { requestKeyframe(t, fir: false, layer: l) }
            return (t, l)
        }
        return nil
    }

    /// A packet of layer `layer` of simulcast track `t`: to each subscriber
    /// that receives that layer, renumbered into the track's one stream; a
    /// subscriber that asked for it (or has nothing yet) moves to it at a
    /// keyframe. Kept in the layer's ring for NACKs; the room's recorder gets
    /// the highest layer sent, renumbered the same way.
    func forwardSimulcast(from p: Participant, _ t: Track, layer: Int, _ rtp: RTPPacketView, _ bytes: UnsafeRawBufferPointer) {
        guard let sc = t.simulcast else { return }
        sc.statistics[layer].update(sequenceNumber: rtp.sequenceNumber, timestamp: rtp.timestamp, arrivalTime: nowNs)
        sc.packetsIn[layer] += 1
        sc.lastPacketMs[layer] = nowMs
        t.packetsIn += 1
        t.bytesIn += bytes.count
        p.room.packetsIn += 1
        guard !t.muted else { tally.drop(.muted); return }
        if !sc.retransmission.isEmpty { sc.retransmission[layer].store(bytes, sequence: rtp.sequenceNumber, nowMs: nowMs) }
        var keyframe: Bool?
        if let tap = p.room.tap {
            if sc.recording == nil { sc.recording = LayerChoice(target: sc.rids.count - 1) }
            if let r = sc.recording, let (seq, ts) = follow(r, t, sc, layer: layer, rtp, keyframe: &keyframe) {
                recordRenumbered(tap, t, bytes, Renumbering(ssrc: t.ssrc, sequence: seq, timestamp: ts))
            }
        }
        let n = t.destinations.count
        guard n > 0 else { return }
        var sent = 0
        for i in 0..<n {
            guard let (seq, ts) = follow(t.destinationLayers[i], t, sc, layer: layer, rtp, keyframe: &keyframe) else { continue }
            let s = t.destinationParticipants[i]
            queue(bytes, to: t.destinations[i], subscriber: s, isRTCP: false, byReference: false,
                  payloadType: t.destinationPayloadTypes[i], extensions: p.extensions,
                  renumber: Renumbering(ssrc: t.ssrc, sequence: seq, timestamp: ts))
            sent += 1
        }
        t.packetsForwarded += sent
        p.room.packetsOut += sent
    }

    /// Whether a packet of `layer` goes to the receiver that `choice` is
    /// (switching it to the layer at a keyframe when it is the one it should
    /// get, or it has nothing yet), and with which sequence number and
    /// timestamp. `keyframe` is read once per packet, when first needed.
    @inline(__always)
    func follow(_ choice: LayerChoice, _ t: Track, _ sc: SimulcastLayers, layer: Int, _ rtp: RTPPacketView,
                keyframe: inout Bool?) -> (UInt16, UInt32)? {
        if choice.current != layer {
            // The layer it asked for, or the best one below it that the publisher sends.
            let wanted = sc.effective(target: choice.target, nowMs: nowMs)
            guard layer == wanted || choice.current == nil else { return nil }
            if keyframe == nil { keyframe = Keyframe.starts(codecKey: t.codecKey, payload: rtp.payload) }
            guard keyframe == true else {
                if layer == wanted { requestKeyframe(t, fir: false, layer: layer) } // throttled per layer
                return nil
            }
            choice.switchTo(layer, seq: rtp.sequenceNumber, ts: rtp.timestamp, nowMs: nowMs, clockRate: t.spec.clockRate)
            metrics.simulcastSwitches.inc()
        }
        return choice.rewrite(seq: rtp.sequenceNumber, ts: rtp.timestamp, nowMs: nowMs)
    }

    /// Hands the recorder a copy of `bytes` renumbered into the track's one stream (as its SSRC).
    func recordRenumbered(_ tap: RTPTap, _ t: Track, _ bytes: UnsafeRawBufferPointer, _ r: Renumbering) {
        guard bytes.count >= 12, bytes.count <= tapScratch.count else { return }
        tapScratch.copyMemory(from: bytes)
        tapScratch.put16(r.sequence, at: 2)
        tapScratch.put32(r.timestamp, at: 4)
        tapScratch.put32(r.ssrc, at: 8)
        tap.packet(t.ssrc, t.kind, UnsafeRawBufferPointer(rebasing: tapScratch[0..<bytes.count]), wallNowNs)
    }
}
