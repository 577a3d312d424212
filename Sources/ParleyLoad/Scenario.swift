import Foundation
import ParleyCore

/// A scenario file (tools/load/*.json): a mode and the flags of a run, so
/// a named load is one file instead of a command line to remember.
///
/// ```json
/// {"mode": "media", "description": "50 meetings of 4", "options": {"rooms": 50, "per-room": 4, "video": "1.5mbps@30"}}
/// ```
/// `options` holds flag names without `--`; values are strings, numbers
/// or `true` (a switch). Flags given on the command line win. Mode `mixed`
/// has `media` and `chat` instead, run at once.
public struct Scenario: Sendable {
    public var mode: String
    public var description: String
    /// Flag → value, in the file's terms.
    public var options: [String: String]
    /// Mode `mixed`: the options of the media and the chat run, side by side.
    public var media: [String: String] = [:]
    public var chat: [String: String] = [:]

    public static let maxFileBytes = 64 << 10

    public init(path: String) throws(LoadArgumentError) {
        guard let bytes = readSmallFile(path, limit: Self.maxFileBytes) else {
            throw .bad("cannot read scenario \(path) (at most \(Self.maxFileBytes) bytes)")
        }
        let json: JSONValue
        do { json = try JSONValue.parse(String(decoding: bytes, as: UTF8.self)) } catch {
            throw .bad("scenario \(path): \(error)")
        }
        guard let mode = json["mode"]?.stringValue else { throw .bad("scenario \(path): needs \"mode\"") }
        self.mode = mode
        description = json["description"]?.stringValue ?? ""
        func flags(_ section: String) throws(LoadArgumentError) -> [String: String] {
            var o: [String: String] = [:]
            for (k, v) in json[section]?.objectValue ?? [:] {
                switch v {
                case .string(let s): o[k] = s
                case .number(let d): o[k] = d == d.rounded() ? String(Int(d)) : String(d)
                case .bool(true): o[k] = ""
                default: throw .bad("scenario \(path): \(section) \"\(k)\" must be a string, a number or true")
                }
            }
            return o
        }
        options = try flags("options")
        media = try flags("media")
        chat = try flags("chat")
        if mode == "mixed" && (media.isEmpty || chat.isEmpty) { throw .bad("scenario \(path): mode mixed needs \"media\" and \"chat\"") }
    }
}
