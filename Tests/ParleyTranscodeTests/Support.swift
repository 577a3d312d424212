import Foundation
import XCTest

/// Helpers shared by the transcode tests: paths, external tools, playlists.
enum Support {
    static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let sample = repoRoot.appendingPathComponent("samples/sample-720p-12s.mp4").path

    /// A fresh directory under the system temp dir.
    static func tempDir(_ name: String) -> URL {
        let d = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("parley-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try? FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        return d
    }

    struct Output { var status: Int32; var stdout: String; var stderr: String }

    /// Runs a program, optionally feeding `stdin` bytes; waits for it.
    @discardableResult
    static func run(_ exe: String, _ args: [String], stdin: Data? = nil) throws -> Output {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe.hasPrefix("/") ? exe : "/usr/bin/\(exe)")
        p.arguments = args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        let inPipe = Pipe()
        if stdin != nil { p.standardInput = inPipe } else { p.standardInput = FileHandle.nullDevice }
        try p.run()
        if let stdin {
            DispatchQueue.global().async {
                try? inPipe.fileHandleForWriting.write(contentsOf: stdin)
                try? inPipe.fileHandleForWriting.close()
            }
        }
        // Read both pipes concurrently so neither fills up.
        final class Box: @unchecked Sendable { var data = Data() }
        let errBox = Box()
        let g = DispatchGroup()
        g.enter()
        DispatchQueue.global().async { errBox.data = err.fileHandleForReading.readDataToEndOfFile(); g.leave() }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        g.wait()
        let errData = errBox.data
        p.waitUntilExit()
        return Output(status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                      stderr: String(decoding: errData, as: UTF8.self))
    }

    /// The `#EXTINF` durations of a media playlist, in order.
    static func extinfs(_ playlist: String) -> [Double] {
        playlist.split(separator: "\n").compactMap { line -> Double? in
            guard line.hasPrefix("#EXTINF:") else { return nil }
            return Double(line.dropFirst(8).split(separator: ",").first ?? "")
        }
    }

    /// URIs (non-comment lines) of a playlist.
    static func uris(_ playlist: String) -> [String] {
        playlist.split(separator: "\n").map(String.init).filter { !$0.hasPrefix("#") && !$0.isEmpty }
    }

    /// Attribute list of the first tag line starting with `tag` that contains `containing`.
    static func attributes(_ line: String) -> [String: String] {
        guard let colon = line.firstIndex(of: ":") else { return [:] }
        var attrs: [String: String] = [:]
        var key = "", value = "", inKey = true, quoted = false
        for ch in line[line.index(after: colon)...] {
            if inKey {
                if ch == "=" { inKey = false } else { key.append(ch) }
            } else if ch == "\"" {
                quoted.toggle()
            } else if ch == "," && !quoted {
                attrs[key] = value; key = ""; value = ""; inKey = true
            } else {
                value.append(ch)
            }
        }
        if !key.isEmpty { attrs[key] = value }
        return attrs
    }

    /// ffprobe's video packets of a file: (pts seconds, keyframe, byte position).
    static func videoPackets(_ path: String) throws -> [(pts: Double, key: Bool, pos: Int)] {
        let o = try run("ffprobe", ["-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts_time,flags,pos",
                                    "-of", "compact=p=0:nk=0", path])
        XCTAssertEqual(o.status, 0, o.stderr)
        return o.stdout.split(separator: "\n").compactMap { line in
            var d: [String: String] = [:]
            for kv in line.split(separator: "|") {
                let p = kv.split(separator: "=", maxSplits: 1)
                if p.count == 2 { d[String(p[0])] = String(p[1]) }
            }
            guard let pts = d["pts_time"].flatMap(Double.init), let pos = d["pos"].flatMap(Int.init) else { return nil }
            return (pts, d["flags"]?.hasPrefix("K") ?? false, pos)
        }
    }

    /// Duration of the first video stream according to ffprobe.
    static func videoDuration(_ path: String) throws -> Double {
        let o = try run("ffprobe", ["-v", "error", "-select_streams", "v:0", "-show_entries", "stream=duration", "-of", "csv=p=0", path])
        if let d = Double(o.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) { return d }
        // MPEG-TS has no stream duration: the container's.
        let f = try run("ffprobe", ["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", path])
        return Double(f.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
    }

    /// Concatenates files into one (init + segments → a playable file).
    static func concat(_ files: [URL], to out: URL) throws {
        var d = Data()
        for f in files { d.append(try Data(contentsOf: f)) }
        try d.write(to: out)
    }

    static func read(_ url: URL) -> String { (try? String(contentsOf: url, encoding: .utf8)) ?? "" }
}
