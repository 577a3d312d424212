import Foundation
import XCTest
@testable import ParleyRTP

/// A pcap file (LINKTYPE_RAW: each record is an IPv4 packet) of UDP
/// datagrams, written byte by byte so a real dissector can judge our output.
struct UDPPcap {
    private(set) var bytes: [UInt8] = []
    private var sequence: UInt32 = 0

    init() {
        // Global header, little-endian: magic, v2.4, zone, sigfigs, snaplen, LINKTYPE_RAW (101).
        le32(0xA1B2_C3D4); le16(2); le16(4); le32(0); le32(0); le32(65535); le32(101)
    }

    private mutating func le16(_ v: UInt16) { bytes += [UInt8(v & 0xFF), UInt8(v >> 8)] }
    private mutating func le32(_ v: UInt32) { for i in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * i))) } }

    /// Appends one IPv4/UDP datagram from 127.0.0.1:`from` to 127.0.0.2:`to`.
    mutating func append(_ payload: [UInt8], from: UInt16, to: UInt16) {
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
func tshark(_ pcap: UDPPcap, _ arguments: [String], file: StaticString = #filePath, line: UInt = #line) throws -> String {
    let path = ["/usr/bin/tshark", "/usr/local/bin/tshark"].first { FileManager.default.isExecutableFile(atPath: $0) }
    guard let tsharkPath = path else {
        XCTFail("tshark is not installed: run tools/setup (it installs the tshark package)", file: file, line: line)
        throw CocoaError(.fileNoSuchFile)
    }
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("parley-tshark-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let url = dir.appendingPathComponent("capture.pcap")
    try Data(pcap.bytes).write(to: url)
    let p = Process()
    p.executableURL = URL(fileURLWithPath: tsharkPath)
    p.arguments = ["-r", url.path] + arguments
    var env = ProcessInfo.processInfo.environment
    env["HOME"] = dir.path  // keep tshark from reading or writing a user profile
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
func assertCleanDissection(_ text: String, allowing: [String] = [], file: StaticString = #filePath, line: UInt = #line) {
    let text = text.split(separator: "\n").filter { l in !allowing.contains { l.contains($0) } }.joined(separator: "\n")
    for bad in ["Malformed", "Expert Info (Warning", "Expert Info (Error", "[Expert Info (Warning", "Exception"] {
        XCTAssertFalse(text.contains(bad), "tshark reports \(bad):\n\(text)", file: file, line: line)
    }
}

final class TsharkDissectionTests: XCTestCase {
    let rtpPort: UInt16 = 5004
    let rtcpPort: UInt16 = 5005

    func testTsharkDissectsOurRTPAndRTCP() throws {
        var pcap = UDPPcap()
        // RTP: Opus-like PT 111 with a one-byte header extension (audio level), then a plain VP8-like packet.
        let rtp1 = RTPPacket(header: RTPHeader(marker: true, payloadType: 111, sequenceNumber: 4242, timestamp: 960_000,
                                               ssrc: 0x1122_3344, extensionProfile: RTP.oneByteExtensionProfile,
                                               extensions: [RTPHeaderExtension(id: 1, data: [0x85])]),
                             payload: Array(repeating: 0xAB, count: 40))
        let rtp2 = RTPPacket(header: RTPHeader(payloadType: 96, sequenceNumber: 4243, timestamp: 963_000, ssrc: 0x5566_7788,
                                               csrcs: [0x0000_0001]),
                             payload: Array(repeating: 0xCD, count: 100), paddingSize: 4)
        pcap.append(try rtp1.encoded(), from: 40000, to: rtpPort)
        pcap.append(try rtp2.encoded(), from: 40000, to: rtpPort)

        var stats = RTPReceiveStatistics(clockRate: 48000, probation: 0)
        for s: UInt16 in [1, 2, 4] { stats.update(sequenceNumber: s, timestamp: UInt32(s) * 960, arrivalTime: UInt64(s) * 20_000_000) }
        let sr = RTCPSenderReport(ssrc: 0x1122_3344, ntpTimestamp: 0xE8F0_0000_8000_0000, rtpTimestamp: 960_000,
                                  packetCount: 100, octetCount: 16000, reports: [stats.makeReportBlock(ssrc: 0x5566_7788, now: 0)])
        let compounds: [[RTCPPacket]] = [
            [.senderReport(sr), .sourceDescription(RTCPSourceDescription(ssrc: 0x1122_3344, cname: "parley-cname"))],
            [.receiverReport(RTCPReceiverReport(ssrc: 0x99AA_BBCC, reports: [RTCPReportBlock(ssrc: 0x1122_3344, fractionLost: 25,
                                                                                               cumulativeLost: 3, extendedHighestSequence: 70000,
                                                                                               jitter: 17)]))],
            [.receiverReport(RTCPReceiverReport(ssrc: 0x99AA_BBCC)),
             .genericNACK(RTCPGenericNACK(senderSSRC: 0x99AA_BBCC, mediaSSRC: 0x1122_3344, lost: [100, 101, 103, 200]))],
            [.receiverReport(RTCPReceiverReport(ssrc: 0x99AA_BBCC)),
             .pictureLossIndication(RTCPPictureLossIndication(senderSSRC: 0x99AA_BBCC, mediaSSRC: 0x5566_7788))],
            [.receiverReport(RTCPReceiverReport(ssrc: 0x99AA_BBCC)),
             .fullIntraRequest(RTCPFullIntraRequest(senderSSRC: 0x99AA_BBCC, entries: [RTCPFIREntry(ssrc: 0x5566_7788, sequenceNumber: 9)]))],
            [.receiverReport(RTCPReceiverReport(ssrc: 0x99AA_BBCC)),
             .receiverEstimatedMaximumBitrate(RTCPReceiverEstimatedMaximumBitrate(senderSSRC: 0x99AA_BBCC, bitrate: 1_500_000,
                                                                                  ssrcs: [0x1122_3344, 0x5566_7788]))],
            [.receiverReport(RTCPReceiverReport(ssrc: 0x1122_3344)),
             .goodbye(RTCPGoodbye(sources: [0x1122_3344], reason: Array("call ended".utf8)))],
        ]
        for c in compounds { pcap.append(try RTCPPacket.encodeCompound(c), from: 40001, to: rtcpPort) }

        let text = try tshark(pcap, ["-o", "rtp.heuristic_rtp:TRUE", "-o", "rtcp.heuristic_rtcp:TRUE",
                                     "-d", "udp.port==\(rtpPort),rtp", "-d", "udp.port==\(rtcpPort),rtcp", "-V"])
        assertCleanDissection(text)
        let expected = [
            // RTP
            "Synchronization Source identifier: 0x11223344", "Sequence number: 4242", "Timestamp: 960000",
            "Payload type: DynamicRTP-Type-111 (111)", "Marker: True",
            "Synchronization Source identifier: 0x55667788", "Sequence number: 4243", "Padding: True",
            "Contributing source identifiers count: 1", "CSRC item 0: 0x1",
            "RFC 5285 Header Extension (One-Byte Header)", "Extension Data: 85",
            // RTCP
            "Packet type: Sender Report (200)", "Sender SSRC: 0x11223344", "Sender's packet count: 100",
            "Text: parley-cname",
            "Packet type: Receiver Report (201)", "Fraction lost: 25 / 256", "Cumulative number of packets lost: 3",
            "Extended highest sequence number received: 70000", "Interarrival jitter: 17",
            "Packet type: Generic RTP Feedback (205)", "RTCP Transport Feedback NACK PID: 100",
            "Packet type: Payload-specific Feedback (206)", "Picture Loss Indication",
            "Full Intra Request (FIR) Command (4)", "Command Sequence Number: 9",
            "REMB: max bitrate=1500000", "Maximum bit rate: 1500000", "SSRC: 0x55667788",
            "Packet type: Goodbye (203)", "call ended",
        ]
        for field in expected {
            XCTAssertTrue(text.contains(field), "tshark output lacks \"\(field)\"")
        }
        XCTAssertEqual(text.components(separatedBy: "Real-Time Transport Protocol\n").count - 1, 2, "two RTP packets")
    }
}
