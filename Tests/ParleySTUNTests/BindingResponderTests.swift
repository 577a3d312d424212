import XCTest
@testable import ParleySTUN

final class BindingResponderTests: XCTestCase {
    let source = STUNAddress("203.0.113.7", port: 50000)!
    let responder = BindingResponder(software: "parley")
    let users: [String: (key: [UInt8], participant: Int)] = ["room1:alice": (Array("alice-secret-password".utf8), 1)]

    func lookup(_ username: UnsafeRawBufferPointer) -> STUNCredential<Int>? {
        users[String(decoding: username, as: UTF8.self)].map { STUNCredential(key: $0.key, participant: $0.participant) }
    }

    func request(username: String? = "room1:alice", key: [UInt8]? = Array("alice-secret-password".utf8),
                 sha256: Bool = false, fingerprint: Bool = true, extra: ((inout STUNMessageWriter) throws -> Void)? = nil,
                 type: STUNMessageType = .bindingRequest, id: STUNTransactionID = STUNTransactionID(1, 2, 3)) throws -> [UInt8] {
        try build(type, id) { w in
            if let u = username { try w.append(.username, bytes: Array(u.utf8)) }
            try w.append(.priority, uint32: 0x6E00_01FF)
            try w.append(.iceControlling, uint64: 42)
            try w.appendUseCandidate()
            try extra?(&w)
            if let k = key { try w.appendMessageIntegrity(key: k, sha256: sha256) }
            if fingerprint { try w.appendFingerprint() }
        }
    }

    /// Runs the authenticated responder; returns the outcome and response bytes.
    func respond(_ req: [UInt8], from src: STUNAddress? = nil) throws -> (BindingOutcome<Int>, [UInt8]) {
        var out = [UInt8](repeating: 0, count: 1500)
        let outcome = try req.withUnsafeBytes { r in
            try out.withUnsafeMutableBytes { o in
                try responder.respond(to: r, from: src ?? source, into: o, credentials: lookup)
            }
        }
        return (outcome, Array(out[0..<outcome.length]))
    }

    func testAuthenticatedBindingSuccess() throws {
        let (outcome, bytes) = try respond(try request())
        guard case let .success(_, participant) = outcome else { return XCTFail("\(outcome)") }
        XCTAssertEqual(participant, 1)
        try withView(bytes) { m in
            XCTAssertEqual(m.type, .bindingSuccess)
            XCTAssertEqual(m.transactionID, STUNTransactionID(1, 2, 3))
            XCTAssertEqual(try m.xorMappedAddress(), source)
            XCTAssertEqual(m.software.map { String(decoding: $0, as: UTF8.self) }, "parley")
            XCTAssertTrue(users["room1:alice"]!.key.withUnsafeBytes { m.verifyMessageIntegrity(key: $0) })
            XCTAssertTrue(m.verifyFingerprint())
        }
    }

    func testSHA256RequestGetsSHA256Response() throws {
        let (outcome, bytes) = try respond(try request(sha256: true), from: STUNAddress("2001:db8::5", port: 9)!)
        guard case .success(_, 1) = outcome else { return XCTFail("\(outcome)") }
        try withView(bytes) { m in
            XCTAssertNil(m.messageIntegrityOffset)
            XCTAssertTrue(users["room1:alice"]!.key.withUnsafeBytes { m.verifyMessageIntegritySHA256(key: $0) })
            XCTAssertEqual(try m.xorMappedAddress(), STUNAddress("2001:db8::5", port: 9)!)
        }
    }

    func testUnauthenticatedResponderForPlainSTUN() throws {
        let req = try request(username: nil, key: nil, fingerprint: false)
        var out = [UInt8](repeating: 0, count: 256)
        let outcome = try req.withUnsafeBytes { r in
            try out.withUnsafeMutableBytes { o in try BindingResponder().respond(to: r, from: source, into: o) }
        }
        guard case .success(let n, nil) = outcome else { return XCTFail("\(outcome)") }
        try withView(Array(out[0..<n])) { m in
            XCTAssertEqual(try m.xorMappedAddress(), source)
            XCTAssertNil(m.fingerprintOffset, "no FINGERPRINT unless the request had one")
            XCTAssertNil(m.messageIntegrityOffset)
        }
    }

    func testErrorResponses() throws {
        let cases: [(String, [UInt8], Int)] = [
            ("no MESSAGE-INTEGRITY", try request(key: nil), 400),
            ("no USERNAME", try request(username: nil), 400),
            ("unknown USERNAME", try request(username: "room1:mallory"), 401),
            ("wrong password", try request(key: Array("guess".utf8)), 401),
            ("unknown comprehension-required attribute", try request(extra: { try $0.append(STUNAttributeType(0x7F01), bytes: [1]) }), 420),
            ("non-Binding method", try request(type: STUNMessageType(method: 0x003, messageClass: .request)), 400),
        ]
        for (name, req, code) in cases {
            let (outcome, bytes) = try respond(req)
            guard case .errorResponse(_, code) = outcome else {
                XCTFail("\(name): \(outcome)")
                continue
            }
            try withView(bytes) { m in
                XCTAssertEqual(m.type.messageClass, .errorResponse, name)
                XCTAssertEqual(m.transactionID, STUNTransactionID(1, 2, 3), name)
                XCTAssertEqual(try m.errorCode()?.code, code, name)
                XCTAssertTrue(m.verifyFingerprint(), name)
                if code == 420 {
                    XCTAssertEqual(m.attribute(.unknownAttributes).map(Array.init), [0x7F, 0x01], name)
                    // The request authenticated, so the 420 is integrity-protected.
                    XCTAssertTrue(users["room1:alice"]!.key.withUnsafeBytes { m.verifyMessageIntegrity(key: $0) }, name)
                } else {
                    XCTAssertNil(m.messageIntegrityOffset, name)
                }
            }
        }
    }

    func testComprehensionOptionalUnknownAttributeIsIgnored() throws {
        let (outcome, _) = try respond(try request(extra: { try $0.append(STUNAttributeType(0xC001), bytes: [1, 2, 3]) }))
        guard case .success(_, 1) = outcome else { return XCTFail("\(outcome)") }
    }

    func testDroppedInputsThrow() throws {
        var badFingerprint = try request()
        badFingerprint[badFingerprint.count - 1] ^= 0xFF
        let cases: [(String, [UInt8], STUNError)] = [
            ("RTP packet", hex("80 60 00 01 00 00 00 01 00 00 00 02 00 00 00 00 00 00 00 00"), .notSTUN(reason: "leading bits are not 00")),
            ("short", hex("00 01 00 00 21 12 a4 42"), .truncated(need: 20, have: 8)),
            ("no magic cookie (RFC 3489)", hex("00 01 00 00 00 00 00 00 00 00 00 01 00 00 00 02 00 00 00 03"),
             .notSTUN(reason: "no magic cookie")),
            ("length not multiple of 4", hex("00 01 00 02 21 12 a4 42 00 00 00 01 00 00 00 02 00 00 00 03 00 00"),
             .notSTUN(reason: "length not a multiple of 4")),
            ("length disagrees", hex("00 01 00 08 21 12 a4 42 00 00 00 01 00 00 00 02 00 00 00 03 00 06 00 00"),
             .notSTUN(reason: "length disagrees with datagram size")),
            ("attribute past end", hex("00 01 00 04 21 12 a4 42 00 00 00 01 00 00 00 02 00 00 00 03 00 06 00 09"),
             .badAttribute(type: 6, offset: 20)),
            ("MESSAGE-INTEGRITY wrong size", hex("00 01 00 08 21 12 a4 42 00 00 00 01 00 00 00 02 00 00 00 03 00 08 00 04 00 00 00 00"),
             .badAttribute(type: 8, offset: 20)),
            ("attribute after FINGERPRINT",
             hex("00 01 00 10 21 12 a4 42 00 00 00 01 00 00 00 02 00 00 00 03 80 28 00 04 00 00 00 00 80 22 00 04 61 62 63 64"),
             .badAttribute(type: 0x8022, offset: 28)),
            ("bad FINGERPRINT", badFingerprint, .badFingerprint),
            ("success response", try request(type: .bindingSuccess), .notARequest),
            ("indication", try request(type: .bindingIndication), .notARequest),
        ]
        for (name, bytes, expected) in cases {
            XCTAssertThrowsError(try respond(bytes), name) { XCTAssertEqual($0 as? STUNError, expected, name) }
        }
    }

    func testResponseIntoTooSmallBufferThrows() throws {
        let req = try request()
        var out = [UInt8](repeating: 0, count: 40)
        XCTAssertThrowsError(try req.withUnsafeBytes { r in
            try out.withUnsafeMutableBytes { o in try responder.respond(to: r, from: source, into: o, credentials: lookup) }
        }) { error in
            guard case .bufferTooSmall = error as? STUNError else { return XCTFail("\(error)") }
        }
    }

    func testAddressValues() throws {
        let v4 = STUNAddress(ipv4: 0x7F00_0001, port: 3478)
        XCTAssertEqual(v4, STUNAddress("127.0.0.1", port: 3478))
        XCTAssertEqual(v4.description, "127.0.0.1:3478")
        XCTAssertEqual(v4.withAddressBytes(Array.init), [127, 0, 0, 1])
        let v6 = STUNAddress("::1", port: 1)!
        XCTAssertEqual(v6.family, .ipv6)
        XCTAssertEqual(v6.withAddressBytes(Array.init), Array(repeating: 0, count: 15) + [1])
        XCTAssertNil(STUNAddress("not an address", port: 1))
        let bytes: [UInt8] = [10, 1, 2, 3]
        XCTAssertEqual(bytes.withUnsafeBytes { STUNAddress(addressBytes: $0, port: 5) }, STUNAddress("10.1.2.3", port: 5))
        // MAPPED-ADDRESS round trip (plain, RFC 3489 style).
        let msg = try build(.bindingSuccess, STUNTransactionID(7, 8, 9)) { try $0.appendMappedAddress(v6) }
        try withView(msg) { XCTAssertEqual(try $0.mappedAddress(), v6) }
    }

    func testOwnedMessageRoundTrip() throws {
        let bytes = RFC5769.sampleRequest
        let message = try bytes.withUnsafeBytes { try STUNMessage(parsing: $0) }
        XCTAssertEqual(message.attributes.count, 6)
        // Zero padding differs from the vector's 0x20 padding; the structure is equal.
        let again = try message.encoded()
        XCTAssertEqual(try again.withUnsafeBytes { try STUNMessage(parsing: $0) }, message)
    }
}
