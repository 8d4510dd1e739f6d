//! What goes on the wire: path segments, form bodies and query strings encoded as Twilio's
//! clients write them (or more than they would), read back, and the API's paths.

/// `value` percent-encoded as a path segment the way Twilio's helper library sends it: `@`,
/// `+` and the other RFC 3986 pchars raw, a space as `%20`, non-ASCII as its UTF-8 bytes.
pub fn segment(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `pairs` as an `application/x-www-form-urlencoded` body or query string.
pub fn form(pairs: &[(&str, &str)]) -> String {
    let encode = |text: &str| {
        let mut out = String::new();
        for byte in text.bytes() {
            match byte {
                b' ' => out.push('+'),
                b if b.is_ascii_alphanumeric() || b"-._*".contains(&b) => out.push(b as char),
                b => out.push_str(&format!("%{b:02X}")),
            }
        }
        out
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `/v2/Services/{service}/Users/{user}`, the user (SID or identity) encoded as a segment.
pub fn user_path(service: &str, user: &str) -> String {
    format!("/v2/Services/{service}/Users/{}", segment(user))
}

/// `…/Users/{user}/Bindings`.
pub fn user_bindings_path(service: &str, user: &str) -> String {
    format!("{}/Bindings", user_path(service, user))
}

/// The decoded `name=value` pairs of a URL's query string (`+` is a space there).
pub fn query_pairs(url: &str) -> Vec<(String, String)> {
    let decode = |text: &str| {
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                    match u8::from_str_radix(hex, 16) {
                        Ok(b) => {
                            out.push(b);
                            i += 2;
                        }
                        Err(_) => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).expect("UTF-8 after decoding")
    };
    let Some((_, query)) = url.split_once('?') else {
        return Vec::new();
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(name), decode(value))
        })
        .collect()
}

/// `value` with every byte but ASCII letters and digits percent-encoded (so `.` and `..` reach
/// the server as `%2E` and `%2E%2E`, which a URL parser would otherwise resolve away).
pub fn escape_all(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
