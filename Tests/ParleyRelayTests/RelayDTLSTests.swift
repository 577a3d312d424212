import ParleyCore
import ParleyDTLS
import ParleyRTP
import ParleySRTP
import ParleyTestSupport
import XCTest
@testable import ParleyRelay

/// WebRTC participants on the relay's media port, over real UDP sockets: a
/// client `DTLSEndpoint` (the browser's side) latches through ICE-lite and
/// the relay's consent check, handshakes DTLS-SRTP, and its SRTP goes both
/// ways; what goes wrong is dropped, counted, or ends the participant with
/// an event.
final class RelayDTLSTests: XCTestCase {
    let serverContext = try! DTLSContext(certificate: .generate(), initialRetransmit: .milliseconds(100))
    let clientContext = try! DTLSContext(certificate: .generate(), initialRetransmit: .milliseconds(100))
    let peerUfrag = "peerufrag", peerPassword = "peerpassword0123456789ab"

    private func transport(fingerprint: String? = nil, audioPT: UInt8 = 96, remb: Bool = false) -> WebRTCTransport {
        WebRTCTransport(context: serverContext, remoteFingerprint: fingerprint ?? clientContext.certificate.fingerprint,
                        remoteUfrag: peerUfrag, remotePassword: peerPassword, receive: [.audio: (audioPT, "opus")], remb: remb)
    }

    private func joinWebRTC(_ fx: RelayFixture, room: String, name: String, ssrc: UInt32,
                            transport t: WebRTCTransport, track: TrackDescription? = nil) throws -> ParticipantGrant {
        let g = try waitFor { fx.relay.join(room: room, name: name, tracks: [track ?? .opus(ssrc: ssrc)], webrtc: t, completion: $0) }
        for tr in g.tracks { _ = try waitFor { fx.relay.publish(room: room, name: name, track: tr.spec, completion: $0) } }
        return g
    }

    /// A simulcast layer's VP8 packet (rid extension id 10; `key`: a keyframe's first packet) from `c`, protected with `tx`.
    private func sendLayer(_ c: TestClient, _ tx: SRTPContext, _ fx: RelayFixture, _ ssrc: UInt32, rid: String, seq: UInt16,
                           ts: UInt32, key: Bool) throws {
        let pkt = RTPPacket(header: RTPHeader(payloadType: 96, sequenceNumber: seq, timestamp: ts, ssrc: ssrc,
                                              extensionProfile: RTP.oneByteExtensionProfile,
                                              extensions: [RTPHeaderExtension(id: 10, data: Array(rid.utf8))]),
                            payload: [0x10, key ? 0x00 : 0x01] + payload(ssrc: ssrc, seq: seq, size: 40))
        c.send(try tx.protect(try pkt.encoded()), to: fx.mediaAddress)
    }

    /// Runs the client side of the handshake over `c` until the endpoint is
    /// done; the relay's flights are the datagrams whose first byte is 20–63.
    private func handshake(_ e: DTLSEndpoint, over c: TestClient, to relay: SocketAddress) {
        for d in e.start() { c.send(d, to: relay) }
        let deadline = ContinuousClock.now + .seconds(20) // hang guard
        while case .handshaking = e.state, ContinuousClock.now < deadline {
            if let d = c.receive(timeout: 0.05, where: { (20...63).contains($0.first ?? 0) }) {
                for o in d.withUnsafeBytes({ e.receive($0).1 }) { c.send(o, to: relay) }
            } else if let wait = e.timerDelay(), wait <= .zero {
                for o in e.handleTimer() { c.send(o, to: relay) }
            }
        }
    }

    func testAWebRTCParticipantHandshakesAndMediaFlowsBothWaysWithSDESParticipants() throws {
        let fx = try RelayFixture()
        let g = try joinWebRTC(fx, room: "r", name: "browser", ssrc: 1111, transport: transport(audioPT: 96))
        XCTAssertEqual(g.consentUfrag, peerUfrag, "the relay's consent checks use the peer's own ICE credentials")
        let (sdes, sdesClient) = try fx.join("r", [.opus(ssrc: 2222)]) // plaintext, payload type 111
        try fx.subscribe(sdes, to: g)
        try fx.subscribe(g, to: sdes)

        // ICE-lite: the browser's check, answered, and the relay's consent check, answered.
        let c = TestClient()
        XCTAssertNotNil(c.bind(to: fx.mediaAddress, grant: g))
        fx.waitUntilLatched("r", "browser", c)

        // Before DTLS, nothing it sends is forwarded (its hook drops everything).
        c.send(rtpPacket(ssrc: 1111, seq: 1, pt: 111, payload: payload(ssrc: 1111, seq: 1)), to: fx.mediaAddress)

        let e = try DTLSEndpoint(context: clientContext, role: .client, remoteFingerprint: serverContext.certificate.fingerprint)
        handshake(e, over: c, to: fx.mediaAddress)
        guard case .connected(let keys) = e.state else { return XCTFail("client: \(e.state)") }
        waitUntil("the relay installed the keys") {
            fx.counter("parley_relay_dtls_handshakes_total", [("result", "connected")]) == 1
        }

        // Browser → SDES subscriber: SRTP with the exported client key, plaintext out.
        let tx = try SRTPContext(material: keys.local, direction: .outbound)
        let plain = rtpPacket(ssrc: 1111, seq: 2, pt: 111, payload: payload(ssrc: 1111, seq: 2))
        c.send(try tx.protect(plain), to: fx.mediaAddress)
        XCTAssertEqual(sdesClient.receive(where: isRTP), plain)

        // SDES publisher (payload type 111) → browser: SRTP with the server key, payload type 96 as negotiated.
        let rx = try SRTPContext(material: keys.remote, direction: .inbound)
        let sent = rtpPacket(ssrc: 2222, seq: 7, pt: 111, payload: payload(ssrc: 2222, seq: 7))
        sdesClient.send(sent, to: fx.mediaAddress)
        let got = try rx.unprotect(try XCTUnwrap(c.receive(where: isRTP)))
        XCTAssertEqual(got[1] & 0x7f, 96)
        XCTAssertEqual(Array(got[2...]), Array(sent[2...]))
        XCTAssertEqual(fx.counter("parley_relay_payload_type_rewrites_total"), 1)
    }

    /// A WebRTC publisher of video that negotiated goog-remb gets REMB with
    /// the configured cap beside the relay's receiver reports (over SRTCP).
    func testAPublisherThatNegotiatedREMBGetsTheCap() throws {
        let fx = try RelayFixture { c in
            c.rembBitrate = 1_500_000
            c.housekeepingInterval = .milliseconds(50)
        }
        let g = try joinWebRTC(fx, room: "r", name: "cam", ssrc: 3333, transport: transport(remb: true), track: .video(ssrc: 3333))
        let c = TestClient()
        XCTAssertNotNil(c.bind(to: fx.mediaAddress, grant: g))
        fx.waitUntilLatched("r", "cam", c)
        let e = try DTLSEndpoint(context: clientContext, role: .client, remoteFingerprint: serverContext.certificate.fingerprint)
        handshake(e, over: c, to: fx.mediaAddress)
        guard case .connected(let keys) = e.state else { return XCTFail("client: \(e.state)") }
        waitUntil("keys installed") { fx.counter("parley_relay_dtls_handshakes_total", [("result", "connected")]) == 1 }
        let tx = try SRTPContext(material: keys.local, direction: .outbound)
        c.send(try tx.protect(rtpPacket(ssrc: 3333, seq: 1, pt: 96, payload: payload(ssrc: 3333, seq: 1))), to: fx.mediaAddress)
        let rx = try SRTPContext(material: keys.remote, direction: .inbound)
        var remb: RTCPReceiverEstimatedMaximumBitrate?
        while remb == nil, let d = c.receive(where: isRTCP) {
            let plain = try rx.unprotect(d, rtcp: true)
            try plain.withUnsafeBytes { b in
                for v in try RTCPCompoundView(parsing: b) where RTCPReceiverEstimatedMaximumBitrate.matches(v) {
                    remb = try RTCPReceiverEstimatedMaximumBitrate(v)
                }
            }
        }
        XCTAssertEqual(remb?.ssrcs, [3333])
        XCTAssertEqual(Double(remb?.bitrate ?? 0), 1_500_000, accuracy: 1_500_000 / 1000, "REMB's mantissa and exponent")
        XCTAssertGreaterThan(fx.counter("parley_relay_remb_sent_total"), 0)
    }

    /// ICE, consent and DTLS for a joined WebRTC participant: its socket and its SRTP contexts (send, receive).
    private func connect(_ fx: RelayFixture, _ g: ParticipantGrant, room: String, name: String) throws -> (TestClient, SRTPContext, SRTPContext) {
        let c = TestClient()
        XCTAssertNotNil(c.bind(to: fx.mediaAddress, grant: g))
        fx.waitUntilLatched(room, name, c)
        let before = fx.counter("parley_relay_dtls_handshakes_total", [("result", "connected")])
        let e = try DTLSEndpoint(context: clientContext, role: .client, remoteFingerprint: serverContext.certificate.fingerprint)
        handshake(e, over: c, to: fx.mediaAddress)
        guard case .connected(let keys) = e.state else { throw XCTSkip("client: \(e.state)") }
        waitUntil("keys installed") { fx.counter("parley_relay_dtls_handshakes_total", [("result", "connected")]) > before }
        return (c, try SRTPContext(material: keys.local, direction: .outbound), try SRTPContext(material: keys.remote, direction: .inbound))
    }

    /// Transport-wide congestion control: a publisher that negotiated
    /// transport-cc gets RTPFB 15 feedback (over SRTCP) describing what
    /// arrived, by its transport-wide sequence numbers; a subscriber gets the
    /// packets with its own extension ids, its own transport-wide sequence
    /// numbers, and the publisher's mid blanked (padding).
    func testTransportWideFeedbackToThePublisherAndExtensionsRenumberedForTheSubscriber() throws {
        let fx = try RelayFixture { $0.transportFeedbackInterval = .milliseconds(50) }
        let pubMap = RTPHeaderExtensionMap(mid: 4, absSendTime: 2, transportSequence: 3)
        let subMap = RTPHeaderExtensionMap(mid: 9, absSendTime: 6, transportSequence: 5)
        var pt = transport()
        pt.extensions = pubMap
        pt.transportCC = true
        var st = transport()
        st.extensions = subMap
        st.transportCC = true
        let gp = try joinWebRTC(fx, room: "r", name: "cam", ssrc: 3333, transport: pt, track: .video(ssrc: 3333))
        let gs = try waitFor { fx.relay.join(room: "r", name: "viewer", tracks: [], webrtc: st, completion: $0) }
        try fx.subscribe(gs, to: gp)
        let (pc, ptx, prx) = try connect(fx, gp, room: "r", name: "cam")
        let (sc, _, srx) = try connect(fx, gs, room: "r", name: "viewer")

        for (i, tseq) in ([10, 11, 13, 14] as [UInt16]).enumerated() {
            let pkt = RTPPacket(header: RTPHeader(payloadType: 96, sequenceNumber: UInt16(100 + i), timestamp: 9000, ssrc: 3333,
                                                  extensionProfile: RTP.oneByteExtensionProfile,
                                                  extensions: [RTPHeaderExtension(id: 3, data: [UInt8(tseq >> 8), UInt8(tseq & 0xFF)]),
                                                               RTPHeaderExtension(id: 4, data: Array("1".utf8)),
                                                               RTPHeaderExtension(id: 2, data: [0, 0, 1])]),
                                payload: payload(ssrc: 3333, seq: UInt16(100 + i)))
            pc.send(try ptx.protect(try pkt.encoded()), to: fx.mediaAddress)
            // The subscriber's copy: renumbered, its own transport-wide count, mid gone.
            let got = try srx.unprotect(try XCTUnwrap(sc.receive(where: isRTP)))
            try got.withUnsafeBytes { b in
                let v = try RTPPacketView(parsing: b)
                XCTAssertEqual(v.sequenceNumber, UInt16(100 + i))
                let ids = v.extensions.map(\.id)
                XCTAssertEqual(Set(ids), [5, 6], "ids \(ids)")
                XCTAssertEqual(subMap.transportSequenceNumber(v), UInt16(i))
            }
        }
        // The publisher's feedback: 10, 11 received, 12 not, 13, 14 received.
        var fb: [UInt8]?
        while fb == nil, let d = pc.receive(where: isRTCP) {
            // Sent on its own, padded as libwebrtc pads it (P set, 1-3 bytes).
            let plain = try prx.unprotect(d, rtcp: true)
            if plain.count >= 20, plain[0] & 0x1F == RTCP.Format.transportWideFeedback, plain[1] == RTCP.PacketType.transportFeedback {
                fb = plain
            }
        }
        let f = try XCTUnwrap(fb)
        XCTAssertEqual(UInt16(f[12]) << 8 | UInt16(f[13]), 10, "base sequence number")
        XCTAssertEqual(UInt16(f[14]) << 8 | UInt16(f[15]), 5, "packet status count")
        XCTAssertEqual(UInt32(f[8]) << 24 | UInt32(f[9]) << 16 | UInt32(f[10]) << 8 | UInt32(f[11]), 3333, "media SSRC")
        XCTAssertGreaterThan(fx.counter("parley_relay_transport_feedback_sent_total"), 0)
        XCTAssertEqual(fx.counter("parley_relay_header_extension_rewrites_total"), 4)
    }

    /// The feedback of a simulcast publisher names one of the SSRCs it sends
    /// with (a layer's), not the track's SSRC the relay picked: libwebrtc
    /// drops transport-wide feedback about a media SSRC it does not send, and
    /// its estimate then falls for want of feedback (300 to 30 kbit/s seen).
    func testTransportFeedbackOfASimulcastPublisherNamesALayerSSRC() throws {
        let fx = try RelayFixture { $0.transportFeedbackInterval = .milliseconds(50) }
        var pt = transport()
        pt.extensions = RTPHeaderExtensionMap(transportSequence: 3, rid: 10)
        pt.transportCC = true
        var spec = TrackDescription.video(ssrc: 7777)
        spec.rids = ["q", "h"]
        let gp = try joinWebRTC(fx, room: "r", name: "cam", ssrc: 7777, transport: pt, track: spec)
        let (pc, ptx, prx) = try connect(fx, gp, room: "r", name: "cam")
        for (i, layer) in [(UInt32(500), "q"), (501, "h"), (500, "q")].enumerated() {
            let pkt = RTPPacket(header: RTPHeader(payloadType: 96, sequenceNumber: UInt16(10 + i), timestamp: 9000, ssrc: layer.0,
                                                  extensionProfile: RTP.oneByteExtensionProfile,
                                                  extensions: [RTPHeaderExtension(id: 3, data: [0, UInt8(20 + i)]),
                                                               RTPHeaderExtension(id: 10, data: Array(layer.1.utf8))]),
                                payload: [0x10, 0x01] + payload(ssrc: layer.0, seq: UInt16(10 + i), size: 40))
            pc.send(try ptx.protect(try pkt.encoded()), to: fx.mediaAddress)
        }
        var media: UInt32?
        while media == nil, let d = pc.receive(where: isRTCP) {
            let plain = try prx.unprotect(d, rtcp: true)
            try plain.withUnsafeBytes { b in
                for v in try RTCPCompoundView(parsing: b) where v.packetType == RTCP.PacketType.transportFeedback
                    && v.count == RTCP.Format.transportWideFeedback { media = v.mediaSSRC }
            }
        }
        let m = try XCTUnwrap(media, "transport-wide feedback")
        XCTAssertTrue([500, 501].contains(m), "media SSRC \(m) is one the publisher sends with")
    }

    /// Simulcast: a WebRTC publisher's three layers (SSRCs learned from the
    /// rid extension) reach a subscriber as one stream on the track's SSRC,
    /// switched only at keyframes, numbered without a gap; `setLayer` asks
    /// the publisher for a keyframe of the layer (PLI to its SSRC).
    func testSimulcastLayersReachASubscriberAsOneStreamSwitchedAtKeyframes() throws {
        let fx = try RelayFixture { $0.keyframeRequestInterval = .milliseconds(1) }
        var pt = transport()
        pt.extensions = RTPHeaderExtensionMap(rid: 10)
        var spec = TrackDescription.video(ssrc: 7777)
        spec.rids = ["q", "h", "f"]
        let gp = try joinWebRTC(fx, room: "r", name: "cam", ssrc: 7777, transport: pt, track: spec)
        let (pc, ptx, prx) = try connect(fx, gp, room: "r", name: "cam")
        let (viewer, vc) = try fx.join("r", [], receiving: [gp]) // plaintext subscriber

        func send(_ ssrc: UInt32, rid: String, seq: UInt16, ts: UInt32, key: Bool) throws {
            try sendLayer(pc, ptx, fx, ssrc, rid: rid, seq: seq, ts: ts, key: key)
        }
        func next() throws -> (ssrc: UInt32, seq: UInt16, ts: UInt32) {
            let d = try XCTUnwrap(vc.receive(where: isRTP))
            return (UInt32(d[8]) << 24 | UInt32(d[9]) << 16 | UInt32(d[10]) << 8 | UInt32(d[11]), UInt16(d[2]) << 8 | UInt16(d[3]),
                    UInt32(d[4]) << 24 | UInt32(d[5]) << 16 | UInt32(d[6]) << 8 | UInt32(d[7]))
        }
        // The first keyframe of any layer starts it (here the lowest).
        try send(500, rid: "q", seq: 10, ts: 1000, key: true)
        XCTAssertEqual(try next().seq, 10)
        try send(502, rid: "f", seq: 300, ts: 50_000, key: false) // the highest (its default), not at a keyframe: not yet
        try send(500, rid: "q", seq: 11, ts: 1000, key: false)
        let second = try next()
        XCTAssertEqual(second.ssrc, 7777)
        XCTAssertEqual(second.seq, 11)
        // A keyframe of the highest layer moves it there, numbered on.
        try send(502, rid: "f", seq: 301, ts: 53_000, key: true)
        let third = try next()
        XCTAssertEqual(third.ssrc, 7777)
        XCTAssertEqual(third.seq, 12, "no gap across the switch")
        XCTAssertGreaterThan(third.ts &- 1000, 0)
        XCTAssertLessThan(third.ts &- 1000, 90_000 * 10, "the timestamp advanced by the time since, not by the other layer's base")
        try send(500, rid: "q", seq: 12, ts: 4000, key: false) // the low layer is no longer its
        try send(502, rid: "f", seq: 302, ts: 56_000, key: false)
        XCTAssertEqual(try next().seq, 13)
        // Low again: a PLI for the low layer goes to the publisher; its next keyframe switches.
        while pc.receive(timeout: 0.3) != nil {} // what was sent before (a PLI when the first layer appeared)
        try waitFor { fx.relay.setLayer(room: "r", subscriber: viewer.name, ssrc: 7777, layer: 0, completion: $0) }
        var pli = false
        while !pli, let d = pc.receive(where: isRTCP) {
            let plain = try prx.unprotect(d, rtcp: true)
            try plain.withUnsafeBytes { b in
                for v in try RTCPCompoundView(parsing: b) where v.packetType == RTCP.PacketType.payloadFeedback
                    && v.count == RTCP.Format.pictureLossIndication && v.mediaSSRC == 500 { pli = true }
            }
        }
        XCTAssertTrue(pli, "PLI to the low layer's SSRC")
        try send(500, rid: "q", seq: 13, ts: 7000, key: true)
        let back = try next()
        XCTAssertEqual(back.ssrc, 7777)
        XCTAssertEqual(back.seq, 14)
        XCTAssertEqual(fx.counter("parley_relay_simulcast_layers_total"), 2)
        XCTAssertEqual(fx.counter("parley_relay_simulcast_switches_total"), 3)
    }

    /// A simulcast subscriber's NACK is answered from the layer it was sent:
    /// the sequence number it names (the track's numbering) maps back to the
    /// layer's own, across a switch, and the packet comes back renumbered as
    /// it was first sent. A layer's sender report reaches the subscriber on
    /// that layer as the track's, its RTP timestamp shifted as the media's.
    /// The recorder gets the highest layer, renumbered the same way.
    func testSimulcastNACKsAreAnsweredPerLayerAndSenderReportsRenumbered() throws {
        let fx = try RelayFixture { $0.keyframeRequestInterval = .milliseconds(1) }
        var pt = transport()
        pt.extensions = RTPHeaderExtensionMap(rid: 10)
        var spec = TrackDescription.video(ssrc: 7777)
        spec.rids = ["q", "h"]
        let gp = try joinWebRTC(fx, room: "r", name: "cam", ssrc: 7777, transport: pt, track: spec)
        let (pc, ptx, _) = try connect(fx, gp, room: "r", name: "cam")
        let (viewer, vc) = try fx.join("r", [], receiving: [gp]) // plaintext subscriber
        let seen = TapLog()
        try waitFor { fx.relay.setTap(room: "r", RTPTap({ ssrc, kind, bytes, arrival in seen.add(ssrc, kind, Array(bytes), arrival) }),
                                      completion: $0) }
        try waitFor { fx.relay.setLayer(room: "r", subscriber: viewer.name, ssrc: 7777, layer: 0, completion: $0) }

        func send(_ ssrc: UInt32, rid: String, seq: UInt16, ts: UInt32, key: Bool) throws {
            try sendLayer(pc, ptx, fx, ssrc, rid: rid, seq: seq, ts: ts, key: key)
        }
        func payloadOf(_ d: [UInt8]) throws -> [UInt8] { try d.withUnsafeBytes { Array(try RTPPacketView(parsing: $0).payload) } }
        func tsOf(_ d: [UInt8]) -> UInt32 { UInt32(d[4]) << 24 | UInt32(d[5]) << 16 | UInt32(d[6]) << 8 | UInt32(d[7]) }
        // Low layer: 40, 41, 42 reach it as 40, 41, 42.
        for (i, seq) in ([40, 41, 42] as [UInt16]).enumerated() { try send(500, rid: "q", seq: seq, ts: 3000, key: i == 0) }
        var low: [[UInt8]] = []
        for _ in 0..<3 { low.append(try XCTUnwrap(vc.receive(where: isRTP))) }
        XCTAssertEqual(low.map(seqOf), [40, 41, 42])
        // The high layer (its own numbering from 900) for the recorder, which records the highest layer.
        try send(501, rid: "h", seq: 900, ts: 70_000, key: true)
        try send(501, rid: "h", seq: 901, ts: 73_000, key: false)
        // Then high for the subscriber: its keyframe switches it; 902 goes out as 43.
        try waitFor { fx.relay.setLayer(room: "r", subscriber: viewer.name, ssrc: 7777, layer: 1, completion: $0) }
        try send(501, rid: "h", seq: 902, ts: 76_000, key: true)
        try send(501, rid: "h", seq: 903, ts: 79_000, key: false)
        let high = [try XCTUnwrap(vc.receive(where: isRTP)), try XCTUnwrap(vc.receive(where: isRTP))]
        XCTAssertEqual(high.map(seqOf), [43, 44])
        let offset = tsOf(high[0]) &- 76_000

        // A NACK of 41 (before the switch: the low layer's 41) and 44 (the high layer's 903), and of 45 (never sent).
        vc.send(encoded(RTCPGenericNACK(senderSSRC: 0xB, mediaSSRC: 7777, lost: [41, 44, 45])), to: fx.mediaAddress)
        let again = [try XCTUnwrap(vc.receive(where: isRTP)), try XCTUnwrap(vc.receive(where: isRTP))]
        XCTAssertEqual(again.map(seqOf), [41, 44])
        XCTAssertEqual(again.map(ssrcOf), [7777, 7777])
        XCTAssertEqual(try payloadOf(again[0]), try payloadOf(low[1]), "the low layer's packet")
        XCTAssertEqual(again[0], low[1], "resent exactly as first sent")
        XCTAssertEqual(again[1], high[1])
        XCTAssertEqual(fx.counter("parley_relay_nack_packets_total", [("result", "served")]), 2)
        XCTAssertEqual(fx.counter("parley_relay_nack_packets_total", [("result", "missed")]), 1)

        // The high layer's sender report reaches it as the track's, with its timestamp offset.
        let sr = RTCPSenderReport(ssrc: 501, ntpTimestamp: 0x1234_5678_9ABC_DEF0, rtpTimestamp: 80_000, packetCount: 4, octetCount: 200)
        pc.send(try ptx.protect(try sr.encoded(), rtcp: true), to: fx.mediaAddress)
        let got = try XCTUnwrap(vc.receive(where: { isRTCP($0) && $0[1] == RTCP.PacketType.senderReport }))
        let parsed = try got.withUnsafeBytes { try RTCPSenderReport(parsing: $0) }
        XCTAssertEqual(parsed.ssrc, 7777)
        XCTAssertEqual(parsed.ntpTimestamp, sr.ntpTimestamp)
        XCTAssertEqual(parsed.rtpTimestamp, 80_000 &+ offset)
        // A low layer's report does not reach it (it receives the high one now).
        let lowSR = RTCPSenderReport(ssrc: 500, ntpTimestamp: 1, rtpTimestamp: 5000, packetCount: 3, octetCount: 120)
        pc.send(try ptx.protect(try lowSR.encoded(), rtcp: true), to: fx.mediaAddress)
        XCTAssertNil(vc.receive(timeout: 0.3, where: { isRTCP($0) && $0[1] == RTCP.PacketType.senderReport }))

        // The recorder: the low layer until the high one's keyframe, then the high one, one stream on the track's SSRC.
        let recorded = seen.all
        XCTAssertEqual(Set(recorded.map(\.0)), [7777])
        XCTAssertEqual(recorded.map { seqOf($0.2) }, [40, 41, 42, 43, 44, 45, 46])
        XCTAssertEqual(try recorded.map { try payloadOf($0.2) }.suffix(4),
                       ([900, 901, 902, 903] as [UInt16]).map { [0x10, $0 % 2 == 0 ? 0x00 : 0x01] + payload(ssrc: 501, seq: $0, size: 40) })
        try waitFor { fx.relay.setTap(room: "r", nil, completion: $0) }
    }

    func testDTLSFromStrangersAndGarbageIsDroppedAndCounted() throws {
        let fx = try RelayFixture()
        let g = try joinWebRTC(fx, room: "r", name: "browser", ssrc: 1111, transport: transport())
        let stranger = TestClient()
        let hello: [UInt8] = [22, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0]
        stranger.send(hello, to: fx.mediaAddress)
        waitUntil("unknown source counted") { fx.counter("parley_relay_dtls_dropped_total", [("reason", "unknown_source")]) == 1 }

        let c = TestClient()
        XCTAssertNotNil(c.bind(to: fx.mediaAddress, grant: g))
        fx.waitUntilLatched("r", "browser", c)
        c.send([22, 0x03, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], to: fx.mediaAddress) // TLS, not DTLS
        c.send([22, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 0, 0, 99, 1], to: fx.mediaAddress) // length past the end
        waitUntil("malformed counted") { fx.counter("parley_relay_dtls_dropped_total", [("reason", "malformed")]) == 2 }
        XCTAssertNil(stranger.receive(timeout: 0), "a stranger gets no DTLS answer")
        XCTAssertEqual(fx.counter("parley_relay_dtls_handshakes_total", [("result", "connected")]), 0)
    }

    func testAHandshakeThatNeverCompletesEndsTheParticipantWithAnEvent() throws {
        let fx = try RelayFixture { c in
            c.dtlsHandshakeTimeout = .milliseconds(300)
            c.housekeepingInterval = .milliseconds(50)
        }
        _ = try joinWebRTC(fx, room: "r", name: "silent", ssrc: 1111, transport: transport())
        waitUntil("transport failed") {
            fx.events.all.contains { if case .transportFailed("r", "silent", _) = $0 { return true }; return false }
        }
        XCTAssertEqual(fx.counter("parley_relay_dtls_handshakes_total", [("result", "timeout")]), 1)
        waitUntil("the room closed with its last participant") { fx.relay.roomNames.isEmpty }
    }

    /// Consent freshness (RFC 7675) toward browsers: the lite relay sends no
    /// checks of its own, so a latched WebRTC participant whose own checks
    /// stop is removed after `consentFreshnessTimeout`, whatever media it
    /// still sends; one that keeps checking stays.
    func testAWebRTCPeerWhoseConsentChecksStopIsRemoved() throws {
        let fx = try RelayFixture { c in
            c.consentFreshnessTimeout = .seconds(1)
            c.housekeepingInterval = .milliseconds(50)
        }
        let ga = try joinWebRTC(fx, room: "r", name: "checking", ssrc: 1111, transport: transport())
        let gb = try joinWebRTC(fx, room: "r", name: "silent", ssrc: 2222, transport: transport())
        let (ca, _, _) = try connect(fx, ga, room: "r", name: "checking")
        let (cb, btx, _) = try connect(fx, gb, room: "r", name: "silent")
        func expired(_ name: String) -> Bool {
            fx.events.all.contains { if case .transportFailed("r", name, "consent expired") = $0 { return true }; return false }
        }
        let deadline = ContinuousClock.now + .seconds(20) // hang guard
        var seq: UInt16 = 0
        while !expired("silent"), ContinuousClock.now < deadline {
            XCTAssertNotNil(ca.bind(to: fx.mediaAddress, grant: ga), "the checking peer's check is answered")
            seq &+= 1
            let rtp = rtpPacket(ssrc: 2222, seq: seq, pt: 111, payload: payload(ssrc: 2222, seq: seq))
            cb.send(try btx.protect(rtp), to: fx.mediaAddress) // media, not consent
            Thread.sleep(forTimeInterval: 0.1)
        }
        XCTAssertTrue(expired("silent"), "\(fx.events.all)")
        XCTAssertFalse(expired("checking"))
        XCTAssertEqual(fx.counter("parley_relay_consent_expired_total"), 1)
        XCTAssertEqual(try waitFor { fx.relay.stats(room: "r", completion: $0) }.participants.map(\.name), ["checking"])
    }

    func testAPeerWhoseCertificateIsNotTheOffersFingerprintIsRemoved() throws {
        let fx = try RelayFixture()
        let other = try DTLSCertificate.generate()
        let g = try joinWebRTC(fx, room: "r", name: "impostor", ssrc: 1111, transport: transport(fingerprint: other.fingerprint))
        let c = TestClient()
        XCTAssertNotNil(c.bind(to: fx.mediaAddress, grant: g))
        fx.waitUntilLatched("r", "impostor", c)
        let e = try DTLSEndpoint(context: clientContext, role: .client, remoteFingerprint: nil)
        handshake(e, over: c, to: fx.mediaAddress)
        waitUntil("transport failed") {
            fx.events.all.contains { if case .transportFailed("r", "impostor", let why) = $0 { return why.contains("fingerprint") }; return false }
        }
        XCTAssertEqual(fx.counter("parley_relay_dtls_handshakes_total", [("result", "failed")]), 1)
    }
}
