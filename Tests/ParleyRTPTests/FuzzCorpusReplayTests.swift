import Foundation
import XCTest
import ParleyTestSupport
@testable import ParleyRTP

/// Replays the committed libFuzzer corpora (tools/fuzz/corpus/rtp, rtcp)
/// through the parsers with the same parse → build → parse property the
/// fuzz targets check, so CI covers the seeds and crash reproducers
/// without libFuzzer.
final class FuzzCorpusReplayTests: XCTestCase {
    static func corpus(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws -> [(String, [UInt8])] {
        let root = repositoryRoot
        let dir = root.appendingPathComponent("tools/fuzz/corpus/\(name)")
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
        XCTAssertFalse(names.isEmpty, "empty corpus \(dir.path)", file: file, line: line)
        return try names.map { ($0, Array(try Data(contentsOf: dir.appendingPathComponent($0)))) }
    }

    func testRTPCorpusRoundTrips() throws {
        var parsed = 0
        for (name, bytes) in try Self.corpus("rtp") {
            _ = bytes.withUnsafeBytes { MediaDemultiplexer.classify($0) }
            guard let packet = try? bytes.withUnsafeBytes({ try RTPPacket(parsing: $0) }) else { continue }
            parsed += 1
            let encoded = try packet.encoded()
            XCTAssertEqual(try encoded.withUnsafeBytes { try RTPPacket(parsing: $0) }, packet, name)
            try bytes.withUnsafeBytes { b in
                let v = try RTPPacketView(parsing: b)
                for e in v.extensions { XCTAssertLessThanOrEqual(e.data.count, 255, name) }
            }
        }
        XCTAssertGreaterThan(parsed, 0, "no corpus input parsed as RTP")
    }

    func testRTCPCorpusRoundTrips() throws {
        var parsed = 0
        for (name, bytes) in try Self.corpus("rtcp") {
            guard let packets = try? bytes.withUnsafeBytes({ try RTCPPacket.parseCompound($0) }) else { continue }
            parsed += 1
            let encoded = try RTCPPacket.encodeCompound(packets)
            XCTAssertEqual(try encoded.withUnsafeBytes { try RTCPPacket.parseCompound($0) }, packets, name)
            try bytes.withUnsafeBytes { b in
                for v in try RTCPCompoundView(parsing: b) { RTCPGenericNACK.forEachLost(in: v) { _ in } }
            }
        }
        XCTAssertGreaterThan(parsed, 0, "no corpus input parsed as RTCP")
    }
}
