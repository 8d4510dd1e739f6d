//! Stand-ins for APNs and FCM: real TLS servers on 127.0.0.1 that speak Apple's and Google's
//! documented protocols, check what a provider must send, and answer what a test scripts, so
//! Bindery's delivery tests and `make bench` push through real sockets with no mock inside
//! Bindery. Test infrastructure only: no production crate depends on this one.
//!
//! ```no_run
//! use bindery_standin::{apns, ApnsAuth, ApnsKey, Apns, TestCa};
//! let dir = tempfile::tempdir()?;
//! let ca = TestCa::new(dir.path())?; // dir/ca.pem is Bindery's delivery.tls.ca_file
//! let key = ApnsKey::generate("KEYID12345", "TEAMID1234")?;
//! let apns = Apns::start(&ca, ApnsAuth::token(&key))?;
//! apns.script("token-x", apns::Answer::Unregistered);
//! // … point delivery.apns.endpoint at apns.url(), notify, then:
//! assert_eq!(apns.pushes_to("token-x")[0].status, Some(410));
//! # anyhow::Ok(())
//! ```

mod ca;
mod der;
mod jwt;
mod keys;
mod record;
mod script;
mod server;

pub mod apns;
pub mod fcm;

pub use apns::{Apns, ApnsAuth};
pub use ca::{ClientCert, ClientCertSpec, ClientKey, TestCa};
pub use fcm::{Fcm, ServiceAccount};
pub use jwt::DecodedJwt;
pub use keys::{ApnsKey, ApnsPublicKey, RsaTestKey};
pub use record::{Received, Stats};
pub use script::Script;
pub use server::ServerSettings;
