import Foundation
import XCTest
import ParleyTestSupport
@testable import ParleySRTP

/// Replays the committed SRTP fuzz seeds and crash reproducers
/// (tools/fuzz/corpus/srtp; a reproducer is committed there) through
/// SRTPSelfCheck, the invariants the libFuzzer harness checks.
final class SRTPFuzzCorpusTests: XCTestCase {
    func testSRTPCorpus() throws {
        let files = try fuzzCorpus("srtp")
        for (name, bytes) in files { XCTAssertNil(SRTPSelfCheck.check(bytes), name) }
        XCTAssertGreaterThanOrEqual(files.count, 5, "seed corpus present")
    }

    /// Hand-made inputs of each kind pass every invariant: a valid RTP packet
    /// (AES-CM), a valid RTCP packet (GCM), and bytes too short to be either.
    func testSelfCheckOnHandMadePackets() {
        XCTAssertNil(SRTPSelfCheck.check([0, 5] + SRTPContextTests.rtpPacket(seq: 1)))
        XCTAssertNil(SRTPSelfCheck.check([3, 5] + SRTPContextTests.rtcpReceiverReport()))
        XCTAssertNil(SRTPSelfCheck.check([0, 0, 0x80]))
    }
}
