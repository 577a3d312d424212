import XCTest
@testable import ParleyRTP

final class RTCPApplicationDefinedTests: XCTestCase {
    func testApplicationDefinedRoundTrip() throws {
        let packets: [RTCPPacket] = [
            .applicationDefined(RTCPApplicationDefined(subtype: 5, ssrc: 9, name: 0x5052_4C59, data: [1, 2, 3, 4])),
        ]
        let bytes = try RTCPPacket.encodeCompound(packets)
        XCTAssertEqual(try parseCompound(bytes), packets)
    }
}
