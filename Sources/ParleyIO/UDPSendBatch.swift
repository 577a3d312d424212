import Glibc
import CLinux
import ParleyCore

/// A batch of outgoing datagrams for one `sendmmsg`. Owned by a ``UDPSocket``
/// (``UDPSocket/sendBatch``), reused forever: fill it, then ``flush()``.
/// Appending to a full batch flushes first. Loop only. No allocation.
///
/// To fan one packet out to N subscribers in one syscall, `appendNoCopy` the
/// same bytes N times with different destinations, then flush.
///
/// UDP GSO: when enabled (``UDPSocket/Options/gso``, on where the kernel has
/// `UDP_SEGMENT`), ``flush()`` groups the queued datagrams by destination
/// (order per destination kept; across destinations it is not) and sends each
/// run of same-size datagrams to one destination (the last may be shorter;
/// at most 64 segments and 65,000 bytes) as one message with a `UDP_SEGMENT`
/// cmsg: the kernel walks the UDP/IP stack once per run instead of once per
/// datagram. The receiver still gets individual datagrams. Still one
/// `sendmmsg` per flush. If the kernel refuses a segmented message with
/// `EIO`/`EINVAL` (e.g. no checksum offload), GSO is turned off for the
/// socket (`parley_udp_gso_disabled_total`) and the rest goes out plain.
public final class UDPSendBatch {
    /// Most segments per GSO message (the kernel's UDP_MAX_SEGMENTS).
    static let maxSegments = 64
    /// Most payload bytes per GSO message (below 64 KiB minus IP/UDP headers).
    static let maxSuperDatagram = 65_000
    /// Largest segment coalesced: one segment must fit an Ethernet MTU
    /// (IPv6), or the kernel refuses the whole message.
    static let maxSegmentSize = 1452

    let arrays: MMsgArrays
    private let fd: Int32
    private let metrics: UDPSocket.Metrics
    /// Cleared when the socket closes; later flushes drop and count.
    var isOpen = true
    /// Datagrams queued and not yet flushed.
    public private(set) var count = 0
    /// Maximum datagrams per `sendmmsg`.
    public var capacity: Int { arrays.capacity }
    /// Largest payload ``append(_:to:)`` / ``append(to:maxLength:_:)`` accept.
    public var maxDatagramSize: Int { arrays.slotSize }
    /// True while flushes coalesce same-destination runs with `UDP_SEGMENT`.
    public private(set) var gsoEnabled: Bool

    // GSO scratch, preallocated (capacity entries each).
    private let outMsgs: UnsafeMutablePointer<parley_mmsghdr>
    private let outIovs: UnsafeMutablePointer<iovec>
    /// Slot indices in send order (grouped by destination).
    private let order: UnsafeMutablePointer<Int32>
    /// Per out message: index of its first slot in `order`, and its segment count.
    private let outStart: UnsafeMutablePointer<Int32>
    private let outSegments: UnsafeMutablePointer<Int32>
    /// Grouping by destination in one pass: per slot a key of its
    /// destination (exact for IPv4, a hash for IPv6) and the next slot of
    /// its group; per group its first and last slot, in order of first
    /// appearance; an open-addressing table (key → group, -1 empty) twice
    /// the capacity, emptied again after each flush.
    private let keys: UnsafeMutablePointer<UInt64>
    private let nextInGroup: UnsafeMutablePointer<Int32>
    private let groupFirst: UnsafeMutablePointer<Int32>
    private let groupLast: UnsafeMutablePointer<Int32>
    private let groupEntry: UnsafeMutablePointer<Int32>
    private let tableKeys: UnsafeMutablePointer<UInt64>
    private let tableGroups: UnsafeMutablePointer<Int32>
    private let tableMask: Int, tableShift: UInt64
    private let control: UnsafeMutableRawPointer
    private let controlSpace: Int
    private let controlDataOffset: Int

    init(fd: Int32, metrics: UDPSocket.Metrics, capacity: Int, slotSize: Int, gso: Bool) {
        self.fd = fd
        self.metrics = metrics
        arrays = MMsgArrays(capacity: capacity, slotSize: slotSize)
        gsoEnabled = gso
        outMsgs = .filled(capacity, with: parley_mmsghdr())
        outIovs = .filled(capacity, with: iovec())
        order = .filled(capacity, with: 0)
        outStart = .filled(capacity, with: 0)
        outSegments = .filled(capacity, with: 0)
        keys = .filled(capacity, with: 0)
        nextInGroup = .filled(capacity, with: -1)
        groupFirst = .filled(capacity, with: 0)
        groupLast = .filled(capacity, with: 0)
        groupEntry = .filled(capacity, with: 0)
        var tableSize = 1
        while tableSize < 2 * capacity { tableSize <<= 1 }
        tableMask = tableSize - 1
        tableShift = UInt64(64 - tableSize.trailingZeroBitCount)
        tableKeys = .filled(tableSize, with: 0)
        tableGroups = .filled(tableSize, with: -1)
        controlSpace = parley_cmsg_space(MemoryLayout<UInt16>.size)
        control = .allocate(byteCount: controlSpace * capacity, alignment: 16)
        control.initializeMemory(as: UInt8.self, repeating: 0, count: controlSpace * capacity)
        var offset = 0
        for i in 0..<capacity {
            var h = msghdr()
            h.msg_control = control + i * controlSpace
            h.msg_controllen = controlSpace
            let c = parley_cmsg_firsthdr(&h)!
            c.pointee.cmsg_level = Int32(IPPROTO_UDP)
            c.pointee.cmsg_type = parley_udp_segment()
            c.pointee.cmsg_len = parley_cmsg_len(MemoryLayout<UInt16>.size)
            offset = UnsafeMutableRawPointer(parley_cmsg_data(c)!) - (control + i * controlSpace)
        }
        controlDataOffset = offset
    }

    deinit {
        outMsgs.deallocate(); outIovs.deallocate(); order.deallocate(); outStart.deallocate()
        outSegments.deallocate(); control.deallocate()
        keys.deallocate(); nextInGroup.deallocate(); groupFirst.deallocate(); groupLast.deallocate()
        groupEntry.deallocate(); tableKeys.deallocate(); tableGroups.deallocate()
    }

    @inline(__always) private func slot(_ to: SocketAddress) -> Int {
        if count == arrays.capacity { flush() }
        let i = count
        arrays.msgs[i].msg_hdr.msg_namelen = to.write(to: UnsafeMutableRawPointer(arrays.names + i))
        keys[i] = to.groupingKey
        count += 1
        return i
    }

    /// Queues a copy of `bytes` for `destination`. Payloads longer than
    /// ``maxDatagramSize`` are dropped and counted.
    public func append(_ bytes: UnsafeRawBufferPointer, to destination: SocketAddress) {
        guard bytes.count <= arrays.slotSize else { metrics.sendOversize.inc(); return }
        let i = slot(destination)
        let base = arrays.buffers + i * arrays.slotSize
        if bytes.count > 0 { base.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count) }
        arrays.iovs[i] = iovec(iov_base: base, iov_len: bytes.count)
    }

    /// Queues `bytes` for `destination` without copying: the memory must stay
    /// valid and unchanged until the next ``flush()`` (e.g. a received
    /// datagram flushed before the receive callback returns).
    public func appendNoCopy(_ bytes: UnsafeRawBufferPointer, to destination: SocketAddress) {
        let i = slot(destination)
        arrays.iovs[i] = iovec(iov_base: UnsafeMutableRawPointer(mutating: bytes.baseAddress), iov_len: bytes.count)
    }

    /// Queues a datagram written in place: `body` gets the slot's buffer (at
    /// least `maxLength` bytes, at most ``maxDatagramSize``) and returns the
    /// number of bytes it wrote (0 cancels the datagram).
    public func append(to destination: SocketAddress, maxLength: Int? = nil,
                       _ body: (UnsafeMutableRawBufferPointer) -> Int) {
        let i = slot(destination)
        let base = arrays.buffers + i * arrays.slotSize
        let n = body(UnsafeMutableRawBufferPointer(start: base, count: min(maxLength ?? arrays.slotSize, arrays.slotSize)))
        if n <= 0 { count -= 1; return }
        arrays.iovs[i] = iovec(iov_base: base, iov_len: min(n, arrays.slotSize))
    }

    @inline(__always) private func sameDestination(_ a: Int, _ b: Int) -> Bool {
        let la = arrays.msgs[a].msg_hdr.msg_namelen
        guard la == arrays.msgs[b].msg_hdr.msg_namelen else { return false }
        return memcmp(arrays.names + a, arrays.names + b, Int(la)) == 0
    }

    /// Groups the `total` queued slots by destination (groups in order of
    /// first appearance, queue order within a group; one pass, a table probe
    /// per slot), writes them to `order` in that order and builds the out
    /// messages (GSO runs). Returns the number of out messages.
    private func buildSegmented(_ total: Int) -> Int {
        var groups = 0
        for i in 0..<total {
            nextInGroup[i] = -1
            let key = keys[i]
            var e = Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> tableShift)
            while true {
                let g = Int(tableGroups[e])
                if g < 0 {
                    tableGroups[e] = Int32(groups); tableKeys[e] = key
                    groupFirst[groups] = Int32(i); groupLast[groups] = Int32(i); groupEntry[groups] = Int32(e)
                    groups += 1
                    break
                }
                if tableKeys[e] == key && sameDestination(Int(groupFirst[g]), i) {
                    nextInGroup[Int(groupLast[g])] = Int32(i); groupLast[g] = Int32(i)
                    break
                }
                e = (e + 1) & tableMask
            }
        }
        // Per group, in queue order: runs of same-size datagrams (the last
        // may be shorter), each one out message. A group is one destination,
        // so a run only ends on size, segment count or bytes.
        var k = 0
        var m = 0
        for g in 0..<groups {
            tableGroups[Int(groupEntry[g])] = -1
            var i = Int(groupFirst[g])
            while i >= 0 {
                let p = k
                let first = i
                let size = arrays.iovs[first].iov_len
                order[k] = Int32(first); outIovs[k] = arrays.iovs[first]; k += 1
                i = Int(nextInGroup[first])
                var segs = 1
                var bytes = size
                if size > 0 && size <= Self.maxSegmentSize {
                    while i >= 0 && segs < Self.maxSegments {
                        let len = arrays.iovs[i].iov_len
                        guard len > 0, len <= size, bytes + len <= Self.maxSuperDatagram else { break }
                        order[k] = Int32(i); outIovs[k] = arrays.iovs[i]; k += 1
                        segs += 1; bytes += len
                        i = Int(nextInGroup[i])
                        if len < size { break } // a shorter segment ends the run
                    }
                }
                var h = arrays.msgs[first].msg_hdr
                h.msg_iov = outIovs + p
                h.msg_iovlen = segs
                if segs > 1 {
                    let c = control + m * controlSpace
                    (c + controlDataOffset).storeBytes(of: UInt16(truncatingIfNeeded: size), as: UInt16.self)
                    h.msg_control = c
                    h.msg_controllen = controlSpace
                } else {
                    h.msg_control = nil
                    h.msg_controllen = 0
                }
                outMsgs[m] = parley_mmsghdr(msg_hdr: h, msg_len: 0)
                outStart[m] = Int32(p)
                outSegments[m] = Int32(segs)
                m += 1
            }
        }
        return m
    }

    /// Sends everything queued with as few `sendmmsg` calls as possible and
    /// empties the batch. UDP never waits for writability: datagrams the
    /// kernel refuses with would-block are dropped and counted
    /// (`parley_udp_dropped_total{reason="send_would_block"}`); a datagram
    /// failing with another error is skipped and counted as `send_error`.
    /// Returns the number of datagrams the kernel accepted.
    @discardableResult
    public func flush() -> Int {
        let total = count
        guard total > 0 else { return 0 }
        count = 0
        guard isOpen else { metrics.sendError.inc(total); return 0 }
        if gsoEnabled && total > 1 { return flushSegmented(total) }
        return send(arrays.msgs, total, segments: nil).sent
    }

    /// The one `sendmmsg` loop, for plain and GSO messages: `segments` (nil:
    /// one datagram per message) says how many datagrams message `m` carries,
    /// for the counts. Stops at a multi-segment message the kernel refuses
    /// with EIO/EINVAL (it cannot segment here) and returns its index, so the
    /// caller can resend the rest plain.
    private func send(_ msgs: UnsafeMutablePointer<parley_mmsghdr>, _ messages: Int,
                      segments: UnsafeMutablePointer<Int32>?) -> (sent: Int, refusedGSO: Int?) {
        func datagrams(_ m: Int) -> Int { segments.map { Int($0[m]) } ?? 1 }
        var done = 0
        var sent = 0
        while done < messages {
            let r: IOResult<Int32>
            do {
                r = try syscallMayBlock("sendmmsg") {
                    parley_sendmmsg(fd, msgs + done, UInt32(messages - done), 0)
                }
            } catch {
                let segs = datagrams(done)
                if segs > 1 && (error.errno == EIO || error.errno == EINVAL) {
                    metrics.sent.inc(sent)
                    return (sent, done)
                }
                metrics.sendError.inc(segs)
                done += 1 // skip the message that failed
                continue
            }
            switch r {
            case .processed(let n):
                if segments == nil { sent += Int(n) } else { for m in done..<(done + Int(n)) { sent += datagrams(m) } }
                done += Int(n)
            case .wouldBlock:
                var left = 0
                for m in done..<messages { left += datagrams(m) }
                metrics.sendWouldBlock.inc(left)
                done = messages
            }
        }
        metrics.sent.inc(sent)
        return (sent, nil)
    }

    private func flushSegmented(_ total: Int) -> Int {
        let messages = buildSegmented(total)
        let (sent, refused) = send(outMsgs, messages, segments: outSegments)
        guard let at = refused else {
            if messages < total { metrics.gsoCoalesced.inc(total - messages) }
            return sent
        }
        // The kernel cannot segment here: GSO off for good, the rest plain.
        gsoEnabled = false
        metrics.gsoDisabled.inc()
        let from = Int(outStart[at])
        for i in from..<total { outMsgs[i - from] = arrays.msgs[Int(order[i])] }
        return sent + send(outMsgs, total - from, segments: nil).sent
    }
}
