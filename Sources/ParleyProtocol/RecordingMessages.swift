/// The recording requests (docs/protocol.md, `start_recording` and
/// `stop_recording`): what the recording feature of the signalling server
/// reads from a `ClientRequest`, and what clients send.

import ParleyCore

public enum RecordingRequest: Sendable, Equatable {
    /// Start recording `room` (default: the room the device is in, else the session's).
    case start(room: String?)
    /// Stop recording `room` (same default).
    case stop(room: String?)

    /// The message types of recording.
    public static let types = ["start_recording", "stop_recording"]

    /// Reads a request of one of `types`; a mistyped field throws `bad_request`.
    public init(_ r: ClientRequest) throws(SignallingError) {
        switch r.type {
        case "start_recording": self = .start(room: try r.string("room", optional: true))
        case "stop_recording": self = .stop(room: try r.string("room", optional: true))
        default: throw SignallingError(.unknownType, "unknown message type \"\(r.type)\"")
        }
    }

    /// The request as a client sends it.
    public var request: ClientRequest {
        switch self {
        case .start(let room): return ClientRequest(type: "start_recording", fields: room.map { ["room": .string($0)] } ?? [:])
        case .stop(let room): return ClientRequest(type: "stop_recording", fields: room.map { ["room": .string($0)] } ?? [:])
        }
    }
}

extension ClientRequest {
    public static func startRecording(room: String? = nil) -> ClientRequest { RecordingRequest.start(room: room).request }
    public static func stopRecording(room: String? = nil) -> ClientRequest { RecordingRequest.stop(room: room).request }
}
