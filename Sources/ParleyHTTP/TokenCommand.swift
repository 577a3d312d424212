import Foundation

/// `parley token`: mints an access token signed with the server secret.
///
///     parley token --user alice --room standup --ttl 1h [--can-publish] [--can-record] [--admin] [--data-dir DIR]
///
/// `main` takes the arguments after the subcommand name (a leading "token"
/// is skipped too), prints the token on stdout and returns the exit code:
/// 0 on success, 2 on a usage error, 1 when the secret cannot be read or created.
public enum TokenCommand {
    public static let usage = """
        usage: parley token --user NAME [--room ROOM] [--ttl DURATION] [--can-publish] [--can-record]
                            [--admin] [--data-dir DIR]

        Prints a signed access token (JWT, HS256) for the signalling WebSocket.

          --user NAME      user id the token is for (required; claim "sub")
          --room ROOM      the only room the token may join; omitted or "*" = any room
          --ttl DURATION   lifetime such as 90s, 30m, 1h, 2d, 1h30m (default 1h, max 366d)
          --can-publish    may publish media (claim "pub")
          --can-record     may start/stop recordings (claim "rec")
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
        var dataDir = "./var"
        var help = false
    }

    struct UsageError: Error { let message: String }

    public static func main(_ args: [String]) -> Int32 {
        let options: Options
        do {
            options = try parse(args)
        } catch let error as UsageError {
            printError("parley token: \(error.message)\n\(usage)")
            return 2
        } catch {
            return 2
        }
        if options.help {
            print(usage, terminator: "")
            return 0
        }
        let secret: [UInt8]
        do {
            secret = try ServerSecret.loadOrCreate(dataDir: options.dataDir)
        } catch {
            printError("parley token: cannot load the signing secret: \(error)\n")
            return 1
        }
        let now = Int64(Date().timeIntervalSince1970)
        let claims = TokenClaims(subject: options.user!, room: options.room, issuedAt: now, expiresAt: now + options.ttl,
                                 canPublish: options.canPublish, canRecord: options.canRecord, isAdmin: options.admin)
        print(JWT.sign(claims, secret: secret))
        return 0
    }

    static func parse(_ arguments: [String]) throws -> Options {
        var args = arguments[...]
        if args.first == "token" { args = args.dropFirst() }
        var o = Options()
        while let arg = args.popFirst() {
            var name = arg
            var inlineValue: String?
            if arg.hasPrefix("--"), let eq = arg.firstIndex(of: "=") {
                name = String(arg[..<eq])
                inlineValue = String(arg[arg.index(after: eq)...])
            }
            func value() throws -> String {
                if let inlineValue { return inlineValue }
                guard let v = args.popFirst(), !v.hasPrefix("--") else { throw UsageError(message: "\(name) needs a value") }
                return v
            }
            func flag() throws -> Bool {
                if inlineValue != nil { throw UsageError(message: "\(name) takes no value") }
                return true
            }
            switch name {
            case "-h", "--help": o.help = try flag()
            case "--user":
                let v = try value()
                guard !v.isEmpty else { throw UsageError(message: "--user must not be empty") }
                o.user = v
            case "--room":
                let v = try value()
                guard !v.isEmpty else { throw UsageError(message: "--room must not be empty") }
                o.room = v == "*" ? nil : v
            case "--ttl":
                let v = try value()
                guard let seconds = TokenDuration.parse(v) else {
                    throw UsageError(message: "invalid --ttl \"\(v)\" (use e.g. 90s, 30m, 1h, 2d; at most 366d)")
                }
                o.ttl = seconds
            case "--can-publish": o.canPublish = try flag()
            case "--can-record": o.canRecord = try flag()
            case "--admin": o.admin = try flag()
            case "--data-dir":
                let v = try value()
                guard !v.isEmpty else { throw UsageError(message: "--data-dir must not be empty") }
                o.dataDir = v
            default:
                throw UsageError(message: "unknown argument \"\(arg)\"")
            }
        }
        if !o.help && o.user == nil { throw UsageError(message: "--user is required") }
        return o
    }

    private static func printError(_ text: String) {
        FileHandle.standardError.write(Data(text.utf8))
    }
}
