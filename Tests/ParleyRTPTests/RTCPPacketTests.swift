import XCTest
@testable import ParleyRTP

final class RTCPPacketTests: XCTestCase {
    func testMalformedRTCPIsATypedError() {
        let cases: [(String, [UInt8], RTPError)] = [
            ("empty", [], .truncated(need: 4, have: 0)),
            ("version 1", hex("41 c9 00 01 00 00 00 01"), .badVersion(1)),
            ("length past end", hex("80 c9 00 02 00 00 00 01"), .badRTCPLength(offset: 0, words: 2)),
            ("second header truncated", hex("80 c9 00 01 00 00 00 01 80 c9"), .truncated(need: 12, have: 10)),
            ("RR count beyond body", hex("81 c9 00 01 00 00 00 01"), .badRTCPBody(type: 201, reason: "shorter than its report count")),
            ("SR shorter than sender info", hex("80 c8 00 01 00 00 00 01"), .badRTCPBody(type: 200, reason: "shorter than its report count")),
            ("padding past the packet's body", hex("a0 c9 00 02 00 00 00 07 00 00 00 09"), .badPadding(count: 9, available: 8)),
            ("padding zero", hex("a0 c9 00 01 00 00 00 00"), .badPadding(count: 0, available: 4)),
            ("padding beyond packet", hex("a0 c9 00 01 00 00 00 08"), .badPadding(count: 8, available: 4)),
            ("SDES item list unterminated", hex("81 ca 00 02 00 00 00 01 01 02 61 62"),
             .badRTCPBody(type: 202, reason: "item list not terminated")),
            ("SDES item past end", hex("81 ca 00 02 00 00 00 01 01 09 61 62"), .badRTCPBody(type: 202, reason: "item past end")),
            ("BYE count beyond body", hex("82 cb 00 01 00 00 00 01"), .badRTCPBody(type: 203, reason: "shorter than its source count")),
            ("BYE reason past end", hex("81 cb 00 02 00 00 00 01 09 61 62 63"), .badRTCPBody(type: 203, reason: "reason past end")),
            ("APP without name", hex("80 cc 00 01 00 00 00 01"), .badRTCPBody(type: 204, reason: "shorter than SSRC and name")),
            ("NACK without FCI", hex("81 cd 00 02 00 00 00 01 00 00 00 02"), .badRTCPBody(type: 205, reason: "NACK without an FCI entry")),
            ("PLI without media SSRC", hex("81 ce 00 01 00 00 00 01"), .badRTCPBody(type: 206, reason: "PLI shorter than two SSRCs")),
            ("FIR without FCI", hex("84 ce 00 02 00 00 00 01 00 00 00 00"), .badRTCPBody(type: 206, reason: "FIR without an FCI entry")),
            ("REMB SSRC list past end", hex("8f ce 00 04 00 00 00 0a 00 00 00 00 52 45 4d 42 02 0b d0 90"),
             .badRTCPBody(type: 206, reason: "REMB SSRC list past end")),
        ]
        for (name, bytes, expected) in cases {
            XCTAssertThrowsError(try parseCompound(bytes), name) { error in
                XCTAssertEqual(error as? RTPError, expected, name)
            }
        }
    }

    func testWrongTypeForTypedParser() throws {
        let pli = hex("81 ce 00 02 00 00 00 0a 00 00 00 0b")
        try pli.withUnsafeBytes { b in
            XCTAssertThrowsError(try RTCPSenderReport(parsing: b)) {
                XCTAssertEqual($0 as? RTPError, .unexpectedPacketType(type: 206, format: 1))
            }
            XCTAssertThrowsError(try RTCPFullIntraRequest(parsing: b))
        }
    }
}
