import XCTest
@testable import ParleySTUN

/// The consent-check round trip (RFC 8445 §7.2.2 credentials): the relay's
/// request, a client's answer, and the relay's verification of it.
final class BindingCheckTests: XCTestCase {
    let ufrag = Array("clientUfrag12345".utf8), key = Array("consent-password-24chars".utf8)

    private func request(username: String, key: [UInt8], id: STUNTransactionID) -> [UInt8] {
        try! BindingCheck.request(transactionID: id, username: Array(username.utf8), key: key)
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

    /// A stranger's request carries only FINGERPRINT; the sender tells a
    /// success from an error answer, and anything else is no answer.
    func testUnauthenticatedRequestAndReplies() throws {
        let req = try BindingCheck.request(username: nil, key: nil)
        XCTAssertEqual(req.count, 28)
        try req.withUnsafeBytes { b in
            let m = try STUNMessageView(parsing: b)
            XCTAssertEqual(m.type, .bindingRequest)
            XCTAssertNil(m.username)
            XCTAssertTrue(m.verifyFingerprint())
            XCTAssertNil(BindingCheck.reply(b), "a request is not a reply")
        }
        let ok = try XCTUnwrap(answer(request(username: "clientUfrag12345:relay123", key: key, id: .random()),
                                      ufrag: ufrag, key: key))
        XCTAssertEqual(ok.withUnsafeBytes(BindingCheck.reply), .success)
        let responder = BindingResponder(software: nil, alwaysFingerprint: true)
        var out = [UInt8](repeating: 0, count: 512)
        let strangerCheck = request(username: "someoneElse:relay123", key: key, id: .random())
        let refused = try strangerCheck.withUnsafeBytes { r in
            try out.withUnsafeMutableBytes { o in
                try responder.respond(to: r, from: STUNAddress("127.0.0.1", port: 5000)!, into: o) { _ -> STUNCredential<Void>? in nil }
            }
        }
        XCTAssertEqual(out[0..<refused.length].withUnsafeBytes(BindingCheck.reply), .error)
        XCTAssertNil([UInt8](repeating: 0xff, count: 40).withUnsafeBytes(BindingCheck.reply), "not STUN")
    }
}
