import ParleyCore
import ParleyIO

/// Participants' addresses and lifetimes: latching, removal, and the
/// housekeeping timer (timeouts, receiver reports). Loop only.
extension RelayWorker {
    /// Removes `p` from its room and from the loop's lookups (the room
    /// stays open; see `closeIfEmpty`).
    func remove(_ p: Participant) {
        guard !p.removed else { return }
        p.room.removeParticipant(p)
        if let a = p.address, byAddress[a] === p { byAddress[a] = nil }
        closeTCP(p.address)
        forgetRTCPAddress(p)
        if let c = p.consent { consentChecks[c.transactionID] = nil; p.consent = nil }
        byUfrag[p.ufrag] = nil
        if let h = p.dtls?.timer { loop.cancelTimer(h); p.dtls?.timer = nil }
        metrics.participants.dec()
    }

    /// Sets `p`'s media address (after a consent check or an authenticated
    /// SRTP packet) and rebuilds the destinations that include it. An
    /// address belongs to one participant. A separate RTCP address is kept
    /// only when it is the new media port + 1.
    func latch(_ p: Participant, _ address: SocketAddress) {
        if p.address == address { return }
        if let old = p.address, byAddress[old] === p { byAddress[old] = nil }
        let rtcpBesideIt = address.port < UInt16.max && p.rtcpAddress == address.withPort(address.port + 1)
        if !rtcpBesideIt { forgetRTCPAddress(p) }
        if let other = byAddress[address], other !== p {
            other.address = nil
            other.room.addressChanged(other)
        }
        p.address = address
        p.lastConsentMs = nowMs
        byAddress[address] = p
        p.room.addressChanged(p)
        config.onEvent?(.participantLatched(room: p.room.name, name: p.name, address: describe(address)))
        // It can receive now: its decoders need a keyframe of every video
        // track it gets (throttled like a subscriber's own PLI).
        for t in p.receiving where t.kind == .video { requestKeyframe(t, fir: false) }
    }

    func forgetRTCPAddress(_ p: Participant) {
        guard let a = p.rtcpAddress else { return }
        if byRTCPAddress[a] === p { byRTCPAddress[a] = nil }
        p.rtcpAddress = nil
    }

    /// RFC 7675 §5.1 for a latched WebRTC participant: when its consent has
    /// expired (no check of its own within `consentFreshnessTimeout`), the
    /// relay stops sending to it: its transport is closed, as on a failed
    /// handshake. Whatever else it still sends (RTP, RTCP) is no consent.
    func checkConsentFreshness(_ p: Participant) {
        let timeout = UInt64(config.consentFreshnessTimeout.millisecondsRoundedUp)
        guard timeout > 0, p.dtls != nil, p.address != nil, nowMs &- p.lastConsentMs > timeout else { return }
        metrics.consentExpired.inc()
        dtlsFailed(p, reason: "consent expired")
    }

    /// Removes timed-out participants and sends RRs to publishers (the
    /// repeating timer calls it; tests may too, on the loop).
    func runHousekeeping(checkTimeouts: Bool = true) {
        tickClock()
        wallOffsetNs = realtimeNanoseconds() - Int64(nowNs)
        let timeout = UInt64(config.participantTimeout.millisecondsRoundedUp)
        for r in Array(rooms.values) {
            for p in r.participants {
                if checkTimeouts, timeout > 0, nowMs &- p.lastSeenMs > timeout {
                    remove(p)
                    metrics.timeouts.inc()
                    config.onEvent?(.participantTimedOut(room: r.name, name: p.name))
                    continue
                }
                checkDTLSDeadlines(p)
                checkConsentFreshness(p)
                if p.removed { continue }
                sendReceiverReport(to: p, room: r)
            }
            closeIfEmpty(r)
        }
        flush()
    }
}
