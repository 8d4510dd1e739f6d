//! Fuzzing the form decoder (`bindery_http::form::Params`) with proptest: cargo-fuzz needs a
//! nightly toolchain, which the project does not use.
//!
//! Whatever text arrives as a query string or a form body, `Params::parse` and every accessor
//! must answer (a value, or a 400 with code 20001) without panicking; and what a client encodes
//! is what Bindery reads: pairs encoded by serde_html_form parse back to the same pairs, with
//! repeated keys in order and dotted names also found under their undotted spelling.

use bindery_http::form::Params;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// PROPTEST_CASES=100000 for a long hunt; the default keeps the suite quick in debug builds.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2_000);
    ProptestConfig {
        cases,
        // Next to this file (proptest's default, a tree parallel to `src`, has no place here).
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

/// Text rich in the characters that matter to form encoding, percent escapes (valid, truncated,
/// non-hex, and of bytes that are not UTF-8), NUL, non-ASCII and RTL marks.
fn hostile_text() -> impl Strategy<Value = String> {
    const PIECES: &[&str] = &[
        "",
        "a",
        "Z9",
        "apn",
        "Identity",
        "x.y",
        "..",
        "0",
        "-1",
        "TRUE",
        "%",
        "+",
        "&",
        "=",
        "&&",
        "==",
        "\0",
        "%00",
        "%FF",
        "%C3%28",
        "%E2%82",
        "%ED%A0%80",
        "%zz",
        "%4",
        "%25",
        "%26%3D",
        "%2B",
        "\u{202E}\u{200F}",
        "é😀",
        ";",
        "\r\n",
        " ",
    ];
    let piece = prop_oneof![
        9 => prop::sample::select(PIECES).prop_map(str::to_owned),
        1 => any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

/// Names an accessor might be asked for: the real parameter names (dotted and not), and
/// arbitrary ones.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("BindingType".to_owned()),
        Just("Identity".to_owned()),
        Just("PageSize".to_owned()),
        Just("Notifications.NewMessage.Enabled".to_owned()),
        Just("NotificationsNewMessageEnabled".to_owned()),
        Just("".to_owned()),
        Just(".".to_owned()),
        prop::collection::vec(prop::sample::select(&['a', 'B', '.', 'z'][..]), 0..12)
            .prop_map(|chars| chars.into_iter().collect()),
        any::<String>(),
    ]
}

/// Exercises every accessor; none may panic, and their answers must agree with each other.
fn use_every_accessor(params: &Params, name: &str) -> Result<(), TestCaseError> {
    let all: Vec<String> = params.all(name).into_iter().map(str::to_owned).collect();
    prop_assert_eq!(params.contains(name), !all.is_empty());
    let one = params.one(name);
    match all.len() {
        0 => prop_assert_eq!(one.clone(), Ok(None)),
        1 => prop_assert_eq!(one.clone(), Ok(Some(all[0].as_str()))),
        _ => {
            let error = one.clone().expect_err("a scalar given twice is malformed");
            prop_assert_eq!((error.status().as_u16(), error.code()), (400, 20001));
        }
    }
    let string = params.string(name);
    let boolean = params.bool(name);
    let number = params.u32(name);
    for error in [
        string.as_ref().err(),
        boolean.as_ref().err(),
        number.as_ref().err(),
    ]
    .into_iter()
    .flatten()
    {
        prop_assert_eq!((error.status().as_u16(), error.code()), (400, 20001));
        prop_assert!(!error.message.is_empty());
    }
    if let Ok(Some(value)) = one {
        prop_assert_eq!(string, Ok(Some(value.to_owned())));
        let lower = value.to_ascii_lowercase();
        match lower.as_str() {
            "true" => prop_assert_eq!(boolean, Ok(Some(true))),
            "false" => prop_assert_eq!(boolean, Ok(Some(false))),
            _ => prop_assert!(boolean.is_err()),
        }
        match value.parse::<u32>() {
            Ok(n) => prop_assert_eq!(number, Ok(Some(n))),
            Err(_) => prop_assert!(number.is_err()),
        }
    }
    Ok(())
}

/// What `Params::all(name)` must give for `pairs`: the values of `name`, and for a dotted name
/// also those of its undotted spelling, in the order given.
fn expected_all<'a>(pairs: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    let legacy = name.replace('.', "");
    pairs
        .iter()
        .filter(|(k, _)| k == name || (name.contains('.') && *k == legacy))
        .map(|(_, v)| v.as_str())
        .collect()
}

fn check_round_trip(pairs: &[(String, String)]) -> Result<(), TestCaseError> {
    let encoded = serde_html_form::to_string(pairs).expect("pairs encode");
    let params = Params::parse(&encoded)
        .unwrap_or_else(|e| panic!("{encoded:?} was encoded by serde_html_form: {e:?}"));
    let mut names: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        prop_assert_eq!(
            params.all(name),
            expected_all(pairs, name),
            "name {:?} in {:?}",
            name,
            encoded
        );
        use_every_accessor(&params, name)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// Arbitrary bytes, as a body or query string arrives: the extractor refuses text that is
    /// not UTF-8 before parsing, so valid UTF-8 is parsed as is and the rest as the lossy text
    /// a proxy might have made of it.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), name in name()) {
        let text = match std::str::from_utf8(&bytes) {
            Ok(text) => text.to_owned(),
            Err(_) => String::from_utf8_lossy(&bytes).into_owned(),
        };
        if let Ok(params) = Params::parse(&text) {
            use_every_accessor(&params, &name)?;
        }
    }

    /// Text built from the characters that matter to form encoding.
    #[test]
    fn hostile_text_never_panics(text in hostile_text(), name in name()) {
        match Params::parse(&text) {
            Ok(params) => {
                use_every_accessor(&params, &name)?;
                // Every key found in the text answers for itself.
                for pair in text.split('&') {
                    let key = pair.split('=').next().unwrap_or("");
                    if !key.contains(['%', '+']) {
                        use_every_accessor(&params, key)?;
                    }
                }
            }
            Err(error) => prop_assert_eq!((error.status().as_u16(), error.code()), (400, 20001)),
        }
    }

    /// Arbitrary key/value strings (any Unicode, NUL and the form's own delimiters included),
    /// encoded by serde_html_form as a client would, parse back to the same pairs.
    #[test]
    fn encoded_pairs_parse_back(pairs in prop::collection::vec((any::<String>(), any::<String>()), 0..12)) {
        check_round_trip(&pairs)?;
    }

    /// The same, with the keys Bindery reads, dotted and undotted spellings mixed, repeated.
    #[test]
    fn encoded_parameters_parse_back(
        pairs in prop::collection::vec((name(), hostile_text()), 0..24)
    ) {
        check_round_trip(&pairs)?;
    }

    /// Very long and many repeated keys and values.
    #[test]
    fn long_and_repeated_keys_parse_back(
        key in "[A-Za-z.%&=+]{1,8}",
        repeat in 1usize..300,
        long in 1usize..4_096,
    ) {
        let long_key = key.repeat(long / key.len() + 1);
        let mut pairs = vec![(long_key.clone(), "x".repeat(long))];
        pairs.extend((0..repeat).map(|i| (key.clone(), i.to_string())));
        check_round_trip(&pairs)?;
    }
}

#[test]
fn ten_thousand_repeated_keys_are_read_in_order() {
    let text = vec!["BindingType=apn"; 10_000].join("&");
    let params = Params::parse(&text).expect("a form");
    assert_eq!(params.all("BindingType").len(), 10_000);
    assert!(params.one("BindingType").is_err());
    assert!(
        params.all("bindingtype").is_empty(),
        "names are case-sensitive"
    );
}

#[test]
fn a_megabyte_long_key_and_value_are_read() {
    let key = "K.".repeat(1 << 19);
    let text = format!("{key}=%41{}", "v".repeat(1 << 20));
    let params = Params::parse(&text).expect("a form");
    assert_eq!(params.one(&key).unwrap().map(str::len), Some(1 + (1 << 20)));
    assert_eq!(params.all(&key.replace('.', "")), Vec::<&str>::new());
}

#[test]
fn percent_escapes_that_are_not_utf8_do_not_panic() {
    for text in [
        "Identity=%FF",
        "Identity=%C3%28",
        "Identity=%ED%A0%80",
        "%FF=%FE",
        "Identity=%",
        "Identity=%4",
        "Identity=%zz",
        "Identity=%00",
        "Identity=\0",
        "=&&==&=%&",
        "&",
        "",
    ] {
        if let Ok(params) = Params::parse(text) {
            let _ = params.one("Identity");
            let _ = params.all("");
        }
    }
    let params = Params::parse("Identity=a%00b").expect("a form");
    assert_eq!(params.one("Identity").unwrap(), Some("a\0b"));
    let params = Params::parse("A=b+c%2Bd%26e%3Df").expect("a form");
    assert_eq!(params.one("A").unwrap(), Some("b c+d&e=f"));
}
