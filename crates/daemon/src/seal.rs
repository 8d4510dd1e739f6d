//! Push credentials' private fields sealed at rest: a stolen database file, backup or export
//! must not let anyone push to every user. Each value is encrypted (ChaCha20-Poly1305, a random
//! nonce per value, the field's name as associated data) under a 256-bit key kept in a file of
//! its own, `storage.secret_key_file`, beside but not inside the database.
//!
//! A sealed value is text: `sealed:v1:` then the base64 of nonce ‖ ciphertext ‖ tag. A value
//! without that prefix was written before sealing existed; it reads as the plaintext it is and
//! is never rewritten (the log is append-only).
//!
//! Hashing auth tokens (`secrets.rs`) is another thing: those are only ever compared, never
//! given back, while a sender needs a credential's key itself.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use bindery_domain::{Command, CredentialSecrets};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

/// What a sealed value starts with; the version names the cipher and the layout after it.
pub const SEALED_PREFIX: &str = "sealed:v1:";

/// The key file's name in the data dir when `storage.secret_key_file` is unset.
pub const KEY_FILE_NAME: &str = "secret.key";

const KEY_LEN: usize = 32;

/// Where the key lives when no setting says otherwise.
/// What [`Sealer::check_shared`] seals, under this field name.
const KEY_CHECK_FIELD: &str = "key_check";
const KEY_CHECK_TEXT: &str = "bindery";

pub fn default_key_file(data_dir: &Path) -> PathBuf {
    data_dir.join(KEY_FILE_NAME)
}

/// Whether `value` was sealed (rather than written in clear before sealing existed).
pub fn is_sealed(value: &str) -> bool {
    value.starts_with(SEALED_PREFIX)
}

/// Each private field of `secrets` that is set, by the name it is sealed under.
pub fn fields(secrets: &CredentialSecrets) -> impl Iterator<Item = (&'static str, &str)> {
    [
        ("certificate", &secrets.certificate),
        ("private_key", &secrets.private_key),
        ("api_key", &secrets.api_key),
        ("secret", &secrets.secret),
    ]
    .into_iter()
    .filter_map(|(name, value)| Some((name, value.as_deref()?)))
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(
        "the key file {} is missing, but the log holds credentials sealed under a key: restore \
         that file (it is not in backups or exports), or point storage.secret_key_file at it; \
         a new key could not open them",
        .0.display()
    )]
    MissingBesideSealed(PathBuf),
    #[error(
        "the export holds sealed credentials, but there is no key file {}: copy the key file \
         of the data dir it came from there (or point storage.secret_key_file at it)",
        .0.display()
    )]
    MissingForImport(PathBuf),
    // The I/O error is in the message, not a `source`: a caller printing the chain would
    // show it twice.
    #[error("cannot read the key file {}: {error}", .file.display())]
    Unreadable {
        file: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "the key file {} does not hold a key: {why} (expected 64 hex digits, a 256-bit key)",
        .file.display()
    )]
    Malformed { file: PathBuf, why: String },
    #[error(
        "the key file {} is not the key this registry's credentials are sealed under (another \
         node on the same PostgreSQL database sealed them under its own): every node must hold \
         the same key; copy the key file of a node already serving here",
        .0.display()
    )]
    NotTheRegistrysKey(PathBuf),
    #[error("cannot create the key file {}: {error}", .file.display())]
    Uncreatable {
        file: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "a credential's {field} was sealed under another key than the one in {}",
        .file.display()
    )]
    WrongKey { file: PathBuf, field: &'static str },
}

/// The key that seals and opens credentials' private fields.
pub struct Sealer {
    key: LessSafeKey,
    file: PathBuf,
    random: SystemRandom,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// The key in `file`; `None` when there is no such file.
    pub fn load(file: &Path) -> Result<Option<Sealer>, SealError> {
        let text = match std::fs::read(file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => {
                return Err(SealError::Unreadable {
                    file: file.to_owned(),
                    error,
                })
            }
        };
        let malformed = |why: &str| SealError::Malformed {
            file: file.to_owned(),
            why: why.to_owned(),
        };
        let text = std::str::from_utf8(&text).map_err(|_| malformed("it is not text"))?;
        let bytes = hex::decode(text.trim()).map_err(|_| malformed("it is not hex"))?;
        if bytes.len() != KEY_LEN {
            return Err(malformed(&format!("it holds {} bytes", bytes.len())));
        }
        Ok(Some(Sealer::with_key(&bytes, file)))
    }

    /// A new random key, written to `file` (which must not exist yet) readable by its owner
    /// only (see [`private_file`](crate::private_file)).
    pub fn create(file: &Path) -> Result<Sealer, SealError> {
        let uncreatable = |error| SealError::Uncreatable {
            file: file.to_owned(),
            error,
        };
        let mut bytes = [0u8; KEY_LEN];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| uncreatable(std::io::Error::other("no randomness")))?;
        crate::private_file::create(file, format!("{}\n", hex::encode(bytes)).as_bytes())
            .map_err(uncreatable)?;
        Ok(Sealer::with_key(&bytes, file))
    }

    /// The data dir's key for a server: the one in `file`, or a new one if there is none and
    /// nothing in the log was sealed under an earlier one (`holds_sealed` asks the log, and
    /// only when the file is missing: it reads every credential event). A missing key beside
    /// sealed credentials is refused: a new key could never open them.
    pub fn load_or_create<E: From<SealError>>(
        file: &Path,
        holds_sealed: impl FnOnce() -> Result<bool, E>,
    ) -> Result<Sealer, E> {
        if let Some(sealer) = Sealer::load(file)? {
            return Ok(sealer);
        }
        if holds_sealed()? {
            return Err(SealError::MissingBesideSealed(file.to_owned()).into());
        }
        Ok(Sealer::create(file)?)
    }

    fn with_key(bytes: &[u8], file: &Path) -> Sealer {
        let key = UnboundKey::new(&CHACHA20_POLY1305, bytes).expect("a 256-bit key");
        Sealer {
            key: LessSafeKey::new(key),
            file: file.to_owned(),
            random: SystemRandom::new(),
        }
    }

    /// Checks that this is the key of a registry whose nodes share one database: `claim`
    /// records a value sealed under this key unless one is recorded, and answers the
    /// recorded one, which must open under this key. Of nodes starting together with new
    /// keys, the first to record wins and the others refuse to start.
    pub fn check_shared<E: From<SealError>>(
        &self,
        claim: impl FnOnce(&str) -> Result<String, E>,
    ) -> Result<(), E> {
        let recorded = claim(&self.seal(KEY_CHECK_FIELD, KEY_CHECK_TEXT))?;
        match self.open(KEY_CHECK_FIELD, &recorded) {
            Ok(text) if text == KEY_CHECK_TEXT => Ok(()),
            _ => Err(SealError::NotTheRegistrysKey(self.file.clone()).into()),
        }
    }

    /// The key file this key was read from (or written to).
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// `plaintext` sealed as the value of `field`.
    pub fn seal(&self, field: &str, plaintext: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        // The system's randomness failing is no state to keep serving in.
        self.random
            .fill(&mut nonce)
            .expect("the operating system provides randomness");
        let mut ciphertext = plaintext.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(field.as_bytes()),
                &mut ciphertext,
            )
            .expect("a value short enough to seal");
        let mut sealed = nonce.to_vec();
        sealed.append(&mut ciphertext);
        format!("{SEALED_PREFIX}{}", BASE64.encode(sealed))
    }

    /// The plaintext of `field`'s stored value: opened if sealed, as it is if it was written
    /// before sealing. Fails if it was sealed under another key, for another field, or altered.
    pub fn open(&self, field: &'static str, value: &str) -> Result<String, SealError> {
        let Some(encoded) = value.strip_prefix(SEALED_PREFIX) else {
            return Ok(value.to_owned());
        };
        let wrong = || SealError::WrongKey {
            file: self.file.clone(),
            field,
        };
        let mut sealed = BASE64.decode(encoded).map_err(|_| wrong())?;
        if sealed.len() < NONCE_LEN {
            return Err(wrong());
        }
        let mut ciphertext = sealed.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&sealed).map_err(|_| wrong())?;
        let plaintext = self
            .key
            .open_in_place(nonce, Aad::from(field.as_bytes()), &mut ciphertext)
            .map_err(|_| wrong())?;
        String::from_utf8(plaintext.to_vec()).map_err(|_| wrong())
    }

    /// Every field of `secrets` that is set, sealed.
    pub fn seal_secrets(&self, secrets: &CredentialSecrets) -> CredentialSecrets {
        let seal = |field, value: &Option<String>| value.as_ref().map(|v| self.seal(field, v));
        CredentialSecrets {
            certificate: seal("certificate", &secrets.certificate),
            private_key: seal("private_key", &secrets.private_key),
            api_key: seal("api_key", &secrets.api_key),
            secret: seal("secret", &secrets.secret),
        }
    }

    /// Every field of `secrets` that is set, opened: what a sender needs.
    pub fn open_secrets(
        &self,
        secrets: &CredentialSecrets,
    ) -> Result<CredentialSecrets, SealError> {
        let open =
            |field, value: &Option<String>| value.as_ref().map(|v| self.open(field, v)).transpose();
        Ok(CredentialSecrets {
            certificate: open("certificate", &secrets.certificate)?,
            private_key: open("private_key", &secrets.private_key)?,
            api_key: open("api_key", &secrets.api_key)?,
            secret: open("secret", &secrets.secret)?,
        })
    }

    /// Seals the secrets a command brings in, where the plaintext enters: what the writer
    /// decides on, and so the log, the projections, exports and backups, holds only sealed
    /// values.
    pub fn seal_command(&self, command: &mut Command) {
        match command {
            Command::CreateCredential { secrets, .. }
            | Command::UpdateCredential { secrets, .. } => {
                *secrets = self.seal_secrets(secrets);
            }
            _ => {}
        }
    }
}

/// The data dir's key as `import` finds it. An export without sealed values needs none (a
/// server makes one on its first start); one with sealed values must open under it, or it
/// would import credentials that nothing can ever use.
pub enum ImportKey {
    Present(Box<Sealer>),
    Absent(PathBuf),
}

impl ImportKey {
    pub fn load(file: &Path) -> Result<ImportKey, SealError> {
        Ok(match Sealer::load(file)? {
            Some(sealer) => ImportKey::Present(Box::new(sealer)),
            None => ImportKey::Absent(file.to_owned()),
        })
    }

    /// Fails unless every sealed field of `secrets` opens under this key.
    pub fn check(&self, secrets: &CredentialSecrets) -> Result<(), SealError> {
        for (field, value) in fields(secrets).filter(|(_, v)| is_sealed(v)) {
            match self {
                ImportKey::Present(sealer) => {
                    sealer.open(field, value)?;
                }
                ImportKey::Absent(file) => return Err(SealError::MissingForImport(file.clone())),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn sealer_in(dir: &Path) -> Sealer {
        Sealer::create(&dir.join(KEY_FILE_NAME)).unwrap()
    }

    #[test]
    fn a_sealed_value_opens_under_its_key_and_field_only() {
        let dir = tempfile::TempDir::new().unwrap();
        let sealer = sealer_in(dir.path());
        let sealed = sealer.seal("private_key", "-----BEGIN PRIVATE KEY-----abc");
        assert!(sealed.starts_with(SEALED_PREFIX), "{sealed}");
        assert!(!sealed.contains("PRIVATE KEY"), "{sealed}");
        assert_eq!(
            sealer.open("private_key", &sealed).unwrap(),
            "-----BEGIN PRIVATE KEY-----abc"
        );
        // The field's name is bound in: a value moved to another field does not open.
        assert!(matches!(
            sealer.open("certificate", &sealed),
            Err(SealError::WrongKey {
                field: "certificate",
                ..
            })
        ));
        let other = tempfile::TempDir::new().unwrap();
        let error = sealer_in(other.path())
            .open("private_key", &sealed)
            .unwrap_err();
        assert!(
            error.to_string().contains(&*other.path().to_string_lossy()),
            "{error}"
        );
        let mut altered = sealed.clone().into_bytes();
        let inside = SEALED_PREFIX.len() + 20;
        altered[inside] = if altered[inside] == b'A' { b'B' } else { b'A' };
        assert!(sealer
            .open("private_key", std::str::from_utf8(&altered).unwrap())
            .is_err());
    }

    #[test]
    fn each_seal_takes_a_new_nonce() {
        let dir = tempfile::TempDir::new().unwrap();
        let sealer = sealer_in(dir.path());
        assert_ne!(sealer.seal("secret", "same"), sealer.seal("secret", "same"));
    }

    #[test]
    fn a_value_written_before_sealing_reads_as_it_is() {
        let dir = tempfile::TempDir::new().unwrap();
        let sealer = sealer_in(dir.path());
        assert_eq!(sealer.open("api_key", "legacy-key").unwrap(), "legacy-key");
        let secrets = CredentialSecrets {
            api_key: Some("legacy-key".into()),
            ..Default::default()
        };
        assert_eq!(sealer.open_secrets(&secrets).unwrap(), secrets);
        ImportKey::Absent(dir.path().join("none"))
            .check(&secrets)
            .unwrap();
    }

    #[test]
    fn the_key_file_is_private_reused_and_refused_when_malformed() {
        let dir = tempfile::TempDir::new().unwrap();
        let file = dir.path().join(KEY_FILE_NAME);
        let sealed = Sealer::load_or_create(&file, || Ok::<_, SealError>(false))
            .unwrap()
            .seal("secret", "s");
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // With the key in place, the log is not asked.
        let again =
            Sealer::load_or_create(&file, || -> Result<bool, SealError> { panic!("log read") })
                .unwrap();
        assert_eq!(again.open("secret", &sealed).unwrap(), "s");

        for bad in ["", "not hex", &"ab".repeat(31), &"ab".repeat(33)] {
            std::fs::write(&file, bad).unwrap();
            let error = Sealer::load(&file).unwrap_err();
            assert!(matches!(error, SealError::Malformed { .. }), "{error}");
            assert!(error.to_string().contains(&*file.to_string_lossy()));
        }
    }

    #[test]
    fn a_missing_key_beside_sealed_values_is_refused_not_replaced() {
        let dir = tempfile::TempDir::new().unwrap();
        let file = dir.path().join(KEY_FILE_NAME);
        let error = Sealer::load_or_create(&file, || Ok::<_, SealError>(true)).unwrap_err();
        assert!(error.to_string().contains(&*file.to_string_lossy()));
        assert!(!file.exists(), "no key made that could not open them");
    }
}
