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
        var count = 0
        for name in try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted() where !name.hasPrefix(".") {
            let bytes = [UInt8](try Data(contentsOf: dir.appendingPathComponent(name)))
            XCTAssertNil(SDPSelfCheck.check(bytes), "corpus/sdp/\(name)")
            count += 1
        }
        XCTAssertGreaterThanOrEqual(count, 4, "seed corpus present")
        // The seeds are real offers: both are taken.
        for name in ["aiortc-offer", "chromium-offer"] {
            let text = try String(contentsOf: dir.appendingPathComponent(name), encoding: .utf8)
            XCTAssertNoThrow(try WebRTCOffer(parsing: text), name)
        }
    }
}
