//! Just enough DER and PEM to re-wrap keys and read a certificate's subject: the shapes here
//! are the few that rcgen, ring and openssl produce, so a full ASN.1 library would be weight
//! without use.

use anyhow::{bail, Context};
use base64::Engine;

pub(crate) const SEQUENCE: u8 = 0x30;
pub(crate) const SET: u8 = 0x31;
pub(crate) const INTEGER: u8 = 0x02;
pub(crate) const BIT_STRING: u8 = 0x03;
pub(crate) const OCTET_STRING: u8 = 0x04;
pub(crate) const OID: u8 = 0x06;

/// One tag-length-value read from a DER buffer.
pub(crate) struct Tlv<'a> {
    pub tag: u8,
    pub value: &'a [u8],
}

/// Reads consecutive TLVs out of a buffer.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(der: &'a [u8]) -> Self {
        Reader { rest: der }
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    pub fn next(&mut self) -> anyhow::Result<Tlv<'a>> {
        let [tag, first, ..] = *self.rest else {
            bail!("DER ends inside a header");
        };
        let (len, header) = if first < 0x80 {
            (first as usize, 2)
        } else {
            let n = (first & 0x7f) as usize;
            if n == 0 || n > 4 || self.rest.len() < 2 + n {
                bail!("DER length of {n} bytes");
            }
            let len = self.rest[2..2 + n]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | *b as usize);
            (len, 2 + n)
        };
        let end = header.checked_add(len).context("DER length overflows")?;
        if self.rest.len() < end {
            bail!("DER value runs past its buffer");
        }
        let value = &self.rest[header..end];
        self.rest = &self.rest[end..];
        Ok(Tlv { tag, value })
    }

    /// The next TLV, which must carry `tag`.
    pub fn expect(&mut self, tag: u8) -> anyhow::Result<&'a [u8]> {
        let tlv = self.next()?;
        if tlv.tag != tag {
            bail!("DER tag {:#04x} where {tag:#04x} was expected", tlv.tag);
        }
        Ok(tlv.value)
    }
}

/// Encodes one TLV.
pub(crate) fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(value);
    out
}

/// An OID in dotted form, from its DER content.
pub(crate) fn oid_string(content: &[u8]) -> String {
    let mut arcs: Vec<u64> = Vec::new();
    let mut acc = 0u64;
    for b in content {
        acc = (acc << 7) | (b & 0x7f) as u64;
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let (first, second) = match acc {
                    0..=39 => (0, acc),
                    40..=79 => (1, acc - 40),
                    _ => (2, acc - 80),
                };
                arcs.push(first);
                arcs.push(second);
            } else {
                arcs.push(acc);
            }
            acc = 0;
        }
    }
    arcs.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// PEM armour around DER, in lines of 64 characters as openssl writes them.
pub(crate) fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The DER inside the first PEM block labelled `label`.
pub(crate) fn unpem(label: &str, text: &str) -> anyhow::Result<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text
        .find(&begin)
        .with_context(|| format!("no {begin} in the PEM"))?
        + begin.len();
    let stop = text[start..]
        .find(&end)
        .with_context(|| format!("no {end} in the PEM"))?
        + start;
    let b64: String = text[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .context("PEM body is not base64")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oids_read_in_dotted_form() {
        // 0.9.2342.19200300.100.1.1, the UID attribute Apple's push certificates carry.
        let uid = [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01];
        assert_eq!(oid_string(&uid), "0.9.2342.19200300.100.1.1");
        assert_eq!(oid_string(&[0x55, 0x04, 0x03]), "2.5.4.3");
    }

    #[test]
    fn long_lengths_round_trip() {
        let value = vec![7u8; 300];
        let encoded = tlv(OCTET_STRING, &value);
        assert_eq!(&encoded[..4], &[0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(
            Reader::new(&encoded).expect(OCTET_STRING).unwrap(),
            &value[..]
        );
    }

    #[test]
    fn pem_round_trips() {
        let der = (0u8..=255).collect::<Vec<_>>();
        assert_eq!(unpem("TEST", &pem("TEST", &der)).unwrap(), der);
    }
}
