import Foundation
import XCTest
import ParleyTestSupport
@testable import ParleyHTTP

/// Replays the committed fuzz seeds and crash reproducers
/// (tools/fuzz/corpus/<target>; a reproducer is committed there) through the
/// same invariants the libFuzzer harnesses check (CodecSelfCheck), so a fixed
/// crash stays fixed.
final class FuzzCorpusTests: XCTestCase {
    private func inputs(_ target: String) throws -> [(String, [UInt8])] {
        let dir = URL(fileURLWithPath: repositoryPath("tools/fuzz/corpus/\(target)"))
        var out: [(String, [UInt8])] = []
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir.path) else { return out }
        for name in names.sorted() where !name.hasPrefix(".") {
            out.append(("corpus/\(target)/\(name)", [UInt8](try Data(contentsOf: dir.appendingPathComponent(name)))))
        }
        return out
    }

    func testHTTPRequestCorpus() throws {
        let files = try inputs("http-request")
        XCTAssertGreaterThanOrEqual(files.count, 5, "seed corpus present")
        for (name, bytes) in files {
            XCTAssertNil(CodecSelfCheck.httpRequest(bytes), name)
        }
    }

    func testWebSocketCorpus() throws {
        let files = try inputs("websocket")
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
