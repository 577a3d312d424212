import XCTest
import ParleyCore

final class ArgumentsTests: XCTestCase {
    func testNearestNameByEditDistance() {
        let names = ["listen", "media-ports", "media-host", "stun", "data-dir", "log-level", "loops", "insecure"]
        let cases: [(String, String?)] = [
            ("lisen", "listen"),        // deletion
            ("listne", "listen"),       // two substitutions
            ("media-port", "media-ports"),
            ("mediaports", "media-ports"),
            ("loop", "loops"),
            ("sutn", nil),              // 2 edits in 4 letters: too far to guess
            ("stn", "stun"),
            ("xyz", nil),
            ("", nil),
            ("verbose", nil),
        ]
        for (typo, wanted) in cases {
            XCTAssertEqual(nearestName(to: typo, in: names), wanted, typo)
        }
    }

    func testUnknownOptionSuggestsTheNearestFlag() {
        XCTAssertThrowsError(try Arguments(["--lisen", "x"], options: ["listen", "loops"], flags: ["insecure"])) { e in
            XCTAssertEqual("\(e)", "unknown option --lisen; did you mean --listen?")
        }
        XCTAssertThrowsError(try Arguments(["--insecur"], options: ["listen"], flags: ["insecure"])) { e in
            XCTAssertEqual("\(e)", "unknown option --insecur; did you mean --insecure?")
        }
        XCTAssertThrowsError(try Arguments(["--frobnicate"], options: ["listen"], flags: ["insecure"])) { e in
            XCTAssertEqual("\(e)", "unknown option --frobnicate")
        }
    }
}
