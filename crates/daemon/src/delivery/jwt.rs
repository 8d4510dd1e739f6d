//! The JSON Web Tokens the providers take (CONTRACT §6.3), signed with ring:
//! - APNs token auth: an ES256 JWT (`kid` = key id; `iss` = team id, `iat`), sent as
//!   `authorization: bearer …` with every push. Apple refuses a token older than an hour and
//!   throttles one renewed more often than every 20 minutes, so one is kept for
//!   [`APNS_TOKEN_LIFETIME`] (gorush keeps its for about 50).
//! - FCM's OAuth grant: an RS256 JWT assertion (`iss` = the service account's email, `scope`,
//!   `aud` = token_uri, `iat`, `exp`) traded at `token_uri` for an access token.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, RsaKeyPair, RSA_PKCS1_SHA256};
use serde_json::json;

/// How long an APNs provider token is used before a new one is signed.
pub const APNS_TOKEN_LIFETIME: Duration = Duration::from_secs(50 * 60);

/// The scope an FCM access token needs.
pub const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

/// How long an FCM assertion is valid (Google takes at most an hour).
const ASSERTION_LIFETIME: u64 = 3600;

fn encode(header: &serde_json::Value, claims: &serde_json::Value) -> String {
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// An APNs provider token issued at `issued_at` (Unix seconds).
pub fn apns_token(key: &EcdsaKeyPair, key_id: &str, team_id: &str, issued_at: u64) -> String {
    let signing_input = encode(
        &json!({"alg": "ES256", "kid": key_id}),
        &json!({"iss": team_id, "iat": issued_at}),
    );
    // The FIXED signing algorithm gives JWS's r||s form, not DER.
    let signature = key
        .sign(&SystemRandom::new(), signing_input.as_bytes())
        .expect("ECDSA signing does not fail with a system RNG");
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// The assertion of an FCM token request, issued at `issued_at` (Unix seconds).
pub fn fcm_assertion(
    key: &RsaKeyPair,
    client_email: &str,
    token_uri: &str,
    issued_at: u64,
) -> String {
    let signing_input = encode(
        &json!({"alg": "RS256", "typ": "JWT"}),
        &json!({
            "iss": client_email,
            "scope": FCM_SCOPE,
            "aud": token_uri,
            "iat": issued_at,
            "exp": issued_at + ASSERTION_LIFETIME,
        }),
    );
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        signing_input.as_bytes(),
        &mut signature,
    )
    .expect("RSA signing into a modulus-sized buffer does not fail");
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// A bearer token kept until shortly before it must be replaced, or until the provider
/// refuses it (`renew`).
#[derive(Debug, Default)]
pub struct CachedToken {
    current: Option<(Arc<str>, u64)>,
}

impl CachedToken {
    /// The token valid at `now` (Unix seconds), if one is kept.
    pub fn get(&self, now: u64) -> Option<Arc<str>> {
        match &self.current {
            Some((token, until)) if now < *until => Some(token.clone()),
            _ => None,
        }
    }

    /// Keeps `token` until `until` (Unix seconds).
    pub fn keep(&mut self, token: &str, until: u64) -> Arc<str> {
        let token: Arc<str> = token.into();
        self.current = Some((token.clone(), until));
        token
    }

    /// Forgets the token, so that the next push gets a new one; only if it is still `token`
    /// (another push may have renewed it already).
    pub fn renew(&mut self, token: &str) {
        if self.current.as_ref().is_some_and(|(t, _)| &**t == token) {
            self.current = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{
        KeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING,
    };

    fn parts(token: &str) -> (serde_json::Value, serde_json::Value, Vec<u8>, String) {
        let pieces: Vec<&str> = token.split('.').collect();
        assert_eq!(pieces.len(), 3, "{token}");
        let decode = |p: &str| URL_SAFE_NO_PAD.decode(p).expect("base64url");
        let json = |p: &str| serde_json::from_slice(&decode(p)).expect("JSON");
        (
            json(pieces[0]),
            json(pieces[1]),
            decode(pieces[2]),
            format!("{}.{}", pieces[0], pieces[1]),
        )
    }

    #[test]
    fn an_apns_token_is_an_es256_jws_with_kid_iss_and_iat() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let token = apns_token(&key, "ABC123DEFG", "TEAM123456", 1_800_000_000);
        let (header, claims, signature, signed) = parts(&token);
        assert_eq!(header, json!({"alg": "ES256", "kid": "ABC123DEFG"}));
        assert_eq!(claims, json!({"iss": "TEAM123456", "iat": 1_800_000_000}));
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key.public_key().as_ref())
            .verify(signed.as_bytes(), &signature)
            .expect("the signature verifies with the key's public half");
    }

    #[test]
    fn an_fcm_assertion_is_an_rs256_jwt_for_the_token_uri() {
        let pem = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/test-only-rsa-key.pem"),
        )
        .unwrap();
        let der = rustls::pki_types::PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).unwrap();
        let key = RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).unwrap();
        let token = fcm_assertion(&key, "push@p.iam", "https://o/token", 100);
        let (header, claims, signature, signed) = parts(&token);
        assert_eq!(header["alg"], "RS256");
        assert_eq!(
            claims,
            json!({"iss": "push@p.iam", "scope": FCM_SCOPE, "aud": "https://o/token",
                   "iat": 100, "exp": 3700})
        );
        ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            key.public().as_ref(),
        )
        .verify(signed.as_bytes(), &signature)
        .expect("the signature verifies");
    }

    use rustls::pki_types::pem::PemObject;

    #[test]
    fn a_kept_token_is_reused_until_it_expires_or_is_renewed_once() {
        let mut cached = CachedToken::default();
        assert_eq!(cached.get(0), None);
        cached.keep("one", 100);
        assert_eq!(cached.get(99).as_deref(), Some("one"));
        assert_eq!(cached.get(100), None, "replaced when it is due");
        cached.keep("two", 200);
        cached.renew("one");
        assert_eq!(
            cached.get(150).as_deref(),
            Some("two"),
            "an old refusal renews nothing"
        );
        cached.renew("two");
        assert_eq!(cached.get(150), None);
    }
}
