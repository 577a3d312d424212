import ParleyCore
import ParleyIO
import ParleyRTP

/// RTCP feedback: sender reports passed on, NACKs answered from the
/// retransmission ring, keyframe requests (PLI/FIR) throttled to the
/// publisher, and the relay's own receiver reports. Loop only.
extension RelayWorker {
    func handleRTCP(from p: Participant, _ raw: UnsafeRawBufferPointer, plaintext: Bool = false) {
        guard let bytes = plaintext ? raw : inbound(p, raw, isRTCP: true) else { return }
        guard let compound = try? RTCPCompoundView(parsing: bytes) else { tally.drop(.malformed); return }
        metrics.rtcpIn.inc()
        let room = p.room
        var senderReportTrack: Track?
        for pkt in compound {
            switch pkt.packetType {
            case RTCP.PacketType.senderReport:
                guard let s = pkt.senderSSRC, let ntp = pkt.senderReportNTPTimestamp else { continue }
                guard let t = p.publishedTrack(s) else {
                    if let (t, layer) = simulcastLayer(p, ssrc: s) { forwardLayerSenderReport(pkt, t, layer: layer, ntp: ntp) }
                    continue
                }
                t.statistics.senderReportReceived(ntpTimestamp: ntp, arrivalTime: nowNs)
                senderReportTrack = t
            case RTCP.PacketType.transportFeedback where pkt.count == RTCP.Format.genericNACK:
                guard let m = pkt.mediaSSRC, let t = room.tracksBySSRC[m], let dest = p.address else { continue }
                if let choice = t.layerChoice(for: p) {
                    answerSimulcastNACK(pkt, track: t, choice: choice, subscriber: p, dest: dest)
                } else if let budget = t.retransmissionBudget(for: p) {
                    answerNACK(pkt, track: t, budget: budget, subscriber: p, dest: dest)
                }
            case RTCP.PacketType.payloadFeedback where pkt.count == RTCP.Format.pictureLossIndication:
                guard let m = pkt.mediaSSRC, let t = room.tracksBySSRC[m], t.isSubscribed(p) else { continue }
                requestKeyframe(t, fir: false, layer: t.layerChoice(for: p).map { $0.current ?? $0.target })
            case RTCP.PacketType.payloadFeedback where pkt.count == RTCP.Format.fullIntraRequest:
                // RFC 5104 §4.3.1.2: FCI entries of (SSRC, seq nr, reserved).
                let b = pkt.body
                var off = 8
                while off + 8 <= b.count {
                    let ssrc = b.u32(off)
                    if let t = room.tracksBySSRC[ssrc], t.isSubscribed(p) { requestKeyframe(t, fir: true) }
                    off += 8
                }
            default:
                continue // RR, SDES, BYE, APP, REMB: consumed here
            }
        }
        if let t = senderReportTrack, let tap = room.tap?.senderReport { tap(t.ssrc, bytes) }
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
    func answerNACK(_ pkt: RTCPPacketView, track t: Track, budget: RetransmissionBudget,
                            subscriber p: Participant, dest: SocketAddress) {
        guard let ring = t.retransmission else { return }
        let maxAge = UInt64(config.retransmissionMaxAge.millisecondsRoundedUp)
        budget.refill(from: ring, percent: config.retransmissionBudgetPercent)
        resend(pkt, track: t, subscriber: p, dest: dest) { seq in
            ring.packet(sequence: seq, nowMs: nowMs, maxAgeMs: maxAge).map { ($0, budget, seq, nil) }
        }
    }

    /// A NACK of a simulcast track: each sequence number it names is mapped
    /// back to the layer and that layer's own sequence number it was sent
    /// as (in the subscriber's current stretch or the one before the last
    /// switch), resent from the layer's ring renumbered as it was first sent,
    /// as far as the subscriber's budget for that layer allows.
    func answerSimulcastNACK(_ pkt: RTCPPacketView, track t: Track, choice: LayerChoice,
                             subscriber p: Participant, dest: SocketAddress) {
        guard let sc = t.simulcast, !sc.retransmission.isEmpty else { return }
        let maxAge = UInt64(config.retransmissionMaxAge.millisecondsRoundedUp)
        for (l, ring) in sc.retransmission.enumerated() { choice.budgets[l].refill(from: ring, percent: config.retransmissionBudgetPercent) }
        resend(pkt, track: t, subscriber: p, dest: dest) { seq in
            guard let (l, own, tsOffset) = choice.source(of: seq),
                  let stored = sc.retransmission[l].packet(sequence: own, nowMs: nowMs, maxAgeMs: maxAge) else { return nil }
            return (stored, choice.budgets[l], own, Renumbering(ssrc: t.ssrc, sequence: seq, timestamp: stored.u32(4) &+ tsOffset))
        }
    }

    /// Resends each packet a NACK names that `find` has (the stored packet,
    /// the budget it is charged to, its sequence number there, and how to
    /// renumber it), and counts what was served, missed, repeated or over budget.
    func resend(_ pkt: RTCPPacketView, track t: Track, subscriber p: Participant, dest: SocketAddress,
                find: (UInt16) -> (UnsafeRawBufferPointer, RetransmissionBudget, UInt16, Renumbering?)?) {
        let interval = UInt64(config.retransmissionResendInterval.millisecondsRoundedUp)
        var served = 0, missed = 0, duplicate = 0, overBudget = 0
        RTCPGenericNACK.forEachLost(in: pkt) { seq in
            guard let (stored, budget, key, renumber) = find(seq) else { missed += 1; return }
            switch budget.admit(sequence: key, bytes: stored.count, nowMs: nowMs, intervalMs: interval) {
            case .resend:
                // Copied: the ring slot may be overwritten before the batch is flushed.
                queue(stored, to: dest, subscriber: p, isRTCP: false, byReference: false, payloadType: p.rewrittenPayloadType(t),
                      extensions: t.publisher.extensions, renumber: renumber)
                served += 1
            case .duplicate: duplicate += 1
            case .overBudget: overBudget += 1
            }
        }
        t.publisher.room.nacksServed += served
        if served > 0 { metrics.nacksServed.inc(served) }
        if missed > 0 { metrics.nacksMissed.inc(missed) }
        if duplicate > 0 { metrics.nacksDuplicate.inc(duplicate) }
        if overBudget > 0 { metrics.nacksOverBudget.inc(overBudget) }
    }

    /// The simulcast track and layer that SSRC `ssrc` of `p` is (learned from its RTP).
    func simulcastLayer(_ p: Participant, ssrc: UInt32) -> (Track, Int)? {
        for t in p.published {
            if let sc = t.simulcast, let l = sc.layer(ssrc: ssrc) { return (t, l) }
        }
        return nil
    }

    /// A sender report of a simulcast layer: to each subscriber that
    /// receives that layer (and to the recorder, if it records it), as a
    /// report of the track's SSRC with the RTP timestamp it sees (shifted by
    /// its offset), so its NTP↔RTP mapping (lip sync) holds across switches.
    /// The packet and octet counts are the layer's.
    func forwardLayerSenderReport(_ pkt: RTCPPacketView, _ t: Track, layer: Int, ntp: UInt64) {
        guard let sc = t.simulcast else { return }
        sc.statistics[layer].senderReportReceived(ntpTimestamp: ntp, arrivalTime: nowNs)
        guard !t.muted, let sr = try? RTCPSenderReport(pkt) else { return }
        func report(_ choice: LayerChoice) -> UnsafeRawBufferPointer? {
            guard choice.started, choice.current == layer else { return nil }
            let out = RTCPSenderReport(ssrc: t.ssrc, ntpTimestamp: sr.ntpTimestamp, rtpTimestamp: sr.rtpTimestamp &+ choice.timestampOffset,
                                       packetCount: sr.packetCount, octetCount: sr.octetCount)
            guard let n = try? out.write(into: scratch), n > 0 else { return nil }
            return UnsafeRawBufferPointer(rebasing: scratch[0..<n])
        }
        if let r = sc.recording, let tap = t.publisher.room.tap?.senderReport, let b = report(r) { tap(t.ssrc, b) }
        for i in 0..<t.destinations.count {
            guard let b = report(t.destinationLayers[i]) else { continue }
            let s = t.destinationParticipants[i]
            queue(b, to: s.rtcpAddress ?? t.destinations[i], subscriber: s, isRTCP: true, byReference: false)
        }
    }

    /// Forwards a keyframe request to the publisher of `t`, at most one per
    /// `keyframeRequestInterval` per track (mediasoup does the same).
    /// A simulcast track: the request goes to `layer`'s SSRC (each layer
    /// throttled on its own; nil: every layer whose SSRC is known).
    func requestKeyframe(_ t: Track, fir: Bool, layer: Int? = nil) {
        let room = t.publisher.room
        let interval = UInt64(config.keyframeRequestInterval.millisecondsRoundedUp)
        if let sc = t.simulcast {
            for l in layer.map({ [$0] }) ?? Array(sc.rids.indices) {
                guard let ssrc = sc.ssrcs[l], let dest = t.publisher.rtcpDestination else { continue }
                if let last = sc.lastKeyframeRequestMs[l], nowMs &- last < interval {
                    room.keyframeRequestsThrottled += 1
                    metrics.keyframeThrottled.inc()
                    continue
                }
                sc.lastKeyframeRequestMs[l] = nowMs
                room.keyframeRequestsForwarded += 1
                metrics.keyframeForwarded.inc()
                guard let n = try? RTCPPictureLossIndication(senderSSRC: room.relaySSRC, mediaSSRC: ssrc).write(into: scratch), n > 0 else { continue }
                queue(UnsafeRawBufferPointer(rebasing: scratch[0..<n]), to: dest, subscriber: t.publisher, isRTCP: true, byReference: false)
            }
            return
        }
        if let last = t.lastKeyframeRequestMs, nowMs &- last < interval {
            room.keyframeRequestsThrottled += 1
            metrics.keyframeThrottled.inc()
            return
        }
        guard let dest = t.publisher.rtcpDestination else { return }
        t.lastKeyframeRequestMs = nowMs
        room.keyframeRequestsForwarded += 1
        metrics.keyframeForwarded.inc()
        let n: Int
        if fir {
            t.firSequence &+= 1
            let f = RTCPFullIntraRequest(senderSSRC: room.relaySSRC, entries: [RTCPFIREntry(ssrc: t.ssrc, sequenceNumber: t.firSequence)])
            n = (try? f.write(into: scratch)) ?? 0
        } else {
            n = (try? RTCPPictureLossIndication(senderSSRC: room.relaySSRC, mediaSSRC: t.ssrc).write(into: scratch)) ?? 0
        }
        guard n > 0 else { return }
        queue(UnsafeRawBufferPointer(rebasing: scratch[0..<n]), to: dest, subscriber: t.publisher, isRTCP: true, byReference: false)
    }

    /// RFC 3550 §6.4.2: one RR per publisher with a block per track it sends us.
    func sendReceiverReport(to p: Participant, room r: Room) {
        guard let dest = p.rtcpDestination, !p.published.isEmpty else { return }
        var blocks: [RTCPReportBlock] = []
        for t in p.published where t.packetsIn > 0 {
            if let sc = t.simulcast {
                // One block per layer, on the layer's own SSRC.
                for l in sc.rids.indices where sc.packetsIn[l] > 0 {
                    if let ssrc = sc.ssrcs[l] { blocks.append(sc.statistics[l].makeReportBlock(ssrc: ssrc, now: nowNs)) }
                }
                continue
            }
            blocks.append(t.statistics.makeReportBlock(ssrc: t.ssrc, now: nowNs))
        }
        guard !blocks.isEmpty else { return }
        let rr = RTCPReceiverReport(ssrc: r.relaySSRC, reports: Array(blocks.prefix(31)))
        guard var n = try? rr.write(into: scratch), n > 0 else { return }
        // REMB in the same compound (a WebRTC publisher that negotiated goog-remb): the cap for its video.
        if p.rembBitrate > 0 {
            let video = p.published.filter { $0.kind == .video }.map(\.ssrc)
            if !video.isEmpty, let m = try? RTCPReceiverEstimatedMaximumBitrate(senderSSRC: r.relaySSRC, bitrate: p.rembBitrate,
                                                                               ssrcs: Array(video.prefix(8)))
                .write(into: UnsafeMutableRawBufferPointer(rebasing: scratch[n...])) {
                n += m
                metrics.rembSent.inc()
            }
        }
        queue(UnsafeRawBufferPointer(rebasing: scratch[0..<n]), to: dest, subscriber: p, isRTCP: true, byReference: false)
        metrics.receiverReports.inc()
    }

    /// Starts the transport-wide feedback timer if it is not running.
    func startTransportFeedback() {
        guard transportFeedbackTimer == nil else { return }
        transportFeedbackTimer = loop.scheduleRepeatingTimer(every: config.transportFeedbackInterval) { [weak self] in
            self?.sendTransportFeedback()
        }
    }

    /// Transport-wide congestion control feedback (draft-holmer-rmcat-
    /// transport-wide-cc-extensions-01) to every publisher that negotiated
    /// it: what arrived since the last, with arrival times, so its send-side
    /// bandwidth estimate can grow. Bounded per interval; its size is a few
    /// bytes per packet received, never more than received. Stops the timer
    /// when no participant needs it.
    func sendTransportFeedback() {
        tickClock()
        var any = false
        for r in rooms.values {
            for p in r.participants where p.transportFeedback != nil {
                any = true
                guard let dest = p.rtcpDestination, p.transportFeedback!.hasPending else { continue }
                let media = p.transportFeedbackSSRC
                for _ in 0..<config.maxTransportFeedbackPackets {
                    let n = p.transportFeedback!.writeFeedback(senderSSRC: r.relaySSRC, mediaSSRC: media, into: scratch)
                    guard n > 0 else { break }
                    queue(UnsafeRawBufferPointer(rebasing: scratch[0..<n]), to: dest, subscriber: p, isRTCP: true, byReference: false)
                    metrics.transportFeedbackSent.inc()
                }
            }
        }
        if !any, let h = transportFeedbackTimer {
            loop.cancelTimer(h)
            transportFeedbackTimer = nil
        }
        flush()
    }
}
