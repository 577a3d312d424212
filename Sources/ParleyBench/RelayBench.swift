import ParleyRTP
import CLinux
import Dispatch
import Glibc
import ParleyCore
import ParleyIO
import ParleyRecord
import ParleyRelay
import Synchronization

/// `parley bench relay`: the relay as a benchmark server on one event loop
/// (one core), with rooms and participants at fixed addresses and SSRCs so
/// the load generator (tools/bench/relay_load.c) can drive it without
/// signalling. Participant `i` (0-based over all rooms, room-major) is at
/// `127.0.0.1:(client-base + i)`; the first `publishers` participants of each
/// room publish one track with SSRC `ssrc-base + i`. Addresses are latched
/// directly (trusted, in-process); participant timeouts are off.
///
/// Prints `ready <host:port>` once bound, then runs until SIGINT/SIGTERM.
///
/// Residence measurement, driven by the load generator with sigqueue(3):
/// SIGUSR1 with value 0 turns on kernel receive timestamps and starts a
/// fresh window; with value N > 0 it prints `residence label=N n=… p50_us=…
/// p99_us=… max_us=…` for the window (each datagram from arrival in the
/// relay's socket to the end of the `sendmmsg` that sent its copies) and
/// starts a new one.
public enum RelayBench {
    static let usage = """
    Usage: parley bench relay [options]

    Runs the media relay as a benchmark server (see tools/bench/relay).

    Options:
      --listen HOST:PORT    media socket (default 127.0.0.1:40000)
      --rooms N             rooms (default 1)
      --participants N      participants per room (default 11)
      --publishers N        publishers per room, the first N participants (default 1)
      --client-base PORT    first participant's port on 127.0.0.1 (default 41000)
      --ssrc-base N         first participant's SSRC (default 4096)
      --kind audio|video    track kind: video keeps a 512-packet NACK buffer per track (default video)
      --batch N             datagrams per recvmmsg (default 64)
      --send-batch N        most datagrams per sendmmsg flush (default: the relay's, 1024)
      --record DIR          record every room into DIR (a Recorder on each room's tap,
                            as parley serve records; DIR is created)

    SIGUSR1 (sigqueue value 0: start measuring residence; N: print window N)
    drives the relay-side latency measurement; see tools/bench/relay.

    """

    public static func main(_ argv: [String]) -> Int32 {
        let args: Arguments
        do {
            args = try Arguments(argv, options: ["listen", "rooms", "participants", "publishers", "client-base",
                                                 "ssrc-base", "kind", "batch", "send-batch", "record"], flags: [])
        } catch {
            printError("parley bench relay: \(error)\n\(usage)", terminator: "")
            return ExitCode.usage
        }
        if args.wantsHelp { print(usage, terminator: ""); return ExitCode.ok }
        func int(_ name: String, _ d: Int) -> Int? { args[name].map { Int($0) } ?? d }
        guard let listen = SocketAddress(args["listen"] ?? "127.0.0.1:40000"),
              let rooms = int("rooms", 1), let perRoom = int("participants", 11), let publishers = int("publishers", 1),
              let base = int("client-base", 41000), let ssrcBase = int("ssrc-base", 4096), let batch = int("batch", 64),
              let sendBatch = int("send-batch", RelayConfig().sendBatchSize), sendBatch > 0,
              rooms > 0, perRoom > 1, (0...perRoom).contains(publishers), base > 0, base + rooms * perRoom <= 65536,
              ssrcBase > 0, batch > 0, ["audio", "video"].contains(args["kind"] ?? "video") else {
            printError("parley bench relay: bad option value\n\(usage)", terminator: "")
            return ExitCode.usage
        }
        let video = (args["kind"] ?? "video") == "video"

        // Blocked before the loop threads exist, so they inherit the mask
        // and SIGUSR1 reaches only the signalfd.
        let usr1 = [SIGUSR1].withUnsafeBufferPointer { parley_signalfd_for($0.baseAddress, 1) }
        let group: EventLoopGroup
        let relay: Relay
        var recorder: Recorder?
        do {
            group = try EventLoopGroup(numberOfThreads: 1, shutdownSignals: [SIGINT, SIGTERM])
            var config = RelayConfig()
            config.participantTimeout = .zero
            config.maxParticipantsPerRoom = max(perRoom, 100)
            config.maxRoomsPerLoop = max(rooms, 1000)
            config.batchSize = batch
            config.sendBatchSize = sendBatch
            relay = try Relay(loops: group.loops, mediaAddresses: [listen], config: config)
            for r in 0..<rooms {
                let room = "bench-\(r)"
                for j in 0..<perRoom {
                    let i = r * perRoom + j
                    let spec = video ? TrackDescription.video(ssrc: UInt32(ssrcBase + i)) : TrackDescription.opus(ssrc: UInt32(ssrcBase + i))
                    let name = "p\(i)"
                    try joinForBench(relay, room: room, name: name, publishing: j < publishers ? spec : nil)
                    try setupWait { relay.latch(room: room, name: name, address: .ipv4Loopback(port: UInt16(base + i)), completion: $0) }
                }
                try subscribeEveryone(relay, room: room)
            }
            if let dir = args["record"] {
                // Disk limits out of the way: the benchmark measures the packet path's cost, not the guards.
                var limits = RecordingLimits()
                limits.maxBytes = 1 << 50
                limits.minFreeBytes = 0
                let r = Recorder(directory: dir, limits: limits)
                recorder = r
                for i in 0..<rooms {
                    let recording = try r.start(id: "bench-\(i)", room: "bench-\(i)")
                    try setupWait { relay.setTap(room: "bench-\(i)", recording.relayTap, completion: $0) }
                }
            }
        } catch {
            printError("parley bench relay: \(error)")
            return ExitCode.failure
        }
        if usr1 >= 0 {
            let w = relay.workers[0]
            try? w.loop.submit { ResidenceControl.start(fd: usr1, worker: w) }
        }
        writeStdout("ready \(relay.endpoints[0]) rooms=\(rooms) participants=\(perRoom) publishers=\(publishers) kind=\(video ? "video" : "audio")\(recorder == nil ? "" : " recording")\n")
        group.waitForShutdownSignal()
        recorder?.shutdown()
        // What the run did, for whoever looks for where packets went: the
        // relay's and the socket layer's counters (drops by reason, GSO).
        let counters = MetricsRegistry.shared.render().split(separator: "\n").filter {
            !$0.hasPrefix("#") && ($0.hasPrefix("parley_relay_") || $0.hasPrefix("parley_udp_") || $0.hasPrefix("parley_record_"))
                && !$0.hasPrefix("parley_relay_room_participants") && !$0.hasSuffix(" 0")
        }
        writeStdout(counters.map { "counter \($0)\n" }.joined())
        return ExitCode.ok
    }
}

/// Waits for one relay operation's answer. Benchmark setup only (on the
/// main thread, before any load): the relay's control API never blocks.
func setupWait<T: Sendable>(_ start: (@escaping @Sendable (Result<T, RelayError>) -> Void) -> Void) throws(RelayError) -> T {
    let done = DispatchSemaphore(value: 0)
    let answer = Mutex<Result<T, RelayError>?>(nil)
    start { r in
        answer.withLock { $0 = r }
        done.signal()
    }
    done.wait()
    return try answer.withLock { $0! }.get()
}

/// Joins `name` and publishes its track, if any.
@discardableResult
func joinForBench(_ relay: Relay, room: String, name: String, publishing track: TrackDescription?,
                  crypto: ParticipantCrypto? = nil) throws(RelayError) -> ParticipantGrant {
    let g = try setupWait { relay.join(room: room, name: name, tracks: track.map { [$0] } ?? [], crypto: crypto, completion: $0) }
    if let track { _ = try setupWait { relay.publish(room: room, name: name, track: track, completion: $0) } }
    return g
}

/// Subscribes every participant of `room` to every track the others
/// publish (the relay subscribes nobody by default; the load generators
/// expect everyone to receive everything).
func subscribeEveryone(_ relay: Relay, room: String) throws(RelayError) {
    let stats = try setupWait { relay.stats(room: room, completion: $0) }
    for p in stats.participants {
        for other in stats.participants where other.name != p.name {
            for t in other.published {
                try setupWait { relay.setSubscribed(room: room, subscriber: p.name, ssrc: t.ssrc, true, completion: $0) }
            }
        }
    }
}

/// Reads SIGUSR1 from its signalfd on the worker's loop (see ``RelayBench``).
private final class ResidenceControl: EventLoopIOHandler {
    let fd: Int32
    let worker: RelayWorker
    var registration: IORegistration?

    init(fd: Int32, worker: RelayWorker) { self.fd = fd; self.worker = worker }

    static func start(fd: Int32, worker: RelayWorker) {
        let c = ResidenceControl(fd: fd, worker: worker)
        c.registration = try? worker.loop.register(fd: fd, interest: .readable, handler: c)
    }

    func handleIO(_ events: IOEvents) {
        var signo: Int32 = 0, value: Int32 = 0
        while parley_signalfd_read(fd, &signo, &value) == 1 {
            if value == 0 {
                do { try worker.setResidenceMeasurement(true) } catch { printError("residence: \(error)") }
                _ = worker.takeResidence()
                continue
            }
            let h = worker.takeResidence()
            func us(_ ns: UInt64?) -> String { ns.map { String(Double($0 / 100) / 10) } ?? "-1" }
            writeStdout("residence label=\(value) n=\(h.count) p50_us=\(us(h.percentile(0.5))) p99_us=\(us(h.percentile(0.99))) max_us=\(us(h.max))\n")
        }
    }

    func loopIsShuttingDown(graceful: Bool) {
        if let r = registration { worker.loop.deregister(r); registration = nil }
        close(fd)
    }
}

func writeStdout(_ s: String) { _ = writeAll(1, Array(s.utf8)) }
