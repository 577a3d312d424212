#if canImport(Glibc)
import Glibc
#endif

/// An HTTP/1.1 response to serialize (RFC 9112 §4, §6).
public struct HTTPResponse: Sendable {
    public var status: HTTPStatus
    public var headers: HTTPHeaders
    public var body: [UInt8]

    public init(status: HTTPStatus, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A plain-text response (`text/plain; charset=utf-8`).
    public static func text(_ status: HTTPStatus, _ text: String, headers: HTTPHeaders = HTTPHeaders()) -> HTTPResponse {
        var h = headers
        if !h.contains("Content-Type") { h.add("Content-Type", "text/plain; charset=utf-8") }
        return HTTPResponse(status: status, headers: h, body: Array(text.utf8))
    }

    /// The error response for a rejected request (`Connection: close` is added on write).
    public static func error(_ error: HTTPParseError) -> HTTPResponse {
        .text(error.status, error.status.reason + "\n")
    }

    /// Whether the status forbids a body and Content-Length (1xx, 204, 304).
    var statusHasNoBody: Bool {
        (100...199).contains(status.code) || status.code == 204 || status.code == 304
    }

    /// Serializes the response. Adds `Content-Length` (unless the status has
    /// no body or the caller set it), `Connection: close` when `keepAlive`
    /// is false, and `Date` when `date` is given (seconds since the epoch).
    public func serialized(keepAlive: Bool = true, date: Int? = nil) -> [UInt8] {
        var out: [UInt8] = []
        write(into: &out, keepAlive: keepAlive, date: date)
        return out
    }

    /// Appends the serialized response to `out`; see `serialized(keepAlive:date:)`.
    public func write(into out: inout [UInt8], keepAlive: Bool = true, date: Int? = nil) {
        out.reserveCapacity(out.count + 128 + body.count)
        out.append(contentsOf: "HTTP/1.1 \(status.code) \(status.reason)\r\n".utf8)
        if let date, !headers.contains("Date") {
            appendField(&out, "Date", HTTPResponse.imfFixdate(date))
        }
        for (name, value) in headers {
            appendField(&out, name, value)
        }
        if !statusHasNoBody && !headers.contains("Content-Length") && !headers.contains("Transfer-Encoding") {
            appendField(&out, "Content-Length", String(body.count))
        }
        if !keepAlive && !headers.containsToken("close", in: "Connection") {
            appendField(&out, "Connection", "close")
        }
        out.append(contentsOf: [0x0D, 0x0A])
        if !statusHasNoBody { out.append(contentsOf: body) }
    }

    private func appendField(_ out: inout [UInt8], _ name: String, _ value: String) {
        // Header injection guard: CR/LF in a caller-supplied value would
        // start a new field or the body. Replace them with spaces.
        out.append(contentsOf: name.utf8.lazy.filter(isTokenChar))
        out.append(contentsOf: ": ".utf8)
        out.append(contentsOf: value.utf8.lazy.map { ($0 == 0x0D || $0 == 0x0A || $0 == 0) ? 0x20 : $0 })
        out.append(contentsOf: [0x0D, 0x0A])
    }

    /// `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110 §5.6.7).
    public static func imfFixdate(_ secondsSinceEpoch: Int) -> String {
        var t = time_t(secondsSinceEpoch)
        var tm = tm()
        gmtime_r(&t, &tm)
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(days[Int(tm.tm_wday)]), \(two(tm.tm_mday)) \(months[Int(tm.tm_mon)]) \(1900 + Int(tm.tm_year)) "
            + "\(two(tm.tm_hour)):\(two(tm.tm_min)):\(two(tm.tm_sec)) GMT"
    }
}
