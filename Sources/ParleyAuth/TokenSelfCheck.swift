import ParleyCore

/// Invariants of token decoding, checked on arbitrary input by the fuzz
/// harness (tools/fuzz/targets/token.swift) and by the XCTest case that
/// replays its committed corpus. Returns nil when every invariant holds, or
/// a description of the first broken one.
enum TokenSelfCheck {
    static let fuzzSecret = Array("parley-fuzz-secret-0123456789abc".utf8)

    /// 1. base64url decoding is canonical: what decodes re-encodes to itself.
    /// 2. A token that verifies re-signs (same claims) to one that verifies to
    ///    the same claims; verification never crashes on any input.
    static func token(_ input: [UInt8]) -> String? {
        let text = String(decoding: input, as: UTF8.self)
        if let bytes = Base64.decodeURL(text), Base64.encodeURL(bytes) != text { return "non-canonical base64url accepted" }
        // Half the inputs are tried as claims under a valid signature, so the
        // fuzzer reaches the JSON and time checks, not only the MAC.
        let candidates = [text, signedWithFuzzSecret(header: #"{"alg":"HS256"}"#, payload: input)]
        for token in candidates {
            if let claims = try? JWT.verify(token, secret: fuzzSecret, now: 1_700_000_000) {
                let again = JWT.sign(claims, secret: fuzzSecret)
                guard let back = try? JWT.verify(again, secret: fuzzSecret, now: 1_700_000_000), back == claims else {
                    return "re-signed claims do not verify: \(claims)"
                }
            }
        }
        return nil
    }

    static func signedWithFuzzSecret(header: String, payload: [UInt8]) -> String {
        let input = Base64.encodeURL(Array(header.utf8)) + "." + Base64.encodeURL(payload)
        return input + "." + Base64.encodeURL(MAC.hmacSHA256(key: fuzzSecret, data: Array(input.utf8)))
    }
}
