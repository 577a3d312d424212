import Foundation
import XCTest
import ParleyTestSupport
@testable import ParleySTUN

/// Replays the committed libFuzzer corpus (tools/fuzz/corpus/stun) through
/// the parser and BindingResponder with the properties the fuzz target
/// checks, so CI covers the seeds and crash reproducers without libFuzzer.
final class FuzzCorpusReplayTests: XCTestCase {
    func testSTUNCorpusRoundTrips() throws {
        let root = repositoryRoot
        let dir = root.appendingPathComponent("tools/fuzz/corpus/stun")
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
        XCTAssertFalse(names.isEmpty, "empty corpus \(dir.path)")
        let key = Array("VOkJxbRl1RmTxUk/WvJxBt".utf8)
        let source = STUNAddress(ipv6High: 0x2001_0DB8_0000_0000, low: 5, port: 3478)
        var parsed = 0
        for name in names {
            let bytes = Array(try Data(contentsOf: dir.appendingPathComponent(name)))
            var out = [UInt8](repeating: 0, count: 2048)
            let outcome = bytes.withUnsafeBytes { r in
                out.withUnsafeMutableBytes { o in
                    try? BindingResponder(software: "fuzz").respond(to: r, from: source, into: o) { _ in
                        STUNCredential(key: key, participant: 1)
                    }
                }
            }
            if let o = outcome {
                let response = Array(out[0..<o.length])
                let m = try response.withUnsafeBytes { try STUNMessage(parsing: $0) }
                XCTAssertNotEqual(m.type.messageClass, .request, name)
                XCTAssertTrue(m.type.messageClass == .successResponse || m.type.messageClass == .errorResponse, name)
            }
            guard let message = try? bytes.withUnsafeBytes({ try STUNMessage(parsing: $0) }) else { continue }
            parsed += 1
            let encoded = try message.encoded()
            XCTAssertEqual(try encoded.withUnsafeBytes { try STUNMessage(parsing: $0) }, message, name)
        }
        XCTAssertGreaterThan(parsed, 0, "no corpus input parsed as STUN")
    }
}
