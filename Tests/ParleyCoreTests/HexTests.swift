import XCTest
import ParleyCore

/// `Hex`: the one hex encoder (upload ids, delivery ids, signatures, certificate fingerprints) and its decoder.
final class HexTests: XCTestCase {
    func testEncodeAndDecode() {
        let bytes: [UInt8] = [0x00, 0x0f, 0xa5, 0xff]
        XCTAssertEqual(Hex.encode(bytes), "000fa5ff")
        XCTAssertEqual(Hex.encode(bytes, uppercase: true, separator: UInt8(ascii: ":")), "00:0F:A5:FF")
        XCTAssertEqual(Hex.encode([UInt8]()), "")
        XCTAssertEqual(Hex.encode([0xab], separator: UInt8(ascii: ":")), "ab")
        XCTAssertEqual(Hex.decode(Array(Hex.encode(bytes).utf8)), bytes)
        XCTAssertEqual(Hex.decode(Array("000FA5FF".utf8)), bytes)
        XCTAssertNil(Hex.decode(Array("0g".utf8)))
    }
}
