import XCTest
@testable import ParleyCore

final class JSONTests: XCTestCase {
    func testJSONParserRejectsAndAccepts() throws {
        XCTAssertEqual(try JSONValue.parse(#"{"a":[1,-2.5e1,true,null,"\u00e9\ud83d\ude00\n"]}"#),
                       ["a": [1, -25.0, true, .null, "é😀\n"]])
        for bad in ["{", "01", "1.", "\"\\x\"", "{\"a\" 1}", "[1,]", "tru", "\"\u{01}\"", "\"\\ud800\""] {
            XCTAssertThrowsError(try JSONValue.parse(bad), bad)
        }
        let v: JSONValue = ["b": 1, "a": "x\"y"]
        XCTAssertEqual(v.serialized, #"{"a":"x\"y","b":1}"#)
    }

    /// Strings that need no escape are written whole, the others scalar by scalar; both round-trip.
    func testStringsAreWrittenWholeOrEscaped() throws {
        let v: JSONValue = ["z": "plain é ☃ 😀", "a": "tab\tline\nquote\"back\\ctl\u{01}"]
        XCTAssertEqual(v.serialized, #"{"a":"tab\tline\nquote\"back\\ctl\u0001","z":"plain é ☃ 😀"}"#)
        XCTAssertEqual(try JSONValue.parse(v.serialized), v)
    }

    /// RFC 8259 §4 leaves duplicate names undefined, and the parser kept the
    /// last: refused at the second occurrence, at any depth, after unescaping.
    func testJSONParserRefusesDuplicateKeys() {
        let cases: [(text: String, offset: Int, reason: String)] = [
            (#"{"a":1,"a":1}"#, 7, #"duplicate key "a""#),
            (#"{"type":"join","room":"a","room":"b"}"#, 26, #"duplicate key "room""#),
            (#"{"a":{"b":1,"b":2}}"#, 12, #"duplicate key "b""#),
            (#"[{"x":1},{"x":2,"x":3}]"#, 16, #"duplicate key "x""#),
            (#"{"a":1,"\u0061":2}"#, 7, #"duplicate key "a""#),
            (#"{"q\"":1,"q\"":2}"#, 9, #"duplicate key "q\"""#),
            (#"{"":1,"":2}"#, 6, #"duplicate key """#),
        ]
        for c in cases {
            XCTAssertThrowsError(try JSONValue.parse(c.text), c.text) { e in
                XCTAssertEqual(e as? JSONValue.ParseError, JSONValue.ParseError(offset: c.offset, reason: c.reason), c.text)
            }
        }
        // One key in sibling or nested objects, or keys differing in case, are distinct.
        for ok in [#"[{"x":1},{"x":2}]"#, #"{"a":{"a":1}}"#, #"{"a":1,"A":2}"#] {
            XCTAssertNoThrow(try JSONValue.parse(ok), ok)
        }
    }

    /// Numbers read without text conversion (integers of up to 15 digits) equal the ones read through it.
    func testNumbersAndStringsReadInPlace() throws {
        for n in ["0", "-0", "7", "-42", "123456789012345", "-123456789012345", "1234567890123456", "9007199254740993",
                  "1.5", "-2e3", "1E2", "0.1", "10e-1"] {
            XCTAssertEqual(try JSONValue.parse(n), .number(Double(n)!), n)
        }
        XCTAssertEqual(try JSONValue.parse("[1,-2,3.5,40]"), [1, -2, 3.5, 40])
        for bad in ["-", "-a", "00", "-01", "1e", "1.e3"] {
            XCTAssertThrowsError(try JSONValue.parse(bad), bad)
        }
        XCTAssertEqual(try JSONValue.parse(#"["", "plain ☃", "a\"b", "x\u0041y\n", "tab\tend"]"#),
                       ["", "plain ☃", "a\"b", "xAy\n", "tab\tend"])
        XCTAssertThrowsError(try JSONValue.parse("\"ctl\u{01}\""))
        XCTAssertThrowsError(try JSONValue.parse("\"open"))
        XCTAssertThrowsError(try JSONValue.parse("nul"))
        XCTAssertThrowsError(try JSONValue.parse("trUe"))
    }

    /// One escaper, two outputs: into bytes (`JSONObjectWriter`) and into a `String`
    /// (`serialized`, the logger), with the same text, which parses back to the string.
    func testStringEscapingIsTheSameIntoBytesAndIntoAString() throws {
        let cases = ["", "plain", "é😀/", "x\"y\n\u{01}\u{1f}\r\t\\é😀/", "\u{7f}\u{0}", "\\\"", "end\n"]
        let expected = [#""""#, #""plain""#, #""é😀/""#, #""x\"y\n\u0001\u001f\r\t\\é😀/""#, "\"\u{7f}\\u0000\"", #""\\\"""#, #""end\n""#]
        for (s, e) in zip(cases, expected) {
            var text = "", bytes: [UInt8] = []
            JSONValue.writeString(s, into: &text)
            JSONValue.appendString(s, to: &bytes)
            XCTAssertEqual(text, e)
            XCTAssertEqual(String(decoding: bytes, as: UTF8.self), e)
            XCTAssertEqual(try JSONValue.parse(text), .string(s))
        }
    }

    /// A `JSONObjectWriter` writes what the `JSONValue.object` of the same members serializes to.
    func testObjectWriterMatchesSerialized() {
        var w = JSONObjectWriter()
        w.add("a", "x\"y\n\u{01}\u{1f}\r\t\\é😀/")
        w.add("b", Int64(1_733_000_000_123))
        w.add("big", Int64(4_000_000_000_000_000))
        w.add("neg", Int64(-5))
        w.add("neg2", Int64(-999_999_999_999_999))
        w.add("neg3", Int64(-1_000_000_000_000_000))
        w.add("nested", ["z": 1, "y": [true, .null]])
        w.add("t", false)
        w.add("u", true)
        w.add("zero", Int64(0))
        let v: JSONValue = ["zero": 0, "u": true, "t": false, "nested": ["z": 1, "y": [true, .null]], "neg": -5,
                            "neg2": JSONValue(-999_999_999_999_999), "neg3": JSONValue(-1_000_000_000_000_000),
                            "big": JSONValue(4_000_000_000_000_000), "b": JSONValue(1_733_000_000_123), "a": "x\"y\n\u{01}\u{1f}\r\t\\é😀/"]
        XCTAssertEqual(w.finish(), v.serialized)
        XCTAssertEqual(JSONObjectWriter().finish(), JSONValue.object([:]).serialized)
    }
}
