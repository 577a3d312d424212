/// The call requests (docs/protocol.md, `join` to `mute`): what the call
/// feature of the signalling server reads from a `ClientRequest`, and what
/// clients write with the `ClientRequest` constructors below.

import ParleyCore
import ParleyRTP

public enum CallRequest: Sendable, Equatable {
    /// Enter a room: `room`, or the one named in `auth` or the token.
    /// `transport`: `udp` (nil) or `tcp` (RFC 4571-framed media on the TCP media port).
    case join(room: String?, publish: Bool, subscribe: Bool, suite: String?, transport: String? = nil)
    case leave
    case publish([TrackDescription])
    case unpublish(track: String)
    case subscribe(track: String)
    case unsubscribe(track: String)
    case mute(track: String, muted: Bool)
    /// Enter a room as a WebRTC peer: `sdp` is its offer; the reply carries the answer.
    case offer(room: String?, sdp: String)
    /// Which layer of a simulcast track it subscribed to it receives: `low`, `medium` or `high`.
    case quality(track: String, quality: String)

    /// The message types of calls.
    public static let types = ["join", "leave", "publish", "unpublish", "subscribe", "unsubscribe", "mute", "offer", "quality"]

    /// Reads a request of one of `types`; a missing or mistyped field throws `bad_request`.
    public init(_ r: ClientRequest) throws(SignallingError) {
        switch r.type {
        case "join":
            self = .join(room: try r.string("room", optional: true), publish: try r.bool("publish", default: true),
                         subscribe: try r.bool("subscribe", default: true), suite: try r.string("suite", optional: true),
                         transport: try r.string("transport", optional: true))
        case "leave": self = .leave
        case "publish":
            guard let list = r.fields["tracks"]?.arrayValue, !list.isEmpty, list.count <= 16 else {
                throw r.fail("\"tracks\" must be an array of 1 to 16 tracks")
            }
            var specs: [TrackDescription] = []
            for (n, t) in list.enumerated() {
                do { specs.append(try TrackDescription(json: t)) } catch let e {
                    throw r.fail("tracks[\(n)]: \(e.message)")
                }
            }
            self = .publish(specs)
        case "unpublish": self = .unpublish(track: try r.string("track"))
        case "subscribe": self = .subscribe(track: try r.string("track"))
        case "unsubscribe": self = .unsubscribe(track: try r.string("track"))
        case "mute": self = .mute(track: try r.string("track"), muted: try r.bool("muted", default: true))
        case "offer":
            let sdp = try r.string("sdp", maxBytes: 64 * 1024)
            self = .offer(room: try r.string("room", optional: true), sdp: sdp)
        case "quality":
            let q = try r.string("quality")
            guard ["low", "medium", "high"].contains(q) else { throw r.fail("\"quality\" must be low, medium or high") }
            self = .quality(track: try r.string("track"), quality: q)
        default: throw SignallingError(.unknownType, "unknown message type \"\(r.type)\"")
        }
    }

    /// The request as a client sends it.
    public var request: ClientRequest {
        switch self {
        case .join(let room, let publish, let subscribe, let suite, let transport):
            var o: [String: JSONValue] = ["publish": .bool(publish), "subscribe": .bool(subscribe)]
            if let room { o["room"] = .string(room) }
            if let suite { o["suite"] = .string(suite) }
            if let transport { o["transport"] = .string(transport) }
            return ClientRequest(type: "join", fields: o)
        case .leave: return ClientRequest(type: "leave")
        case .publish(let specs): return ClientRequest(type: "publish", fields: ["tracks": .array(specs.map(\.json))])
        case .unpublish(let t): return ClientRequest(type: "unpublish", fields: ["track": .string(t)])
        case .subscribe(let t): return ClientRequest(type: "subscribe", fields: ["track": .string(t)])
        case .unsubscribe(let t): return ClientRequest(type: "unsubscribe", fields: ["track": .string(t)])
        case .mute(let t, let m): return ClientRequest(type: "mute", fields: ["track": .string(t), "muted": .bool(m)])
        case .offer(let room, let sdp):
            var o: [String: JSONValue] = ["sdp": .string(sdp)]
            if let room { o["room"] = .string(room) }
            return ClientRequest(type: "offer", fields: o)
        case .quality(let t, let q): return ClientRequest(type: "quality", fields: ["track": .string(t), "quality": .string(q)])
        }
    }
}

extension ClientRequest {
    public static func join(room: String?, publish: Bool, subscribe: Bool, suite: String?, transport: String? = nil) -> ClientRequest {
        CallRequest.join(room: room, publish: publish, subscribe: subscribe, suite: suite, transport: transport).request
    }
    public static var leave: ClientRequest { CallRequest.leave.request }
    public static func publish(_ tracks: [TrackDescription]) -> ClientRequest { CallRequest.publish(tracks).request }
    public static func unpublish(track: String) -> ClientRequest { CallRequest.unpublish(track: track).request }
    public static func subscribe(track: String) -> ClientRequest { CallRequest.subscribe(track: track).request }
    public static func unsubscribe(track: String) -> ClientRequest { CallRequest.unsubscribe(track: track).request }
    public static func mute(track: String, muted: Bool) -> ClientRequest { CallRequest.mute(track: track, muted: muted).request }
}
