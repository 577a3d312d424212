import ParleySDP
import XCTest

final class WebRTCOfferTests: XCTestCase {
    /// An offer as Chromium writes it (audio and video, BUNDLE, a data channel section), trimmed.
    static let chromeOffer = """
    v=0\r
    o=- 4611731400430051336 2 IN IP4 127.0.0.1\r
    s=-\r
    t=0 0\r
    a=group:BUNDLE 0 1 2\r
    a=extmap-allow-mixed\r
    a=msid-semantic: WMS stream\r
    m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r
    c=IN IP4 0.0.0.0\r
    a=rtcp:9 IN IP4 0.0.0.0\r
    a=ice-ufrag:Xq3v\r
    a=ice-pwd:8fHk2l0Qq9aB7cD6eF5gH4iJ\r
    a=ice-options:trickle\r
    a=fingerprint:sha-256 49:66:12:17:0D:1C:91:AE:57:4C:C6:36:DD:D5:97:D2:7D:62:C9:9A:7F:B9:A3:F4:70:03:E7:43:91:73:23:5E\r
    a=setup:actpass\r
    a=mid:0\r
    a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r
    a=sendrecv\r
    a=msid:stream audio-track\r
    a=rtcp-mux\r
    a=rtpmap:111 opus/48000/2\r
    a=rtcp-fb:111 transport-cc\r
    a=fmtp:111 minptime=10;useinbandfec=1\r
    a=rtpmap:63 red/48000/2\r
    a=rtpmap:9 G722/8000\r
    a=rtpmap:0 PCMU/8000\r
    a=ssrc:1001 cname:abc\r
    a=ssrc:1001 msid:stream audio-track\r
    m=video 9 UDP/TLS/RTP/SAVPF 96 97 102\r
    c=IN IP4 0.0.0.0\r
    a=ice-ufrag:Xq3v\r
    a=ice-pwd:8fHk2l0Qq9aB7cD6eF5gH4iJ\r
    a=fingerprint:sha-256 49:66:12:17:0D:1C:91:AE:57:4C:C6:36:DD:D5:97:D2:7D:62:C9:9A:7F:B9:A3:F4:70:03:E7:43:91:73:23:5E\r
    a=setup:actpass\r
    a=mid:1\r
    a=sendrecv\r
    a=rtcp-mux\r
    a=rtcp-rsize\r
    a=rtpmap:96 VP8/90000\r
    a=rtcp-fb:96 goog-remb\r
    a=rtcp-fb:96 ccm fir\r
    a=rtcp-fb:96 nack\r
    a=rtcp-fb:96 nack pli\r
    a=rtpmap:97 rtx/90000\r
    a=fmtp:97 apt=96\r
    a=rtpmap:102 H264/90000\r
    a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r
    a=ssrc-group:FID 2001 2002\r
    a=ssrc:2001 cname:abc\r
    a=ssrc:2002 cname:abc\r
    m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r
    c=IN IP4 0.0.0.0\r
    a=mid:2\r
    a=sctp-port:5000\r

    """

    func testChromiumOfferIsTakenWithOpusAndVP8() throws {
        let o = try WebRTCOffer(parsing: Self.chromeOffer)
        XCTAssertEqual(o.iceUfrag, "Xq3v")
        XCTAssertEqual(o.icePassword, "8fHk2l0Qq9aB7cD6eF5gH4iJ")
        XCTAssertTrue(o.fingerprint.hasPrefix("49:66:12"))
        XCTAssertEqual(o.sections.map(\.mid), ["0", "1", "2"])
        XCTAssertEqual(o.sections[0].codec?.name, "opus")
        XCTAssertEqual(o.sections[0].codec?.payloadType, 111)
        XCTAssertEqual(o.sections[0].codec?.channels, 2)
        XCTAssertEqual(o.sections[0].ssrcs, [1001])
        XCTAssertEqual(o.sections[1].codec?.name, "VP8")
        XCTAssertEqual(o.sections[1].ssrcs, [2001], "the FID (rtx) SSRC is not a media SSRC")
        XCTAssertNil(o.sections[2].codec, "data channels are rejected")
    }

    func testAnswerIsLitePassiveBundledAndRejectsWhatItCannotTake() throws {
        let o = try WebRTCOffer(parsing: Self.chromeOffer)
        let a = o.answer(ufrag: "abcdefgh", password: "p" + String(repeating: "x", count: 23), fingerprint: "AA:BB",
                         host: "127.0.0.1", port: 40000, sessionID: 1, canSend: true, canReceive: true)
        let sdp = try SessionDescription(parsing: a)
        XCTAssertNotNil(sdp.attributes.first { $0.name == "ice-lite" })
        XCTAssertEqual(sdp.attribute("group"), "BUNDLE 0 1")
        XCTAssertEqual(sdp.media.count, 3)
        XCTAssertEqual(sdp.media[0].formats, ["111"])
        XCTAssertEqual(sdp.media[0].attribute("setup"), "passive")
        XCTAssertEqual(sdp.media[0].direction, .sendrecv)
        XCTAssertEqual(sdp.media[0].all("candidate"), ["1 1 udp 2130706431 127.0.0.1 40000 typ host"])
        XCTAssertEqual(sdp.media[1].formats, ["96", "102"], "VP8 first (what the peer sends), then H.264 (receivable); no rtx")
        XCTAssertEqual(Set(sdp.media[1].all("rtcp-fb")), ["96 ccm fir", "96 nack", "96 nack pli", "96 goog-remb"])
        XCTAssertEqual(sdp.media[1].all("fmtp"), ["102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"])
        XCTAssertEqual(sdp.media[0].all("extmap"), ["1 urn:ietf:params:rtp-hdrext:ssrc-audio-level"])
        XCTAssertEqual(sdp.media[0].all("rtcp-fb"), [], "transport-cc needs the transport-wide sequence number extension too")
        XCTAssertEqual(sdp.media[2].port, 0)
        // The answer is itself a valid offer-shaped description (what a browser parses back).
        XCTAssertNoThrow(try WebRTCOffer(parsing: a.replacingOccurrences(of: "setup:passive", with: "setup:active")))
    }

    func testTheAnswerAnnouncesWhatTheServerSendsOnASection() throws {
        let o = try WebRTCOffer(parsing: Self.chromeOffer)
        let a = o.answer(ufrag: "abcdefgh", password: String(repeating: "x", count: 24), fingerprint: "AA:BB", host: "127.0.0.1",
                         port: 40000, sessionID: 1, canSend: true, canReceive: true, sending: ["1": (ssrc: 4242, stream: "bob")])
        let sdp = try SessionDescription(parsing: a)
        XCTAssertEqual(sdp.media[1].attribute("msid"), "bob 4242")
        XCTAssertEqual(sdp.media[1].all("ssrc"), ["4242 cname:bob", "4242 msid:bob 4242"])
        XCTAssertEqual(sdp.media[0].all("ssrc"), [], "nothing announced where nothing is sent")
        let silent = o.answer(ufrag: "abcdefgh", password: String(repeating: "x", count: 24), fingerprint: "AA:BB", host: "127.0.0.1",
                              port: 40000, sessionID: 1, canSend: false, canReceive: true, sending: ["1": (ssrc: 4242, stream: "bob")])
        XCTAssertFalse(silent.contains("a=ssrc:4242"), "a peer that may not receive is sent nothing")
    }

    func testDirectionsFollowRFC3264() {
        XCTAssertEqual(Direction.sendonly.answer(canSend: true, canReceive: true), .recvonly)
        XCTAssertEqual(Direction.recvonly.answer(canSend: true, canReceive: true), .sendonly)
        XCTAssertEqual(Direction.sendrecv.answer(canSend: false, canReceive: true), .recvonly)
        XCTAssertEqual(Direction.sendrecv.answer(canSend: false, canReceive: false), .inactive)
    }

    func testBadOffersAreRefusedWithAReason() {
        let cases: [(String, String)] = [
            ("", "empty"),
            ("v=1\r\n", "v=0"),
            ("v=0\r\nnonsense\r\n", "type=value"),
            ("v=0\r\ns=-\r\n", "no media"),
            (Self.chromeOffer.replacingOccurrences(of: "a=ice-pwd", with: "a=x-pwd"), "ice-pwd"),
            (Self.chromeOffer.replacingOccurrences(of: "sha-256", with: "sha-1"), "fingerprint"),
            (Self.chromeOffer.replacingOccurrences(of: "a=setup:actpass", with: "a=setup:passive"), "setup"),
            (Self.chromeOffer.replacingOccurrences(of: "a=rtcp-mux\r\n", with: ""), "rtcp-mux"),
            (Self.chromeOffer.replacingOccurrences(of: "a=mid:1", with: "a=mid:0"), "mid"),
            (Self.chromeOffer.replacingOccurrences(of: "a=ice-ufrag:Xq3v", with: "a=ice-ufrag:X q\""), "ICE"),
            ("v=0\r\n" + String(repeating: "m=audio 9 RTP/AVP 0\r\n", count: 40), "media sections"),
            ("v=0\r\n" + String(repeating: "a=x\r\n", count: 3000), "lines"),
            (String(repeating: "v", count: 70_000), "bytes"),
            ("v=0\r\nm=audio 99999 RTP/AVP 0\r\n", "port"),
        ]
        for (text, why) in cases {
            XCTAssertThrowsError(try WebRTCOffer(parsing: text), why) { e in
                XCTAssertFalse((e as? SDPError)?.reason.isEmpty ?? true)
            }
        }
    }

    /// Chromium's offer with the header extensions and transport-cc, and H.264 preferred (setCodecPreferences).
    static let feedbackOffer = chromeOffer
        .replacingOccurrences(of: "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n", with: """
        a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r
        a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r
        a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r
        a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r
        a=extmap:5 urn:ietf:params:rtp-hdrext:csrc-audio-level\r

        """)
        .replacingOccurrences(of: "a=mid:1\r\n", with: """
        a=mid:1\r
        a=extmap:14 urn:ietf:params:rtp-hdrext:toffset\r
        a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r
        a=extmap:3/sendrecv http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r
        a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r

        """)
        .replacingOccurrences(of: "m=video 9 UDP/TLS/RTP/SAVPF 96 97 102\r\n", with: "m=video 9 UDP/TLS/RTP/SAVPF 104 102 98 96 97 45\r\n")
        .replacingOccurrences(of: "a=rtcp-fb:96 goog-remb\r\n", with: "a=rtcp-fb:96 goog-remb\r\na=rtcp-fb:96 transport-cc\r\n")
        .replacingOccurrences(of: "a=rtpmap:102 H264/90000\r\n", with: """
        a=rtpmap:104 H264/90000\r
        a=fmtp:104 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f\r
        a=rtpmap:102 H264/90000\r
        a=rtcp-fb:102 transport-cc\r
        a=rtcp-fb:102 nack pli\r
        a=rtpmap:98 VP9/90000\r
        a=fmtp:98 profile-id=0\r
        a=rtpmap:45 AV1/90000\r

        """)

    func testExtensionsTransportCCAndCodecsAreNegotiated() throws {
        let o = try WebRTCOffer(parsing: Self.feedbackOffer)
        XCTAssertEqual(o.sections[1].codec?.name, "H264", "the offer's first codec Parley takes: mode 0 is skipped")
        XCTAssertEqual(o.sections[1].codecs.map(\.payloadType), [102, 98, 96, 45])
        XCTAssertEqual(o.sections[0].extensions.count, 4, "csrc-audio-level is not answered")
        XCTAssertEqual(o.sections[1].extensions, [WebRTCOffer.Extension.absSendTime: 2, WebRTCOffer.Extension.transportWideCC: 3,
                                                  WebRTCOffer.Extension.mid: 4], "toffset is not answered; a direction is read past")
        XCTAssertTrue(o.transportCC(o.sections[1]))
        XCTAssertEqual(o.extensionIDs[WebRTCOffer.Extension.audioLevel], 1)
        let a = o.answer(ufrag: "abcdefgh", password: String(repeating: "x", count: 24), fingerprint: "AA:BB", host: "127.0.0.1",
                         port: 40000, sessionID: 1, canSend: true, canReceive: true)
        let sdp = try SessionDescription(parsing: a)
        XCTAssertEqual(sdp.media[1].formats, ["102", "98", "96", "45"])
        XCTAssertEqual(sdp.media[1].all("extmap"), ["2 \(WebRTCOffer.Extension.absSendTime)", "3 \(WebRTCOffer.Extension.transportWideCC)",
                                                    "4 \(WebRTCOffer.Extension.mid)"])
        let fb = Set(sdp.media[1].all("rtcp-fb"))
        XCTAssertTrue(fb.contains("102 transport-cc") && fb.contains("96 transport-cc"), "\(fb)")
        XCTAssertFalse(fb.contains("96 goog-remb"), "REMB only for peers without transport-cc")
        XCTAssertEqual(sdp.media[1].all("rtpmap"), ["102 H264/90000", "98 VP9/90000", "96 VP8/90000", "45 AV1/90000"])
        XCTAssertEqual(sdp.media[1].all("fmtp"), ["102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f", "98 profile-id=0"])
        XCTAssertEqual(sdp.media[0].all("rtcp-fb"), ["111 transport-cc"])
    }

    func testSimulcastRidsAreAnsweredAsReceived() throws {
        let offer = Self.feedbackOffer
            .replacingOccurrences(of: "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\r\n", with: "")
            .replacingOccurrences(of: "a=mid:1\r\n", with: """
            a=mid:1\r
            a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\r
            a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id\r
            a=rid:q send\r
            a=rid:h send\r
            a=rid:f send max-width=1280\r
            a=rid:x!y send\r
            a=simulcast:send q;h,x;~f\r

            """)
        let o = try WebRTCOffer(parsing: offer)
        XCTAssertEqual(o.sections[1].rids, ["q", "h", "f"], "the first of each alternative, paused ones too, bad rids left out")
        XCTAssertEqual(o.sections[1].extensions[WebRTCOffer.Extension.rid], 10)
        let a = o.answer(ufrag: "abcdefgh", password: String(repeating: "x", count: 24), fingerprint: "AA:BB", host: "127.0.0.1",
                         port: 40000, sessionID: 1, canSend: true, canReceive: true)
        let sdp = try SessionDescription(parsing: a)
        XCTAssertEqual(sdp.media[1].all("rid"), ["q recv", "h recv", "f recv"])
        XCTAssertEqual(sdp.media[1].attribute("simulcast"), "recv q;h;f")
        XCTAssertTrue(sdp.media[1].all("extmap").contains("10 \(WebRTCOffer.Extension.rid)"))
        XCTAssertEqual(sdp.media[0].all("rid"), [], "no simulcast on audio")
        let listener = o.answer(ufrag: "abcdefgh", password: String(repeating: "x", count: 24), fingerprint: "AA:BB", host: "127.0.0.1",
                                port: 40000, sessionID: 1, canSend: true, canReceive: false)
        XCTAssertFalse(listener.contains("a=simulcast"), "a peer that may not publish is not asked for layers")
    }
}
