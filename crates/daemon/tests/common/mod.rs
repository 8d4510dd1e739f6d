//! What the sender tests (`apns.rs`, `fcm.rs`) share: a push, the time, a runtime.

use bindery_daemon::delivery::Push;
use bindery_domain::notify::Priority;
use bindery_domain::*;

/// A push from bob's message to alice's `address`, with Data of two types.
pub fn push(binding_type: BindingType, address: &str, priority: Priority, ttl: u32) -> Push {
    Push {
        binding_sid: BindingSid::from_bytes([1; 16]),
        binding_type,
        address: PushAddress::parse(address).unwrap(),
        credential_sid: None,
        service_sid: ServiceSid::from_bytes([2; 16]),
        identity: Identity::parse("alice").unwrap(),
        message_type: MessageType::NewMessage,
        title: Some("Team Chat".into()),
        body: "bob: lunch?".into(),
        sound: None,
        data: Some(serde_json::json!({"channel": "general", "unread": 3})),
        priority,
        ttl: Some(ttl),
    }
}

/// Unix seconds now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}
