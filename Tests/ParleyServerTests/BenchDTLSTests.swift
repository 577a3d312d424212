import XCTest
import Glibc
import Foundation
import ParleyCore
import ParleySRTP
import ParleyTestSupport

/// `parley bench srtp --mode dtls` (tools/bench/srtp-relay's dtls mode): each
/// participant keys itself and the relay by a real DTLS handshake, and the
/// keys it writes are the ones the relay uses: a packet protected with
/// participant 0's exported send key reaches participant 1, which decrypts
/// it with its exported receive key. No speed is measured here.
final class BenchDTLSTests: XCTestCase {
    func testDTLSKeyedBenchParticipantsForwardWithTheirExportedKeys() throws {
        let dir = tempDir("bench-dtls")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let base = Int.random(in: 30_000...50_000), media = Int.random(in: 50_100...60_000), ssrcBase = 4096
        let p = Process()
        p.executableURL = URL(fileURLWithPath: parleyBinary)
        p.arguments = ["bench", "srtp", "--mode", "dtls", "--participants", "3", "--publishers", "1",
                       "--listen", "127.0.0.1:\(media)", "--client-base", "\(base)", "--ssrc-base", "\(ssrcBase)",
                       "--keys-out", dir + "/keys"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        defer { if p.isRunning { p.terminate() }; p.waitUntilExit() }
        var text = ""
        while !text.contains("\n") {
            let chunk = out.fileHandleForReading.availableData
            if chunk.isEmpty { break } // EOF: it failed
            text += String(decoding: chunk, as: UTF8.self)
        }
        XCTAssertTrue(text.hasPrefix("ready 127.0.0.1:\(media) mode=dtls"), text)

        let lines = try String(contentsOfFile: dir + "/keys", encoding: .utf8).split(separator: "\n").map { $0.split(separator: " ") }
        XCTAssertEqual(lines.count, 3)
        func key(_ i: Int, _ column: Int) throws -> SRTPKeyMaterial {
            let hex = Array(lines[i][column].utf8)
            let bytes = stride(from: 0, to: hex.count, by: 2).map { UInt8(String(decoding: hex[$0..<$0 + 2], as: UTF8.self), radix: 16)! }
            return try SRTPKeyMaterial(suite: .default, keyAndSalt: bytes)
        }
        let send = try SRTPContext(material: key(0, 1), direction: .outbound)
        let receive = try SRTPContext(material: key(1, 2), direction: .inbound)

        func udp(_ port: Int) throws -> Int32 {
            let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
            var one: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(4))
            XCTAssertEqual(SocketAddress("127.0.0.1:\(port)")!.withSockAddr { Glibc.bind(fd, $0, $1) }, 0, "bind \(port)")
            return fd
        }
        let publisher = try udp(base), subscriber = try udp(base + 1)
        defer { close(publisher); close(subscriber) }
        let relay = SocketAddress("127.0.0.1:\(media)")!
        var rtp: [UInt8] = [0x80, 111, 0, 1, 0, 0, 0, 1]
        for v in [UInt32(ssrcBase)] { rtp += [UInt8(v >> 24), UInt8(v >> 16 & 0xff), UInt8(v >> 8 & 0xff), UInt8(v & 0xff)] }
        rtp += Array(repeating: 0x5A, count: 160)
        let protected = try send.protect(rtp)
        _ = protected.withUnsafeBytes { b in relay.withSockAddr { sendto(publisher, b.baseAddress, b.count, 0, $0, $1) } }
        var got: [UInt8]?
        while let d = receiveDatagram(subscriber, timeout: 10) {
            guard d.count >= 12, d[0] >> 6 == 2, !(192...223).contains(d[1]) else { continue } // STUN, RTCP
            got = try receive.unprotect(d)
            break
        }
        XCTAssertEqual(got, rtp, "the relay forwards with the keys the DTLS handshakes exported")
    }
}
