import XCTest
import Foundation
import ParleyCore
import ParleyIO
import ParleyRTP
@testable import ParleyRelay

/// Peers nobody here wrote: coturn's turnutils_stunclient against our STUN
/// ports, and tshark dissecting a capture of relay traffic.
final class RelayInteropTests: XCTestCase {
    /// Runs a program to completion; returns (status, stdout) (stderr too with `mergeStderr`).
    private func run(_ path: String, _ args: [String], timeout: Double = 30, mergeStderr: Bool = false) throws -> (Int32, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        let out = Pipe()
        p.standardOutput = out
        p.standardError = mergeStderr ? out : FileHandle.nullDevice
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(10_000) }
        if p.isRunning { p.terminate(); XCTFail("\(path) hung") }
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    private func require(_ tool: String) throws -> String {
        for dir in ["/usr/bin", "/usr/local/bin"] where FileManager.default.isExecutableFile(atPath: "\(dir)/\(tool)") {
            return "\(dir)/\(tool)"
        }
        throw XCTSkip("\(tool) not installed (tools/setup installs it)")
    }

    /// The reflexive address lines turnutils_stunclient prints, e.g. "UDP reflexive addr: 127.0.0.1:40000".
    private func reflexive(_ output: String) -> [String] {
        output.split(separator: "\n").filter { $0.contains("reflexive addr") }.compactMap { line in
            line.split(separator: " ").last.map(String.init)
        }
    }

    func testTurnutilsStunclientGetsTheRightReflexiveAddress() throws {
        let tool = try require("turnutils_stunclient")
        let group = try EventLoopGroup(numberOfThreads: 1)
        defer { group.syncShutdownGracefully() }
        let metrics = MetricsRegistry()
        let service = try STUNService.start(on: group.loops[0], bindTo: .ipv4Loopback(port: 0), metrics: metrics)
        defer { try? group.loops[0].submit { service.close() } }
        let sources = SourceLog()
        try group.loops[0].submit { service.observer = { sources.add($0.description) } }
        let (status, output) = try run(tool, ["-p", String(service.localAddress.port), "-L", "127.0.0.1", "127.0.0.1"], mergeStderr: true)
        XCTAssertEqual(status, 0, output)
        let addrs = reflexive(output)
        XCTAssertFalse(addrs.isEmpty, output)
        // What the client reports is exactly the source address the service saw.
        XCTAssertEqual(Set(addrs), Set(sources.all), output)
        for a in addrs { XCTAssertEqual(SocketAddress(a)?.ipString, "127.0.0.1", output) }
        XCTAssertGreaterThan(metrics.counter("parley_stun_bindings_total", help: "", labels: [("result", "success")]).current, 0)

        // The media port answers a credential-less binding the same way.
        let f = try RelayFixture()
        let (status2, output2) = try run(tool, ["-p", String(f.mediaAddress.port), "-L", "127.0.0.1", "127.0.0.1"], mergeStderr: true)
        XCTAssertEqual(status2, 0, output2)
        XCTAssertFalse(reflexive(output2).isEmpty, output2)
        XCTAssertTrue(reflexive(output2).allSatisfy { $0.hasPrefix("127.0.0.1:") }, output2)
    }

    func testTsharkDissectsRelayTrafficWithoutMalformedPackets() throws {
        let tshark = try require("tshark")
        // Housekeeping only when the test asks, so the packet count is exact.
        let f = try RelayFixture { $0.housekeepingInterval = .seconds(3600) }
        let port = f.mediaAddress.port
        let pcap = NSTemporaryDirectory() + "parley-relay-\(getpid()).pcap"
        defer { unlink(pcap) }
        let expected = 25
        let cap = Process()
        cap.executableURL = URL(fileURLWithPath: tshark)
        cap.arguments = ["-i", "lo", "-f", "udp port \(port)", "-c", String(expected), "-w", pcap, "-q"]
        let err = Pipe()
        cap.standardError = err
        cap.standardOutput = FileHandle.nullDevice
        try cap.run()
        // tshark reports "Capture started." once dumpcap has the filter live.
        var banner = Data()
        while !String(decoding: banner, as: UTF8.self).contains("Capture started") {
            let chunk = err.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            banner += chunk
        }
        guard cap.isRunning else { throw XCTSkip("tshark cannot capture here: \(String(decoding: banner, as: UTF8.self))") }

        let (b, cb) = try f.join("r", [])                                  // 4: binding request, consent check, its answer, response
        let (a, ca) = try f.join("r", [.video()], receivedBy: [b])         // 4 (latching after B: no keyframe request)
        let ssrc = a.tracks[0].ssrc
        for seq in UInt16(1)...5 {                                          // 5 in + 5 forwarded
            ca.send(rtpPacket(ssrc: ssrc, seq: seq, timestamp: UInt32(seq) * 3000, payload: payload(ssrc: ssrc, seq: seq, size: 1000)), to: f.mediaAddress)
            XCTAssertNotNil(cb.receive(where: isRTP))
        }
        var sr = encoded(RTCPSenderReport(ssrc: ssrc, ntpTimestamp: 0xE000_0000_0000_0000, rtpTimestamp: 15000, packetCount: 5, octetCount: 5000))
        sr += encoded(RTCPSourceDescription(ssrc: ssrc, cname: "a@parley"))
        ca.send(sr, to: f.mediaAddress)                                     // 1 + 1 forwarded
        XCTAssertNotNil(cb.receive(where: isRTCP))
        cb.send(encoded(RTCPGenericNACK(senderSSRC: 0xB, mediaSSRC: ssrc, lost: [3])), to: f.mediaAddress) // 1 + 1 retransmission
        XCTAssertNotNil(cb.receive(where: isRTP))
        cb.send(encoded(RTCPPictureLossIndication(senderSSRC: 0xB, mediaSSRC: ssrc)), to: f.mediaAddress) // 1 + 1 PLI
        XCTAssertNotNil(ca.receive(where: isRTCP))
        let w = f.relay.workers[0]
        try w.loop.submit { w.runHousekeeping(checkTimeouts: false) }       // 1 RR to the publisher
        XCTAssertNotNil(ca.receive { isRTCP($0) && $0[1] == RTCP.PacketType.receiverReport })

        let deadline = Date().addingTimeInterval(30)
        while cap.isRunning && Date() < deadline { usleep(10_000) }
        if cap.isRunning { cap.terminate(); XCTFail("capture did not see \(expected) packets") }
        cap.waitUntilExit()

        let decode = ["-d", "udp.port==\(port),rtp", "-o", "rtp.heuristic_rtp:TRUE"]
        let (s1, summary) = try run(tshark, ["-r", pcap] + decode + ["-T", "fields", "-e", "_ws.col.Protocol", "-e", "_ws.col.Info"])
        XCTAssertEqual(s1, 0, summary)
        let lines = summary.split(separator: "\n")
        XCTAssertEqual(lines.count, expected, summary)
        XCTAssertEqual(lines.filter { $0.hasPrefix("STUN") }.count, 8, summary)
        XCTAssertEqual(lines.filter { $0.hasPrefix("RTP") }.count, 11, summary)
        XCTAssertEqual(lines.filter { $0.hasPrefix("RTCP") }.count, 6, summary)
        XCTAssertTrue(summary.contains("Binding Success Response"), summary)
        XCTAssertTrue(summary.contains("XOR-MAPPED-ADDRESS: 127.0.0.1:"), summary)
        let (s2, bad) = try run(tshark, ["-r", pcap] + decode + ["-Y", "_ws.malformed || _ws.expert.severity >= \"error\"", "-T", "fields", "-e", "frame.number", "-e", "_ws.col.Info"])
        XCTAssertEqual(s2, 0, bad)
        XCTAssertEqual(bad.trimmingCharacters(in: .whitespacesAndNewlines), "", "malformed or error frames:\n\(bad)")
        let (_, verbose) = try run(tshark, ["-r", pcap, "-V"] + decode)
        XCTAssertFalse(verbose.contains("Malformed"), verbose)
        XCTAssertTrue(verbose.contains("MESSAGE-INTEGRITY"), "the latching responses carry MESSAGE-INTEGRITY")
        XCTAssertTrue(verbose.contains("FINGERPRINT"))
    }
}

final class SourceLog: @unchecked Sendable {
    private let lock = NSLockLike()
    private var items: [String] = []
    func add(_ s: String) { lock.sync { items.append(s) } }
    var all: [String] { lock.sync { items } }
}
