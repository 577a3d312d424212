import XCTest
@testable import ParleySDP

/// The relay's candidates in an answer: UDP and ICE-TCP passive (RFC 6544),
/// either family, with priorities that make UDP win whenever both work.
final class ICECandidateTests: XCTestCase {
    func testAnswerListsUDPAndTCPPassiveCandidatesAndUDPOutranksTCP() throws {
        let o = try WebRTCOffer(parsing: WebRTCOfferTests.chromeOffer)
        let candidates = [ICECandidate(.udp, host: "127.0.0.1", port: 40000), ICECandidate(.udp, host: "::1", port: 40000),
                          ICECandidate(.tcp, host: "127.0.0.1", port: 40100), ICECandidate(.tcp, host: "::1", port: 40100)]
        let a = o.answer(ufrag: "abcdefgh", password: String(repeating: "x", count: 24), fingerprint: "AA:BB", host: "ignored",
                         port: 1, sessionID: 1, canSend: true, canReceive: true, candidates: candidates)
        let sdp = try SessionDescription(parsing: a)
        XCTAssertEqual(sdp.media[0].port, 40000, "the first candidate gives the m= port")
        XCTAssertEqual(sdp.media[0].all("candidate"), [
            "1 1 udp 2130706431 127.0.0.1 40000 typ host",
            "3 1 udp 2130706175 ::1 40000 typ host",
            "2 1 tcp 2124414975 127.0.0.1 40100 typ host tcptype passive",
            "4 1 tcp 2124414719 ::1 40100 typ host tcptype passive",
        ])
        XCTAssertEqual(sdp.media[1].all("candidate").count, 4, "every bundled section lists them")
        let udp = candidates.filter { $0.transport == .udp }.map(\.priority), tcp = candidates.filter { $0.transport == .tcp }.map(\.priority)
        XCTAssertGreaterThan(udp.min()!, tcp.max()!)
        // Only TCP (webrtc-candidates tcp): the m= line and c= line name the TCP candidate.
        let tcpOnly = o.answer(ufrag: "abcdefgh", password: String(repeating: "x", count: 24), fingerprint: "AA:BB", host: "ignored",
                               port: 1, sessionID: 1, canSend: true, canReceive: true, candidates: [candidates[2]])
        let t = try SessionDescription(parsing: tcpOnly)
        XCTAssertEqual(t.media[0].port, 40100)
        XCTAssertEqual(t.media[0].all("candidate"), ["2 1 tcp 2124414975 127.0.0.1 40100 typ host tcptype passive"])
    }
}
