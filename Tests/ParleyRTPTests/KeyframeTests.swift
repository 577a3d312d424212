import XCTest
@testable import ParleyRTP

/// Keyframe starts as the relay's simulcast switch reads them (RFC 7741, RFC 9628, RFC 6184).
final class KeyframeTests: XCTestCase {
    private func starts(_ codec: String, _ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { Keyframe.starts(codecKey: codec, payload: $0) }
    }

    func testVP8() {
        XCTAssertTrue(starts("vp8", [0x10, 0x00]), "S=1, PID 0, P=0")
        XCTAssertFalse(starts("vp8", [0x10, 0x01]), "an inter frame")
        XCTAssertFalse(starts("vp8", [0x00, 0x00]), "not the start of a partition")
        XCTAssertFalse(starts("vp8", [0x11, 0x00]), "partition 1")
        // X with I (15-bit picture id), L and T: the payload header comes after 5 bytes.
        XCTAssertTrue(starts("vp8", [0x90, 0xE0, 0x80, 0x01, 0x07, 0x40, 0x00]))
        XCTAssertFalse(starts("vp8", [0x90, 0xE0, 0x80, 0x01, 0x07, 0x40, 0x01]))
        XCTAssertFalse(starts("vp8", [0x90, 0xE0]), "truncated")
    }

    func testVP9AndH264() {
        XCTAssertTrue(starts("vp9", [0x08]), "B=1, P=0")
        XCTAssertFalse(starts("vp9", [0x48]), "P=1")
        XCTAssertFalse(starts("vp9", [0x00]), "not the first packet of a frame")
        XCTAssertTrue(starts("h264/cb", [0x65, 0x88]), "IDR slice")
        XCTAssertFalse(starts("h264/cb", [0x41, 0x9A]), "non-IDR slice")
        XCTAssertTrue(starts("h264/64", [0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xCE]), "STAP-A with an SPS")
        XCTAssertTrue(starts("h264/cb", [0x7C, 0x85, 0x00]), "FU-A start of an IDR")
        XCTAssertFalse(starts("h264/cb", [0x7C, 0x45, 0x00]), "FU-A end of an IDR")
        XCTAssertFalse(starts("av1", [0x10, 0x00]), "AV1 is not read")
    }
}
