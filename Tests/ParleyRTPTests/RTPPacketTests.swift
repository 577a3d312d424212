import XCTest
@testable import ParleyRTP

/// "80 e0 00 01" → bytes; spaces and newlines ignored.
func hex(_ s: String) -> [UInt8] {
    let digits = s.filter { $0.isHexDigit }
    precondition(digits.count % 2 == 0, "odd hex string")
    var out: [UInt8] = []
    var it = digits.makeIterator()
    while let a = it.next(), let b = it.next() { out.append(UInt8(String([a, b]), radix: 16)!) }
    return out
}

func parseRTP(_ bytes: [UInt8]) throws(RTPError) -> RTPPacket {
    let r: Result<RTPPacket, RTPError> = bytes.withUnsafeBytes { b in Result { () throws(RTPError) in try RTPPacket(parsing: b) } }
    return try r.get()
}

final class RTPPacketTests: XCTestCase {
    // V=2 X=1 M=1 PT=96, seq 0x698f, ts 0xd9c293da, SSRC 0x1c642782,
    // one-byte extension block (0xBEDE, 1 word): id 1 len 1 = 0xaa, then padding.
    let withOneByteExtension = hex("""
        90 e0 69 8f d9 c2 93 da 1c 64 27 82
        be de 00 01 10 aa 00 00
        98 36 be 88 9e
        """)

    func testParseFixedHeaderAndOneByteExtension() throws {
        try withOneByteExtension.withUnsafeBytes { b in
            let p = try RTPPacketView(parsing: b)
            XCTAssertEqual(p.version, 2)
            XCTAssertFalse(p.hasPadding)
            XCTAssertTrue(p.hasExtension)
            XCTAssertTrue(p.marker)
            XCTAssertEqual(p.payloadType, 96)
            XCTAssertEqual(p.sequenceNumber, 0x698F)
            XCTAssertEqual(p.timestamp, 0xD9C2_93DA)
            XCTAssertEqual(p.ssrc, 0x1C64_2782)
            XCTAssertEqual(p.csrcCount, 0)
            XCTAssertEqual(p.extensionProfile, 0xBEDE)
            XCTAssertEqual(p.headerSize, 20)
            let elements = p.extensions.map { ($0.id, Array($0.data)) }
            XCTAssertEqual(elements.count, 1)
            XCTAssertEqual(elements.first?.0, 1)
            XCTAssertEqual(elements.first?.1, [0xAA])
            XCTAssertEqual(p.extensionElement(id: 1).map(Array.init), [0xAA])
            XCTAssertNil(p.extensionElement(id: 2))
            XCTAssertEqual(Array(p.payload), [0x98, 0x36, 0xBE, 0x88, 0x9E])
            // The view shares memory with the input: no copy.
            XCTAssertEqual(p.payload.baseAddress, b.baseAddress! + 20)
        }
    }

    func testBuildMatchesParsedBytes() throws {
        let packet = try parseRTP(withOneByteExtension)
        XCTAssertEqual(try packet.encoded(), withOneByteExtension)
    }

    func testRFC8285TwoByteExtensionCSRCsAndPadding() throws {
        let header = RTPHeader(marker: false, payloadType: 111, sequenceNumber: 65535, timestamp: 1234,
                               ssrc: 0xDEAD_BEEF, csrcs: [1, 2, 3], extensionProfile: 0x1000,
                               extensions: [RTPHeaderExtension(id: 200, data: []),
                                            RTPHeaderExtension(id: 3, data: Array(repeating: 7, count: 20))])
        let packet = RTPPacket(header: header, payload: [1, 2, 3], paddingSize: 5)
        let bytes = try packet.encoded()
        XCTAssertEqual(bytes.count % 4, 0)
        XCTAssertEqual(bytes.last, 5)
        XCTAssertEqual(bytes[0] & 0x20, 0x20, "P bit")
        let parsed = try parseRTP(bytes)
        var expected = packet
        expected.header.padding = true
        XCTAssertEqual(parsed, expected)
        try bytes.withUnsafeBytes { b in
            let v = try RTPPacketView(parsing: b)
            XCTAssertEqual(v.csrcCount, 3)
            XCTAssertEqual(v.csrc(at: 2), 3)
            XCTAssertEqual(v.paddingSize, 5)
            XCTAssertEqual(v.extensionElement(id: 200)?.count, 0)
            XCTAssertEqual(v.extensionElement(id: 3).map(Array.init), Array(repeating: 7, count: 20))
        }
    }

    func testOneByteStopIDEndsParsing() throws {
        // id 15 stops processing (RFC 8285 §4.2); the garbage after it is ignored.
        let bytes = hex("90 60 00 01 00 00 00 01 00 00 00 02  be de 00 02 21 aa bb f0 ff ff ff ff")
        let p = try parseRTP(bytes)
        XCTAssertEqual(p.header.extensions, [RTPHeaderExtension(id: 2, data: [0xAA, 0xBB])])
    }

    func testOpaqueExtensionProfileKeptVerbatim() throws {
        let bytes = hex("90 60 00 01 00 00 00 01 00 00 00 02  12 34 00 01 de ad be ef  00")
        let p = try parseRTP(bytes)
        XCTAssertEqual(p.header.extensionProfile, 0x1234)
        XCTAssertEqual(p.header.extensionData, [0xDE, 0xAD, 0xBE, 0xEF])
        XCTAssertTrue(p.header.extensions.isEmpty)
        XCTAssertEqual(try p.encoded(), bytes)
    }

    func testMalformedPacketsAreTypedErrors() {
        let cases: [(String, [UInt8], RTPError)] = [
            ("empty", [], .truncated(need: 12, have: 0)),
            ("11 bytes", hex("80 60 00 01 00 00 00 01 00 00 00"), .truncated(need: 12, have: 11)),
            ("version 1", hex("40 60 00 01 00 00 00 01 00 00 00 02"), .badVersion(1)),
            ("version 3", hex("c0 60 00 01 00 00 00 01 00 00 00 02"), .badVersion(3)),
            ("CSRC past end", hex("82 60 00 01 00 00 00 01 00 00 00 02 00 00 00 09"), .truncated(need: 20, have: 16)),
            ("extension header past end", hex("90 60 00 01 00 00 00 01 00 00 00 02 be de"), .truncated(need: 16, have: 14)),
            ("extension body past end", hex("90 60 00 01 00 00 00 01 00 00 00 02 be de 00 02 10 aa 00 00"),
             .truncated(need: 24, have: 20)),
            ("one-byte element past block", hex("90 60 00 01 00 00 00 01 00 00 00 02 be de 00 01 00 00 13 aa"),
             .badHeaderExtension(offset: 18)),
            ("two-byte element past block", hex("90 60 00 01 00 00 00 01 00 00 00 02 10 00 00 01 05 09 aa bb"),
             .badHeaderExtension(offset: 16)),
            ("padding with nothing after header", hex("a0 60 00 01 00 00 00 01 00 00 00 02"), .badPadding(count: 0, available: 0)),
            ("padding count 0", hex("a0 60 00 01 00 00 00 01 00 00 00 02 aa 00"), .badPadding(count: 0, available: 2)),
            ("padding beyond payload", hex("a0 60 00 01 00 00 00 01 00 00 00 02 aa 03"), .badPadding(count: 3, available: 2)),
        ]
        for (name, bytes, expected) in cases {
            XCTAssertThrowsError(try parseRTP(bytes), name) { error in
                XCTAssertEqual(error as? RTPError, expected, name)
            }
        }
    }

    func testBuildRejectsUnencodableValues() throws {
        let tooLong = RTPHeader(payloadType: 96, sequenceNumber: 1, timestamp: 1, ssrc: 1,
                                extensionProfile: RTP.oneByteExtensionProfile,
                                extensions: [RTPHeaderExtension(id: 1, data: Array(repeating: 0, count: 17))])
        XCTAssertThrowsError(try RTPPacket(header: tooLong, payload: []).encoded()) {
            XCTAssertEqual($0 as? RTPError, .unencodableHeaderExtension(id: 1, length: 17))
        }
        let id15 = RTPHeader(payloadType: 96, sequenceNumber: 1, timestamp: 1, ssrc: 1,
                             extensionProfile: RTP.oneByteExtensionProfile, extensions: [RTPHeaderExtension(id: 15, data: [1])])
        XCTAssertThrowsError(try RTPPacket(header: id15, payload: []).encoded())
        let packet = RTPPacket(header: RTPHeader(payloadType: 0, sequenceNumber: 0, timestamp: 0, ssrc: 0), payload: [1, 2])
        var small = [UInt8](repeating: 0, count: 13)
        try small.withUnsafeMutableBytes { b in
            XCTAssertThrowsError(try packet.write(into: b)) { XCTAssertEqual($0 as? RTPError, .bufferTooSmall(need: 14, have: 13)) }
        }
    }

    func testInPlaceRewrite() throws {
        var bytes = withOneByteExtension
        bytes.withUnsafeMutableBytes { b in
            RTPRewrite.setSSRC(0x0102_0304, in: b)
            RTPRewrite.setSequenceNumber(7, in: b)
            RTPRewrite.setTimestamp(99, in: b)
            RTPRewrite.setPayloadType(100, in: b)
        }
        var p = try parseRTP(bytes)
        XCTAssertEqual(p.header.ssrc, 0x0102_0304)
        XCTAssertEqual(p.header.sequenceNumber, 7)
        XCTAssertEqual(p.header.timestamp, 99)
        XCTAssertEqual(p.header.payloadType, 100)
        XCTAssertTrue(p.header.marker, "marker kept when PT rewritten")
        bytes.withUnsafeMutableBytes { RTPRewrite.setMarker(false, in: $0) }
        p = try parseRTP(bytes)
        XCTAssertFalse(p.header.marker)
        XCTAssertEqual(p.header.payloadType, 100)
        XCTAssertEqual(p.payload, [0x98, 0x36, 0xBE, 0x88, 0x9E], "payload untouched")
    }

    func testRFC7983Demultiplex() {
        let cases: [([UInt8], MediaPacketKind)] = [
            ([0x00, 0x01], .stun), ([0x01, 0x01], .stun), ([0x03], .stun),
            ([16], .zrtp), ([20, 3], .dtls), ([22, 0xFE], .dtls), ([63], .dtls),
            ([64, 0], .turnChannel), ([79], .turnChannel),
            ([0x80, 96], .rtp), ([0x80, 0xE0], .rtp), ([0x90, 0x6F], .rtp),
            ([0x80, 200], .rtcp), ([0x81, 201], .rtcp), ([0x8F, 206], .rtcp), ([0x80, 192], .rtcp), ([0x80, 223], .rtcp),
            ([0x80, 224], .rtp), ([0x80], .unknown),
            ([], .unknown), ([8], .unknown), ([100], .unknown), ([200, 0], .unknown), ([255, 0], .unknown),
        ]
        for (bytes, kind) in cases {
            XCTAssertEqual(bytes.withUnsafeBytes { MediaDemultiplexer.classify($0) }, kind, "\(bytes)")
        }
    }

    func testSequenceUnwrapper() {
        var u = RTPSequenceUnwrapper()
        XCTAssertEqual(u.unwrap(65534), 65534)
        XCTAssertEqual(u.unwrap(65535), 65535)
        XCTAssertEqual(u.unwrap(0), 65536)
        XCTAssertEqual(u.unwrap(65533), 65533, "late packet from before the wrap")
        XCTAssertEqual(u.unwrap(2), 65538)
    }
}
