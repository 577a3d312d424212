// swift-tools-version:6.0
// Parley: a real-time media and messaging engine for Linux.
// No Swift package dependencies: the C libraries of the field come in as
// system-library targets under CSystemLibs/ (see ../shared/DESIGN.md).
import PackageDescription

let package = Package(
    name: "Parley",
    products: [
        .executable(name: "parley", targets: ["parley"]),
    ],
    targets: [
        // MARK: C bridging
        .target(name: "CLinux", path: "CSystemLibs/CLinux"),
        .systemLibrary(name: "COpus", path: "CSystemLibs/COpus", pkgConfig: "opus",
                       providers: [.apt(["libopus-dev"])]),
        .systemLibrary(name: "CFFmpeg", path: "CSystemLibs/CFFmpeg", pkgConfig: "libavformat",
                       providers: [.apt(["libavformat-dev", "libavcodec-dev", "libavutil-dev",
                                         "libswscale-dev", "libswresample-dev", "libavfilter-dev"])]),
        .systemLibrary(name: "CSRTP", path: "CSystemLibs/CSRTP", pkgConfig: "libsrtp2",
                       providers: [.apt(["libsrtp2-dev"])]),
        .systemLibrary(name: "COpenSSL", path: "CSystemLibs/COpenSSL", pkgConfig: "openssl",
                       providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CSQLite", path: "CSystemLibs/CSQLite", pkgConfig: "sqlite3",
                       providers: [.apt(["libsqlite3-dev"])]),

        // MARK: Swift modules, bottom to top
        .target(name: "ParleyCore"),
        .target(name: "ParleyIO", dependencies: ["ParleyCore", "CLinux", "COpenSSL"]),
        .target(name: "ParleyStore", dependencies: ["CLinux", "ParleyCore", "CSQLite"]),
        .target(name: "ParleyRTP", dependencies: ["ParleyCore"]),
        .target(name: "ParleySTUN", dependencies: ["ParleyCore", "COpenSSL"]),
        .target(name: "ParleySRTP", dependencies: ["ParleyCore", "COpenSSL"]),
        .target(name: "ParleyHTTP", dependencies: ["ParleyCore", "COpenSSL"]),
        // SDP offer/answer for WebRTC peers: parse an offer, write an answer (RFC 8866, RFC 8829).
        // SDP offer/answer for WebRTC peers: parse an offer, write an answer (RFC 8866, RFC 8829).
        .target(name: "ParleySDP", dependencies: ["ParleyCore"]),
        // DTLS-SRTP over memory BIOs (RFC 5764): datagrams in, datagrams out, SRTP keys exported.
        .target(name: "ParleyDTLS", dependencies: ["ParleyCore", "COpenSSL", "ParleySRTP"]),
        // Tokens (JWT HS256), the server secret, what a token grants.
        .target(name: "ParleyAuth", dependencies: ["ParleyCore", "COpenSSL"]),
        // The HTTP/WebSocket server runtime on ParleyIO: server, router, files, bearer auth, /healthz and /metrics.
        .target(name: "ParleyWeb", dependencies: ["ParleyCore", "ParleyIO", "ParleyHTTP", "ParleyAuth"]),
        .target(name: "ParleyRelay", dependencies: ["CLinux", "ParleyCore", "ParleyIO", "ParleyRTP", "ParleySTUN", "ParleySRTP", "ParleyDTLS"]),
        // Every signalling message and error, and the clients that speak them (WebSocket client, `parley sdp`'s session).
        .target(name: "ParleyProtocol", dependencies: ["ParleyCore", "ParleyIO", "ParleyHTTP", "ParleyAuth", "ParleySRTP", "ParleySTUN", "ParleyRTP"]),
        // Sessions, the signalling state machine and its media backend over the relay.
        .target(name: "ParleySignalling", dependencies: ["ParleyCore", "ParleyIO", "ParleyHTTP", "ParleyAuth", "ParleyWeb",
                                                         "ParleyProtocol", "ParleyRelay", "ParleySRTP", "ParleyRTP", "ParleySDP", "ParleyDTLS"]),
        // Chat: a feature service on the signalling connection, its store in DATA-DIR/chat.db.
        .target(name: "ParleyChat", dependencies: ["ParleyCore", "ParleyIO", "ParleyHTTP", "ParleyAuth", "ParleyStore", "ParleyProtocol", "ParleySignalling"]),
        .target(name: "ParleyMedia", dependencies: ["ParleyCore", "CFFmpeg", "COpus"]),
        // Recording: capture to crash-safe per-track files, depacketizers, export (per participant, room mix).
        .target(name: "ParleyRecord", dependencies: ["CLinux", "ParleyCore", "ParleyRTP", "ParleyRelay", "ParleyMedia", "CFFmpeg", "COpus"]),
        .target(name: "ParleyTranscode", dependencies: ["ParleyCore", "ParleyMedia", "ParleyStore", "ParleyRecord", "CFFmpeg"]),
        // `parley load`: synthetic participants through the public protocol, their measurements and reports.
        .target(name: "ParleyLoad", dependencies: ["ParleyCore", "ParleyIO", "ParleyAuth", "ParleyProtocol", "ParleyRTP",
                                                   "ParleySRTP", "ParleySTUN", "ParleyMedia"]),
        // Composition only: config, the daemon, its routes.
        .target(name: "ParleyServer", dependencies: ["CLinux", "ParleyCore", "ParleyIO", "ParleyHTTP", "ParleyAuth", "ParleyWeb",
                                                     "ParleyRelay", "ParleyProtocol", "ParleySignalling", "ParleyChat", "ParleyTranscode", "ParleyRecord"]),
        // The benchmark servers behind `parley bench` (tools/bench/*); only the CLI depends on it.
        .target(name: "ParleyBench", dependencies: ["CLinux", "ParleyCore", "ParleyIO", "ParleyRelay", "ParleySRTP", "ParleyProtocol", "ParleyRTP", "ParleyRecord", "ParleyDTLS"]),
        // The CLI: every `parley <command>` lives here, on top of the modules.
        .executableTarget(name: "parley", dependencies: ["ParleyCore", "ParleyIO", "ParleyAuth", "ParleyProtocol", "ParleyServer",
                                                         "ParleyTranscode", "ParleyRecord", "ParleyBench", "ParleyLoad"]),

        // MARK: Tests, one target per module
        // Helpers shared by test targets (pcap writer, tshark and process runners); only tests depend on it.
        .target(name: "ParleyTestSupport", path: "Tests/ParleyTestSupport"),
        .testTarget(name: "SystemLibsTests", dependencies: ["CLinux", "COpus", "CFFmpeg", "CSRTP", "COpenSSL", "CSQLite"]),
        .testTarget(name: "ParleyCoreTests", dependencies: ["ParleyCore"]),
        .testTarget(name: "ParleyIOTests", dependencies: ["ParleyIO", "ParleyCore", "CLinux", "ParleyTestSupport"]),
        .testTarget(name: "ParleyStoreTests", dependencies: ["ParleyStore", "ParleyCore", "ParleyTestSupport"]),
        .testTarget(name: "ParleyRTPTests", dependencies: ["ParleyRTP", "ParleyTestSupport"]),
        .testTarget(name: "ParleySTUNTests", dependencies: ["ParleySTUN", "COpenSSL", "ParleyTestSupport"]),
        .testTarget(name: "ParleySRTPTests", dependencies: ["ParleySRTP", "CSRTP", "ParleyTestSupport"]),
        .testTarget(name: "ParleyDTLSTests", dependencies: ["ParleyDTLS", "ParleySRTP", "ParleyCore", "ParleyTestSupport"]),
        .testTarget(name: "ParleySDPTests", dependencies: ["ParleySDP", "ParleyTestSupport"]),
        .testTarget(name: "ParleyHTTPTests", dependencies: ["ParleyHTTP", "ParleyTestSupport"]),
        .testTarget(name: "ParleyAuthTests", dependencies: ["ParleyAuth", "ParleyCore", "ParleyTestSupport"]),
        .testTarget(name: "ParleyRelayTests", dependencies: ["ParleyRelay", "ParleyDTLS", "ParleyCore", "ParleyIO", "ParleyRTP", "ParleySTUN", "ParleySRTP", "ParleyTestSupport"]),
        .testTarget(name: "ParleyMediaTests", dependencies: ["ParleyMedia", "CFFmpeg"]),
        .testTarget(name: "ParleyRecordTests", dependencies: ["ParleyRecord", "ParleyMedia", "ParleyRTP", "ParleyCore", "CFFmpeg", "COpus", "ParleyTestSupport"]),
        .testTarget(name: "ParleyTranscodeTests", dependencies: ["ParleyTranscode", "ParleyCore", "ParleyTestSupport"]),
        .testTarget(name: "ParleyLoadTests", dependencies: ["ParleyLoad", "ParleyCore", "ParleyTestSupport"]),
        .testTarget(name: "ParleyServerTests", dependencies: ["ParleyServer", "ParleyCore", "ParleyIO", "ParleyHTTP", "ParleyAuth",
                                                         "ParleyWeb", "ParleyProtocol", "ParleySignalling", "ParleyRelay",
                                                         "ParleySRTP", "ParleySTUN", "ParleyTranscode", "ParleyRecord", "COpus", "ParleyTestSupport", "ParleyRTP", "ParleyChat",
                                                         "ParleyStore"]),
    ]
)
