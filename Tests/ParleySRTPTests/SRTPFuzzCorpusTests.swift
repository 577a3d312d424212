import Foundation
import XCTest
@testable import ParleySRTP

/// Replays the committed SRTP fuzz seeds and crash reproducers
/// (tools/fuzz/srtp/corpus and crashes/) through SRTPSelfCheck, the
/// invariants the libFuzzer harness checks.
final class SRTPFuzzCorpusTests: XCTestCase {
    func testSRTPCorpus() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../tools/fuzz/srtp").standardized
        var count = 0
        for sub in ["corpus", "crashes"] {
            let dir = root.appendingPathComponent(sub)
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir.path) else { continue }
            for name in names.sorted() where !name.hasPrefix(".") {
                let bytes = [UInt8](try Data(contentsOf: dir.appendingPathComponent(name)))
                XCTAssertNil(SRTPSelfCheck.check(bytes), "\(sub)/\(name)")
                count += 1
            }
        }
        XCTAssertGreaterThanOrEqual(count, 5, "seed corpus present")
    }

    /// Hand-made inputs of each kind pass every invariant: a valid RTP packet
    /// (AES-CM), a valid RTCP packet (GCM), and bytes too short to be either.
    func testSelfCheckOnHandMadePackets() {
        XCTAssertNil(SRTPSelfCheck.check([0, 5] + SRTPContextTests.rtpPacket(seq: 1)))
        XCTAssertNil(SRTPSelfCheck.check([3, 5] + SRTPContextTests.rtcpReceiverReport()))
        XCTAssertNil(SRTPSelfCheck.check([0, 0, 0x80]))
    }
}
