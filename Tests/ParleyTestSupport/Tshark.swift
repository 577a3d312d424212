import Foundation
import XCTest

// Test helpers shared by the test targets (ParleyRTPTests, ParleySTUNTests):
// a pcap writer and a tshark runner, so a real dissector judges our packets.

/// A pcap file (LINKTYPE_RAW: each record is an IPv4 packet) of UDP
/// datagrams, written byte by byte so a real dissector can judge our output.
public struct UDPPcap {
    public private(set) var bytes: [UInt8] = []
    private var sequence: UInt32 = 0

    public init() {
        // Global header, little-endian: magic, v2.4, zone, sigfigs, snaplen, LINKTYPE_RAW (101).
        le32(0xA1B2_C3D4); le16(2); le16(4); le32(0); le32(0); le32(65535); le32(101)
    }

    private mutating func le16(_ v: UInt16) { bytes += [UInt8(v & 0xFF), UInt8(v >> 8)] }
    private mutating func le32(_ v: UInt32) { for i in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * i))) } }

    /// Appends one IPv4/UDP datagram from 127.0.0.1:`from` to 127.0.0.2:`to`.
    public mutating func append(_ payload: [UInt8], from: UInt16, to: UInt16) {
        let udpLength = 8 + payload.count
        let total = 20 + udpLength
        var ip: [UInt8] = [0x45, 0, UInt8(total >> 8), UInt8(total & 0xFF), 0, 0, 0x40, 0, 64, 17, 0, 0,
                           127, 0, 0, 1, 127, 0, 0, 2]
        var sum: UInt32 = 0
        for i in stride(from: 0, to: 20, by: 2) { sum += UInt32(ip[i]) << 8 | UInt32(ip[i + 1]) }
        while sum > 0xFFFF { sum = (sum & 0xFFFF) + (sum >> 16) }
        let checksum = ~UInt16(sum)
        ip[10] = UInt8(checksum >> 8)
        ip[11] = UInt8(checksum & 0xFF)
        // UDP checksum 0 = not computed (allowed over IPv4, RFC 768).
        let udp: [UInt8] = [UInt8(from >> 8), UInt8(from & 0xFF), UInt8(to >> 8), UInt8(to & 0xFF),
                            UInt8(udpLength >> 8), UInt8(udpLength & 0xFF), 0, 0]
        sequence += 1
        le32(1_700_000_000 + sequence); le32(0); le32(UInt32(total)); le32(UInt32(total))
        bytes += ip + udp + payload
    }
}

/// Runs tshark on `pcap` with `arguments`; fails the test (never skips) when tshark is missing.
public func tshark(_ pcap: UDPPcap, _ arguments: [String], file: StaticString = #filePath, line: UInt = #line) throws -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("parley-tshark-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let url = dir.appendingPathComponent("capture.pcap")
    try Data(pcap.bytes).write(to: url)
    return try tshark(path: url.path, arguments, file: file, line: line)
}

/// Runs tshark on the capture file at `path` (pcap or pcapng) with `arguments`.
public func tshark(path: String, _ arguments: [String], file: StaticString = #filePath, line: UInt = #line) throws -> String {
    let found = ["/usr/bin/tshark", "/usr/local/bin/tshark"].first { FileManager.default.isExecutableFile(atPath: $0) }
    guard let tsharkPath = found else {
        XCTFail("tshark is not installed: run tools/setup (it installs the tshark package)", file: file, line: line)
        throw CocoaError(.fileNoSuchFile)
    }
    let home = FileManager.default.temporaryDirectory.appendingPathComponent("parley-tshark-home-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
    try FileManager.default.createDirectory(at: home, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: home) }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: tsharkPath)
    p.arguments = ["-r", path] + arguments
    var env = ProcessInfo.processInfo.environment
    env["HOME"] = home.path  // keep tshark from reading or writing a user profile
    p.environment = env
    let out = Pipe()
    p.standardOutput = out
    p.standardError = out
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    let text = String(decoding: data, as: UTF8.self)
    // For debugging a dissection mismatch: PARLEY_TSHARK_DUMP=/path keeps tshark's output.
    if let dump = ProcessInfo.processInfo.environment["PARLEY_TSHARK_DUMP"] { try? text.write(toFile: dump, atomically: true, encoding: .utf8) }
    XCTAssertEqual(p.terminationStatus, 0, "tshark failed:\n\(text)", file: file, line: line)
    return text
}

/// Asserts tshark's verbose output has no malformed packets and no expert
/// warnings or errors, ignoring lines that mention one of `allowing`.
public func assertCleanDissection(_ text: String, allowing: [String] = [], file: StaticString = #filePath, line: UInt = #line) {
    let text = text.split(separator: "\n").filter { l in !allowing.contains { l.contains($0) } }.joined(separator: "\n")
    for bad in ["Malformed", "Expert Info (Warning", "Expert Info (Error", "[Expert Info (Warning", "Exception"] {
        XCTAssertFalse(text.contains(bad), "tshark reports \(bad):\n\(text)", file: file, line: line)
    }
}
