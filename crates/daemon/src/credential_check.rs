//! A credential's create or update is read before its secrets are sealed (CONTRACT §6.2): the
//! reading that builds a sender ([`credential::read`]) decides what is accepted, and what it
//! finds becomes the credential's profile. An update that names a secret or a profile field is
//! merged over the stored credential and the whole it makes is read; a friendly-name or
//! sandbox update reads nothing and keeps the profile.

use bindery_domain::{
    AccountSid, BindingType, Command, Credential, CredentialAuth, CredentialSecrets, CredentialSid,
    ProfileFields, Timestamp,
};

use crate::delivery::credential::{self, CredentialInput, InvalidCredential};
use crate::seal::Sealer;
use crate::store::{StoreError, WriteError};

/// Reads the credential `command` creates or updates, if it does, and sets the command's
/// profile to what was found (for an update that changes what the credential pushes with,
/// also its secrets to the whole merged set, in clear: they are sealed next). `stored` reads
/// the credential an update names, of the update's account only.
pub fn check(
    command: &mut Command,
    now: Timestamp,
    sealer: &Sealer,
    stored: impl FnOnce(&AccountSid, &CredentialSid) -> Result<Option<Credential>, StoreError>,
) -> Result<(), WriteError> {
    match command {
        Command::CreateCredential {
            credential_type,
            secrets,
            fields,
            profile,
            ..
        } => {
            refuse_foreign_fields(*credential_type, secrets, fields)?;
            let read = credential::read(*credential_type, &input(secrets, fields), now)?;
            *profile = read.profile();
        }
        Command::UpdateCredential {
            account,
            credential,
            secrets,
            fields,
            profile,
            ..
        } => {
            if *secrets == CredentialSecrets::default() && fields.is_empty() {
                return Ok(());
            }
            // A credential that is not there (or is another account's) is the decision's to
            // refuse, as for any other update.
            let Some(current) = stored(account, credential)? else {
                return Ok(());
            };
            refuse_foreign_fields(current.credential_type, secrets, fields)?;
            let opened = sealer
                .open_secrets(&current.secrets)
                .map_err(StoreError::from)?;
            let (merged, merged_fields) = merge(&current, opened, secrets, fields);
            let read = credential::read(
                current.credential_type,
                &input(&merged, &merged_fields),
                now,
            )?;
            *secrets = merged;
            *profile = Some(read.profile());
        }
        _ => {}
    }
    Ok(())
}

/// What `read` takes from a credential's fields. Only the field of the credential's own type
/// is ever set (see [`refuse_foreign_fields`] and [`merge`]), so FCM's `Secret` and GCM's
/// `ApiKey` can share the service account's place.
fn input<'a>(secrets: &'a CredentialSecrets, fields: &'a ProfileFields) -> CredentialInput<'a> {
    CredentialInput {
        certificate: secrets.certificate.as_deref(),
        private_key: secrets.private_key.as_deref(),
        service_account: secrets.secret.as_deref().or(secrets.api_key.as_deref()),
        key_id: fields.key_id.as_deref(),
        team_id: fields.team_id.as_deref(),
        topic: fields.topic.as_deref(),
    }
}

/// A credential keeps only what it pushes with: a field of another type of credential is
/// refused rather than sealed and never read.
fn refuse_foreign_fields(
    credential_type: BindingType,
    secrets: &CredentialSecrets,
    fields: &ProfileFields,
) -> Result<(), InvalidCredential> {
    let given = [
        ("Certificate", secrets.certificate.is_some()),
        ("PrivateKey", secrets.private_key.is_some()),
        ("ApiKey", secrets.api_key.is_some()),
        ("Secret", secrets.secret.is_some()),
        ("KeyId", fields.key_id.is_some()),
        ("TeamId", fields.team_id.is_some()),
        ("Topic", fields.topic.is_some()),
    ];
    let (own, takes): (&[&str], &str) = match credential_type {
        BindingType::Apn => (
            &["Certificate", "PrivateKey", "KeyId", "TeamId", "Topic"],
            "an apn credential takes PrivateKey with KeyId, TeamId and Topic (token auth), \
             or Certificate and PrivateKey",
        ),
        BindingType::Fcm => (
            &["Secret"],
            "an fcm credential takes its service-account JSON in Secret",
        ),
        BindingType::Gcm => (
            &["ApiKey"],
            "a gcm credential takes its service-account JSON in ApiKey",
        ),
    };
    match given
        .into_iter()
        .find(|(field, set)| *set && !own.contains(field))
    {
        Some((field, _)) => Err(InvalidCredential {
            field,
            why: format!("is for another type of credential: {takes}"),
        }),
        None => Ok(()),
    }
}

/// The credential an update makes: what it gives over what is stored (`opened`, the stored
/// secrets in clear). A switch of APNs auth (a `Certificate` given to a token credential,
/// `KeyId` or `TeamId` to a certificate one) keeps nothing of the old auth but the fields
/// given. A `Topic` given once stays until another is given; one taken from a certificate's
/// UID follows the certificate.
fn merge(
    current: &Credential,
    opened: CredentialSecrets,
    given: &CredentialSecrets,
    fields: &ProfileFields,
) -> (CredentialSecrets, ProfileFields) {
    let or = |given: &Option<String>, stored: Option<String>| given.clone().or(stored);
    match current.credential_type {
        BindingType::Fcm => (
            CredentialSecrets {
                secret: or(&given.secret, opened.secret),
                ..CredentialSecrets::default()
            },
            ProfileFields::default(),
        ),
        BindingType::Gcm => (
            CredentialSecrets {
                api_key: or(&given.api_key, opened.api_key),
                ..CredentialSecrets::default()
            },
            ProfileFields::default(),
        ),
        BindingType::Apn => {
            // A credential stored before profiles existed: a certificate means certificate auth.
            let was_certificate = match current.profile.auth {
                Some(auth) => auth == CredentialAuth::Certificate,
                None => opened.certificate.is_some(),
            };
            let certificate = if given.certificate.is_some() {
                true
            } else if fields.key_id.is_some() || fields.team_id.is_some() {
                false
            } else {
                was_certificate
            };
            let same = certificate == was_certificate;
            let kept = |given: &Option<String>, stored: Option<String>| {
                given.clone().or(stored.filter(|_| same))
            };
            let stored_topic = current.profile.topic.clone();
            if certificate {
                let topic_was_given = stored_topic.is_some()
                    && stored_topic
                        != opened
                            .certificate
                            .as_deref()
                            .and_then(credential::certificate_uid);
                (
                    CredentialSecrets {
                        certificate: kept(&given.certificate, opened.certificate),
                        private_key: kept(&given.private_key, opened.private_key),
                        ..CredentialSecrets::default()
                    },
                    ProfileFields {
                        key_id: fields.key_id.clone(),
                        team_id: fields.team_id.clone(),
                        topic: kept(&fields.topic, stored_topic.filter(|_| topic_was_given)),
                    },
                )
            } else {
                (
                    CredentialSecrets {
                        private_key: kept(&given.private_key, opened.private_key),
                        ..CredentialSecrets::default()
                    },
                    ProfileFields {
                        key_id: kept(&fields.key_id, current.profile.key_id.clone()),
                        team_id: kept(&fields.team_id, current.profile.team_id.clone()),
                        topic: kept(&fields.topic, stored_topic),
                    },
                )
            }
        }
    }
}
