import Foundation
import Glibc
import ParleyCore
import ParleyRTP
import ParleyRecord

/// `parley bench record-room`: records a room from outside RTP senders
/// (tools/bench/record-grid: ffmpeg publishing each participant's Opus
/// and VP8 in real time) through a `Recorder`, as `parley serve` records a
/// room but without signalling or SRTP, so that an export's cost can be
/// measured on a recording of real media of a known length.
public enum RecordRoomBench {
    static let usage = """
        Usage: parley bench record-room --dir DIR --participants N [options]

        Participant i (0-based) is "p<i>": its Opus track (SSRC 1000+i, payload
        type 111) arrives as plain RTP on UDP port BASE+4i (its RTCP on the next
        port) and its VP8 track (SSRC 2000+i, payload type 96) on BASE+4i+2
        (RTCP next). Every packet goes into recording ID under DIR. Prints
        "ready" once listening; stops IDLE seconds after the last packet.

        Options:
          --dir DIR             recordings directory (created)
          --id ID               the recording's id (default room)
          --participants N      1 to 16
          --port-base BASE      first UDP port (default 42000)
          --idle SECONDS        stop this long after the last packet (default 2)

        """

    public static func main(_ argv: [String]) -> Int32 {
        let args: Arguments
        do { args = try Arguments(argv, options: ["dir", "id", "participants", "port-base", "idle"], flags: []) } catch {
            printError("parley bench record-room: \(error)\n\(usage)", terminator: "")
            return ExitCode.usage
        }
        if args.wantsHelp { print(usage, terminator: ""); return ExitCode.ok }
        guard let dir = args["dir"], let n = args["participants"].flatMap({ Int($0) }), (1...16).contains(n),
              let base = Int(args["port-base"] ?? "42000"), base > 0, base + 4 * n <= 65536,
              let idle = Double(args["idle"] ?? "2"), idle > 0 else {
            printError("parley bench record-room: bad option value\n\(usage)", terminator: "")
            return ExitCode.usage
        }
        let id = args["id"] ?? "room"
        var limits = RecordingLimits()
        limits.minFreeBytes = 0
        let recorder = Recorder(directory: dir, limits: limits)
        defer { recorder.shutdown() }
        // Port → (SSRC, RTCP?) of what arrives there.
        var ports: [(fd: Int32, ssrc: UInt32, rtcp: Bool)] = []
        defer { for p in ports { close(p.fd) } }
        let recording: Recording
        do {
            recording = try recorder.start(id: id, room: id)
            for i in 0..<n {
                let name = "p\(i)"
                recording.note(RecordingEvent(.join, participant: name))
                let audio = TrackDescription(kind: .audio, codec: "opus", payloadType: 111, clockRate: 48_000, channels: 2, ssrc: UInt32(1000 + i))
                let video = TrackDescription(kind: .video, codec: "VP8", payloadType: 96, clockRate: 90_000, ssrc: UInt32(2000 + i))
                for (k, (spec, ssrc)) in [(audio, UInt32(1000 + i)), (video, UInt32(2000 + i))].enumerated() {
                    recording.add(RoomTrack(participant: name, spec: spec, ssrc: ssrc, muted: false))
                    for rtcp in [false, true] {
                        let port = base + 4 * i + 2 * k + (rtcp ? 1 : 0)
                        ports.append((try bindUDP(port: UInt16(port)), ssrc, rtcp))
                    }
                }
            }
        } catch {
            printError("parley bench record-room: \(error)")
            return ExitCode.failure
        }
        writeStdout("ready \(id) participants=\(n) port-base=\(base)\n")
        var polls = ports.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
        var buffer = [UInt8](repeating: 0, count: 65_536)
        var packets = 0, last = 0.0
        while true {
            let ready = poll(&polls, nfds_t(polls.count), 100)
            let now = Date().timeIntervalSince1970
            if ready <= 0 {
                if packets > 0 && now - last >= idle { break }
                continue
            }
            last = now
            for (i, p) in polls.enumerated() where p.revents & Int16(POLLIN) != 0 {
                let got = buffer.withUnsafeMutableBytes { recv(p.fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
                guard got > 0 else { continue }
                packets += 1
                let arrival = wallClockNanos()
                buffer.withUnsafeBytes { b in
                    let bytes = UnsafeRawBufferPointer(rebasing: b[0..<got])
                    if ports[i].rtcp {
                        recording.captureRTCP(ssrc: ports[i].ssrc, bytes, arrivalNanos: arrival)
                    } else {
                        recording.captureRTP(ssrc: ports[i].ssrc, bytes, arrivalNanos: arrival)
                    }
                }
            }
        }
        for i in 0..<n { recording.note(RecordingEvent(.leave, participant: "p\(i)")) }
        recording.stop()
        writeStdout("recorded \(packets) packets into \(dir)/\(id)\n")
        return ExitCode.ok
    }

    private static func bindUDP(port: UInt16) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        var size: Int32 = 8 << 20
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = port.bigEndian
        a.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let ok = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard fd >= 0, ok == 0 else { throw RecordError.system(function: "bind", path: "127.0.0.1:\(port)", errno: errno) }
        return fd
    }
}
