import Foundation
import ParleyTestSupport
import XCTest
@testable import ParleyDTLS

/// Replays the committed DTLS fuzz seeds and crash reproducers
/// (tools/fuzz/corpus/dtls) through DTLSSelfCheck, the invariants the
/// libFuzzer harness checks.
final class DTLSFuzzCorpusTests: XCTestCase {
    func testDTLSCorpus() throws {
        let files = try fuzzCorpus("dtls")
        for (name, bytes) in files { XCTAssertNil(DTLSSelfCheck.check(bytes), name) }
        XCTAssertGreaterThanOrEqual(files.count, 4, "seed corpus present")
    }
}
