import ParleyCore
import XCTest

final class SecureRandomTests: XCTestCase {
    func testEveryLengthIsFilledFromEveryByteOfADraw() {
        for n in [0, 1, 4, 7, 8, 9, 16, 33] { XCTAssertEqual(SecureRandom.bytes(n).count, n) }
        // Each of the 8 bytes taken from one draw varies: 300 draws give each position many values
        // (a position stuck at one value, e.g. a shift gone wrong, has 1).
        let draws = (0..<300).map { _ in SecureRandom.bytes(8) }
        for i in 0..<8 { XCTAssertGreaterThan(Set(draws.map { $0[i] }).count, 100, "byte \(i)") }
        let tails = (0..<300).map { _ in SecureRandom.bytes(11)[10] }
        XCTAssertGreaterThan(Set(tails).count, 100, "the second draw's bytes")
    }
}
