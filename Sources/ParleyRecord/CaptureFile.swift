import Glibc
import ParleyCore

// The per-track capture file is pcapng (draft-ietf-opsawg-pcapng): a
// Section Header Block, one Interface Description Block (LINKTYPE_RAW,
// nanosecond timestamps), then one Enhanced Packet Block per packet, each an
// IPv4/UDP datagram with synthetic addresses (RTP on port 5004, RTCP on 5005)
// around the decrypted RTP or RTCP packet.
//
// Why pcapng rather than rtpdump: Wireshark/tshark read it natively, its
// timestamps carry the absolute arrival time in nanoseconds (rtpdump keeps
// milliseconds since the file start), and every block repeats its length at
// both ends, so a torn last block after a crash is recognised without
// guessing.
//
//  0                   1                   2                   3
//  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
// +---------------------------------------------------------------+
// |                    Block Type = 0x00000006                    |
// |                      Block Total Length                       |
// |                         Interface ID                          |
// |                   Timestamp (upper 32 bits)                   |
// |                   Timestamp (lower 32 bits)                   |
// |                    Captured Packet Length                     |
// |                    Original Packet Length                     |
// /                Packet Data (padded to 32 bits)                /
// |                      Block Total Length                       |
// +---------------------------------------------------------------+

/// Builds the bytes of a capture file (little-endian pcapng).
public enum CaptureFile {
    static let sectionHeaderType: UInt32 = 0x0A0D_0D0A
    static let interfaceType: UInt32 = 1
    static let enhancedPacketType: UInt32 = 6
    static let byteOrderMagic: UInt32 = 0x1A2B_3C4D
    static let linkTypeRaw: UInt16 = 101
    static let tsresolOption: UInt16 = 9
    /// UDP ports of the synthetic headers: RTP on one, RTCP on the next (RFC 3550 §11).
    public static let rtpPort: UInt16 = 5004
    public static let rtcpPort: UInt16 = 5005
    static let epbFixedSize = 32
    static let ipUDPHeaderSize = 28
    /// The largest packet a capture file takes (a UDP datagram over IPv4).
    public static let maxPacketSize = 65_507

    /// Section header and interface description: what a new file starts with.
    public static var header: [UInt8] {
        var b: [UInt8] = []
        // SHB: type, length 28, byte-order magic, version 1.0, section length unknown (-1), length.
        put32(&b, sectionHeaderType); put32(&b, 28); put32(&b, byteOrderMagic); put16(&b, 1); put16(&b, 0)
        put32(&b, 0xFFFF_FFFF); put32(&b, 0xFFFF_FFFF); put32(&b, 28)
        // IDB: type, length 32, LINKTYPE_RAW, reserved, snaplen 0 (none), if_tsresol = 9 (ns), end of options, length.
        put32(&b, interfaceType); put32(&b, 32); put16(&b, linkTypeRaw); put16(&b, 0); put32(&b, 0)
        put16(&b, tsresolOption); put16(&b, 1); b += [9, 0, 0, 0]; put32(&b, 0); put32(&b, 32)
        return b
    }

    /// The size of the block `appendPacket` writes for a packet of `count` bytes.
    public static func blockSize(packetBytes count: Int) -> Int { epbFixedSize + padded4(ipUDPHeaderSize + count) }

    /// Appends one Enhanced Packet Block carrying `packet` as RTP or RTCP.
    /// Grows `b` once and stores every field in place (no allocation once
    /// `b` has the capacity: the recorder keeps its buffers between passes).
    public static func appendPacket(_ packet: UnsafeRawBufferPointer, rtcp: Bool, arrivalNanos: Int64, to b: inout [UInt8]) {
        let total = blockSize(packetBytes: packet.count)
        let start = b.count
        b.append(contentsOf: repeatElement(0, count: total))  // zeroed: the padding stays 0
        b.withUnsafeMutableBytes { raw in
            writeBlock(packet, rtcp: rtcp, arrivalNanos: arrivalNanos, total: total, at: raw.baseAddress! + start)
        }
    }

    /// The sum of the IPv4 header's 16-bit words other than the total
    /// length and the checksum (RFC 1071): the checksum of a header is
    /// this plus its length, folded and inverted.
    static let ipConstantSum: UInt32 = {
        let words: [UInt32] = [0x4500, 0x0000, 0x4000, 0x4011, 0x7F00, 0x0001, 0x7F00, 0x0002]
        return words.reduce(0, +)
    }()

    /// Writes the block of `packet` (`total` bytes, the padding already zero) at `p`.
    @inline(__always)
    static func writeBlock(_ packet: UnsafeRawBufferPointer, rtcp: Bool, arrivalNanos: Int64, total: Int, at p: UnsafeMutableRawPointer) {
        func le32(_ v: UInt32, _ o: Int) { p.storeBytes(of: v.littleEndian, toByteOffset: o, as: UInt32.self) }
        func be16(_ v: UInt16, _ o: Int) { p.storeBytes(of: v.bigEndian, toByteOffset: o, as: UInt16.self) }
        let datagram = ipUDPHeaderSize + packet.count
        let ts = UInt64(max(0, arrivalNanos))
        le32(enhancedPacketType, 0); le32(UInt32(total), 4); le32(0, 8)
        le32(UInt32(ts >> 32), 12); le32(UInt32(ts & 0xFFFF_FFFF), 16)
        le32(UInt32(datagram), 20); le32(UInt32(datagram), 24)
        // IPv4 (RFC 791): 127.0.0.1 → 127.0.0.2, UDP, don't fragment, TTL 64, checksum computed.
        let ip = 28
        be16(0x4500, ip); be16(UInt16(datagram), ip + 2); be16(0, ip + 4); be16(0x4000, ip + 6); be16(0x4011, ip + 8)
        var sum = ipConstantSum + UInt32(datagram)
        while sum > 0xFFFF { sum = (sum & 0xFFFF) + (sum >> 16) }
        be16(~UInt16(sum), ip + 10)
        be16(0x7F00, ip + 12); be16(0x0001, ip + 14); be16(0x7F00, ip + 16); be16(0x0002, ip + 18)
        // UDP (RFC 768), checksum 0 = not computed (allowed over IPv4).
        let port = rtcp ? rtcpPort : rtpPort
        be16(port, ip + 20); be16(port, ip + 22); be16(UInt16(8 + packet.count), ip + 24); be16(0, ip + 26)
        if let base = packet.baseAddress, packet.count > 0 { (p + ip + ipUDPHeaderSize).copyMemory(from: base, byteCount: packet.count) }
        le32(UInt32(total), total - 4)
    }

    static func padded4(_ n: Int) -> Int { (n + 3) & ~3 }
    static func put16(_ b: inout [UInt8], _ v: UInt16) { b += [UInt8(v & 0xFF), UInt8(v >> 8)] }
    static func put32(_ b: inout [UInt8], _ v: UInt32) {
        b += [UInt8(v & 0xFF), UInt8((v >> 8) & 0xFF), UInt8((v >> 16) & 0xFF), UInt8(v >> 24)]
    }
}

/// One packet read back from a capture file.
public struct CapturedPacket: Sendable, Equatable {
    /// Arrival time, nanoseconds since the Unix epoch.
    public var arrivalNanos: Int64
    public var isRTCP: Bool
    public var bytes: [UInt8]
}

/// What a capture file holds, up to its first damaged block.
public struct CaptureContents: Sendable {
    public var packets: [CapturedPacket]
    /// Bytes at the end that do not form a whole block (a write torn by a
    /// crash or a full disk); 0 for a clean file.
    public var tornBytes: Int
}

/// Reads capture files: every whole block in order; stops at the first
/// block that is cut short or whose two lengths disagree.
public enum CaptureReader {
    public static func read(path: String) throws -> CaptureContents {
        guard let bytes = readWholeFile(path) else {
            throw RecordError.system(function: "open", path: path, errno: errno)
        }
        return try parse(bytes, path: path)
    }

    public static func parse(_ b: [UInt8], path: String = "capture") throws -> CaptureContents {
        func u32(_ o: Int) -> UInt32 { UInt32(b[o]) | UInt32(b[o + 1]) << 8 | UInt32(b[o + 2]) << 16 | UInt32(b[o + 3]) << 24 }
        let header = CaptureFile.header
        // A file cut inside its own header holds no packets (crash right after creation).
        if b.count < header.count {
            guard Array(b) == Array(header.prefix(b.count)) else { throw RecordError.badRecording(path: path, reason: "not a Parley capture file") }
            return CaptureContents(packets: [], tornBytes: b.count)
        }
        guard Array(b[0..<header.count]) == header else { throw RecordError.badRecording(path: path, reason: "not a Parley capture file") }
        var packets: [CapturedPacket] = []
        var o = header.count
        while o < b.count {
            guard b.count - o >= 12 else { break }
            let type = u32(o), length = Int(u32(o + 4))
            guard length >= 12, length % 4 == 0, length <= b.count - o, Int(u32(o + length - 4)) == length else { break }
            if type == CaptureFile.enhancedPacketType, length >= CaptureFile.epbFixedSize {
                let ts = Int64(u32(o + 12)) << 32 | Int64(u32(o + 16))
                let captured = Int(u32(o + 20))
                let data = o + 28
                guard captured >= CaptureFile.ipUDPHeaderSize, data + captured <= o + length - 4 else { break }
                let port = UInt16(b[data + 22]) << 8 | UInt16(b[data + 23])
                packets.append(CapturedPacket(arrivalNanos: ts, isRTCP: port == CaptureFile.rtcpPort,
                                              bytes: Array(b[(data + CaptureFile.ipUDPHeaderSize)..<(data + captured)])))
            }
            o += length
        }
        return CaptureContents(packets: packets, tornBytes: b.count - o)
    }
}

/// The whole file at `path`, or nil (errno set) when it cannot be read.
func readWholeFile(_ path: String) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 { if errno == EINTR { continue }; return nil }
        if n == 0 { return out }
        out += chunk[0..<n]
    }
}
