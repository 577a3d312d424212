import Foundation

/// A master key and master salt for one SRTP suite, as exchanged in SDES
/// (`a=crypto:` lines, RFC 4568) or in Parley's join answer.
public struct SRTPKeyMaterial: Sendable, Equatable {
    public let suite: SRTPSuite
    public let masterKey: [UInt8]
    public let masterSalt: [UInt8]

    /// Checks the key and salt lengths against the suite.
    public init(suite: SRTPSuite, masterKey: [UInt8], masterSalt: [UInt8]) throws(SRTPError) {
        guard masterKey.count == suite.keyLength, masterSalt.count == suite.saltLength else {
            throw .invalidKeyMaterial("\(suite.sdesName) needs a \(suite.keyLength)-byte key and "
                                      + "\(suite.saltLength)-byte salt, got \(masterKey.count) and \(masterSalt.count)")
        }
        self.suite = suite
        self.masterKey = masterKey
        self.masterSalt = masterSalt
    }

    /// Splits `key ‖ salt` (the layout libsrtp and SDES use).
    public init(suite: SRTPSuite, keyAndSalt: [UInt8]) throws(SRTPError) {
        guard keyAndSalt.count == suite.keyLength + suite.saltLength else {
            throw .invalidKeyMaterial("\(suite.sdesName) needs \(suite.keyLength + suite.saltLength) bytes of key ‖ salt, "
                                      + "got \(keyAndSalt.count)")
        }
        try self.init(suite: suite, masterKey: Array(keyAndSalt.prefix(suite.keyLength)),
                      masterSalt: Array(keyAndSalt.suffix(suite.saltLength)))
    }

    /// Fresh key material from the system CSPRNG (getrandom(2), via
    /// `SystemRandomNumberGenerator`, which Swift documents as cryptographically secure).
    public static func random(suite: SRTPSuite = .default) -> SRTPKeyMaterial {
        var rng = SystemRandomNumberGenerator()
        let bytes = (0..<(suite.keyLength + suite.saltLength)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        // Lengths are right by construction.
        return try! SRTPKeyMaterial(suite: suite, keyAndSalt: bytes)
    }

    /// `masterKey ‖ masterSalt`.
    public var keyAndSalt: [UInt8] { masterKey + masterSalt }

    /// The SDES key-params: `inline:` + base64(key ‖ salt) (RFC 4568 §6.1).
    public var inlineKeyParams: String { "inline:" + Data(keyAndSalt).base64EncodedString() }

    /// The SDP attribute `a=crypto:TAG SUITE inline:KEY`.
    public func cryptoAttribute(tag: Int = 1) -> String {
        "a=crypto:\(tag) \(suite.sdesName) \(inlineKeyParams)"
    }

    /// Parses SDES key-params for `suite`: `inline:<base64>[|lifetime][|MKI:length]`.
    /// A lifetime is accepted and ignored; an MKI is refused (Parley sends none).
    public init(suite: SRTPSuite, inlineKeyParams: String) throws(SRTPError) {
        guard inlineKeyParams.hasPrefix("inline:") else { throw .invalidKeyMaterial("key-params must start with inline:") }
        let fields = inlineKeyParams.dropFirst("inline:".count).split(separator: "|", omittingEmptySubsequences: false)
        guard fields.count <= 3, let b64 = fields.first else { throw .invalidKeyMaterial("malformed inline key-params") }
        for field in fields.dropFirst() {
            if field.contains(":") { throw .invalidKeyMaterial("MKI is not supported") }
            // lifetime: decimal or 2^N
            let ok = !field.isEmpty && (field.allSatisfy(\.isASCIIDigit)
                || (field.hasPrefix("2^") && field.count > 2 && field.dropFirst(2).allSatisfy(\.isASCIIDigit)))
            if !ok { throw .invalidKeyMaterial("malformed key lifetime") }
        }
        guard let data = Data(base64Encoded: String(b64)), Data(data).base64EncodedString() == b64 else {
            throw .invalidKeyMaterial("key is not canonical base64")
        }
        try self.init(suite: suite, keyAndSalt: [UInt8](data))
    }

    /// Parses `a=crypto:TAG SUITE KEY-PARAMS [SESSION-PARAMS...]` (the `a=` is optional).
    public static func parse(cryptoAttribute line: String) throws(SRTPError) -> (tag: Int, material: SRTPKeyMaterial) {
        var text = Substring(line)
        if text.hasPrefix("a=") { text = text.dropFirst(2) }
        guard text.hasPrefix("crypto:") else { throw .invalidKeyMaterial("not a crypto attribute") }
        let parts = text.dropFirst("crypto:".count).split(separator: " ", omittingEmptySubsequences: true)
        guard parts.count >= 3, parts[0].count <= 9, parts[0].allSatisfy(\.isASCIIDigit), let tag = Int(parts[0]) else {
            throw .invalidKeyMaterial("malformed crypto attribute")
        }
        guard let suite = SRTPSuite(sdesName: String(parts[1])) else {
            throw .invalidKeyMaterial("unsupported crypto-suite \(parts[1])")
        }
        // Several key-params may be joined by ";" (RFC 4568 §9.2); Parley uses the first.
        let keyParams = parts[2].split(separator: ";").first.map(String.init) ?? ""
        return (tag, try SRTPKeyMaterial(suite: suite, inlineKeyParams: keyParams))
    }
}

extension Character {
    var isASCIIDigit: Bool { isASCII && isNumber }
}
