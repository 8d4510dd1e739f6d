-- The console's sign-ins (console_sessions.rs): not events, so neither replayed nor exported.
-- A session is found by the SHA-256 of its cookie's token; the token itself is never stored.
-- `principal` is the account or API key SID it signed in with: a session whose key is
-- revoked finds no key and ends.
CREATE TABLE console_sessions (
    token_hash  TEXT    PRIMARY KEY,
    account_sid TEXT    NOT NULL,
    principal   TEXT    NOT NULL,
    csrf_token  TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX console_sessions_by_expiry ON console_sessions (expires_at);

-- The console's list of a service's failures: failed delivery records, newest first, and the
-- removals of bindings (among them those whose token a provider rejected), newest first.
CREATE INDEX deliveries_failed ON deliveries (service_sid, notification_sid)
    WHERE status = 'failed';
CREATE INDEX events_binding_removals ON events (service_sid, position)
    WHERE type = 'BindingDeleted';
