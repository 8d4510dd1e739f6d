-- delivery records, one per notify and binding (beside the log, not a projection:
-- see deliveries.rs). Notification SIDs sort in creation order, so the key is also the
-- index that lists a binding's records newest first and trims them to the newest 20; the
-- row id says which record was written last.
CREATE TABLE deliveries (
    id               INTEGER PRIMARY KEY,
    notification_sid TEXT    NOT NULL,
    binding_sid      TEXT    NOT NULL,
    service_sid      TEXT    NOT NULL,
    account_sid      TEXT    NOT NULL,
    date_created     INTEGER NOT NULL,
    status           TEXT    NOT NULL,
    error            TEXT,
    provider_status  INTEGER,
    attempts         INTEGER NOT NULL,
    latency_ms       INTEGER NOT NULL
);
CREATE UNIQUE INDEX deliveries_by_binding ON deliveries (binding_sid, notification_sid);
