import Foundation
import XCTest
import ParleyTestSupport
@testable import ParleyHTTP

/// Replays the committed fuzz seeds and crash reproducers
/// (tools/fuzz/corpus/<target>; a reproducer is committed there) through the
/// same invariants the libFuzzer harnesses check (CodecSelfCheck), so a fixed
/// crash stays fixed.
final class FuzzCorpusTests: XCTestCase {

    func testHTTPRequestCorpus() throws {
        let files = try fuzzCorpus("http-request")
        XCTAssertGreaterThanOrEqual(files.count, 5, "seed corpus present")
        for (name, bytes) in files {
            XCTAssertNil(CodecSelfCheck.httpRequest(bytes), name)
        }
    }

    func testWebSocketCorpus() throws {
        let files = try fuzzCorpus("websocket")
        XCTAssertGreaterThanOrEqual(files.count, 5, "seed corpus present")
        for (name, bytes) in files {
            XCTAssertNil(CodecSelfCheck.webSocket(bytes), name)
        }
    }

    /// The invariant checker itself notices a broken property (it is not vacuous).
    func testSelfCheckSeesRequests() {
        let outcome = CodecSelfCheck.parseHTTP(CodecSelfCheck.chunks(Array("GET / HTTP/1.1\r\nHost: h\r\n\r\n".utf8)),
                                               limits: CodecSelfCheck.fuzzLimits)
        XCTAssertEqual(outcome.requests.count, 1)
        XCTAssertNil(outcome.error)
        let frames = CodecSelfCheck.decodeFrames([[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]], role: .client, max: 100)
        XCTAssertEqual(frames.frames.count, 1)
    }
}
