//! Twilio's request parameters: `application/x-www-form-urlencoded` pairs in which arrays are
//! repeated keys and nested fields are dotted (`Notifications.NewMessage.Enabled`, also spelled
//! the older way without dots). serde_html_form does the decoding; this gives typed access
//! with Twilio's error for a malformed value.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use std::future::Future;
use std::pin::Pin;

use crate::error::{ApiError, ErrorKind};
use crate::HttpSettings;

#[derive(Debug, Clone, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

fn undotted(name: &str) -> String {
    name.replace('.', "")
}

impl Params {
    pub fn parse(text: &str) -> Result<Params, ApiError> {
        // The decoder replaces escapes that are not UTF-8 with U+FFFD, which would make two
        // different identities one: refuse them instead.
        let escapes_utf8 = text.split(['&', '=', ';']).all(|piece| {
            percent_encoding::percent_decode_str(piece)
                .decode_utf8()
                .is_ok()
        });
        if !escapes_utf8 {
            return Err(ApiError::bad_parameter(
                "A parameter's percent-escapes do not decode to UTF-8",
            ));
        }
        let pairs = serde_html_form::from_str::<Vec<(String, String)>>(text)
            .map_err(|e| ApiError::bad_parameter(format!("Malformed form body: {e}")))?;
        Ok(Params { pairs })
    }

    /// The values given for `name` (dotted, or the same name without dots), in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        let legacy = undotted(name);
        self.pairs
            .iter()
            .filter(|(k, _)| k == name || (k.as_str() == legacy && name.contains('.')))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The one value given for `name`; a scalar given twice is malformed.
    pub fn one(&self, name: &str) -> Result<Option<&str>, ApiError> {
        match self.all(name).as_slice() {
            [] => Ok(None),
            [value] => Ok(Some(value)),
            _ => Err(ApiError::bad_parameter(format!(
                "{name} must be given at most once"
            ))),
        }
    }

    /// A boolean, case-insensitively `true` or `false`.
    pub fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        self.one(name)?
            .map(|v| match v.to_ascii_lowercase().as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(ApiError::bad_parameter(format!(
                    "{name} must be true or false, not {v:?}"
                ))),
            })
            .transpose()
    }

    pub fn u32(&self, name: &str) -> Result<Option<u32>, ApiError> {
        self.one(name)?
            .map(|v| {
                v.parse().map_err(|_| {
                    ApiError::bad_parameter(format!(
                        "{name} must be a non-negative integer, not {v:?}"
                    ))
                })
            })
            .transpose()
    }

    pub fn string(&self, name: &str) -> Result<Option<String>, ApiError> {
        Ok(self.one(name)?.map(str::to_owned))
    }

    /// A string the spec gives an `enum`: one of `allowed`, exactly. An empty value is let
    /// through: it clears an optional field.
    pub fn one_of(&self, name: &str, allowed: &[&str]) -> Result<Option<String>, ApiError> {
        match self.one(name)? {
            Some(v) if !v.is_empty() && !allowed.contains(&v) => Err(ApiError::bad_parameter(
                format!("{name} {v:?} is not one of {}", allowed.join(", ")),
            )),
            v => Ok(v.map(str::to_owned)),
        }
    }

    /// A string the spec gives `format: uri`: an absolute URI, with a scheme. An empty value
    /// is let through: it clears an optional field. The value is kept as given.
    pub fn uri(&self, name: &str) -> Result<Option<String>, ApiError> {
        match self.one(name)? {
            Some(v) if !v.is_empty() && !is_absolute_uri(v) => {
                Err(ApiError::bad_parameter(format!(
                    "{name} {v:?} is not an absolute URI with a scheme, such as \
                     https://example.com/hook"
                )))
            }
            v => Ok(v.map(str::to_owned)),
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        !self.all(name).is_empty()
    }
}

/// Whether `text` is a URI as JSON Schema's `format: uri` means it: RFC 3986's `URI`, which
/// has a scheme (a relative reference has none). The url crate checks the structure (scheme,
/// authority, host, port); it parses as browsers do, so first refuse what RFC 3986 does and a
/// browser forgives: spaces and controls (stripped or escaped), backslashes (read as
/// slashes), other characters outside RFC 3986's set, non-ASCII, and a `%` not followed by
/// two hex digits.
pub fn is_absolute_uri(text: &str) -> bool {
    const ALLOWED: &[u8] = b"-._~:/?#[]@!$&'()*+,;=%";
    let bytes = text.as_bytes();
    let characters = bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || ALLOWED.contains(b));
    let escapes = bytes.iter().enumerate().all(|(i, b)| {
        *b != b'%'
            || bytes
                .get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    characters && escapes && url::Url::parse(text).is_ok()
}

/// The query string's parameters.
pub fn query(request: &HttpRequest) -> Result<Params, ApiError> {
    Params::parse(request.query_string())
}

/// A form body, bounded by `http.body_limit`. A body of another type is refused (415); an
/// empty body with no type is an empty form.
pub struct FormBody(pub Params);

impl FromRequest for FormBody {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<FormBody, ApiError>>>>;

    fn from_request(request: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = request
            .app_data::<web::Data<HttpSettings>>()
            .map(|s| s.body_limit)
            .unwrap_or(64 * 1024);
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            });
        let body = web::Bytes::from_request(request, payload);
        let request = request.clone();
        Box::pin(async move {
            let bytes = body.await.map_err(|e| ApiError::unreadable_body(&e))?;
            if bytes.len() > limit {
                return Err(ApiError::too_large(limit));
            }
            match content_type.as_deref() {
                Some("application/x-www-form-urlencoded") => {}
                None if bytes.is_empty() => {}
                other => {
                    return Err(ApiError::new(
                        ErrorKind::UnsupportedMediaType,
                        format!(
                            "Content-Type must be application/x-www-form-urlencoded, not {}",
                            other.unwrap_or("(none)")
                        ),
                    ))
                }
            }
            let text = std::str::from_utf8(&bytes)
                .map_err(|_| ApiError::bad_parameter("The form body is not valid UTF-8"))?;
            let params = Params::parse(text)?;
            request
                .extensions_mut()
                .insert(Fingerprint::of(&request, &bytes));
            Ok(FormBody(params))
        })
    }
}

/// What makes two requests the same request for an `Idempotency-Key`: method, path and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint(pub String);

impl Fingerprint {
    fn of(request: &HttpRequest, body: &[u8]) -> Fingerprint {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        hash.update(request.method().as_str());
        hash.update(b" ");
        hash.update(request.path());
        hash.update(b"\n");
        hash.update(body);
        Fingerprint(format!("{:x}", hash.finalize()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_and_dotted_keys() {
        let p = Params::parse(
            "BindingType=apn&BindingType=fcm&NotificationsNewMessageEnabled=TRUE&A=b+c",
        )
        .unwrap();
        assert_eq!(p.all("BindingType"), ["apn", "fcm"]);
        assert_eq!(
            p.bool("Notifications.NewMessage.Enabled").unwrap(),
            Some(true)
        );
        assert_eq!(p.one("A").unwrap(), Some("b c"));
        assert!(p.one("BindingType").is_err());
        assert!(Params::parse("X=maybe").unwrap().bool("X").is_err());
    }

    #[test]
    fn absolute_uris_have_a_scheme_and_only_rfc_3986_characters() {
        for good in [
            "https://example.com/hook",
            "http://127.0.0.1:8080/a/b?x=1&y=%20#top",
            "http://[::1]/hook",
            "urn:isbn:0451450523",
            "mailto:ops@example.com",
        ] {
            assert!(is_absolute_uri(good), "{good}");
        }
        for bad in [
            "",
            "not a url",
            "http//x",
            "//example.com/hook",
            "/hook",
            "hook",
            " https://example.com/",
            "https://example.com/\n",
            "https://exa mple.com/",
            "https:\\\\example.com\\hook",
            "https://example.com/%zz",
            "https://example.com/%4",
            "https://bücher.example/",
            "https://example.com:99999/",
            "1http://example.com/",
        ] {
            assert!(!is_absolute_uri(bad), "{bad:?}");
        }
    }
}
