import Foundation
import ParleyTestSupport
import XCTest
@testable import ParleySDP

/// Replays the committed SDP fuzz seeds and crash reproducers
/// (tools/fuzz/corpus/sdp) through SDPSelfCheck, the invariants the
/// libFuzzer harness checks.
final class SDPFuzzCorpusTests: XCTestCase {
    func testSDPCorpus() throws {
        let dir = URL(fileURLWithPath: repositoryPath("tools/fuzz/corpus/sdp"))
        let files = try fuzzCorpus("sdp")
        for (name, bytes) in files { XCTAssertNil(SDPSelfCheck.check(bytes), name) }
        XCTAssertGreaterThanOrEqual(files.count, 4, "seed corpus present")
        // The seeds are real offers: both are taken.
        for name in ["aiortc-offer", "chromium-offer"] {
            let text = try String(contentsOf: dir.appendingPathComponent(name), encoding: .utf8)
            XCTAssertNoThrow(try WebRTCOffer(parsing: text), name)
        }
    }
}
