import ParleyRTP
import Foundation
import ParleyCore
import ParleyIO
import ParleySRTP
import ParleySTUN

/// A signalling session opened for an external RTP tool (ffmpeg, GStreamer):
/// joins with a token, publishes an Opus track (or subscribes to one), and
/// describes the media session as SDP with `a=crypto` (RFC 4568).
public final class SDPSession: @unchecked Sendable {
    public struct Options: Sendable {
        public var server = "wss://127.0.0.1:7700"
        public var token = ""
        /// Accept any server certificate (self-signed).
        public var insecureSkipVerify = false
        /// SHA-256 fingerprint the server certificate must have (hex, colons
        /// optional), checked on the connection that carries the session.
        /// Wins over `insecureSkipVerify`.
        public var fingerprint: String?
        /// Publish an Opus track (the SDP describes what the tool sends).
        public var publish = true
        /// Subscribe to this track and describe what the tool receives instead.
        public var receiveTrack: String?
        public init() {}
    }

    public let client: BlockingSignallingClient
    /// The join reply.
    public let join: JSONValue
    /// The published track (publish mode) or the subscribed one (receive mode).
    public let track: JSONValue?
    public let sdp: String
    /// The ffmpeg command line that publishes a tone with this session
    /// (publish mode), or receives the track with the SDP saved as
    /// `SDP_FILE` (receive mode); nil when joined without publishing.
    public let ffmpegHint: String?
    private init(client: BlockingSignallingClient, join: JSONValue, track: JSONValue?, sdp: String, ffmpegHint: String?) {
        self.client = client
        self.join = join
        self.track = track
        self.sdp = sdp
        self.ffmpegHint = ffmpegHint
    }

    /// Leaves the room and closes the WebSocket (close frame, then waits
    /// briefly for the server's), so the others see `participant_left` now
    /// rather than after the reconnect grace period.
    public func leave() {
        _ = try? client.request(.leave, timeout: 5)
        client.close()
    }

    public static func open(loop: EventLoop, _ o: Options) throws -> SDPSession {
        let url = try ServerURL(o.server)
        guard let address = SocketAddress(ip: url.host == "localhost" ? "127.0.0.1" : url.host, port: url.port) else {
            throw SignallingClientError.failed("\(url.host) is not an IP address")
        }
        var tls: TLSContext?
        if url.secure {
            guard o.insecureSkipVerify || o.fingerprint != nil else {
                throw SignallingClientError.failed("wss:// needs --insecure-skip-verify or --fingerprint SHA256 (the server's certificate is self-signed)")
            }
            // The pin is checked on the session's own connection, after the
            // TLS handshake and before the WebSocket request (let alone the token).
            tls = try TLSContext.client(pinnedSHA256: o.fingerprint)
        }
        let client = try BlockingSignallingClient.connect(loop: loop, address: address, host: url.host, path: url.path, tls: tls)
        do {
            let auth = try client.call(.auth(token: o.token, room: nil))
            let publish = o.publish && o.receiveTrack == nil
            var join = try client.call(.join(room: nil, publish: publish, subscribe: o.receiveTrack != nil, suite: nil))
            if auth["resumed"] == .bool(true), let j = auth["join"] { join = j }
            let participant = join["participant"]?.stringValue ?? "parley"
            let room = join["room"]?.stringValue ?? ""
            let mediaHost = join["media"]?["host"]?.stringValue ?? "127.0.0.1"
            let mediaPort = join["media"]?["port"]?.intValue ?? 0
            let suite = join["srtp"]?["suite"]?.stringValue ?? SRTPSuite.default.sdesName
            let ip = mediaHost.contains(":") ? "IP6" : "IP4"
            var sdp = "v=0\r\no=- \(UInt32.random(in: 1...UInt32.max)) 1 IN \(ip) \(mediaHost)\r\ns=parley \(room)/\(participant)\r\n"
            if let wanted = o.receiveTrack {
                // Receive: latch a local UDP port with STUN, then hand the port to the tool.
                let sub = try client.call(.subscribe(track: wanted))
                let t = sub["track"] ?? .null
                let port = try latchLocalPort(relay: SocketAddress(ip: mediaHost, port: UInt16(mediaPort))!,
                                              ufrag: join["ice"]?["ufrag"]?.stringValue ?? "",
                                              password: join["ice"]?["pwd"]?.stringValue ?? "",
                                              consentUfrag: join["ice"]?["consentUfrag"]?.stringValue ?? "",
                                              consentPassword: join["ice"]?["consentPwd"]?.stringValue ?? "")
                let pt = t["payloadType"]?.intValue ?? 111
                let codec = t["codec"]?.stringValue ?? "opus"
                let rate = t["clockRate"]?.intValue ?? 48000
                let channels = t["kind"] == "audio" ? "/\(t["channels"]?.intValue ?? 2)" : ""
                sdp += "c=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                sdp += "m=\(t["kind"]?.stringValue ?? "audio") \(port) RTP/SAVP \(pt)\r\n"
                sdp += "a=rtpmap:\(pt) \(codec)/\(rate)\(channels)\r\n"
                sdp += "a=ssrc:\(sub["ssrc"]?.intValue ?? 0) cname:\(t["participant"]?.stringValue ?? "")\r\n"
                sdp += "a=recvonly\r\n"
                sdp += "a=crypto:1 \(suite) \(join["srtp"]?["receive"]?.stringValue ?? "")\r\n"
                let hint = "ffmpeg -protocol_whitelist file,udp,rtp,srtp -i SDP_FILE -c copy received.mkv"
                // The tool sends nothing to the relay, which would end the media session after its
                // participant timeout: ping three times per timeout, which the server counts as activity.
                let interval = Duration.milliseconds(max(1, join["media"]?["timeout"]?.intValue ?? 30) * 1000 / 3)
                try client.onLoop { $0.keepaliveInterval = interval }
                return SDPSession(client: client, join: join, track: t, sdp: sdp, ffmpegHint: hint)
            }
            var track: JSONValue?
            if publish {
                let pub = try client.call(.publish([TrackDescription(kind: .audio, codec: "opus", payloadType: 111, clockRate: 48000, channels: 2)]))
                track = pub["tracks"]?.arrayValue?.first
            }
            let ssrc = track?["ssrc"]?.intValue ?? 0
            let sendKey = join["srtp"]?["send"]?.stringValue ?? ""
            sdp += "c=IN \(ip) \(mediaHost)\r\nt=0 0\r\n"
            sdp += "m=audio \(mediaPort) RTP/SAVP 111\r\n"
            sdp += "a=rtpmap:111 opus/48000/2\r\n"
            sdp += "a=ssrc:\(ssrc) cname:\(participant)\r\n"
            sdp += "a=rtcp-mux\r\na=sendonly\r\n"
            sdp += "a=crypto:1 \(suite) \(sendKey)\r\n"
            let params = sendKey.hasPrefix("inline:") ? String(sendKey.dropFirst(7)) : sendKey
            let hint = track == nil ? nil : "ffmpeg -re -f lavfi -i sine=frequency=440:sample_rate=48000 -c:a libopus -payload_type 111 " +
                "-ssrc \(Int32(truncatingIfNeeded: ssrc)) -f rtp -srtp_out_suite \(suite) -srtp_out_params \(params) " +
                "'srtp://\(mediaHost):\(mediaPort)?rtcpport=\(mediaPort)'"
            return SDPSession(client: client, join: join, track: track, sdp: sdp, ffmpegHint: hint)
        } catch {
            client.close()
            throw error
        }
    }

    /// Binds an ephemeral UDP port, latches it at the relay with an
    /// authenticated STUN Binding (answering the relay's consent check on
    /// the way), closes it and returns the port (for a tool that will bind it
    /// and receive). Public for `parley bench srtp`, which latches every
    /// participant with it before the load starts.
    public static func latchLocalPort(relay: SocketAddress, ufrag: String, password: String, consentUfrag: String,
                               consentPassword: String, port wanted: UInt16 = 0) throws -> Int {
        let fd = socket(relay.protocolFamily, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw SignallingClientError.failed("socket: errno \(errno)") }
        defer { close(fd) }
        let local = relay.family == .ipv4 ? SocketAddress.ipv4Loopback(port: wanted) : SocketAddress.ipv6Loopback(port: wanted)
        guard local.withSockAddr({ Glibc.bind(fd, $0, $1) }) == 0 else { throw SignallingClientError.failed("bind: errno \(errno)") }
        var ss = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &ss) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        let port = Int(SocketAddress(ss, length: Int(len))?.port ?? 0)
        let check = (ufrag: Array(consentUfrag.utf8), key: Array(consentPassword.utf8))
        var buf = [UInt8](repeating: 0, count: 1500)
        var answer = [UInt8](repeating: 0, count: 512)
        for _ in 0..<5 {
            let req = (try? BindingCheck.request(username: Array("\(ufrag):sdp".utf8), key: Array(password.utf8))) ?? []
            _ = req.withUnsafeBytes { b in relay.withSockAddr { sendto(fd, b.baseAddress, b.count, 0, $0, $1) } }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            while poll(&p, 1, 1000) == 1 {
                let r = recv(fd, &buf, buf.count, 0)
                guard r >= 20 else { continue }
                // The relay's consent check comes first: answer it from this port.
                let a = buf.withUnsafeBytes { b in
                    answer.withUnsafeMutableBytes { out in
                        BindingCheck.answer(UnsafeRawBufferPointer(rebasing: b[0..<r]), from: STUNAddress(relay),
                                            ufrag: check.ufrag, key: check.key, into: out)
                    }
                }
                if let a {
                    _ = answer.withUnsafeBytes { b in relay.withSockAddr { sendto(fd, b.baseAddress, a, 0, $0, $1) } }
                    continue
                }
                switch buf.withUnsafeBytes({ BindingCheck.reply(UnsafeRawBufferPointer(rebasing: $0[0..<r])) }) {
                case .success?: return port
                case .error?: throw SignallingClientError.failed("the relay refused the STUN credentials")
                case nil: continue
                }
            }
        }
        throw SignallingClientError.failed("no STUN answer from the relay at \(relay)")
    }
}

/// `ws://host:port/path` or `wss://…` (path defaults to /ws). Public for
/// the other clients of the protocol (`parley load`).
public struct ServerURL: Sendable {
    public var secure: Bool
    public var host: String
    public var port: UInt16
    public var path: String

    public init(_ s: String) throws {
        let scheme: String
        if s.hasPrefix("wss://") || s.hasPrefix("https://") { secure = true } else if s.hasPrefix("ws://") || s.hasPrefix("http://") {
            secure = false
        } else {
            throw SignallingClientError.failed("server must be ws://, wss://, http:// or https://, got \(s)")
        }
        scheme = String(s[..<s.range(of: "://")!.lowerBound])
        var rest = Substring(s.dropFirst(scheme.count + 3))
        path = "/ws"
        if let slash = rest.firstIndex(of: "/") {
            let p = String(rest[slash...])
            if p != "/" { path = p }
            rest = rest[..<slash]
        }
        let hp: HostPort
        do { hp = try HostPort.parse(rest.contains(":") ? String(rest) : "\(rest):\(secure ? 443 : 80)") } catch {
            throw SignallingClientError.failed("server: \(error)")
        }
        host = hp.host
        port = UInt16(hp.port)
    }
}
