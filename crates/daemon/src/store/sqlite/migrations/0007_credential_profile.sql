-- what reading a credential found (CONTRACT §6.2: auth, key and team ids, topic,
-- expiry), as the JSON of its `CredentialProfile`; `{}` (unknown) for the credentials
-- stored before, as a replay of their events makes it.
ALTER TABLE credentials ADD COLUMN profile TEXT NOT NULL DEFAULT '{}';
