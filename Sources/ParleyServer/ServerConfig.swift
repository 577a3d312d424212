import ParleyWeb
import Foundation
import ParleyChat
import ParleyCore
import ParleyRecord
import ParleyIO

/// The daemon's configuration: embedded defaults, then `parley.json` (or
/// `--config FILE`), then flags. Every key in the file has a flag of the same
/// name; flags win. See docs/operations.md for the table.
public struct ServerConfig: Sendable, Equatable {
    /// HTTP + WebSocket listener.
    public var listen = HostPort(host: "127.0.0.1", port: 7700)
    /// Media UDP ports: one per event loop, taken from the front of the range.
    public var mediaPorts: ClosedRange<Int> = 7710...7749
    /// Plain STUN service; nil when `off`.
    public var stun: HostPort? = HostPort(host: "127.0.0.1", port: 3478)
    /// Host the media sockets bind to (and advertise in join replies).
    public var mediaHost = "127.0.0.1"
    /// The IP clients are told to send media to (in join replies and SDP answers) when it is not `mediaHost`:
    /// the public address when bound to 0.0.0.0 behind NAT (mediasoup's announcedIp).
    public var mediaAnnounce: String?
    /// The second `media-announce` address, of the other family (`media-host ::` takes both): more candidates.
    public var mediaAnnounceOther: String?
    /// TCP media ports (RFC 4571 framing; ICE-TCP passive candidates): one per event loop, from the front; nil: off (the default).
    public var mediaTCPPorts: ClosedRange<Int>? = nil
    /// TCP media connections in total and from one IP; bytes queued per connection; idle seconds; largest frame read.
    public var mediaTCPMaxConnections = 1000
    public var mediaTCPMaxConnectionsPerIP = 16
    public var mediaTCPWriteBuffer = 262_144
    public var mediaTCPIdleTimeoutSeconds = 30
    public var mediaTCPMaxFrame = 4096
    /// The transports whose candidates WebRTC answers list (`udp`, `tcp`).
    public var webrtcCandidates: Set<String> = ["udp", "tcp"]
    /// Development mode: `GET /dev/token` hands out publishing tokens (loopback listeners only).
    public var dev = false
    public var dataDir = "./var"
    public var logLevel: LogLevel = .info
    /// Event loops (threads); 0 = one per core.
    public var loops = 0
    /// Datagrams per recvmmsg/sendmmsg call.
    public var udpBatch = 64
    /// Plain ws:// and http:// instead of TLS; only allowed on loopback.
    public var insecure = false
    public var tlsCert: String?
    public var tlsKey: String?
    public var maxParticipantsPerRoom = 100
    public var maxRoomsPerLoop = 1000
    /// Seconds a media session outlives its dropped signalling connection.
    public var reconnectGraceSeconds = 15
    /// Seconds of silence (no media, no STUN) before a participant is removed.
    public var participantTimeoutSeconds = 30
    /// Seconds a WebRTC peer's DTLS handshake may take after its offer before it is removed.
    public var dtlsHandshakeTimeoutSeconds = 30
    /// Seconds without a WebRTC peer's own consent check (RFC 7675) before media to it stops and it is removed (0: not checked).
    public var webrtcConsentTimeoutSeconds = 30
    /// Bits/s announced in REMB to WebRTC publishers that negotiated goog-remb (0: none).
    public var rembBitrate = 2_000_000
    /// Milliseconds between transport-wide feedback packets to each WebRTC publisher that negotiated transport-cc (0: none).
    public var transportFeedbackIntervalMs = 100

    // MARK: Media latching and consent checks (#14 finding 3)
    /// Milliseconds between retransmissions of the relay's consent check to a participant's new address.
    public var consentIntervalMilliseconds = 500
    /// Consent-check requests sent to a new address before the relay gives up (media stays where it was).
    public var consentAttempts = 7
    /// An authenticated SRTP packet from a new address latches it without a consent check (ffmpeg).
    public var srtpLatching = true

    // MARK: media relay limits (NACK answers, STUN answers to strangers; docs/security.md)
    /// Milliseconds before a packet may be resent to the same subscriber again.
    public var nackResendIntervalMs = 100
    /// Bytes resent to a subscriber, at most this percentage of the track's bytes forwarded to it.
    public var nackBudgetPercent = 100
    /// STUN answers per second per source IP (STUN service, unauthenticated on media ports); 0 = no limit.
    public var stunRate = 20
    /// STUN answers one source IP may get at once.
    public var stunBurst = 40
    /// Source IPs the STUN limit remembers (per STUN port).
    public var stunSources = 4096

    // MARK: transcoding jobs, uploads, HLS (docs/security.md)
    /// Directories `POST /jobs` may read inputs from, by relative name; none by default.
    public var transcodeInputDirs: [String] = []
    /// Largest `PUT /uploads` body, in bytes.
    public var uploadMaxBytes = 1 << 30
    /// Job submissions per minute per token subject (token bucket refill).
    public var jobRatePerMinute = 10
    /// Job submissions a subject may make back to back (token bucket size).
    public var jobBurst = 5
    /// Jobs queued or running at which `POST /jobs` answers 503.
    public var jobQueueCap = 100
    /// Whether `/hls` assets are served without a token when their job did not say.
    public var hlsPublicDefault = false

    // MARK: upload quota (disk used by PUT /uploads; docs/security.md)
    /// Bytes all stored uploads (and those arriving) may take in DATA-DIR/uploads.
    public var uploadsMaxTotalBytes = 10 << 30
    /// Bytes of uploads one token subject may own (and have arriving).
    public var uploadsMaxBytesPerSubject = 4 << 30

    // MARK: blocking pool (SQLite and disk work of the HTTP routes, off the event loops)
    /// Threads of the `BlockingPool` that runs the routes' SQLite and disk work.
    public var blockingThreads = 4

    // MARK: recording (DATA-DIR/recordings; ParleyRecord's RecordingLimits; docs/security.md)
    /// Bytes of capture files one recording may write before it stops (`size_cap`).
    public var recordMaxBytes = 4 << 30
    /// Free bytes below which recording stops (`low_disk_space`) before the disk fills.
    public var recordMinFreeBytes = 1 << 30
    /// Days a recording is kept after its files last changed, 0 = forever.
    public var recordRetentionDays = 30
    /// Packets queued to the recorder thread before packets are dropped from recordings.
    public var recordQueuePackets = 4096
    /// Rooms recorded as soon as their call opens: glob patterns (`*`, `?`).
    public var recordRooms: [String] = []
    /// Recordings that may run at once.
    public var recordMaxRunning = 50
    /// Where a stopped recording is exported: the server's export thread, a `parley worker` job, or not at all.
    public var recordExport: RecordExportMode = .thread
    /// Whether the server's exports also write `grid.webm` (the composite; it decodes and encodes video).
    public var recordGrid = false
    /// The composite's canvas.
    public var recordGridWidth = 1280
    public var recordGridHeight = 720
    /// Video tracks in the composite at most.
    public var recordGridMaxTiles = 9

    // MARK: Front end limits (HTTP, WebSocket, TLS, signalling requests)
    /// Seconds from accept to a finished TLS handshake.
    public var tlsHandshakeTimeoutSeconds = 10
    /// Who protects TLS 1.3 records after the handshake: Parley (the `SSL` freed) or OpenSSL.
    public var tlsRecordLayer: TLSRecordLayer = .parley
    /// Seconds from accept (or the previous response) to a complete request head.
    public var requestHeadTimeoutSeconds = 10
    /// Bytes queued for a client that does not read before it is disconnected.
    public var maxQueuedBytes = 1 << 20
    /// Open connections, overall and per source IP.
    public var maxConnections = 10_000
    public var maxConnectionsPerIP = 100
    /// Signalling requests per second per connection, and the burst allowed.
    public var signallingRate = 50
    public var signallingBurst = 200
    /// Who may read `/metrics` (its labels name rooms).
    public var metricsAccess = MetricsAccess.loopback

    // MARK: chat (DATA-DIR/chat.db; docs/security.md)
    /// Bytes of text one chat message may carry.
    public var chatMaxMessageBytes = 64 * 1024
    /// Chat messages per second one user may send, and at once.
    public var chatRate = 20
    public var chatBurst = 100
    /// Devices of one user that get chat at once.
    public var chatMaxDevices = 8
    /// Messages per sync page (the device acks each page's last message).
    public var chatSyncPage = 500
    /// Members one chat group may have.
    public var chatMaxGroupMembers = 256
    /// Messages of a direct conversation waiting for the recipient, at most.
    public var chatMaxUndelivered = 100_000
    /// Messages one user has not had yet over all its conversations, groups included.
    public var chatMaxBacklog = 100_000
    /// How long delivered chat messages are kept: `delivered`, `forever`, or a number of days.
    public var chatRetention = "delivered"
    /// Largest `PUT /media` body, and bytes all attachments may take in DATA-DIR/media.
    public var chatMediaMaxBytes = 64 << 20
    public var chatMediaMaxTotalBytes = 10 << 30
    /// Bytes of chat attachments one user may own (uploaded and not deleted).
    public var chatMediaMaxBytesPerUser = 1 << 30
    /// Milliseconds a user must stay offline before its contacts are told.
    public var chatPresenceDebounceMs = 2000
    /// Chat store operations that may wait for its writer thread before chat answers `busy`.
    public var chatQueue = 10_000
    /// Milliseconds the chat store's writer lets operations gather before a group commit, when they come that fast.
    public var chatCommitDelayMs = 3
    /// `process`: a `sent` message survives the server process dying; `fsync`: it survives power loss (one fsync per group commit).
    public var chatDurability = "process"
    /// Offline notifications: POST signed JSON here (empty: none); see docs/protocol.md "Offline notifications".
    public var chatWebhookURL = ""
    /// The HMAC-SHA256 key of the webhook's signature, given inline or as a file's first line.
    public var chatWebhookSecret = ""
    public var chatWebhookSecretFile = ""
    /// At most one notification per user per this many ms; messages in between collapse into the next.
    public var chatWebhookIntervalMs = 10_000
    /// Users with a notification waiting, at most; more are dropped.
    public var chatWebhookQueue = 10_000
    /// Webhook requests in flight at once.
    public var chatWebhookConcurrency = 4
    /// Milliseconds one webhook request may take.
    public var chatWebhookTimeoutMs = 5000
    /// Milliseconds a kept-alive webhook connection may wait idle (0: a connection per request).
    public var chatWebhookIdleMs = 30_000
    /// Milliseconds a webhook host name's resolved address is reused.
    public var chatWebhookResolveTTLMs = 60_000
    /// Attempts per notification, and the wait before the first retry (doubled for each further one).
    public var chatWebhookAttempts = 5
    public var chatWebhookBackoffMs = 1000
    /// Whether a notification carries the message text (cut to 200 bytes).
    public var chatWebhookIncludeText = false
    /// PEM certificates an https:// webhook must chain to.
    public var chatWebhookCAFile = "/etc/ssl/certs/ca-certificates.crt"

    public init() {}

    /// The keys a config file may hold (and the flags that override them).
    public static let keys: [(key: String, help: String)] = [
        ("listen", "HOST:PORT of the HTTP/WebSocket listener (default 127.0.0.1:7700)"),
        ("media-ports", "A-B, UDP ports for media, one per event loop (default 7710-7749)"),
        ("media-host", "address media sockets bind to and advertise (default 127.0.0.1)"),
        ("media-announce", "IP clients send media to, when not media-host (needed with media-host 0.0.0.0 or ::); IPV4,IPV6 with media-host :: (both families) gives candidates for both; default none"),
        ("media-tcp-ports", "A-B, TCP ports for media over TCP (RFC 4571; ICE-TCP passive candidates), one per event loop, or off (default off)"),
        ("media-tcp-max-connections", "open TCP media connections, all loops together (default 1000)"),
        ("media-tcp-max-connections-per-ip", "open TCP media connections from one IP address (default 16)"),
        ("media-tcp-write-buffer", "bytes queued for one TCP media connection; a packet past it is dropped and counted, never waited for (default 262144)"),
        ("media-tcp-idle-timeout", "seconds without a byte before a TCP media connection is closed (default 30)"),
        ("media-tcp-max-frame", "largest RFC 4571 frame read from a TCP media connection, in bytes; larger ones are skipped and counted (default 4096)"),
        ("webrtc-candidates", "transports WebRTC answers offer candidates for: udp,tcp (tcp needs media-tcp-ports; tcp alone omits UDP) (default udp,tcp)"),
        ("stun", "HOST:PORT of the plain STUN service, or off (default 127.0.0.1:3478)"),
        ("data-dir", "directory for the database, secret, certificates, recordings (default ./var)"),
        ("log-level", "debug, info, warn or error (default info)"),
        ("loops", "event loop threads, 0 = one per core (default 0)"),
        ("udp-batch", "datagrams per recvmmsg/sendmmsg call (default 64)"),
        ("insecure", "serve plain ws:// and http://, loopback only (default false)"),
        ("dev", "development: GET /dev/token gives anyone a publishing token (for the demo page at /), loopback only (default false)"),
        ("tls-cert", "PEM certificate file (default: self-signed in DATA-DIR/tls)"),
        ("tls-key", "PEM private key file"),
        ("max-participants", "participants per room (default 100)"),
        ("max-rooms-per-loop", "rooms per event loop (default 1000)"),
        ("reconnect-grace", "seconds a media session survives a dropped connection (default 15)"),
        ("participant-timeout", "seconds of silence before a participant is removed (default 30)"),
        ("remb-bitrate", "bits/s announced in REMB to WebRTC publishers, a cap on what they send; 0 = no REMB (default 2000000)"),
        ("transport-feedback-interval", "milliseconds between transport-wide congestion control feedback packets to each WebRTC publisher that negotiated transport-cc, 20-1000; 0 = none (default 100)"),
        ("webrtc-consent-timeout", "seconds without a WebRTC peer's own consent check (RFC 7675) before media to it stops and it is removed, 0 = not checked (default 30)"),
        ("dtls-handshake-timeout", "seconds a WebRTC peer's DTLS handshake may take before it is removed (default 30)"),
        // MARK: transcoding jobs, uploads, HLS
        ("transcode-input-dirs", "directories POST /jobs may name inputs in, comma-separated (a JSON array in the file); default none"),
        ("upload-max-bytes", "largest PUT /uploads body in bytes (default 1073741824)"),
        ("job-rate", "job submissions per minute per token subject (default 10)"),
        ("job-burst", "job submissions a token subject may make back to back (default 5)"),
        ("job-queue-cap", "jobs queued or running before POST /jobs answers 503 (default 100)"),
        ("hls-public-default", "serve /hls assets without a token unless their job said \"public\": false (default false)"),
        // MARK: upload quota
        ("uploads-max-total-bytes", "bytes all uploads may take in DATA-DIR/uploads; PUT /uploads answers 507 past it (default 10737418240)"),
        ("uploads-max-bytes-per-subject", "bytes of uploads one token subject may own; PUT /uploads answers 507 past it (default 4294967296)"),
        // MARK: recording
        ("record-max-bytes", "bytes of capture files one recording may write; it stops with a size_cap event past it (default 4294967296)"),
        ("record-min-free-bytes", "free bytes on the data directory's filesystem below which recording stops with a low_disk_space event (default 1073741824)"),
        ("record-retention-days", "days a recording is kept after its files last changed, 0 = forever (default 30)"),
        ("record-queue-packets", "packets queued to the recorder thread; beyond, packets are dropped from recordings and counted (default 4096)"),
        ("record-max-running", "recordings that may run at once; another start is refused (default 50)"),
        ("record-export", "where a stopped recording is exported: thread (the server's export thread), worker (a record-export job for parley worker) or none (default thread)"),
        ("record-grid", "exports on the server's export thread also write grid.webm, the room's video tracks in a grid with the mix as sound (decodes and encodes video: CPU-costly) (default false)"),
        ("record-grid-size", "the grid's canvas WIDTHxHEIGHT, even, 160x120 to 1920x1080 (default 1280x720)"),
        ("record-grid-max-tiles", "video tracks in the grid, 1 to 16, the first to start first; later ones are left out (default 9)"),
        ("record-rooms", "rooms recorded as soon as their call opens: glob patterns (* and ?), comma-separated (a JSON array in the file); default none"),
        // MARK: media relay limits (NACK answers, STUN answers to strangers)
        ("nack-resend-interval-ms", "milliseconds before a packet is resent to the same subscriber again (default 100)"),
        ("nack-budget-percent", "bytes resent on NACK, at most this % of the track's bytes sent to that subscriber, 0-200 (default 100)"),
        ("stun-rate", "STUN answers per second per source IP to unauthenticated requests, 0 = no limit (default 20)"),
        ("stun-burst", "STUN answers one source IP may get at once (default 40)"),
        ("stun-sources", "source IPs the STUN rate limit tracks per port, least recently seen forgotten first (default 4096)"),
        // MARK: blocking pool
        ("blocking-threads", "threads for the HTTP routes' SQLite and disk work (jobs, uploads, /hls), off the event loops (default 4)"),
        // Front end limits (HTTP, WebSocket, TLS, signalling requests)
        ("tls-handshake-timeout", "seconds from accept to a finished TLS handshake (default 10)"),
        ("tls-record-layer", "parley (TLS 1.3 records protected by Parley after OpenSSL's handshake, the SSL freed) or openssl (default parley)"),
        ("request-head-timeout", "seconds from accept or the previous response to a complete request head (default 10)"),
        ("max-queued-bytes", "bytes queued for a client that does not read before it is disconnected (default 1048576)"),
        ("max-connections", "open HTTP/WebSocket connections (default 10000)"),
        ("max-connections-per-ip", "open HTTP/WebSocket connections from one IP address (default 100)"),
        ("signalling-rate", "signalling requests per second per connection (default 50)"),
        ("signalling-burst", "signalling requests a connection may send at once (default 200)"),
        // chat
        ("chat-max-message-bytes", "bytes of text one chat message may carry; longer is refused too_large (default 65536)"),
        ("chat-rate", "chat messages per second one user may send over all devices (default 20)"),
        ("chat-burst", "chat messages one user may send at once (default 100)"),
        ("chat-max-devices", "devices of one user that get chat at once; more are refused too_many_devices (default 8)"),
        ("chat-sync-page", "messages per sync page; the device acks a page's last message to get the next (default 500)"),
        ("chat-max-undelivered", "messages of a direct conversation the recipient has not had yet, at most; more is refused backlog_full (default 100000)"),
        ("chat-max-backlog", "messages one user has not had yet over all its conversations, groups included, at most; a message that would add to it is refused backlog_full (default 100000)"),
        ("chat-max-group-members", "members one chat group may have, its creator included (default 256)"),
        ("chat-retention", "how long delivered chat messages are kept: delivered (deleted once every member and syncing device has them), forever, or a number of days (default delivered)"),
        ("chat-media-max-bytes", "largest chat attachment (PUT /media body) in bytes; 413 past it (default 67108864)"),
        ("chat-media-max-total-bytes", "bytes all chat attachments and thumbnails may take in DATA-DIR/media; PUT /media answers 507 past it (default 10737418240)"),
        ("chat-media-max-bytes-per-user", "bytes of chat attachments one user may own (uploaded, not deleted with DELETE /media/{id}); PUT /media answers 507 past it (default 1073741824)"),
        ("chat-presence-debounce-ms", "milliseconds a chat user must stay offline before its contacts are told (default 2000)"),
        ("chat-queue", "chat store operations waiting for the writer thread before chat answers busy (default 10000)"),
        ("chat-commit-delay-ms", "milliseconds the chat store waits for more operations to share a group commit, when the previous one came less than that before; 0 commits at once (default 3)"),
        ("chat-durability", "process: a sent message survives the server dying; fsync: it survives power loss, one fsync per group commit (default process)"),
        ("chat-webhook-url", "offline notifications: POST signed JSON to this http:// or https:// URL when a message's recipient has no chat device connected (default none)"),
        ("chat-webhook-secret", "the HMAC-SHA256 key signing each webhook request (X-Parley-Signature); required with chat-webhook-url unless chat-webhook-secret-file is set"),
        ("chat-webhook-secret-file", "a file whose first line is the webhook's signing key (keeps it out of the config file)"),
        ("chat-webhook-interval-ms", "at most one notification per user per this many milliseconds; messages in between collapse into the next, with a count (default 10000)"),
        ("chat-webhook-queue", "users with a notification waiting, at most; more are dropped and counted (default 10000)"),
        ("chat-webhook-concurrency", "webhook requests in flight at once (default 4)"),
        ("chat-webhook-timeout-ms", "milliseconds one webhook request may take, connect (when it needs one) to the end of the response (default 5000)"),
        ("chat-webhook-idle-ms", "milliseconds a kept-alive webhook connection may wait idle for the next request, at most chat-webhook-concurrency of them; 0: a connection per request (default 30000)"),
        ("chat-webhook-resolve-ttl-ms", "milliseconds the webhook host name's resolved address is reused before getaddrinfo runs again; a failed connect forgets it at once (default 60000)"),
        ("chat-webhook-attempts", "attempts per notification after 5xx, 408, 429, timeouts and connection errors (default 5)"),
        ("chat-webhook-backoff-ms", "milliseconds before the first retry, doubled for each further one, at most 5 minutes (default 1000)"),
        ("chat-webhook-include-text", "true: a notification carries the message text, cut to 200 bytes (default false: user, conversation, sender, count and priority only)"),
        ("chat-webhook-ca-file", "PEM certificates an https:// webhook must chain to (default /etc/ssl/certs/ca-certificates.crt)"),
        ("metrics-access", "who may read /metrics: public, loopback (clients on 127.0.0.0/8 or ::1, others need an adm token) or admin (default loopback)"),
        // Media latching and consent checks (#14 finding 3)
        ("consent-interval", "milliseconds between retransmissions of a consent check to a new media address (default 500)"),
        ("consent-attempts", "consent-check requests sent to a new media address before giving up (default 7)"),
        ("srtp-latching", "an authenticated SRTP packet from a new address moves media without a consent check, for ffmpeg (default true)"),
    ]

    /// The keys that are switches (`--insecure`, `true`/`false` in the file), not values.
    public static let booleanKeys: Set<String> = ["insecure", "hls-public-default", "dev", "chat-webhook-include-text", "record-grid"]

    /// Sets one key from its textual form (a flag value or a JSON scalar).
    public mutating func set(_ key: String, _ value: String) throws {
        func int(_ range: ClosedRange<Int>) throws -> Int {
            guard let v = Int(value), range.contains(v) else {
                throw ConfigError(key: key, "must be an integer in \(range.lowerBound)-\(range.upperBound), got \"\(value)\"")
            }
            return v
        }
        func portRange() throws -> ClosedRange<Int> {
            let parts = value.split(separator: "-", omittingEmptySubsequences: false)
            guard parts.count == 2, let a = Int(parts[0]), let b = Int(parts[1]),
                  (1...65535).contains(a), (1...65535).contains(b), a <= b else {
                throw ConfigError(key: key, "expected A-B with 1 <= A <= B <= 65535, got \"\(value)\"")
            }
            return a...b
        }
        switch key {
        case "listen": listen = try HostPort.parse(value, key: key)
        case "media-ports": mediaPorts = try portRange()
        case "media-host": mediaHost = value
        case "media-tcp-ports": mediaTCPPorts = value == "off" ? nil : try portRange()
        case "media-tcp-max-connections": mediaTCPMaxConnections = try int(1...1_000_000)
        case "media-tcp-max-connections-per-ip": mediaTCPMaxConnectionsPerIP = try int(1...1_000_000)
        case "media-tcp-write-buffer": mediaTCPWriteBuffer = try int(4096...(64 << 20))
        case "media-tcp-idle-timeout": mediaTCPIdleTimeoutSeconds = try int(1...3600)
        case "media-tcp-max-frame": mediaTCPMaxFrame = try int(256...65535)
        case "webrtc-candidates":
            let set = Set(value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
            guard !set.isEmpty, set.isSubset(of: ["udp", "tcp"]) else {
                throw ConfigError(key: key, "must be udp, tcp or udp,tcp, got \"\(value)\"")
            }
            webrtcCandidates = set
        case "media-announce":
            let ips = value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            guard (1...2).contains(ips.count), ips.allSatisfy({ SocketAddress(ip: $0, port: 1) != nil && !Self.isWildcard($0) }),
                  ips.count == 1 || ips[0].contains(":") != ips[1].contains(":") else {
                throw ConfigError(key: key, "must be an IPv4 or IPv6 address clients can reach, or one of each (IPV4,IPV6), got \"\(value)\"")
            }
            mediaAnnounce = ips[0]
            mediaAnnounceOther = ips.count == 2 ? ips[1] : nil
        case "stun": stun = value == "off" ? nil : try HostPort.parse(value, key: key)
        case "data-dir":
            guard !value.isEmpty else { throw ConfigError(key: key, "must not be empty") }
            dataDir = value
        case "log-level":
            guard let l = LogLevel(name: value) else { throw ConfigError(key: key, "must be debug, info, warn or error, got \"\(value)\"") }
            logLevel = l
        case "loops": loops = try int(0...256)
        case "udp-batch": udpBatch = try int(1...1024)
        case "dev":
            guard let b = ["true": true, "false": false][value] else { throw ConfigError(key: key, "must be true or false") }
            dev = b
        case "insecure":
            guard let b = ["true": true, "false": false][value] else { throw ConfigError(key: key, "must be true or false") }
            insecure = b
        case "tls-cert": tlsCert = value
        case "tls-key": tlsKey = value
        case "max-participants": maxParticipantsPerRoom = try int(1...10_000)
        case "max-rooms-per-loop": maxRoomsPerLoop = try int(1...1_000_000)
        case "reconnect-grace": reconnectGraceSeconds = try int(0...3600)
        case "participant-timeout": participantTimeoutSeconds = try int(1...3600)
        case "dtls-handshake-timeout": dtlsHandshakeTimeoutSeconds = try int(1...300)
        case "webrtc-consent-timeout": webrtcConsentTimeoutSeconds = try int(0...300)
        case "remb-bitrate": rembBitrate = try int(0...1_000_000_000)
        case "transport-feedback-interval":
            transportFeedbackIntervalMs = try int(0...1000)
            guard transportFeedbackIntervalMs == 0 || transportFeedbackIntervalMs >= 20 else {
                throw ConfigError(key: key, "must be 0 (none) or 20-1000 milliseconds, got \"\(value)\"")
            }
        // MARK: transcoding jobs, uploads, HLS
        case "transcode-input-dirs":
            transcodeInputDirs = value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        case "upload-max-bytes": uploadMaxBytes = try int(1024...(1 << 40))
        case "job-rate": jobRatePerMinute = try int(1...100_000)
        case "job-burst": jobBurst = try int(1...10_000)
        case "job-queue-cap": jobQueueCap = try int(1...1_000_000)
        case "hls-public-default":
            guard let b = ["true": true, "false": false][value] else { throw ConfigError(key: key, "must be true or false") }
            hlsPublicDefault = b
        // MARK: upload quota
        case "uploads-max-total-bytes": uploadsMaxTotalBytes = try int(1024...(1 << 50))
        case "uploads-max-bytes-per-subject": uploadsMaxBytesPerSubject = try int(1024...(1 << 50))
        // MARK: recording
        case "record-max-bytes": recordMaxBytes = try int((1 << 20)...(1 << 50))
        case "record-min-free-bytes": recordMinFreeBytes = try int(0...(1 << 50))
        case "record-retention-days": recordRetentionDays = try int(0...36_500)
        case "record-queue-packets": recordQueuePackets = try int(16...(1 << 20))
        case "record-max-running": recordMaxRunning = try int(1...10_000)
        case "record-export":
            guard let m = RecordExportMode(rawValue: value) else { throw ConfigError(key: key, "must be thread, worker or none, got \"\(value)\"") }
            recordExport = m
        case "record-grid":
            guard let b = ["true": true, "false": false][value] else { throw ConfigError(key: key, "must be true or false") }
            recordGrid = b
        case "record-grid-size":
            guard let (w, h) = GridOptions.size(value), (160...GridOptions.maxWidth).contains(w), (120...GridOptions.maxHeight).contains(h),
                  w % 2 == 0, h % 2 == 0 else {
                throw ConfigError(key: key, "must be WIDTHxHEIGHT, even, from 160x120 to \(GridOptions.maxWidth)x\(GridOptions.maxHeight), got \"\(value)\"")
            }
            (recordGridWidth, recordGridHeight) = (w, h)
        case "record-grid-max-tiles": recordGridMaxTiles = try int(1...GridOptions.tileLimit)
        case "record-rooms":
            recordRooms = value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        // MARK: media relay limits (NACK answers, STUN answers to strangers)
        case "nack-resend-interval-ms": nackResendIntervalMs = try int(1...10_000)
        case "nack-budget-percent": nackBudgetPercent = try int(0...200)
        case "stun-rate": stunRate = try int(0...1_000_000)
        case "stun-burst": stunBurst = try int(1...1_000_000)
        case "stun-sources": stunSources = try int(16...1 << 20)
        // MARK: blocking pool
        case "blocking-threads": blockingThreads = try int(1...256)
        // Front end limits
        case "tls-handshake-timeout": tlsHandshakeTimeoutSeconds = try int(1...300)
        case "tls-record-layer":
            guard let m = TLSRecordLayer(rawValue: value) else { throw ConfigError(key: key, "must be parley or openssl, got \"\(value)\"") }
            tlsRecordLayer = m
        case "request-head-timeout": requestHeadTimeoutSeconds = try int(1...300)
        case "max-queued-bytes": maxQueuedBytes = try int(65536...(1 << 30))
        case "max-connections": maxConnections = try int(1...1_000_000)
        case "max-connections-per-ip": maxConnectionsPerIP = try int(1...1_000_000)
        case "signalling-rate": signallingRate = try int(1...100_000)
        case "signalling-burst": signallingBurst = try int(1...100_000)
        case "chat-max-message-bytes": chatMaxMessageBytes = try int(1...(200 * 1024))
        case "chat-rate": chatRate = try int(1...1_000_000)
        case "chat-burst": chatBurst = try int(1...1_000_000)
        case "chat-max-devices": chatMaxDevices = try int(1...100)
        case "chat-sync-page": chatSyncPage = try int(1...10_000)
        case "chat-max-undelivered": chatMaxUndelivered = try int(1...10_000_000)
        case "chat-max-backlog": chatMaxBacklog = try int(1...100_000_000)
        case "chat-max-group-members": chatMaxGroupMembers = try int(2...100_000)
        case "chat-retention":
            guard value == "delivered" || value == "forever" || Int(value).map({ (1...36_500).contains($0) }) == true else {
                throw ConfigError(key: key, "must be delivered, forever or 1-36500 days, got \"\(value)\"")
            }
            chatRetention = value
        case "chat-media-max-bytes": chatMediaMaxBytes = try int(1024...(1 << 40))
        case "chat-media-max-total-bytes": chatMediaMaxTotalBytes = try int(1024...(1 << 50))
        case "chat-media-max-bytes-per-user": chatMediaMaxBytesPerUser = try int(1024...(1 << 50))
        case "chat-presence-debounce-ms": chatPresenceDebounceMs = try int(0...600_000)
        case "chat-queue": chatQueue = try int(1...1_000_000)
        case "chat-commit-delay-ms": chatCommitDelayMs = try int(0...100)
        case "chat-durability":
            guard ["process", "fsync"].contains(value) else { throw ConfigError(key: key, "must be process or fsync, got \"\(value)\"") }
            chatDurability = value
        case "chat-webhook-url":
            if !value.isEmpty { do { _ = try WebhookURL(value) } catch { throw ConfigError(key: key, error.description) } }
            chatWebhookURL = value
        case "chat-webhook-secret": chatWebhookSecret = value
        case "chat-webhook-secret-file": chatWebhookSecretFile = value
        case "chat-webhook-interval-ms": chatWebhookIntervalMs = try int(0...86_400_000)
        case "chat-webhook-queue": chatWebhookQueue = try int(1...10_000_000)
        case "chat-webhook-concurrency": chatWebhookConcurrency = try int(1...1000)
        case "chat-webhook-timeout-ms": chatWebhookTimeoutMs = try int(10...600_000)
        case "chat-webhook-idle-ms": chatWebhookIdleMs = try int(0...3_600_000)
        case "chat-webhook-resolve-ttl-ms": chatWebhookResolveTTLMs = try int(0...86_400_000)
        case "chat-webhook-attempts": chatWebhookAttempts = try int(1...100)
        case "chat-webhook-backoff-ms": chatWebhookBackoffMs = try int(1...3_600_000)
        case "chat-webhook-include-text":
            guard let b = ["true": true, "false": false][value] else { throw ConfigError(key: key, "must be true or false") }
            chatWebhookIncludeText = b
        case "chat-webhook-ca-file": chatWebhookCAFile = value
        case "metrics-access":
            guard let a = MetricsAccess(rawValue: value) else { throw ConfigError(key: key, "must be public, loopback or admin, got \"\(value)\"") }
            metricsAccess = a
        // Media latching and consent checks (#14 finding 3)
        case "consent-interval": consentIntervalMilliseconds = try int(10...10_000)
        case "consent-attempts": consentAttempts = try int(1...100)
        case "srtp-latching":
            guard let b = ["true": true, "false": false][value] else { throw ConfigError(key: key, "must be true or false") }
            srtpLatching = b
        default:
            let near = nearestName(to: key, in: Self.keys.map(\.key))
            throw ConfigError(key: nil, "unknown key \"\(key)\"\(near.map { "; did you mean \"\($0)\"?" } ?? "")")
        }
    }

    /// Loads a JSON object of keys → scalars. The file is parsed strictly
    /// (RFC 8259: no trailing commas, no comments); errors give line and column.
    public mutating func load(file path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError(key: nil, "cannot read config file \(path)")
        }
        let text = String(decoding: data, as: UTF8.self)
        let json: JSONValue
        do { json = try JSONValue.parse(text) } catch {
            let (line, column) = Self.lineAndColumn(ofByte: error.offset, in: text)
            throw ConfigError(key: nil, "\(path):\(line):\(column): invalid JSON: \(error.reason)")
        }
        guard let object = json.objectValue else { throw ConfigError(key: nil, "\(path) must hold a JSON object") }
        for key in object.keys.sorted() {
            let value = object[key]!, text: String
            switch value {
            case .bool(let b): text = b ? "true" : "false"
            case .number where Self.booleanKeys.contains(key):
                throw ConfigError(key: key, "must be true or false (in \(path))")
            case .number: text = value.serialized
            case .string(let s): text = s
            case .array(let list) where key == "transcode-input-dirs" || key == "record-rooms":
                // A list of directories (patterns); set() takes them comma-separated.
                let dirs = list.compactMap(\.stringValue)
                guard dirs.count == list.count, !dirs.contains(where: { $0.contains(",") }) else {
                    throw ConfigError(key: key, "must be an array of \(key == "record-rooms" ? "room patterns" : "directory names") without commas (in \(path))")
                }
                text = dirs.joined(separator: ",")
            case .null, .array, .object: throw ConfigError(key: key, "must be a string, number or boolean (in \(path))")
            }
            do { try set(key, text) } catch let e as ConfigError {
                throw ConfigError(key: e.key, "\(e.message) (in \(path))")
            }
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    static func lineAndColumn(ofByte offset: Int, in text: String) -> (Int, Int) {
        let before = text.utf8.prefix(offset)
        let line = before.reduce(1) { $1 == 0x0A ? $0 + 1 : $0 }
        let lineStart = before.lastIndex(of: 0x0A).map { before.index(after: $0) } ?? before.startIndex
        return (line, String(decoding: before[lineStart...], as: UTF8.self).count + 1)
    }

    /// Checks combinations that single keys cannot.
    public func validate() throws {
        if insecure && !Self.isLoopback(listen.host) {
            throw ConfigError(key: "insecure", "plain ws:// is only allowed on a loopback address, not \(listen.host)")
        }
        if dev && !Self.isLoopback(listen.host) {
            throw ConfigError(key: "dev", "dev tokens are only handed out on a loopback listener, not \(listen.host)")
        }
        if Self.isWildcard(mediaHost) && mediaAnnounce == nil {
            throw ConfigError(key: "media-announce", "media-host \(mediaHost) binds every address: set media-announce to the IP clients send media to")
        }
        if webrtcCandidates == ["tcp"] && mediaTCPPorts == nil {
            throw ConfigError(key: "webrtc-candidates", "tcp alone needs media-tcp-ports (TCP media is off)")
        }
        if !chatWebhookURL.isEmpty && chatWebhookSecret.isEmpty && chatWebhookSecretFile.isEmpty {
            throw ConfigError(key: "chat-webhook-secret", "chat-webhook-url needs a signing key: chat-webhook-secret or chat-webhook-secret-file")
        }
        if (tlsCert == nil) != (tlsKey == nil) {
            throw ConfigError(key: tlsCert == nil ? "tls-cert" : "tls-key", "tls-cert and tls-key go together")
        }
    }

    /// 0.0.0.0 or :: (every address: nothing a client can send to).
    public static func isWildcard(_ host: String) -> Bool {
        host == "0.0.0.0" || host == "::" || host == "[::]"
    }

    public static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }

    /// Defaults, then the config file (explicit `--config`, else ./parley.json if present), then flags.
    public static func resolve(flags: [String: String], switches: Set<String>) throws -> ServerConfig {
        var c = ServerConfig()
        if let path = flags["config"] {
            try c.load(file: path)
        } else if FileManager.default.fileExists(atPath: "parley.json") {
            try c.load(file: "parley.json")
        }
        for (k, v) in flags where k != "config" { try c.set(k, v) }
        for s in switches where booleanKeys.contains(s) { try c.set(s, "true") }
        try c.validate()
        return c
    }
}

extension HostPort {
    /// Parses a config value, naming the key in the error.
    static func parse(_ s: String, key: String) throws -> HostPort {
        do { return try parse(s) } catch { throw ConfigError(key: key, error.description) }
    }

    /// The socket address to bind; a host name is a config error.
    func socketAddress(key: String) throws -> SocketAddress {
        guard let a = socketAddress else { throw ConfigError(key: key, "\(host) is not an IP address") }
        return a
    }
}

public struct ConfigError: Error, CustomStringConvertible {
    public let key: String?
    public let message: String
    public init(key: String?, _ message: String) { self.key = key; self.message = message }
    public var description: String { key.map { "config: \($0): \(message)" } ?? "config: \(message)" }
}
