//! Checking answers: a body's SID and keys, the fields Twilio's spec lists (and the served
//! document, with Bindery's additions), the Twilio error shape, Twilio's date format.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use super::{Reply, TestApp};

/// The `sid` of a JSON body.
#[track_caller]
pub fn sid(body: &Value) -> String {
    body["sid"]
        .as_str()
        .unwrap_or_else(|| panic!("no sid in {body}"))
        .to_owned()
}

/// The names of a JSON object's keys.
pub fn keys(body: &Value) -> BTreeSet<String> {
    body.as_object()
        .unwrap_or_else(|| panic!("not an object: {body}"))
        .keys()
        .cloned()
        .collect()
}

/// The properties Twilio's spec lists for `schema` (e.g. `chat.v2.service`).
pub fn spec_fields(schema: &str) -> BTreeSet<String> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/http/openapi/twilio_chat_v2.json");
    let spec: Value = serde_json::from_slice(&std::fs::read(&path).expect("the spec")).unwrap();
    keys(&spec["components"]["schemas"][schema]["properties"])
}

impl TestApp {
    /// The properties this server's `/openapi.json` lists for `schema`: Twilio's, with the
    /// [EXT] fields Bindery adds (a body must show every field described, and no other).
    pub fn served_fields(&self, schema: &str) -> BTreeSet<String> {
        let document = self.get_raw("/openapi.json").expect(200);
        keys(&document["components"]["schemas"][schema]["properties"])
    }
}

/// Asserts a Twilio error body: exactly `code`, `message`, `more_info`, `status`, with these
/// values, and the same HTTP status.
#[track_caller]
pub fn assert_error(reply: &Reply, status: u16, code: u64) {
    assert_eq!(
        (reply.status, reply.body["code"].as_u64()),
        (status, Some(code)),
        "{}",
        reply.text
    );
    let expected: BTreeSet<String> = ["code", "message", "more_info", "status"]
        .map(String::from)
        .into();
    assert_eq!(keys(&reply.body), expected, "{}", reply.text);
    assert_eq!(reply.body["status"], status, "{}", reply.text);
    assert_eq!(
        reply.body["more_info"],
        format!("https://www.twilio.com/docs/errors/{code}")
    );
    assert!(
        reply.body["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{}",
        reply.text
    );
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{:?}",
        reply.header("content-type")
    );
}

/// Whether `text` is a date exactly as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn is_twilio_date(text: &Value) -> bool {
    let Some(text) = text.as_str() else {
        return false;
    };
    let bytes = text.as_bytes();
    bytes.len() == 20
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            10 => *b == b'T',
            13 | 16 => *b == b':',
            19 => *b == b'Z',
            _ => b.is_ascii_digit(),
        })
}
