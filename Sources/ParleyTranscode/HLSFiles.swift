import Foundation

/// Serving finished ladders: content types and safe path resolution, for
/// `parley serve`'s `/hls/…` route.
public enum HLSFiles {
    /// The MIME type HLS players expect for a file, by extension.
    public static func contentType(forPath path: String) -> String? {
        let ext = (path as NSString).pathExtension.lowercased()
        switch ext {
        case "m3u8": return "application/vnd.apple.mpegurl"
        case "m4s": return "video/iso.segment"
        case "mp4": return "video/mp4"
        case "m4a": return "audio/mp4"
        case "ts": return "video/mp2t"
        case "aac": return "audio/aac"
        case "jpg", "jpeg": return "image/jpeg"
        case "json": return "application/json"
        default: return nil
        }
    }

    /// Maps a URL path (`/hls/ASSET/720p-3000k/seg_00001.m4s` or
    /// `ASSET/master.m3u8`) to a regular file under `root`, or nil when it
    /// is not one: percent-decoding first, then no `..`, `.`, hidden names,
    /// backslashes or NULs, and symlinks may not lead outside `root`.
    public static func resolve(urlPath: String, root: String) -> String? {
        var p = urlPath
        if let q = p.firstIndex(where: { $0 == "?" || $0 == "#" }) { p = String(p[..<q]) }
        guard let decoded = p.removingPercentEncoding else { return nil }
        var parts = decoded.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        if parts.first == "hls" { parts.removeFirst() }
        guard !parts.isEmpty else { return nil }
        for part in parts {
            if part.hasPrefix(".") || part.contains("\\") || part.contains("\0") { return nil }
        }
        guard contentType(forPath: parts.last!) != nil else { return nil }
        let rootURL = URL(fileURLWithPath: root).standardizedFileURL.resolvingSymlinksInPath()
        let candidate = parts.reduce(rootURL) { $0.appendingPathComponent($1) }.resolvingSymlinksInPath()
        let rootPath = rootURL.path.hasSuffix("/") ? rootURL.path : rootURL.path + "/"
        guard candidate.path.hasPrefix(rootPath) else { return nil }
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: candidate.path, isDirectory: &isDir), !isDir.boolValue else { return nil }
        return candidate.path
    }

    /// A directory name for a ladder under DATA-DIR/hls: letters, digits,
    /// `-` and `_` only (no dots, no separators), at most 128 bytes.
    public static func isSafeAssetName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 128
            && name.allSatisfy { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }
    }

    /// Whether a job may write (and so replace, which removes what was there)
    /// `output`: only a safely named directory directly inside `hlsRoot`
    /// (DATA-DIR/hls), by real path, so neither `..` nor a symlinked parent
    /// leads out, and not itself a symlink. The worker refuses anything else,
    /// whoever queued it.
    public static func isJobOutput(_ output: String, hlsRoot: String) -> Bool {
        let out = URL(fileURLWithPath: output).standardizedFileURL
        guard isSafeAssetName(out.lastPathComponent),
              let root = realPath(hlsRoot), let parent = realPath(out.deletingLastPathComponent().path),
              root == parent else { return false }
        var st = stat()
        if lstat(out.path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFLNK { return false }
        return true
    }

    /// realpath(3): the absolute path with every symlink, `.` and `..` resolved; nil if it does not exist.
    public static func realPath(_ path: String) -> String? {
        guard let p = realpath(path, nil) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }
}
