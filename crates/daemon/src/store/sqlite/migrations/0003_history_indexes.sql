-- history by user: the bindings registered to a user, and users by identity, both
-- still found after their rows are gone.
CREATE INDEX events_registered_to ON events (json_extract(data, '$.user_sid'))
    WHERE type = 'BindingRegistered';
CREATE INDEX events_user_identity ON events (service_sid, json_extract(data, '$.identity'))
    WHERE type = 'UserCreated';
