import ParleyCore
import XCTest
import Glibc
@testable import ParleyIO

final class SocketAddressTests: XCTestCase {
    func testParsesIPv4AndIPv6() throws {
        let a = try XCTUnwrap(SocketAddress("127.0.0.1:7710"))
        XCTAssertEqual(a.family, .ipv4)
        XCTAssertEqual(a.port, 7710)
        XCTAssertEqual(a.description, "127.0.0.1:7710")
        XCTAssertEqual(a.addressBytes, [127, 0, 0, 1])
        let b = try XCTUnwrap(SocketAddress("[::1]:3478"))
        XCTAssertEqual(b.family, .ipv6)
        XCTAssertEqual(b.description, "[::1]:3478")
        XCTAssertEqual(b.addressBytes, [UInt8](repeating: 0, count: 15) + [1])
        XCTAssertEqual(SocketAddress("[2001:db8::42]:65535")?.description, "[2001:db8::42]:65535")
        XCTAssertEqual(SocketAddress("localhost:80"), SocketAddress.ipv4Loopback(port: 80))
        XCTAssertEqual(SocketAddress("0.0.0.0:0"), .ipv4Any(port: 0))
    }

    func testLoopbackAddresses() {
        for a in ["127.0.0.1:1", "127.255.0.9:1", "[::1]:1", "[::ffff:127.0.0.1]:1"] {
            XCTAssertTrue(SocketAddress(a)!.isLoopback, a)
        }
        for a in ["192.0.2.2:1", "0.0.0.0:1", "[::]:1", "[fd00::2]:1", "[::ffff:192.0.2.2]:1", "[::2]:1"] {
            XCTAssertFalse(SocketAddress(a)!.isLoopback, a)
        }
    }

    func testRejectsMalformed() {
        for text in ["", "1.2.3.4", "1.2.3.4:", "1.2.3.4:65536", "1.2.3.4:-1", "1.2.3.4:+80", "::1:80",
                     "[::1]", "[::1]80", "[1.2.3.4]:80", "300.1.1.1:80", "host.example:80", "[::1:80",
                     "1.2.3.4:8o", "1.2.3.4:000080"] {
            XCTAssertNil(SocketAddress(text), text)
        }
    }

    func testRoundTripsThroughSockaddr() throws {
        for text in ["10.1.2.3:5004", "[fe80::1234:5678]:9", "[::]:0", "255.255.255.255:65535"] {
            let a = try XCTUnwrap(SocketAddress(text))
            let back = a.withSockAddr { sa, len in SocketAddress(UnsafeRawPointer(sa), length: Int(len)) }
            XCTAssertEqual(back, a)
            XCTAssertEqual(back?.description, text)
        }
    }

    func testHashableAndDistinct() {
        let a = SocketAddress("127.0.0.1:1000")!, b = SocketAddress("127.0.0.1:1001")!
        let c = SocketAddress("127.0.0.2:1000")!, d = SocketAddress("[::ffff:127.0.0.1]:1000")!
        let set: Set = [a, b, c, d, SocketAddress("127.0.0.1:1000")!]
        XCTAssertEqual(set.count, 4)
        var dict: [SocketAddress: Int] = [:]
        dict[a] = 1; dict[b] = 2
        XCTAssertEqual(dict[SocketAddress("127.0.0.1:1001")!], 2)
        XCTAssertEqual(a.withPort(1001), b)
        XCTAssertEqual(MemoryLayout<SocketAddress>.size <= 40, true)
    }

    /// The send batch groups datagrams by this key: equal addresses give
    /// equal keys; IPv4 keys are exact, so distinct v4 addresses never share one.
    func testGroupingKey() {
        let v4 = ["127.0.0.1:1000", "127.0.0.1:1001", "127.0.0.2:1000", "10.0.0.1:1000", "0.0.0.0:0"].map { SocketAddress($0)! }
        XCTAssertEqual(Set(v4.map(\.groupingKey)).count, v4.count)
        let v6 = ["[::1]:1000", "[::1]:1001", "[::2]:1000", "[::ffff:127.0.0.1]:1000", "[fe80::1]:1000"].map { SocketAddress($0)! }
        XCTAssertEqual(Set((v4 + v6).map(\.groupingKey)).count, v4.count + v6.count)
        for a in v4 + v6 { XCTAssertEqual(a.groupingKey, SocketAddress(a.description)!.groupingKey, a.description) }
    }
}
