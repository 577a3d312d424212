import Foundation
import ParleyCore
import ParleyTranscode

/// `parley transcode INPUT --out DIR`: an HLS adaptive-bitrate ladder.
enum TranscodeCommand {
    static let help = """
    Usage: parley transcode INPUT --out DIR [options]
           parley transcode INPUT --enqueue [--data-dir DIR] [options]

    Turns a video into an HLS ladder: H.264 renditions (Apple's authoring
    ladder up to the source resolution), AAC-LC stereo audio as its own
    group, 4 s segments with aligned IDRs, master/media/I-frame playlists,
    a JPEG thumbnail per segment and manifest.json. The output is built in a
    temporary directory and renamed into place when complete.

    Options:
      --out DIR               output directory (replaced atomically when done)
      --ladder SPEC           rungs, e.g. 1080p:6000k,720p:3000k,360p:365k
                              (default: Apple's H.264 rungs up to the source size)
      --segment-seconds N     segment length in seconds (default 4)
      --format fmp4|ts        CMAF fMP4 with an init segment (default) or MPEG-TS
      --preset NAME           x264 preset (default veryfast)
      --audio-bitrate RATE    AAC bitrate (default 128k)
      --threads N             x264 threads per rendition (default 0: libx264's choice)
      --no-thumbnails         skip the per-segment JPEGs
      --json                  print a JSON summary on standard output
      --quiet                 no progress bar
      --enqueue               queue a job for `parley worker` instead of running now
      --data-dir DIR          data directory for --enqueue (default ./var)
      --help                  show this help

    Exit codes: 0 done, 1 the input cannot be transcoded, 2 usage error.

    """

    static let valueOptions: Set<String> = ["out", "ladder", "segment-seconds", "format", "preset", "audio-bitrate", "data-dir", "threads"]
    static let switchFlags: Set<String> = ["json", "quiet", "enqueue", "no-thumbnails"]

    /// Parses the flags shared by `transcode` and the job options.
    static func parseOptions(_ a: Arguments, input: String, output: String) throws -> TranscodeOptions {
        var o = TranscodeOptions(input: input, output: output)
        if let l = a["ladder"] { _ = try Ladder.parse(l); o.ladder = l }
        if let s = a["segment-seconds"] {
            guard let v = Double(s), v >= 1, v <= 60 else { throw Arguments.UsageError("--segment-seconds must be 1-60") }
            o.segmentSeconds = v
        }
        if let f = a["format"] {
            guard let v = SegmentFormat(rawValue: f.lowercased()) else { throw Arguments.UsageError("--format must be fmp4 or ts") }
            o.format = v
        }
        if let p = a["preset"] {
            let presets = TranscodeOptions.presets
            guard presets.contains(p) else { throw Arguments.UsageError("--preset must be one of \(presets.joined(separator: ", "))") }
            o.preset = p
        }
        if let r = a["audio-bitrate"] {
            let l = r.lowercased()
            let v = l.hasSuffix("k") ? Int(l.dropLast()).map { $0 * 1000 } : Int(l)
            guard let v, v >= 32_000, v <= 512_000 else { throw Arguments.UsageError("--audio-bitrate must be 32k-512k") }
            o.audioBitRate = v
        }
        if let t = a["threads"] {
            guard let v = Int(t), v >= 0, v <= 64 else { throw Arguments.UsageError("--threads must be 0-64") }
            o.encoderThreads = v
        }
        o.thumbnails = !a.has("no-thumbnails")
        return o
    }

    static func main(_ args: [String]) -> Int32 {
        let a: Arguments
        do { a = try Arguments(args, options: valueOptions, flags: switchFlags) } catch {
            printError("parley transcode: \(error)\n\nUsage: parley transcode INPUT --out DIR [options] (--help for more)")
            return ExitCode.usage
        }
        if a.wantsHelp { print(help, terminator: ""); return ExitCode.ok }
        func usage(_ m: String) -> Int32 {
            printError("parley transcode: \(m)")
            return ExitCode.usage
        }
        guard a.positionals.count == 1 else { return usage(a.positionals.isEmpty ? "missing INPUT" : "one INPUT only") }
        let input = a.positionals[0]
        if a.has("enqueue") {
            do {
                let o = try parseOptions(a, input: input, output: a["out"] ?? "")
                let q = try SQLiteJobQueue.open(dataDir: a["data-dir"] ?? "./var")
                if !o.output.isEmpty {
                    // The worker writes nowhere else (see HLSFiles.isJobOutput).
                    try FileManager.default.createDirectory(atPath: q.dataDir + "/hls", withIntermediateDirectories: true)
                    guard HLSFiles.isJobOutput(o.output, hlsRoot: q.dataDir + "/hls") else {
                        return usage("with --enqueue, --out must name a directory directly inside \(q.dataDir)/hls (or leave it out)")
                    }
                }
                let id = try q.enqueue(input: URL(fileURLWithPath: input).standardizedFileURL.path, options: o)
                if a.has("json") { print("{\"job\":\(id),\"state\":\"queued\"}") } else { print("queued job \(id)") }
                return ExitCode.ok
            } catch let e as Arguments.UsageError { return usage(e.description) } catch {
                printError("parley transcode: \(error)")
                return ExitCode.failure
            }
        }
        guard let out = a["out"] else { return usage("--out DIR is required") }
        let options: TranscodeOptions
        do { options = try parseOptions(a, input: input, output: out) } catch { return usage("\(error)") }

        let t = Transcoder(options: options)
        let bar = ProgressBar(enabled: !a.has("quiet") && isatty(2) == 1)
        t.onProgress = { bar.update($0) }
        do {
            let r = try t.run()
            bar.done()
            if r.toneMapped && !a.has("json") {
                printError("parley transcode: \(input): \(Summary.toneMapNote(r))")
            }
            if a.has("json") { print(Summary.json(r)) } else if !a.has("quiet") {
                printError(Summary.text(r), terminator: "")
            }
            return ExitCode.ok
        } catch {
            bar.done()
            let code: Int32
            if case TranscodeError.usage = error { code = ExitCode.usage } else { code = ExitCode.failure }
            if a.has("json") {
                print(Summary.errorJSON("\(error)"))
            }
            printError("parley transcode: \(error)")
            return code
        }
    }
}

/// A one-line progress bar on a terminal: percent, fps, speed, ETA.
final class ProgressBar: @unchecked Sendable {
    let enabled: Bool
    private var drawn = false
    init(enabled: Bool) { self.enabled = enabled }

    func update(_ p: TranscodeProgress) {
        guard enabled else { return }
        let width = 30
        let filled = Int(p.fraction * Double(width))
        let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
        let eta = Int(p.eta.rounded())
        let line = String(format: "\r[%@] %5.1f%%  %6.1f fps  %5.2fx  ETA %d:%02d ",
                          bar, p.fraction * 100, p.fps, p.speed, eta / 60, eta % 60)
        printError(line, terminator: "")
        drawn = true
    }

    func done() {
        if drawn { printError(""); drawn = false }
    }
}
