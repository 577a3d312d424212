import XCTest
import Glibc
import ParleyCore
import ParleyIO
import ParleyRTP
@testable import ParleyRelay

/// Malformed input from an authenticated participant and from strangers:
/// dropped and counted, never a crash, and the relay keeps forwarding.
final class RelayRobustnessTests: XCTestCase {
    func testRandomDatagramsAreDroppedAndForwardingContinues() throws {
        let f = try RelayFixture()
        let (a, ca) = try f.join("r", [.video()])
        let (_, cb) = try f.join("r", [], receiving: [a])
        let stranger = TestClient()
        var rng = SystemRandomNumberGenerator()
        let ssrc = a.tracks[0].ssrc
        for i in 0..<3000 {
            let n = Int(rng.next(upperBound: UInt32(300)))
            var d = (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            if n > 0 {
                switch i % 4 {
                case 0: d[0] = 0x80 | (d[0] & 0x3F)                      // RTP/RTCP first byte, random rest
                case 1: if n > 1 { d[0] = 0x80 | (d[0] & 0x1F); d[1] = UInt8(192 + Int(d[1]) % 32) } // RTCP-looking
                case 2: d[0] &= 0x03                                        // STUN-looking
                default: break
                }
            }
            if i % 4 == 3, n >= 12 { // a valid-looking header with A's SSRC but a bad length/padding
                d[0] = 0xA0 | (d[0] & 0x0F); d[8] = UInt8(ssrc >> 24); d[9] = UInt8(ssrc >> 16 & 0xFF)
                d[10] = UInt8(ssrc >> 8 & 0xFF); d[11] = UInt8(ssrc & 0xFF)
            }
            (i % 5 == 0 ? stranger : ca).send(d, to: f.mediaAddress)
        }
        // Still alive and forwarding, in order, after the garbage.
        let good = rtpPacket(ssrc: ssrc, seq: 60000, payload: payload(ssrc: ssrc, seq: 60000))
        ca.send(good, to: f.mediaAddress)
        // (Random packets with A's SSRC are valid RTP and forwarded too; skip them.)
        XCTAssertNotNil(cb.receive { $0 == good }, "the good packet arrived byte-exact")
        let drops = ["unknown_source", "unknown_protocol", "malformed", "unknown_ssrc", "stun_rejected"]
            .map { f.counter("parley_relay_dropped_total", [("reason", $0)]) }.reduce(0, +)
        XCTAssertGreaterThan(drops, 1000)
        XCTAssertEqual(try f.stats("r").participants.count, 2)
    }
}
