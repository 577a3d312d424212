import ParleyCore
import ParleyIO
import ParleySTUN

/// STUN on the media port: Binding requests answered (ICE short-term
/// credentials, or a rate-limited address answer), and the relay's consent
/// checks (RFC 7675) that move media to a new address. Loop only.
extension RelayWorker {
    func handleSTUN(_ bytes: UnsafeRawBufferPointer, from source: SocketAddress) {
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
        let stunSource = STUNAddress(peerAddress(source))
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

    /// An authenticated Binding request from `p`. A transaction ID seen
    /// before is a retransmission or a replay (RFC 8489 §6.3.4): it is
    /// answered, and moves nothing. From the latched address it refreshes the
    /// session; from any other, it starts a consent check there (RFC 7675):
    /// the request proves the sender knows the password, not that the source
    /// address is theirs, nor that it wants media.
    func authenticatedBinding(_ p: Participant, _ id: STUNTransactionID, from source: SocketAddress) {
        guard p.recentTransactions.insert(id) else { metrics.stunReplays.inc(); return }
        if p.address == source {
            p.lastSeenMs = nowMs
            p.lastConsentMs = nowMs
        } else if p.consent?.address != source {
            startConsentCheck(p, to: source)
        }
    }

    /// Sends the relay's own Binding request to `address` with `p`'s
    /// consent credentials; it replaces a check in flight to another address.
    func startConsentCheck(_ p: Participant, to address: SocketAddress) {
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
    func sendConsentRequest(_ p: Participant) {
        guard var c = p.consent,
              let n = try? BindingCheck.writeRequest(into: checkScratch, transactionID: c.transactionID,
                                                     username: p.consentUsername, key: p.consentKey,
                                                     ice: p.dtls == nil ? nil : (Self.hostPriority, iceTieBreaker)) else { return }
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
    func consentAnswered(_ m: STUNMessageView, from source: SocketAddress) {
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
    func lookup(_ username: UnsafeRawBufferPointer) -> Participant? {
        var end = username.count
        if let colon = username.firstIndex(of: UInt8(ascii: ":")) { end = colon }
        guard end > 0, end <= 64 else { return nil }
        let ufrag = String(decoding: UnsafeRawBufferPointer(rebasing: username[0..<end]), as: UTF8.self)
        return byUfrag[ufrag]
    }
}
