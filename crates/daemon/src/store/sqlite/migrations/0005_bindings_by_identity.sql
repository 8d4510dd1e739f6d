-- the service-level binding list filtered by identity seeks, not scans.
CREATE INDEX bindings_by_identity ON bindings (identity, sid);
