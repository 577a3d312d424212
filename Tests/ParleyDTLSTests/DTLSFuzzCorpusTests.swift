import Foundation
import ParleyTestSupport
import XCTest
@testable import ParleyDTLS

/// Replays the committed DTLS fuzz seeds and crash reproducers
/// (tools/fuzz/corpus/dtls) through DTLSSelfCheck, the invariants the
/// libFuzzer harness checks.
final class DTLSFuzzCorpusTests: XCTestCase {
    func testDTLSCorpus() throws {
        let dir = URL(fileURLWithPath: repositoryPath("tools/fuzz/corpus/dtls"))
        var count = 0
        for name in try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted() where !name.hasPrefix(".") {
            let bytes = [UInt8](try Data(contentsOf: dir.appendingPathComponent(name)))
            XCTAssertNil(DTLSSelfCheck.check(bytes), "corpus/dtls/\(name)")
            count += 1
        }
        XCTAssertGreaterThanOrEqual(count, 4, "seed corpus present")
    }
}
