import XCTest
@testable import ParleyRTP

final class RTCPUnknownPacketTests: XCTestCase {
    func testUnknownPacketRoundTrip() throws {
        let packets: [RTCPPacket] = [
            .unknown(RTCPUnknownPacket(packetType: 207, count: 3, body: [0, 0, 0, 1])),
            // AFB (FMT 15) that is not REMB stays unknown.
            .unknown(RTCPUnknownPacket(packetType: 206, count: 15, body: [0, 0, 0, 1, 0, 0, 0, 0, 0x41, 0x42, 0x43, 0x44])),
        ]
        let bytes = try RTCPPacket.encodeCompound(packets)
        XCTAssertEqual(try parseCompound(bytes), packets)
    }
}
