import XCTest
@testable import ParleyRTP

final class RTCPGenericNACKTests: XCTestCase {
    func testRFC4585GenericNACKExpansion() throws {
        // PID 100, BLP 0b1000_0000_0000_0101 → 100, 101, 103, 116.
        let bytes = hex("81 cd 00 03 00 00 00 01 00 00 00 02 00 64 80 05")
        let packets = try parseCompound(bytes)
        guard case let .genericNACK(nack) = packets.first else { return XCTFail("not a NACK: \(packets)") }
        XCTAssertEqual(nack.senderSSRC, 1)
        XCTAssertEqual(nack.mediaSSRC, 2)
        XCTAssertEqual(nack.lostSequenceNumbers, [100, 101, 103, 116])
        var viaView: [UInt16] = []
        try bytes.withUnsafeBytes { b in
            for v in try RTCPCompoundView(parsing: b) { RTCPGenericNACK.forEachLost(in: v) { viaView.append($0) } }
        }
        XCTAssertEqual(viaView, [100, 101, 103, 116])
        XCTAssertEqual(try nack.encoded(), bytes)
    }

    func testGenericNACKPacksLostSequencesAcrossWrap() throws {
        let lost: [UInt16] = [65534, 65535, 0, 14, 15, 40]
        let nack = RTCPGenericNACK(senderSSRC: 1, mediaSSRC: 2, lost: lost)
        // 65534 covers up to 65534+16 = 14; 15 starts a new pair, 40 another.
        XCTAssertEqual(nack.pairs, [RTCPNACKPair(packetID: 65534, bitmaskOfLostPackets: 0b1000_0000_0000_0011),
                                    RTCPNACKPair(packetID: 15, bitmaskOfLostPackets: 0),
                                    RTCPNACKPair(packetID: 40, bitmaskOfLostPackets: 0)])
        XCTAssertEqual(nack.lostSequenceNumbers, lost)
        XCTAssertEqual(try parseCompound(try nack.encoded()), [.genericNACK(nack)])
    }
}
