import XCTest
@testable import ParleyRTP

final class RTCPReceiverEstimatedMaximumBitrateTests: XCTestCase {
    func testREMBWireFormat() throws {
        // 1 Mbit/s = 250000 × 2^2: exponent 2, mantissa 0x3D090.
        let remb = RTCPReceiverEstimatedMaximumBitrate(senderSSRC: 0x0A, bitrate: 1_000_000, ssrcs: [0x0B])
        XCTAssertEqual(remb.exponent, 2)
        XCTAssertEqual(remb.mantissa, 250_000)
        XCTAssertEqual(remb.bitrate, 1_000_000)
        let rembBytes = try remb.encoded()
        XCTAssertEqual(rembBytes, hex("8f ce 00 05 00 00 00 0a 00 00 00 00 52 45 4d 42 01 0b d0 90 00 00 00 0b"))
    }

    func testREMBBitrateRoundsDownAndSaturates() {
        let r = RTCPReceiverEstimatedMaximumBitrate(senderSSRC: 1, bitrate: 1_000_001, ssrcs: [])
        XCTAssertEqual(r.bitrate, 1_000_000, "rounded down to the representable value")
        let huge = RTCPReceiverEstimatedMaximumBitrate(senderSSRC: 1, exponent: 63, mantissa: 0x3FFFF, ssrcs: [])
        XCTAssertEqual(huge.bitrate, .max)
    }
}
