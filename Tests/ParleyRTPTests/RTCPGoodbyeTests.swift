import XCTest
@testable import ParleyRTP

final class RTCPGoodbyeTests: XCTestCase {
    func testGoodbyeRoundTrip() throws {
        let packets: [RTCPPacket] = [
            .goodbye(RTCPGoodbye(sources: [1, 2], reason: Array("left the call".utf8))),
            .goodbye(RTCPGoodbye(sources: [3])),
        ]
        let bytes = try RTCPPacket.encodeCompound(packets)
        XCTAssertEqual(try parseCompound(bytes), packets)
    }
}
