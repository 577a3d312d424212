import Foundation
import ParleyCore
import ParleyAuth

/// `parley token`: mints an access token signed with the server secret.
///
///     parley token --user alice --room standup --ttl 1h [--can-publish] [--can-record] [--can-transcode] [--admin] [--data-dir DIR]
///
/// `main` takes the arguments after the subcommand name (a leading "token"
/// is skipped too), prints the token on stdout and returns the exit code:
/// 0 on success, 2 on a usage error, 1 when the secret cannot be read or created.
enum TokenCommand {
    static let usage = """
        usage: parley token --user NAME [--room ROOM] [--ttl DURATION] [--can-publish] [--can-record]
                            [--can-transcode] [--admin] [--data-dir DIR]

        Prints a signed access token (JWT, HS256) for the signalling WebSocket
        and the transcoding API.

          --user NAME      user id the token is for (required; claim "sub")
          --room ROOM      the only room the token may join; omitted or "*" = any room
          --ttl DURATION   lifetime such as 90s, 30m, 1h, 2d, 1h30m (default 1h, max 366d)
          --can-publish    may publish media (claim "pub")
          --can-record     may start/stop recordings (claim "rec")
          --can-transcode  may upload media and submit transcoding jobs (claim "trn")
          --admin          administrator (claim "adm")
          --data-dir DIR   where the signing secret lives, DIR/secret (default ./var)
          -h, --help       show this help

        """

    struct Options: Equatable {
        var user: String?
        var room: String?
        var ttl: Int64 = 3600
        var canPublish = false
        var canRecord = false
        var admin = false
        var canTranscode = false
        var dataDir = "./var"
        var help = false
    }

    struct UsageError: Error { let message: String }

    static func main(_ args: [String]) -> Int32 {
        let options: Options
        do {
            options = try parse(args)
        } catch let error as UsageError {
            printError("parley token: \(error.message)\n\(usage)", terminator: "")
            return ExitCode.usage
        } catch {
            return ExitCode.usage
        }
        if options.help {
            print(usage, terminator: "")
            return ExitCode.ok
        }
        let secret: [UInt8]
        do {
            secret = try ServerSecret.loadOrCreate(dataDir: options.dataDir)
        } catch {
            printError("parley token: cannot load the signing secret: \(error)")
            return ExitCode.failure
        }
        let now = Int64(Date().timeIntervalSince1970)
        let claims = TokenClaims(subject: options.user!, room: options.room, issuedAt: now, expiresAt: now + options.ttl,
                                 canPublish: options.canPublish, canRecord: options.canRecord, isAdmin: options.admin,
                                 canTranscode: options.canTranscode)
        let token = JWT.sign(claims, secret: secret)
        // Never print a token the server would refuse.
        guard token.utf8.count <= JWT.maxTokenLength else {
            printError("parley token: the token would be \(token.utf8.count) bytes, more than the \(JWT.maxTokenLength) a server accepts (shorten --user or --room)")
            return ExitCode.usage
        }
        print(token)
        return ExitCode.ok
    }

    static func parse(_ arguments: [String]) throws -> Options {
        var args = arguments
        if args.first == "token" { args.removeFirst() }
        let parsed: Arguments
        do {
            parsed = try Arguments(args, options: ["user", "room", "ttl", "data-dir"],
                                   flags: ["can-publish", "can-record", "can-transcode", "admin"])
        } catch {
            throw UsageError(message: "\(error)")
        }
        if let extra = parsed.positionals.first { throw UsageError(message: "unexpected argument \"\(extra)\"") }
        func value(_ name: String) throws -> String? {
            guard let v = parsed[name] else { return nil }
            // `--user --room x` would otherwise mint a token for user "--room".
            guard !v.isEmpty, !v.hasPrefix("--") else { throw UsageError(message: "--\(name) needs a value") }
            return v
        }
        var o = Options()
        o.help = parsed.wantsHelp
        o.user = try value("user")
        if let room = try value("room") { o.room = room == "*" ? nil : room }
        if let ttl = try value("ttl") {
            guard let seconds = TokenDuration.parse(ttl) else {
                throw UsageError(message: "invalid --ttl \"\(ttl)\" (use e.g. 90s, 30m, 1h, 2d; at most 366d)")
            }
            o.ttl = seconds
        }
        if let dir = try value("data-dir") { o.dataDir = dir }
        o.canPublish = parsed.has("can-publish")
        o.canRecord = parsed.has("can-record")
        o.admin = parsed.has("admin")
        o.canTranscode = parsed.has("can-transcode")
        if !o.help && o.user == nil { throw UsageError(message: "--user is required") }
        return o
    }
}
