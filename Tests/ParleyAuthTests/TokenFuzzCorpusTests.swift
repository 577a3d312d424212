import Foundation
import XCTest
import ParleyTestSupport
@testable import ParleyAuth

/// Replays the committed token fuzz seeds (tools/fuzz/corpus/token) through
/// the invariants the libFuzzer harness checks (TokenSelfCheck).
final class TokenFuzzCorpusTests: XCTestCase {
    func testTokenCorpus() throws {
        let dir = URL(fileURLWithPath: repositoryPath("tools/fuzz/corpus/token"))
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { !$0.hasPrefix(".") }.sorted()
        XCTAssertGreaterThanOrEqual(names.count, 3, "seed corpus present")
        for name in names {
            XCTAssertNil(TokenSelfCheck.token([UInt8](try Data(contentsOf: dir.appendingPathComponent(name)))), name)
        }
        // The signed-payload path really verifies: the full-claims seed round-trips.
        let claims = try JWT.verify(TokenSelfCheck.signedWithFuzzSecret(header: #"{"alg":"HS256"}"#,
            payload: Array(#"{"sub":"a","exp":1800000000,"pub":true}"#.utf8)), secret: TokenSelfCheck.fuzzSecret,
            now: 1_700_000_000)
        XCTAssertEqual(claims.subject, "a")
        XCTAssertTrue(claims.canPublish)
    }
}
