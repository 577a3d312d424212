import XCTest
@testable import ParleyRTP

final class RTCPFullIntraRequestTests: XCTestCase {
    func testFIRWireFormat() throws {
        let fir = RTCPFullIntraRequest(senderSSRC: 0x0A, entries: [RTCPFIREntry(ssrc: 0x0B, sequenceNumber: 3)])
        XCTAssertEqual(try fir.encoded(), hex("84 ce 00 04 00 00 00 0a 00 00 00 00 00 00 00 0b 03 00 00 00"))
    }
}
