//! `desktop`: a real desktop notification on the D-Bus session bus (notify-rust), for building
//! a chat app on a laptop without Apple or Google credentials. Summary: the push's title;
//! body: its text; app name `Bindery`; the binding type and identity as hints.

use notify_rust::{Hint, Notification};

use super::{DeliveryError, Outcome, Push, Transport};

pub struct Desktop;

impl Desktop {
    /// Fails, saying why, when no notification server answers on the session bus.
    pub fn connect() -> Result<Desktop, String> {
        if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none() {
            return Err(
                "delivery.transport = desktop needs a D-Bus session bus, and \
                        DBUS_SESSION_BUS_ADDRESS is not set"
                    .into(),
            );
        }
        notify_rust::get_server_information().map_err(|e| {
            format!("delivery.transport = desktop: no notification server on the session bus: {e}")
        })?;
        Ok(Desktop)
    }
}

impl Transport for Desktop {
    fn name(&self) -> &'static str {
        "desktop"
    }

    fn deliver(&self, push: &Push) -> Outcome {
        // Notify fills the title in (the service's name when the request named none).
        let summary = push.title.as_deref().unwrap_or("Bindery");
        let shown = Notification::new()
            .appname("Bindery")
            .summary(summary)
            .body(&push.body)
            .hint(Hint::Custom(
                "binding_type".into(),
                push.binding_type.as_str().into(),
            ))
            .hint(Hint::Custom(
                "identity".into(),
                push.identity.as_str().into(),
            ))
            .show();
        match shown {
            Ok(_) => Outcome::Delivered,
            Err(e) => {
                // The answer says what kind of failure; the operator's log has D-Bus's words.
                tracing::warn!(error = %e, "desktop notification failed");
                Outcome::Failed(DeliveryError::Desktop)
            }
        }
    }
}
