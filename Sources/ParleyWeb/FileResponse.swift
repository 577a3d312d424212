import ParleyCore
import Foundation
import ParleyHTTP

extension HTTPServerResponse {
    /// A file with validators and byte ranges (RFC 9110 §8.8.3, §13, §14):
    /// `ETag` from size, mtime and inode; `If-None-Match` that matches → 304;
    /// one `Range: bytes=…` → 206 with `Content-Range`, or 416 with
    /// `Content-Range: bytes */SIZE` when it starts past the end; several
    /// ranges, another unit or an `If-Range` that does not match → the whole
    /// file (a server may ignore Range). 404 when `path` is not a regular file.
    public static func file(_ path: String, contentType: String, request: HTTPServerRequest,
                     cacheControl: String) -> HTTPServerResponse {
        var st = stat()
        guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return .error(.notFound, "no such file") }
        let size = Int(st.st_size)
        let mtime = UInt64(st.st_mtim.tv_sec) &* 1_000_000_000 &+ UInt64(st.st_mtim.tv_nsec)
        let etag = "\"\(String(size, radix: 16))-\(String(mtime, radix: 16))-\(String(st.st_ino, radix: 16))\""
        var h = HTTPHeaders()
        h.add("ETag", etag)
        h.add("Cache-Control", cacheControl)
        h.add("Accept-Ranges", "bytes")
        if let inm = request.head.headers["If-None-Match"], ETagList.matches(inm, etag) {
            return HTTPServerResponse(status: .notModified, headers: h)
        }
        h.add("Content-Type", contentType)
        var range = request.head.headers["Range"].flatMap { ByteRange(parsing: $0) }
        if let ifRange = request.head.headers["If-Range"], ifRange != etag { range = nil }
        guard let range else {
            return HTTPServerResponse(status: .ok, headers: h, body: .file(path: path, offset: 0, length: size))
        }
        guard let (first, last) = range.resolve(size: size) else {
            h.add("Content-Range", "bytes */\(size)")
            var r = HTTPServerResponse.error(.rangeNotSatisfiable, "the range starts past the end (\(size) bytes)")
            r.headers = h
            r.headers.set("Content-Type", "application/json")
            return r
        }
        h.add("Content-Range", "bytes \(first)-\(last)/\(size)")
        return HTTPServerResponse(status: .partialContent, headers: h, body: .file(path: path, offset: first, length: last - first + 1))
    }
}

extension HTTPStatus {
    public static let partialContent = HTTPStatus(code: 206, reason: "Partial Content")
    public static let rangeNotSatisfiable = HTTPStatus(code: 416, reason: "Range Not Satisfiable")
    public static let tooManyRequests = HTTPStatus(code: 429, reason: "Too Many Requests")
}

/// `If-None-Match` (RFC 9110 §13.1.2): `*` or a list of entity tags, compared weakly.
enum ETagList {
    static func matches(_ header: String, _ etag: String) -> Bool {
        let tags = header.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        func opaque(_ t: Substring) -> Substring { t.hasPrefix("W/") ? t.dropFirst(2) : t }
        return tags.contains { $0 == "*" || opaque(Substring($0)) == opaque(Substring(etag)) }
    }
}

/// One byte range of `Range: bytes=…` (RFC 9110 §14.1.2); nil for anything
/// else (another unit, several ranges, malformed), which means "send it all".
struct ByteRange: Equatable {
    /// `first-last`, `first-` (last nil), or `-suffix` (first nil).
    var first: Int?
    var last: Int?

    init?(parsing header: String) {
        let h = header.trimmingCharacters(in: .whitespaces)
        guard h.lowercased().hasPrefix("bytes="), !h.contains(",") else { return nil }
        let spec = h.dropFirst(6).trimmingCharacters(in: .whitespaces)
        let parts = spec.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2, parts.allSatisfy({ $0.utf8.count <= 18 && $0.allSatisfy(\.isASCII) }) else { return nil }
        let a = parts[0].isEmpty ? nil : Int(parts[0]), b = parts[1].isEmpty ? nil : Int(parts[1])
        if !parts[0].isEmpty && a == nil || !parts[1].isEmpty && b == nil { return nil }
        switch (a, b) {
        case (nil, nil): return nil
        case (let x?, let y?) where y < x: return nil
        case (nil, let y?) where y == 0: return nil
        default: break
        }
        first = a
        last = b
    }

    /// The inclusive byte offsets for a file of `size` bytes, or nil when unsatisfiable.
    func resolve(size: Int) -> (Int, Int)? {
        if let first {
            guard first < size else { return nil }
            return (first, min(last ?? size - 1, size - 1))
        }
        guard let suffix = last, size > 0 else { return nil }
        return (max(0, size - suffix), size - 1)
    }
}
