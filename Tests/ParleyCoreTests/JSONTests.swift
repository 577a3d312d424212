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
}
