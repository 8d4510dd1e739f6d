//! What goes on the wire to each provider for one push (CONTRACT §6.3), as pure functions of
//! the push, so that the senders only add the connection and the sign-in.

use bindery_domain::notify::Priority;
use serde_json::{json, Map, Value};

use super::Push;

/// The request to APNs for `push`, sent at `now` (Unix seconds): its path, headers besides
/// `authorization`, and body.
#[derive(Debug, Clone, PartialEq)]
pub struct ApnsRequest {
    pub path: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Value,
}

pub fn apns(push: &Push, topic: &str, now: u64) -> ApnsRequest {
    let mut headers = vec![
        ("apns-topic", topic.to_owned()),
        ("apns-push-type", "alert".to_owned()),
        (
            "apns-priority",
            match push.priority {
                Priority::High => "10",
                Priority::Low => "5",
            }
            .to_owned(),
        ),
    ];
    if let Some(ttl) = push.ttl {
        headers.push(("apns-expiration", (now + u64::from(ttl)).to_string()));
    }
    let mut alert = Map::new();
    if let Some(title) = &push.title {
        alert.insert("title".into(), title.clone().into());
    }
    alert.insert("body".into(), push.body.clone().into());
    let mut aps = Map::new();
    aps.insert("alert".into(), Value::Object(alert));
    if let Some(sound) = &push.sound {
        aps.insert("sound".into(), sound.clone().into());
    }
    // Data's keys beside `aps`, with their JSON types (notify refuses a key named aps).
    let mut body = match &push.data {
        Some(Value::Object(data)) => data.clone(),
        _ => Map::new(),
    };
    body.insert("aps".into(), Value::Object(aps));
    ApnsRequest {
        path: format!("/3/device/{}", push.address.as_str()),
        headers,
        body: Value::Object(body),
    }
}

/// The body of FCM's `messages:send` for `push`.
pub fn fcm(push: &Push) -> Value {
    let mut notification = Map::new();
    if let Some(title) = &push.title {
        notification.insert("title".into(), title.clone().into());
    }
    notification.insert("body".into(), push.body.clone().into());
    let mut message = Map::new();
    message.insert("token".into(), push.address.as_str().into());
    message.insert("notification".into(), Value::Object(notification));
    if let Some(Value::Object(data)) = &push.data {
        // FCM's data values are strings: a string as it is, anything else as its JSON text.
        let data: Map<String, Value> = data
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), Value::String(text))
            })
            .collect();
        message.insert("data".into(), Value::Object(data));
    }
    let mut android = Map::new();
    android.insert(
        "priority".into(),
        match push.priority {
            Priority::High => "HIGH",
            Priority::Low => "NORMAL",
        }
        .into(),
    );
    if let Some(ttl) = push.ttl {
        android.insert("ttl".into(), format!("{ttl}s").into());
    }
    if let Some(sound) = &push.sound {
        android.insert("notification".into(), json!({"sound": sound}));
    }
    message.insert("android".into(), Value::Object(android));
    json!({ "message": message })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bindery_domain::*;

    fn push(data: Option<Value>, priority: Priority, ttl: Option<u32>) -> Push {
        Push {
            binding_sid: BindingSid::from_bytes([1; 16]),
            binding_type: BindingType::Apn,
            address: PushAddress::parse("device-token-1").unwrap(),
            credential_sid: None,
            service_sid: ServiceSid::from_bytes([2; 16]),
            identity: Identity::parse("alice").unwrap(),
            message_type: MessageType::NewMessage,
            title: Some("Team Chat".into()),
            body: "bob: lunch?".into(),
            sound: Some("ding.caf".into()),
            data,
            priority,
            ttl,
        }
    }

    #[test]
    fn an_apns_push_has_its_headers_and_data_beside_aps() {
        let data = json!({"channel": "general", "unread": 3, "muted": false});
        let request = apns(
            &push(Some(data), Priority::High, None),
            "com.example.chat",
            1000,
        );
        assert_eq!(request.path, "/3/device/device-token-1");
        assert_eq!(
            request.headers,
            vec![
                ("apns-topic", "com.example.chat".to_owned()),
                ("apns-push-type", "alert".to_owned()),
                ("apns-priority", "10".to_owned()),
            ]
        );
        assert_eq!(
            request.body,
            json!({
                "aps": {"alert": {"title": "Team Chat", "body": "bob: lunch?"}, "sound": "ding.caf"},
                "channel": "general", "unread": 3, "muted": false,
            })
        );
        let low = apns(&push(None, Priority::Low, Some(60)), "t", 1000);
        assert!(low.headers.contains(&("apns-priority", "5".to_owned())));
        assert!(low
            .headers
            .contains(&("apns-expiration", "1060".to_owned())));
        let mut silent = push(None, Priority::High, None);
        silent.sound = None;
        silent.title = None;
        assert_eq!(
            apns(&silent, "t", 0).body,
            json!({"aps": {"alert": {"body": "bob: lunch?"}}})
        );
    }

    #[test]
    fn an_fcm_message_carries_data_as_strings_and_android_priority_and_ttl() {
        let data = json!({"channel": "general", "unread": 3, "muted": false, "n": null});
        let body = fcm(&push(Some(data), Priority::Low, Some(3600)));
        assert_eq!(
            body,
            json!({"message": {
                "token": "device-token-1",
                "notification": {"title": "Team Chat", "body": "bob: lunch?"},
                "data": {"channel": "general", "unread": "3", "muted": "false", "n": "null"},
                "android": {"priority": "NORMAL", "ttl": "3600s",
                            "notification": {"sound": "ding.caf"}},
            }})
        );
        let high = fcm(&push(None, Priority::High, None));
        assert_eq!(high["message"]["android"]["priority"], "HIGH");
        assert!(high["message"].get("data").is_none());
        assert!(high["message"]["android"].get("ttl").is_none());
    }
}
