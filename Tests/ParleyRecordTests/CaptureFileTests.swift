import Foundation
import ParleyTestSupport
import XCTest
@testable import ParleyRecord

/// The pcapng capture file: what is written reads back, a torn last block
/// is recognised at every cut, and tshark agrees with the format.
final class CaptureFileTests: XCTestCase {
    let packets: [CapturedPacket] = [
        CapturedPacket(arrivalNanos: 1_700_000_000_123_456_789, isRTCP: false,
                       bytes: Sender(ssrc: 7, payloadType: 111, clockRate: 48_000).rtp(0, 0, marker: true, [0xF8, 0xFF, 0xFE])),
        CapturedPacket(arrivalNanos: 1_700_000_000_143_456_789, isRTCP: true,
                       bytes: Sender(ssrc: 7, payloadType: 111, clockRate: 48_000).senderReport(at: 0, startNanos: 1_700_000_000_000_000_000)),
        CapturedPacket(arrivalNanos: 1_700_000_000_163_456_789, isRTCP: false,
                       bytes: Sender(ssrc: 7, payloadType: 111, clockRate: 48_000).rtp(1, 960, marker: false, [0xF8, 1, 2, 3, 4])),
    ]

    func file(_ packets: [CapturedPacket]) -> [UInt8] {
        var b = CaptureFile.header
        for p in packets { p.bytes.withUnsafeBytes { CaptureFile.appendPacket($0, rtcp: p.isRTCP, arrivalNanos: p.arrivalNanos, to: &b) } }
        return b
    }

    func testWhatIsWrittenReadsBack() throws {
        let b = file(packets)
        XCTAssertEqual(b.count, CaptureFile.header.count + packets.map { CaptureFile.blockSize(packetBytes: $0.bytes.count) }.reduce(0, +))
        let c = try CaptureReader.parse(b)
        XCTAssertEqual(c.packets, packets)
        XCTAssertEqual(c.tornBytes, 0)
    }

    func testATornLastBlockIsSkippedAtEveryCut() throws {
        let whole = file(packets)
        let lastStart = file(Array(packets.dropLast())).count
        for cut in lastStart..<whole.count {
            let c = try CaptureReader.parse(Array(whole[0..<cut]))
            XCTAssertEqual(c.packets, Array(packets.dropLast()), "cut at \(cut)")
            XCTAssertEqual(c.tornBytes, cut - lastStart, "cut at \(cut)")
        }
        // A cut inside the file header: no packets, nothing to complain about.
        for cut in 0..<CaptureFile.header.count {
            let c = try CaptureReader.parse(Array(whole[0..<cut]))
            XCTAssertEqual(c.packets, [])
            XCTAssertEqual(c.tornBytes, cut)
        }
    }

    func testALastBlockWhoseTrailingLengthDisagreesIsTorn() throws {
        var b = file(packets)
        b[b.count - 4] ^= 0x04  // what a crash between the data and the trailing length can leave
        let c = try CaptureReader.parse(b)
        XCTAssertEqual(c.packets.count, 2)
        XCTAssertEqual(c.tornBytes, CaptureFile.blockSize(packetBytes: packets[2].bytes.count))
    }

    func testAFileThatIsNotACaptureIsRefused() {
        XCTAssertThrowsError(try CaptureReader.parse(Array("{\"not\": \"pcapng\"}".utf8) + [UInt8](repeating: 0, count: 64))) {
            guard case RecordError.badRecording = $0 else { return XCTFail("\($0)") }
        }
        // Streamed too, and refusing frees once (it freed its buffer twice: a double free that killed the export thread).
        let path = NSTemporaryDirectory() + "not-a-capture-\(getpid()).pcapng"
        defer { unlink(path) }
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(repeating: 0, count: 64)))
        for _ in 0..<3 {
            XCTAssertThrowsError(try CaptureStream(path: path)) {
                guard case RecordError.badRecording = $0 else { return XCTFail("\($0)") }
            }
        }
    }

    func testTsharkDissectsTheFileWithArrivalTimesInNanoseconds() throws {
        let path = tempDir("capture") + "/track.pcapng"
        defer { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
        try Data(file(packets)).write(to: URL(fileURLWithPath: path))
        let text = try tshark(path: path, ["-d", "udp.port==5004,rtp", "-d", "udp.port==5005,rtcp", "-V"])
        assertCleanDissection(text)
        XCTAssertTrue(text.contains("Encapsulation type: Raw IP"), text)
        XCTAssertTrue(text.contains("Payload type: DynamicRTP-Type-111 (111)"), text)
        XCTAssertTrue(text.contains("Sender SSRC: 0x00000007"), text)
        XCTAssertTrue(text.contains("Epoch Time: 1700000000.123456789 seconds"), text)
    }
}
