import Foundation
import XCTest
import ParleyTestSupport
@testable import ParleyAuth

/// Replays the committed token fuzz seeds (tools/fuzz/corpus/token) through
/// the invariants the libFuzzer harness checks (TokenSelfCheck).
final class TokenFuzzCorpusTests: XCTestCase {
    func testTokenCorpus() throws {
        let files = try fuzzCorpus("token")
        XCTAssertGreaterThanOrEqual(files.count, 3, "seed corpus present")
        for (name, bytes) in files { XCTAssertNil(TokenSelfCheck.token(bytes), name) }
        // The signed-payload path really verifies: the full-claims seed round-trips.
        let claims = try JWT.verify(TokenSelfCheck.signedWithFuzzSecret(header: #"{"alg":"HS256"}"#,
            payload: Array(#"{"sub":"a","exp":1800000000,"pub":true}"#.utf8)), secret: TokenSelfCheck.fuzzSecret,
            now: 1_700_000_000)
        XCTAssertEqual(claims.subject, "a")
        XCTAssertTrue(claims.canPublish)
    }
}
