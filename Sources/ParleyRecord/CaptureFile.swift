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
        b.append(contentsOf: repeatElement(0, count: total))
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

    /// Writes the block of `packet` (`total` bytes, `blockSize(packetBytes:)`) at `p`.
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
        let end = ip + datagram
        (p + end).initializeMemory(as: UInt8.self, repeating: 0, count: total - 4 - end)  // padding to 32 bits
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
    /// The whole file in memory (tests, small files); exports stream with `CaptureStream`.
    public static func read(path: String) throws -> CaptureContents {
        let s = try CaptureStream(path: path)
        var packets: [CapturedPacket] = []
        while let p = try s.next() { packets.append(p) }
        return CaptureContents(packets: packets, tornBytes: s.tornBytes)
    }

    public static func parse(_ b: [UInt8], path: String = "capture") throws -> CaptureContents {
        try b.withUnsafeBytes { raw in
            switch try checkHeader(raw, path: path) {
            case .torn: return CaptureContents(packets: [], tornBytes: b.count)
            case .ok:
                var packets: [CapturedPacket] = []
                var o = CaptureFile.header.count
                while o < b.count, case .block(let length, let packet) = block(UnsafeRawBufferPointer(rebasing: raw[o...])) {
                    if let packet { packets.append(packet) }
                    o += length
                }
                return CaptureContents(packets: packets, tornBytes: b.count - o)
            }
        }
    }

    enum Header { case ok, torn }

    /// Whether `b` (a file's first bytes, all of them when fewer than a
    /// header) starts with our header; a file cut inside its own header
    /// holds no packets (a crash right after creation).
    static func checkHeader(_ b: UnsafeRawBufferPointer, path: String) throws -> Header {
        let header = CaptureFile.header
        let n = min(b.count, header.count)
        guard header.withUnsafeBytes({ memcmp($0.baseAddress!, b.baseAddress ?? $0.baseAddress!, n) == 0 }) else {
            throw RecordError.badRecording(path: path, reason: "not a Parley capture file")
        }
        return b.count < header.count ? .torn : .ok
    }

    /// The longest block a capture file holds (an EPB of the largest UDP payload).
    static let maxBlock = CaptureFile.blockSize(packetBytes: CaptureFile.maxPacketSize)

    enum Block: Equatable {
        /// A whole block of `length` bytes (`packet`: nil for a block that is not an EPB).
        case block(length: Int, packet: CapturedPacket?)
        /// At least this many bytes are needed to see the block whole.
        case needs(Int)
        /// Not a block: the file is damaged from here on.
        case damaged
    }

    /// The block at the start of `b`.
    static func block(_ b: UnsafeRawBufferPointer) -> Block {
        func u32(_ o: Int) -> UInt32 { UInt32(littleEndian: b.loadUnaligned(fromByteOffset: o, as: UInt32.self)) }
        guard b.count >= 12 else { return .needs(12) }
        let type = u32(0), length = Int(u32(4))
        guard length >= 12, length % 4 == 0, length <= maxBlock else { return .damaged }
        guard length <= b.count else { return .needs(length) }
        guard Int(u32(length - 4)) == length else { return .damaged }
        guard type == CaptureFile.enhancedPacketType, length >= CaptureFile.epbFixedSize else { return .block(length: length, packet: nil) }
        let ts = Int64(u32(12)) << 32 | Int64(u32(16))
        let captured = Int(u32(20))
        let data = 28
        guard captured >= CaptureFile.ipUDPHeaderSize, data + captured <= length - 4 else { return .damaged }
        let port = UInt16(b[data + 22]) << 8 | UInt16(b[data + 23])
        return .block(length: length, packet: CapturedPacket(
            arrivalNanos: ts, isRTCP: port == CaptureFile.rtcpPort,
            bytes: Array(UnsafeRawBufferPointer(rebasing: b[(data + CaptureFile.ipUDPHeaderSize)..<(data + captured)]))))
    }
}

/// A capture file read one packet at a time through a bounded buffer (at
/// most one block and one read's worth in memory), so an export never holds
/// a whole recording. Stops at the first damaged or cut-short block.
public final class CaptureStream {
    public let path: String
    private let fd: Int32
    private var buffer: UnsafeMutableRawPointer
    private var capacity: Int
    private var start = 0, end = 0
    /// File offset of `buffer[start]`.
    private var offset = 0
    private var atEOF = false
    private var finished = false
    /// Bytes after the last whole block (a write torn by a crash or a full disk); final once `next` returned nil.
    public private(set) var tornBytes = 0

    public init(path: String) throws {
        self.path = path
        fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw RecordError.system(function: "open", path: path, errno: errno) }
        capacity = 1 << 16
        buffer = .allocate(byteCount: capacity, alignment: 16)
        // Every property is set: from here a throw runs deinit, which closes and frees.
        try fill(CaptureFile.header.count)
        if try CaptureReader.checkHeader(UnsafeRawBufferPointer(start: buffer, count: end), path: path) == .torn {
            finish(torn: end)
        } else {
            start = CaptureFile.header.count
            offset = start
        }
    }

    deinit {
        close(fd)
        buffer.deallocate()
    }

    /// The next packet, or nil at the end of the whole blocks.
    public func next() throws -> CapturedPacket? {
        while !finished {
            switch CaptureReader.block(UnsafeRawBufferPointer(start: buffer + start, count: end - start)) {
            case .block(let length, let packet):
                start += length
                offset += length
                if let packet { return packet }
            case .needs(let n):
                try fill(n)
                if end - start < n { finish(torn: end - start) }
            case .damaged:
                // Everything from here on is skipped: what is buffered and what the file holds beyond it.
                var st = stat()
                let size = fstat(fd, &st) == 0 ? Int(st.st_size) : offset + end - start
                finish(torn: max(0, size - offset))
            }
        }
        return nil
    }

    private func finish(torn: Int) {
        tornBytes = torn
        finished = true
    }

    /// Reads until `n` bytes from `start` are buffered, or the file ends.
    private func fill(_ n: Int) throws {
        if start + n > capacity {
            // Move what is left to the front; grow if one block is larger than the buffer.
            let have = end - start
            if n > capacity {
                let bigger = UnsafeMutableRawPointer.allocate(byteCount: n, alignment: 16)
                bigger.copyMemory(from: buffer + start, byteCount: have)
                buffer.deallocate()
                buffer = bigger
                capacity = n
            } else if have > 0 {
                memmove(buffer, buffer + start, have)
            }
            start = 0
            end = have
        }
        while end - start < n && !atEOF {
            let got = read(fd, buffer + end, capacity - end)
            if got < 0 {
                if errno == EINTR { continue }
                throw RecordError.system(function: "read", path: path, errno: errno)
            }
            if got == 0 { atEOF = true } else { end += got }
        }
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
