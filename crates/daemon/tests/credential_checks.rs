//! A credential is read where it enters the daemon (CONTRACT §6.2): a create or update that
//! cannot push is refused, naming the field, before anything is stored; what an update makes
//! is the stored credential with the update merged over it, read whole. On both engines.

mod engines;

use bindery_daemon::{Committed, Daemon, Envelope, WriteError};
use bindery_domain::*;
use bindery_standin::{ApnsKey, ClientCert, ClientCertSpec, RsaTestKey, TestCa};
use engines::{on_both_engines, Database, Engine, Server};

const KEY_ID: &str = "KEYID12345";
const TEAM_ID: &str = "TEAMID1234";

/// A daemon on a fresh database with one account, and a CA for certificates.
struct World {
    daemon: Daemon,
    account: AccountSid,
    ca: TestCa,
    database: Database,
    _server: Server,
}

impl World {
    async fn new(engine: Engine) -> World {
        let server = Server::start(engine);
        let database = server.database();
        let daemon = Daemon::start(database.daemon_options()).unwrap();
        let account = daemon
            .execute(Envelope::from(Command::CreateAccount {
                friendly_name: "checks".into(),
                auth_token_hash: SecretHash::of("not a real token"),
            }))
            .await
            .unwrap();
        let account = AccountSid::parse(account.row.unwrap().sid()).unwrap();
        let ca = TestCa::new(database.dir.path().join("ca")).unwrap();
        World {
            daemon,
            account,
            ca,
            database,
            _server: server,
        }
    }

    fn certificate(&self, spec: &ClientCertSpec) -> ClientCert {
        self.ca.client_cert(spec).unwrap()
    }

    async fn run(&self, command: Command) -> Result<Committed, WriteError> {
        self.daemon.execute(Envelope::from(command)).await
    }

    async fn create(&self, secrets: CredentialSecrets, fields: ProfileFields) -> Credential {
        let committed = self
            .run(Command::CreateCredential {
                account: self.account,
                credential_type: BindingType::Apn,
                friendly_name: Some("ios".into()),
                sandbox: None,
                secrets,
                fields,
                profile: CredentialProfile::default(),
            })
            .await
            .unwrap_or_else(|e| panic!("refused: {e}"));
        Credential::try_from(committed.row.unwrap()).unwrap()
    }

    async fn update(
        &self,
        credential: &Credential,
        secrets: CredentialSecrets,
        fields: ProfileFields,
    ) -> Result<Credential, WriteError> {
        self.update_named(credential.sid, None, secrets, fields)
            .await
    }

    async fn update_named(
        &self,
        credential: CredentialSid,
        friendly_name: Option<&str>,
        secrets: CredentialSecrets,
        fields: ProfileFields,
    ) -> Result<Credential, WriteError> {
        let committed = self
            .run(Command::UpdateCredential {
                account: self.account,
                credential,
                friendly_name: friendly_name.map(str::to_owned),
                sandbox: None,
                secrets,
                fields,
                profile: None,
            })
            .await?;
        Ok(Credential::try_from(committed.row.unwrap()).unwrap())
    }

    fn opened(&self, credential: &Credential) -> CredentialSecrets {
        self.daemon
            .sealer()
            .open_secrets(&credential.secrets)
            .unwrap()
    }

    fn log_position(&self) -> i64 {
        self.daemon
            .read(|view| view.positions())
            .map(|(_, logged)| logged)
            .unwrap()
    }

    async fn verify(self) {
        self.daemon.shutdown().await.unwrap();
        self.database.assert_verifies();
    }
}

fn token_fields(topic: &str) -> ProfileFields {
    ProfileFields {
        key_id: Some(KEY_ID.into()),
        team_id: Some(TEAM_ID.into()),
        topic: Some(topic.into()),
    }
}

fn p8() -> String {
    ApnsKey::generate(KEY_ID, TEAM_ID).unwrap().p8_pem()
}

fn key_only(pem: &str) -> CredentialSecrets {
    CredentialSecrets {
        private_key: Some(pem.into()),
        ..CredentialSecrets::default()
    }
}

fn certificate_secrets(cert: &ClientCert) -> CredentialSecrets {
    CredentialSecrets {
        certificate: Some(cert.cert_pem.clone()),
        private_key: Some(cert.key_pkcs8_pem.clone()),
        ..CredentialSecrets::default()
    }
}

#[track_caller]
fn assert_refused(result: Result<impl std::fmt::Debug, WriteError>, field: &str) {
    match result {
        Err(WriteError::InvalidCredential(refusal)) => {
            assert_eq!(refusal.field, field, "{refusal}")
        }
        other => panic!("expected {field} to be refused, got {other:?}"),
    }
}

fn what_cannot_push_is_refused_naming_the_field_and_nothing_is_stored(engine: Engine) {
    actix_rt::System::new().block_on(async {
        let world = World::new(engine).await;
        let before = world.log_position();
        let create = |credential_type, secrets, fields| Command::CreateCredential {
            account: world.account,
            credential_type,
            friendly_name: None,
            sandbox: None,
            secrets,
            fields,
            profile: CredentialProfile::default(),
        };
        let cert = world.certificate(&ClientCertSpec::new("com.example.chat"));
        let other = world.certificate(&ClientCertSpec::new("com.example.chat"));
        let expired = world.certificate(&ClientCertSpec::new("com.example.chat").expired());
        for (command, field) in [
            (
                create(BindingType::Apn, key_only("junk"), token_fields("a.b")),
                "PrivateKey",
            ),
            (
                create(
                    BindingType::Apn,
                    key_only(RsaTestKey::A.pkcs8_pem()),
                    token_fields("a.b"),
                ),
                "PrivateKey",
            ),
            (
                create(
                    BindingType::Apn,
                    key_only(&p8()),
                    ProfileFields {
                        team_id: None,
                        ..token_fields("a.b")
                    },
                ),
                "TeamId",
            ),
            (
                create(
                    BindingType::Apn,
                    CredentialSecrets {
                        private_key: other.cert_pem.clone().into(),
                        ..certificate_secrets(&cert)
                    },
                    ProfileFields::default(),
                ),
                "PrivateKey",
            ),
            (
                create(
                    BindingType::Apn,
                    CredentialSecrets {
                        private_key: Some(other.key_pkcs8_pem.clone()),
                        ..certificate_secrets(&cert)
                    },
                    ProfileFields::default(),
                ),
                "PrivateKey",
            ),
            (
                create(
                    BindingType::Apn,
                    certificate_secrets(&expired),
                    ProfileFields::default(),
                ),
                "Certificate",
            ),
            (
                create(
                    BindingType::Apn,
                    certificate_secrets(&cert),
                    ProfileFields {
                        key_id: Some(KEY_ID.into()),
                        ..ProfileFields::default()
                    },
                ),
                "KeyId",
            ),
            // A field of another kind of credential is refused, not sealed and never read.
            (
                create(
                    BindingType::Apn,
                    CredentialSecrets {
                        api_key: Some("{}".into()),
                        ..key_only(&p8())
                    },
                    token_fields("a.b"),
                ),
                "ApiKey",
            ),
            (
                create(
                    BindingType::Fcm,
                    CredentialSecrets {
                        secret: Some("AAAA-legacy-server-key".into()),
                        ..CredentialSecrets::default()
                    },
                    ProfileFields::default(),
                ),
                "Secret",
            ),
            (
                create(
                    BindingType::Gcm,
                    CredentialSecrets::default(),
                    ProfileFields::default(),
                ),
                "ApiKey",
            ),
            (
                create(
                    BindingType::Fcm,
                    CredentialSecrets::default(),
                    ProfileFields {
                        topic: Some("com.example.chat".into()),
                        ..ProfileFields::default()
                    },
                ),
                "Topic",
            ),
        ] {
            assert_refused(world.run(command).await, field);
        }
        assert_eq!(world.log_position(), before, "nothing was stored");
        world.verify().await;
    });
}

fn an_update_is_read_merged_over_the_stored_credential_and_a_bad_one_changes_nothing(
    engine: Engine,
) {
    actix_rt::System::new().block_on(async {
        let world = World::new(engine).await;
        let key = p8();
        let token = world
            .create(key_only(&key), token_fields("com.example.chat"))
            .await;
        assert_eq!(
            token.profile,
            CredentialProfile {
                auth: Some(CredentialAuth::Token),
                key_id: Some(KEY_ID.into()),
                team_id: Some(TEAM_ID.into()),
                topic: Some("com.example.chat".into()),
                expires: None,
            }
        );

        // A new topic alone: the stored key, key id and team are read with it.
        let moved = world
            .update(
                &token,
                CredentialSecrets::default(),
                ProfileFields {
                    topic: Some("com.example.next".into()),
                    ..ProfileFields::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(moved.profile.topic.as_deref(), Some("com.example.next"));
        assert_eq!(moved.profile.key_id.as_deref(), Some(KEY_ID));
        assert_eq!(world.opened(&moved).private_key.as_deref(), Some(&*key));

        // A name alone reads nothing and keeps everything, sealed text included.
        let renamed = world
            .update_named(
                token.sid,
                Some("renamed"),
                CredentialSecrets::default(),
                ProfileFields::default(),
            )
            .await
            .unwrap();
        assert_eq!(renamed.profile, moved.profile);
        assert_eq!(renamed.secrets, moved.secrets);

        let before = world.log_position();
        for (secrets, fields, field) in [
            (key_only("junk"), ProfileFields::default(), "PrivateKey"),
            (
                CredentialSecrets::default(),
                ProfileFields {
                    key_id: Some("short".into()),
                    ..ProfileFields::default()
                },
                "KeyId",
            ),
            (
                CredentialSecrets {
                    secret: Some("{}".into()),
                    ..CredentialSecrets::default()
                },
                ProfileFields::default(),
                "Secret",
            ),
        ] {
            assert_refused(world.update(&renamed, secrets, fields).await, field);
        }
        assert_eq!(world.log_position(), before, "nothing was stored");
        let stored = world
            .daemon
            .read(|view| view.credential(&world.account, &token.sid))
            .unwrap()
            .unwrap();
        assert_eq!(stored, renamed, "unchanged");

        // Secrets or fields for a credential that is not there: not found, as any update.
        let missing = CredentialSid::from_bytes([9; 16]);
        match world
            .update_named(missing, None, key_only(&key), ProfileFields::default())
            .await
        {
            Err(WriteError::Refused(DomainError::CredentialNotFound(sid))) => {
                assert_eq!(sid, missing)
            }
            other => panic!("expected not found, got {other:?}"),
        }
        world.verify().await;
    });
}

fn switching_auth_keeps_nothing_of_the_old_one(engine: Engine) {
    actix_rt::System::new().block_on(async {
        let world = World::new(engine).await;
        let token = world
            .create(key_only(&p8()), token_fields("com.example.chat"))
            .await;

        // A certificate for a token credential: certificate auth, without the key id and team.
        let cert = world.certificate(&ClientCertSpec::new("com.example.cert"));
        let switched = world
            .update(&token, certificate_secrets(&cert), ProfileFields::default())
            .await
            .unwrap();
        assert_eq!(switched.profile.auth, Some(CredentialAuth::Certificate));
        assert_eq!(switched.profile.key_id, None);
        assert_eq!(switched.profile.team_id, None);
        assert_eq!(
            switched.profile.topic.as_deref(),
            Some("com.example.cert"),
            "the certificate's UID, not the token's topic"
        );
        assert!(switched.profile.expires.is_some());
        assert_eq!(world.opened(&switched), certificate_secrets(&cert));

        // Only a certificate: the .p8 key is not kept for it, so its key is missing.
        let again = world
            .create(key_only(&p8()), token_fields("com.example.chat"))
            .await;
        let certificate_only = CredentialSecrets {
            certificate: Some(cert.cert_pem.clone()),
            ..CredentialSecrets::default()
        };
        assert_refused(
            world
                .update(&again, certificate_only, ProfileFields::default())
                .await,
            "PrivateKey",
        );

        // Key id and team for a certificate credential: token auth, the certificate dropped;
        // its topic is not carried over.
        let key = p8();
        let fields = ProfileFields {
            topic: None,
            ..token_fields("unused")
        };
        assert_refused(
            world
                .update(&switched, key_only(&key), fields.clone())
                .await,
            "Topic",
        );
        let back = world
            .update(&switched, key_only(&key), token_fields("com.example.chat"))
            .await
            .unwrap();
        assert_eq!(back.profile.auth, Some(CredentialAuth::Token));
        assert_eq!(back.profile.expires, None);
        assert_eq!(world.opened(&back), key_only(&key), "no certificate kept");
        world.verify().await;
    });
}

fn a_topic_given_stays_and_one_taken_from_the_certificate_follows_it(engine: Engine) {
    actix_rt::System::new().block_on(async {
        let world = World::new(engine).await;
        let spec = |bundle: &str| ClientCertSpec::new(bundle).rsa(RsaTestKey::A);
        let first = world.certificate(&spec("com.example.one"));
        let second = world.certificate(&spec("com.example.two"));
        let renew = |cert: &ClientCert| CredentialSecrets {
            certificate: Some(cert.cert_pem.clone()),
            ..CredentialSecrets::default()
        };
        let rsa_key = CredentialSecrets {
            private_key: Some(first.key_traditional_pem.clone()),
            ..renew(&first)
        };

        let from_uid = world
            .create(rsa_key.clone(), ProfileFields::default())
            .await;
        assert_eq!(from_uid.profile.topic.as_deref(), Some("com.example.one"));
        let followed = world
            .update(&from_uid, renew(&second), ProfileFields::default())
            .await
            .unwrap();
        assert_eq!(followed.profile.topic.as_deref(), Some("com.example.two"));
        assert_eq!(
            world.opened(&followed).private_key,
            rsa_key.private_key,
            "the key not given is kept"
        );

        let given = ProfileFields {
            topic: Some("com.example.voip".into()),
            ..ProfileFields::default()
        };
        let named = world.create(rsa_key, given).await;
        let kept = world
            .update(&named, renew(&second), ProfileFields::default())
            .await
            .unwrap();
        assert_eq!(kept.profile.topic.as_deref(), Some("com.example.voip"));
        world.verify().await;
    });
}

on_both_engines!(
    what_cannot_push_is_refused_naming_the_field_and_nothing_is_stored,
    an_update_is_read_merged_over_the_stored_credential_and_a_bad_one_changes_nothing,
    switching_auth_keeps_nothing_of_the_old_one,
    a_topic_given_stays_and_one_taken_from_the_certificate_follows_it,
);
