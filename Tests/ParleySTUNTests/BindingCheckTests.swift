import XCTest
@testable import ParleySTUN

/// The consent-check round trip (RFC 8445 §7.2.2 credentials): the relay's
/// request, a client's answer, and the relay's verification of it.
final class BindingCheckTests: XCTestCase {
    let ufrag = Array("clientUfrag12345".utf8), key = Array("consent-password-24chars".utf8)

    private func request(username: String, key: [UInt8], id: STUNTransactionID) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 256)
        let n = out.withUnsafeMutableBytes { try! BindingCheck.writeRequest(into: $0, transactionID: id, username: Array(username.utf8), key: key) }
        return Array(out[0..<n])
    }

    private func answer(_ req: [UInt8], ufrag: [UInt8], key: [UInt8]) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: 512)
        let n = req.withUnsafeBytes { r in
            out.withUnsafeMutableBytes { BindingCheck.answer(r, from: STUNAddress("127.0.0.1", port: 5000)!, ufrag: ufrag, key: key, into: $0) }
        }
        return n.map { Array(out[0..<$0]) }
    }

    func testAnswerToTheRightCredentialsVerifies() throws {
        let id = STUNTransactionID.random()
        let req = request(username: "clientUfrag12345:relay123", key: key, id: id)
        let resp = try XCTUnwrap(answer(req, ufrag: ufrag, key: key))
        try resp.withUnsafeBytes { b in
            let m = try STUNMessageView(parsing: b)
            XCTAssertEqual(m.transactionID, id)
            XCTAssertTrue(BindingCheck.isAuthenticatedSuccess(m, key: key))
            XCTAssertFalse(BindingCheck.isAuthenticatedSuccess(m, key: Array("another-password-entirely".utf8)))
            XCTAssertEqual(try m.xorMappedAddress(), STUNAddress("127.0.0.1", port: 5000))
        }
    }

    func testChecksForOtherCredentialsAreNotAnswered() {
        let cases: [(String, [UInt8])] = [
            ("relay123:clientUfrag12345", key),                  // our ufrag in the wrong place
            ("clientUfrag12345:relay123", Array("wrong".utf8)),  // wrong key
            ("clientUfrag1234:relay123", key),                   // a prefix of our ufrag
        ]
        for (username, k) in cases {
            XCTAssertNil(answer(request(username: username, key: k, id: .random()), ufrag: ufrag, key: key), username)
        }
        XCTAssertNil(answer([0x80, 0x60, 0, 0], ufrag: ufrag, key: key), "RTP is not answered")
    }
}
