import XCTest
@testable import ParleyRTP

final class RTCPPictureLossIndicationTests: XCTestCase {
    func testPLIWireFormat() throws {
        let pli = RTCPPictureLossIndication(senderSSRC: 0x0A, mediaSSRC: 0x0B)
        XCTAssertEqual(try pli.encoded(), hex("81 ce 00 02 00 00 00 0a 00 00 00 0b"))
    }
}
