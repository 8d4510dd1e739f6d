//! Validated SIDs: a two-letter prefix naming the kind, then 32 lowercase hex digits.

use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The kind of thing a SID names; the prefix is what tells them apart on the wire.
pub trait SidKind: Copy + Eq + Ord + Hash + fmt::Debug + 'static {
    const PREFIX: &'static str;
    /// A human name for error messages ("service", "user", ...).
    const NAME: &'static str;
}

macro_rules! sid_kinds {
    ($($kind:ident $alias:ident $prefix:literal $name:literal;)*) => {
        /// Marker types, one per kind of SID.
        pub mod kind {
            $(
                #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
                pub struct $kind;
                impl super::SidKind for $kind {
                    const PREFIX: &'static str = $prefix;
                    const NAME: &'static str = $name;
                }
            )*
        }
        $(pub type $alias = Sid<kind::$kind>;)*
    };
}

sid_kinds! {
    Account AccountSid "AC" "account";
    ApiKey ApiKeySid "SK" "API key";
    Service ServiceSid "IS" "service";
    User UserSid "US" "user";
    Binding BindingSid "BS" "binding";
    Credential CredentialSid "CR" "credential";
    Notification NotificationSid "NO" "notification";
}

const SID_LEN: usize = 34;

/// A SID of one kind. It always holds its prefix and 32 lowercase hex digits, so it is `Copy`
/// and compares as the string it prints.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sid<K> {
    text: [u8; SID_LEN],
    kind: PhantomData<K>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a valid {name} SID: expected {prefix} followed by 32 hex digits")]
pub struct SidError {
    pub value: String,
    pub name: &'static str,
    pub prefix: &'static str,
}

impl<K: SidKind> Sid<K> {
    /// Parses `^XX[0-9a-fA-F]{32}$`, keeping hex in lower case so that SIDs compare as bytes.
    pub fn parse(value: &str) -> Result<Self, SidError> {
        let error = || SidError {
            value: value.to_owned(),
            name: K::NAME,
            prefix: K::PREFIX,
        };
        let bytes = value.as_bytes();
        if bytes.len() != SID_LEN
            || !value.starts_with(K::PREFIX)
            || !bytes[2..].iter().all(u8::is_ascii_hexdigit)
        {
            return Err(error());
        }
        let mut text = [0u8; SID_LEN];
        text.copy_from_slice(bytes);
        text[2..].make_ascii_lowercase();
        Ok(Sid {
            text,
            kind: PhantomData,
        })
    }

    /// Whether `value` has the shape of this kind of SID (used to tell a User SID from an
    /// identity in a path).
    pub fn looks_like(value: &str) -> bool {
        Self::parse(value).is_ok()
    }

    /// Builds a SID from 16 bytes. Where the bytes come from (a clock, randomness) is the
    /// caller's business: the domain does no IO.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        let mut text = [0u8; SID_LEN];
        text[..2].copy_from_slice(K::PREFIX.as_bytes());
        hex::encode_to_slice(bytes, &mut text[2..]).expect("32 hex digits fit in 32 bytes");
        Sid {
            text,
            kind: PhantomData,
        }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.text).expect("a SID is ASCII")
    }
}

impl<K: SidKind> fmt::Display for Sid<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<K: SidKind> fmt::Debug for Sid<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<K: SidKind> std::str::FromStr for Sid<K> {
    type Err = SidError;
    fn from_str(s: &str) -> Result<Self, SidError> {
        Self::parse(s)
    }
}

impl<K: SidKind> Serialize for Sid<K> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de, K: SidKind> Deserialize<'de> for Sid<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_lowercases() {
        let sid = ServiceSid::parse("IS0123456789ABCDEF0123456789abcdef").unwrap();
        assert_eq!(sid.as_str(), "IS0123456789abcdef0123456789abcdef");
    }

    #[test]
    fn rejects_wrong_prefix_length_and_digits() {
        for bad in [
            "US0123456789abcdef0123456789abcdef",
            "IS0123456789abcdef0123456789abcde",
            "IS0123456789abcdef0123456789abcdeg",
            "is0123456789abcdef0123456789abcdef",
            "",
        ] {
            assert!(ServiceSid::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn from_bytes_round_trips() {
        let sid = BindingSid::from_bytes([0xab; 16]);
        assert_eq!(BindingSid::parse(sid.as_str()).unwrap(), sid);
        assert_eq!(sid.as_str(), format!("BS{}", "ab".repeat(16)));
    }
}
