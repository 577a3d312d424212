import XCTest
@testable import ParleySTUN

/// "00 01 00 58" → bytes; spaces and newlines ignored.
func hex(_ s: String) -> [UInt8] {
    let digits = s.filter { $0.isHexDigit }
    precondition(digits.count % 2 == 0, "odd hex string")
    var out: [UInt8] = []
    var it = digits.makeIterator()
    while let a = it.next(), let b = it.next() { out.append(UInt8(String([a, b]), radix: 16)!) }
    return out
}

/// The test vectors of RFC 5769 §2 (bytes as printed in the RFC).
enum RFC5769 {
    static let password = Array("VOkJxbRl1RmTxUk/WvJxBt".utf8)
    static let transactionID = STUNTransactionID(0xB7E7_A701, 0xBC34_D686, 0xFA87_DFAE)

    /// §2.1 Sample Request.
    static let sampleRequest = hex("""
        00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
        80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
        00 24 00 04 6e 00 01 ff
        80 29 00 08 93 2f f9 b1 51 26 3b 36
        00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
        00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
        80 28 00 04 e5 7a 3b cf
        """)

    /// §2.2 Sample IPv4 Response.
    static let ipv4Response = hex("""
        01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
        80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
        00 20 00 08 00 01 a1 47 e1 12 a6 43
        00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
        80 28 00 04 c0 7d 4c 96
        """)

    /// §2.3 Sample IPv6 Response.
    static let ipv6Response = hex("""
        01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
        80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
        00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9
        00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41
        80 28 00 04 c8 fb 0b 4c
        """)

    /// §2.4 Sample Request with Long-Term Authentication.
    static let longTermRequest = hex("""
        00 01 00 60 21 12 a4 42 78 ad 34 33 c6 ad 72 c0 29 da 41 2e
        00 06 00 12 e3 83 9e e3 83 88 e3 83 aa e3 83 83 e3 82 af e3 82 b9 00 00
        00 15 00 1c 66 2f 2f 34 39 39 6b 39 35 34 64 36 4f 4c 33 34 6f 4c 39 46 53 54 76 79 36 34 73 41
        00 14 00 0b 65 78 61 6d 70 6c 65 2e 6f 72 67 00
        00 08 00 14 f6 70 24 65 6d d6 4a 3e 02 b8 e0 71 2e 85 c9 a2 8c a8 96 66
        """)
}

func withView<R>(_ bytes: [UInt8], _ body: (STUNMessageView) throws -> R) throws -> R {
    try bytes.withUnsafeBytes { b in try body(try STUNMessageView(parsing: b)) }
}

/// Writes a message with `build` into a fresh buffer and returns its bytes.
func build(_ type: STUNMessageType, _ id: STUNTransactionID, paddingByte: UInt8 = 0,
           _ body: (inout STUNMessageWriter) throws -> Void) throws -> [UInt8] {
    var out = [UInt8](repeating: 0, count: 1500)
    let n = try out.withUnsafeMutableBytes { b -> Int in
        var w = try STUNMessageWriter(into: b, type: type, transactionID: id)
        w.paddingByte = paddingByte
        try body(&w)
        return w.count
    }
    return Array(out[0..<n])
}

final class RFC5769Tests: XCTestCase {
    func testRFC5769SampleRequest() throws {
        try withView(RFC5769.sampleRequest) { m in
            XCTAssertEqual(m.type, .bindingRequest)
            XCTAssertEqual(m.transactionID, RFC5769.transactionID)
            XCTAssertEqual(m.software.map { String(decoding: $0, as: UTF8.self) }, "STUN test client")
            XCTAssertEqual(m.username.map { String(decoding: $0, as: UTF8.self) }, "evtj:h6vY")
            XCTAssertEqual(m.priority, 0x6E00_01FF)
            XCTAssertEqual(m.iceControlled, 0x932F_F9B1_5126_3B36)
            XCTAssertNil(m.iceControlling)
            XCTAssertFalse(m.useCandidate)
            XCTAssertTrue(m.verifyFingerprint())
            XCTAssertTrue(RFC5769.password.withUnsafeBytes { m.verifyMessageIntegrity(key: $0) })
            XCTAssertFalse(Array("wrong".utf8).withUnsafeBytes { m.verifyMessageIntegrity(key: $0) })
        }
        // Building the same attributes (with the RFC's 0x20 padding) reproduces it byte for byte.
        let rebuilt = try build(.bindingRequest, RFC5769.transactionID, paddingByte: 0x20) { w in
            try w.append(.software, bytes: Array("STUN test client".utf8))
            try w.append(.priority, uint32: 0x6E00_01FF)
            try w.append(.iceControlled, uint64: 0x932F_F9B1_5126_3B36)
            try w.append(.username, bytes: Array("evtj:h6vY".utf8))
            try w.appendMessageIntegrity(key: RFC5769.password)
            try w.appendFingerprint()
        }
        XCTAssertEqual(rebuilt, RFC5769.sampleRequest)
    }

    /// §2.2/§2.3: parse the response, check address and integrity, and rebuild it byte for byte.
    func checkResponseVector(_ vector: [UInt8], _ expected: STUNAddress, _ text: String,
                             file: StaticString = #filePath, line: UInt = #line) throws {
        try withView(vector) { m in
            XCTAssertEqual(m.type, .bindingSuccess, file: file, line: line)
            XCTAssertEqual(try m.xorMappedAddress(), expected, file: file, line: line)
            XCTAssertEqual(try m.xorMappedAddress()?.description, text, file: file, line: line)
            XCTAssertTrue(m.verifyFingerprint(), file: file, line: line)
            XCTAssertTrue(RFC5769.password.withUnsafeBytes { m.verifyMessageIntegrity(key: $0) }, file: file, line: line)
        }
        let rebuilt = try build(.bindingSuccess, RFC5769.transactionID, paddingByte: 0x20) { w in
            try w.append(.software, bytes: Array("test vector".utf8))
            try w.appendXORMappedAddress(expected)
            try w.appendMessageIntegrity(key: RFC5769.password)
            try w.appendFingerprint()
        }
        XCTAssertEqual(rebuilt, vector, file: file, line: line)
    }

    func testRFC5769SampleIPv4Response() throws {
        try checkResponseVector(RFC5769.ipv4Response, STUNAddress("192.0.2.1", port: 32853)!, "192.0.2.1:32853")
    }

    func testRFC5769SampleIPv6Response() throws {
        try checkResponseVector(RFC5769.ipv6Response, STUNAddress("2001:db8:1234:5678:11:2233:4455:6677", port: 32853)!,
                                "[2001:db8:1234:5678:11:2233:4455:6677]:32853")
    }

    func testRFC5769SampleRequestWithLongTermAuthentication() throws {
        // Username "マトリックス", realm "example.org", password "TheMatrIX" after SASLprep.
        let key = STUNIntegrity.longTermKey(username: Array("マトリックス".utf8), realm: Array("example.org".utf8),
                                            password: Array("TheMatrIX".utf8))
        try withView(RFC5769.longTermRequest) { m in
            XCTAssertEqual(m.username.map { String(decoding: $0, as: UTF8.self) }, "マトリックス")
            XCTAssertEqual(m.attribute(.realm).map { String(decoding: $0, as: UTF8.self) }, "example.org")
            XCTAssertEqual(m.attribute(.nonce).map { String(decoding: $0, as: UTF8.self) }, "f//499k954d6OL34oL9FSTvy64sA")
            XCTAssertNil(m.fingerprintOffset)
            XCTAssertTrue(key.withUnsafeBytes { m.verifyMessageIntegrity(key: $0) })
        }
    }

    func testMessageTypeEncoding() {
        XCTAssertEqual(STUNMessageType.bindingRequest.rawValue, 0x0001)
        XCTAssertEqual(STUNMessageType.bindingIndication.rawValue, 0x0011)
        XCTAssertEqual(STUNMessageType.bindingSuccess.rawValue, 0x0101)
        XCTAssertEqual(STUNMessageType.bindingError.rawValue, 0x0111)
        // TURN Allocate (0x003) request, RFC 8656.
        XCTAssertEqual(STUNMessageType(method: 0x003, messageClass: .request).rawValue, 0x0003)
        for raw in [UInt16(0x0001), 0x0111, 0x3EEF, 0x0C1C] {
            XCTAssertEqual(STUNMessageType(rawValue: raw).rawValue, raw)
        }
    }

    func testCRC32MatchesZlib() {
        // The standard check value of CRC-32/ISO-HDLC.
        XCTAssertEqual(Array("123456789".utf8).withUnsafeBytes { STUNIntegrity.crc32($0) }, 0xCBF4_3926)
    }
}
