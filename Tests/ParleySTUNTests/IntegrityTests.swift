import COpenSSL
import Foundation
import Synchronization
import XCTest
@testable import ParleySTUN

/// MESSAGE-INTEGRITY(-SHA256) from the reusable per-thread contexts must
/// equal OpenSSL's one-shot HMAC() over the same bytes, whatever the key
/// length (empty, short, one block, longer than a block) and order of use.
final class IntegrityTests: XCTestCase {
    func oneShot(_ sha256: Bool, key: [UInt8], data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 64)
        var len: UInt32 = 0
        var k = key.isEmpty ? [0] : key
        _ = k.withUnsafeMutableBytes { kb in
            HMAC(sha256 ? EVP_sha256() : EVP_sha1(), kb.baseAddress, Int32(key.count), data, data.count, &out, &len)
        }
        return Array(out[0..<Int(len)])
    }

    func testReusedContextsMatchOneShotHMAC() throws {
        let keys: [[UInt8]] = [[], [1], Array(repeating: 7, count: 64), Array(0..<100).map { UInt8($0) }, Array("pw".utf8)]
        for sha256 in [false, true] {
            for key in keys + keys.reversed() {
                let message = try build(.bindingRequest, STUNTransactionID(9, 8, 7)) { w in
                    try w.append(.username, bytes: Array("a:b".utf8))
                    try w.appendMessageIntegrity(key: key, sha256: sha256)
                }
                let size = sha256 ? 32 : 20
                let prefix = Array(message[0..<(message.count - size - 4)])
                XCTAssertEqual(Array(message.suffix(size)), oneShot(sha256, key: key, data: prefix), "key \(key.count) bytes")
                try withView(message) { m in
                    XCTAssertTrue(key.withUnsafeBytes { sha256 ? m.verifyMessageIntegritySHA256(key: $0) : m.verifyMessageIntegrity(key: $0) })
                }
            }
        }
    }

    func testContextsArePerThread() throws {
        let key = Array("VOkJxbRl1RmTxUk/WvJxBt".utf8)
        let verified = Verified()
        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            for _ in 0..<500 {
                let ok = RFC5769.sampleRequest.withUnsafeBytes { b in
                    let m = try! STUNMessageView(parsing: b)
                    return key.withUnsafeBytes { m.verifyMessageIntegrity(key: $0) }
                }
                if ok { verified.count.add(1, ordering: .relaxed) }
            }
        }
        XCTAssertEqual(verified.count.load(ordering: .relaxed), 2000)
    }
}

final class Verified: Sendable {
    let count = Atomic<Int>(0)
}
