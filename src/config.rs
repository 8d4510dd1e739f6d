//! Settings for every `bindery` command, layered: defaults < `--config FILE` < `BINDERY_*` environment
//! variables (`__` between nested keys) < command-line flags. figment does the layering (the
//! same crate lldap uses), so an unknown key or a bad value stops start-up naming the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bindery_daemon::delivery::direct::DirectSettings;
use bindery_daemon::delivery::TransportSettings;
use bindery_daemon::feed::WaitLimits;
use bindery_daemon::{StoreOptions, Synchronous};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address the HTTP API listens on.
    pub listen: SocketAddr,
    /// Directory holding `bindery.db`.
    pub data_dir: PathBuf,
    /// Origin used in `url` and `links` (e.g. `https://push.example.com`); unset: the request's.
    pub public_url: Option<String>,
    pub storage: Storage,
    pub http: Http,
    pub bindings: Bindings,
    pub delivery: Delivery,
    pub metrics: MetricsSettings,
    pub console: Console,
    pub log: Log,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// Where `/metrics`, `/healthz` and `/readyz` are served; unset: on `listen` with the API.
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http {
    /// The largest request body accepted, in bytes; larger ones answer 413.
    pub body_limit: usize,
    /// Long-polls of `/v2/Events` (`Wait`) that may wait at once; one more answers 429.
    pub long_polls: usize,
    /// Of those, how many one account may hold.
    pub long_polls_per_account: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bindings {
    /// The most bindings one user may hold; one more registration answers 409.
    pub per_user_limit: u32,
    /// Bindings not refreshed (re-registered) for this long are expired.
    #[serde(with = "humantime_serde")]
    pub stale_after: Duration,
    /// How often the sweeper looks for stale bindings.
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Console {
    /// Whether `/console` is served.
    pub enabled: bool,
    /// How long a console sign-in lasts; then the console asks to sign in again.
    #[serde(with = "humantime_serde")]
    pub session_lifetime: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportName {
    Log,
    Desktop,
    Webhook,
    /// Straight to APNs and FCM with the stored credentials.
    Direct,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delivery {
    /// `log`, `desktop` (a desktop notification on the D-Bus session bus), `webhook`, or
    /// `direct` (APNs and FCM, with the stored credentials).
    pub transport: TransportName,
    pub webhook: WebhookSettings,
    pub apns: ApnsSettings,
    pub fcm: FcmSettings,
    pub tls: TlsSettings,
    /// How long notify waits, from its arrival, for every push's final outcome (`direct`);
    /// a push still being tried then answers `pending` and finishes in the background.
    #[serde(with = "humantime_serde")]
    pub deadline: Duration,
    pub guard: GuardSettings,
    /// Pushes on the wire to the providers at once (`direct`).
    pub in_flight: usize,
    /// Of those, how many through one credential.
    pub in_flight_per_credential: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApnsSettings {
    /// APNs for credentials with `Sandbox` false.
    pub endpoint: String,
    /// APNs for credentials with `Sandbox` true.
    pub sandbox_endpoint: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FcmSettings {
    /// FCM HTTP v1.
    pub endpoint: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// A PEM file of extra root certificates to trust, beside the usual roots.
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardSettings {
    /// Past this many "unregistered" answers through one credential in a minute, stop
    /// removing bindings through it.
    pub unregistered_per_minute: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Where each push is POSTed as JSON (required with `transport = "webhook"`).
    pub url: Option<String>,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Further attempts after a 5xx answer or a network error.
    pub retries: u32,
    /// When set, each POST is signed: `X-Bindery-Signature: t=<unix seconds>,v1=<hex
    /// HMAC-SHA256 of "<t>.<body>" under this secret>`.
    pub secret: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    /// Where the log and projections live: `sqlite` (a file in the data dir) or `postgres`.
    pub engine: EngineName,
    pub postgres: PostgresSettings,
    /// `full`: fsync at every commit; `normal`: fsync at WAL checkpoints.
    pub synchronous: Synchronous,
    /// How long a write waits for a lock held by another process.
    #[serde(with = "humantime_serde")]
    pub busy_timeout: Duration,
    /// Commit concurrent writes together, one fsync for many.
    pub group_commit: bool,
    /// The key that seals credentials' private fields; unset: `secret.key` in the data dir.
    pub secret_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineName {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSettings {
    /// A libpq connection string or `postgres://` URI; several hosts with
    /// `target_session_attrs=read-write` follow a failover.
    pub url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    pub format: LogFormat,
}

impl Default for Settings {
    fn default() -> Self {
        let direct = DirectSettings::default();
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            public_url: None,
            storage: Storage {
                engine: EngineName::Sqlite,
                postgres: PostgresSettings { url: None },
                synchronous: Synchronous::Full,
                busy_timeout: Duration::from_secs(5),
                group_commit: true,
                secret_key_file: None,
            },
            http: Http {
                body_limit: 64 * 1024,
                long_polls: WaitLimits::default().total,
                long_polls_per_account: WaitLimits::default().per_account,
            },
            bindings: Bindings {
                per_user_limit: 20,
                stale_after: Duration::from_secs(60 * 24 * 60 * 60),
                sweep_interval: Duration::from_secs(60 * 60),
            },
            delivery: Delivery {
                transport: TransportName::Log,
                webhook: WebhookSettings {
                    url: None,
                    timeout: Duration::from_secs(5),
                    retries: 2,
                    secret: None,
                },
                apns: ApnsSettings {
                    endpoint: direct.apns_endpoint,
                    sandbox_endpoint: direct.apns_sandbox_endpoint,
                },
                fcm: FcmSettings {
                    endpoint: direct.fcm_endpoint,
                },
                tls: TlsSettings { ca_file: None },
                deadline: direct.deadline,
                guard: GuardSettings {
                    unregistered_per_minute: direct.unregistered_per_minute,
                },
                in_flight: direct.in_flight,
                in_flight_per_credential: direct.in_flight_per_credential,
            },
            metrics: MetricsSettings { listen: None },
            console: Console {
                enabled: true,
                session_lifetime: Duration::from_secs(8 * 60 * 60),
            },
            log: Log {
                format: LogFormat::Pretty,
            },
        }
    }
}

/// Values given on the command line; each overrides every other layer.
#[derive(Debug, Default, Serialize)]
pub struct Flags {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
}

impl Settings {
    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            synchronous: self.storage.synchronous,
            busy_timeout: self.storage.busy_timeout,
        }
    }

    /// The PostgreSQL database the settings name, or `None` for SQLite; a `postgres` engine
    /// without a usable URL is an error naming the key.
    pub fn postgres(&self) -> Result<Option<bindery_daemon::store::postgres::Target>, String> {
        match self.storage.engine {
            EngineName::Sqlite => Ok(None),
            EngineName::Postgres => {
                let url = self.storage.postgres.url.as_deref().ok_or(
                    "invalid setting storage.postgres.url: required with storage.engine = postgres",
                )?;
                bindery_daemon::store::postgres::Target::parse(url, self.storage.busy_timeout)
                    .map(Some)
                    .map_err(|e| format!("invalid setting storage.postgres.url: {e}"))
            }
        }
    }

    /// Where the store is, as the daemon's commands open it.
    pub fn location(&self) -> Result<bindery_daemon::store::Location, String> {
        Ok(match self.postgres()? {
            Some(target) => bindery_daemon::store::Location::Postgres(Box::new(target)),
            None => bindery_daemon::store::Location::Sqlite(bindery_daemon::store::database_path(
                &self.data_dir,
            )),
        })
    }

    /// Where the key that seals credentials is: `storage.secret_key_file`, else in the data dir.
    pub fn secret_key_file(&self) -> PathBuf {
        self.storage
            .secret_key_file
            .clone()
            .unwrap_or_else(|| bindery_daemon::seal::default_key_file(&self.data_dir))
    }

    /// The transport `delivery` names, or why the settings do not make one.
    pub fn transport(&self) -> Result<TransportSettings, String> {
        Ok(match self.delivery.transport {
            TransportName::Log => TransportSettings::Log,
            TransportName::Desktop => TransportSettings::Desktop,
            TransportName::Webhook => TransportSettings::Webhook {
                url: self.delivery.webhook.url.clone().ok_or(
                    "invalid setting delivery.webhook.url: required with delivery.transport = webhook",
                )?,
                timeout: self.delivery.webhook.timeout,
                retries: self.delivery.webhook.retries,
                secret: self.delivery.webhook.secret.clone(),
            },
            TransportName::Direct => {
                let delivery = &self.delivery;
                TransportSettings::Direct(DirectSettings {
                    apns_endpoint: delivery.apns.endpoint.clone(),
                    apns_sandbox_endpoint: delivery.apns.sandbox_endpoint.clone(),
                    fcm_endpoint: delivery.fcm.endpoint.clone(),
                    ca_file: delivery.tls.ca_file.clone(),
                    deadline: delivery.deadline,
                    unregistered_per_minute: delivery.guard.unregistered_per_minute,
                    in_flight: delivery.in_flight,
                    in_flight_per_credential: delivery.in_flight_per_credential,
                })
            }
        })
    }

    pub fn load(file: Option<&Path>, flags: &Flags) -> Result<Settings, String> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(format!("config file {} does not exist", file.display()));
            }
            figment = figment.merge(Toml::file(file));
        }
        figment
            .merge(Env::prefixed("BINDERY_").split("__"))
            .merge(Serialized::defaults(flags))
            .extract()
            .map_err(|e| describe(&e))
    }
}

/// One line per problem: which key, which value, what is allowed.
fn describe(error: &figment::Error) -> String {
    error
        .clone()
        .into_iter()
        .map(|e| {
            let key = if e.path.is_empty() {
                "(top level)".to_owned()
            } else {
                e.path.join(".")
            };
            let source = e
                .metadata
                .as_ref()
                .map(|m| format!(" (from {})", m.name))
                .unwrap_or_default();
            format!("invalid setting {key}{source}: {}", e.kind)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
// figment::Jail's closures return figment's own (large) error type; that is its API.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    #[test]
    fn each_layer_overrides_the_one_below() {
        Jail::expect_with(|jail| {
            // The caller's own BINDERY_* (a test harness's, say) must not count here.
            jail.clear_env();
            assert_eq!(
                Settings::load(None, &Flags::default()).unwrap(),
                Settings::default()
            );

            jail.create_file(
                "bindery.toml",
                "listen = \"127.0.0.1:9000\"\n[storage]\nsynchronous = \"normal\"\nbusy_timeout = \"250ms\"\n",
            )?;
            let file = Some(Path::new("bindery.toml"));
            let from_file = Settings::load(file, &Flags::default()).unwrap();
            assert_eq!(from_file.listen.port(), 9000);
            assert_eq!(from_file.storage.synchronous, Synchronous::Normal);
            assert_eq!(from_file.storage.busy_timeout, Duration::from_millis(250));

            jail.set_env("BINDERY_LISTEN", "127.0.0.1:9001");
            jail.set_env("BINDERY_STORAGE__GROUP_COMMIT", "false");
            let from_env = Settings::load(file, &Flags::default()).unwrap();
            assert_eq!(from_env.listen.port(), 9001);
            assert!(!from_env.storage.group_commit);
            assert_eq!(
                from_env.storage.synchronous,
                Synchronous::Normal,
                "the file still counts"
            );

            let flags = Flags {
                listen: Some("127.0.0.1:9002".parse().unwrap()),
                data_dir: None,
            };
            assert_eq!(Settings::load(file, &flags).unwrap().listen.port(), 9002);
            Ok(())
        });
    }

    #[test]
    fn the_shipped_config_file_documents_exactly_the_defaults() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/bindery.toml");
        Jail::expect_with(|jail| {
            jail.clear_env();
            assert_eq!(
                Settings::load(Some(&file), &Flags::default()).unwrap(),
                Settings::default()
            );
            Ok(())
        });
    }

    #[test]
    fn the_cluster_sample_names_a_postgres_database_with_failover() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/cluster/bindery-node.toml");
        Jail::expect_with(|jail| {
            jail.clear_env();
            let settings = Settings::load(Some(&file), &Flags::default()).unwrap();
            let target = settings.postgres().unwrap().expect("a PostgreSQL database");
            assert_eq!(target.config.get_hosts().len(), 2, "both database hosts");
            assert_eq!(
                target.config.get_target_session_attrs(),
                tokio_postgres::config::TargetSessionAttrs::ReadWrite
            );
            assert!(
                settings.storage.secret_key_file.is_some(),
                "one key for every node"
            );
            Ok(())
        });
    }

    #[test]
    fn the_postgres_engine_needs_a_url_it_can_read() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("BINDERY_STORAGE__ENGINE", "postgres");
            let settings = Settings::load(None, &Flags::default()).unwrap();
            let error = settings.postgres().unwrap_err();
            assert!(error.contains("storage.postgres.url"), "{error}");
            jail.set_env("BINDERY_STORAGE__POSTGRES__URL", "host=db port=nope");
            let settings = Settings::load(None, &Flags::default()).unwrap();
            let error = settings.postgres().unwrap_err();
            assert!(error.contains("storage.postgres.url"), "{error}");
            jail.set_env("BINDERY_STORAGE__ENGINE", "oracle");
            let error = Settings::load(None, &Flags::default()).unwrap_err();
            assert!(error.contains("storage.engine"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn a_bad_value_or_unknown_key_names_the_key() {
        Jail::expect_with(|jail| {
            // The caller's own BINDERY_* (a test harness's, say) must not count here.
            jail.clear_env();
            jail.set_env("BINDERY_STORAGE__SYNCHRONOUS", "sometimes");
            let error = Settings::load(None, &Flags::default()).unwrap_err();
            assert!(error.contains("storage.synchronous"), "{error}");
            assert!(
                error.contains("sometimes") && error.contains("full"),
                "{error}"
            );
            Ok(())
        });
        Jail::expect_with(|jail| {
            // The caller's own BINDERY_* (a test harness's, say) must not count here.
            jail.clear_env();
            jail.create_file("bindery.toml", "[storage]\nsynchronus = \"full\"\n")?;
            let error =
                Settings::load(Some(Path::new("bindery.toml")), &Flags::default()).unwrap_err();
            assert!(error.contains("synchronus"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn the_direct_transport_takes_its_settings_from_the_delivery_keys() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("BINDERY_DELIVERY__TRANSPORT", "direct");
            jail.set_env("BINDERY_DELIVERY__APNS__ENDPOINT", "https://127.0.0.1:9443");
            jail.set_env("BINDERY_DELIVERY__FCM__ENDPOINT", "https://[::1]:9444");
            jail.set_env("BINDERY_DELIVERY__TLS__CA_FILE", "/etc/bindery/roots.pem");
            jail.set_env("BINDERY_DELIVERY__DEADLINE", "2s");
            jail.set_env("BINDERY_DELIVERY__GUARD__UNREGISTERED_PER_MINUTE", "5");
            let settings = Settings::load(None, &Flags::default()).unwrap();
            let TransportSettings::Direct(direct) = settings.transport().unwrap() else {
                panic!("delivery.transport = direct");
            };
            assert_eq!(
                direct,
                DirectSettings {
                    apns_endpoint: "https://127.0.0.1:9443".into(),
                    fcm_endpoint: "https://[::1]:9444".into(),
                    ca_file: Some("/etc/bindery/roots.pem".into()),
                    deadline: Duration::from_secs(2),
                    unregistered_per_minute: 5,
                    ..DirectSettings::default()
                }
            );
            Ok(())
        });
    }
}
