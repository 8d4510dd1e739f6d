//! Projection rows in and out of SQL: one reader and one writer per entity, and the queries the
//! decisions and the readers share.

use bindery_domain::*;

use super::sql::{cached_sql, Arg, Db, SqlRow};
use super::StoreError;

/// Reads a validated domain value from a text column; a value the domain refuses means the
/// database was changed behind Bindery's back.
pub(super) fn valid<T: serde::de::DeserializeOwned>(
    r: &dyn SqlRow,
    index: usize,
) -> Result<T, StoreError> {
    parse_valid(r.text(index)?, index)
}

fn valid_opt<T: serde::de::DeserializeOwned>(
    r: &dyn SqlRow,
    index: usize,
) -> Result<Option<T>, StoreError> {
    r.opt_text(index)?
        .map(|text| parse_valid(text, index))
        .transpose()
}

fn parse_valid<T: serde::de::DeserializeOwned>(text: &str, index: usize) -> Result<T, StoreError> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|e| StoreError::column(index, e))
}

/// Reads a JSON column into a domain value.
fn from_json<T: serde::de::DeserializeOwned>(
    r: &dyn SqlRow,
    index: usize,
) -> Result<T, StoreError> {
    serde_json::from_str(r.text(index)?).map_err(|e| StoreError::column(index, e))
}

fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).expect("domain values serialize")
}

fn at(r: &dyn SqlRow, index: usize) -> Result<Timestamp, StoreError> {
    Ok(Timestamp::from_unix(r.int(index)?))
}

fn text_opt(r: &dyn SqlRow, index: usize) -> Result<Option<String>, StoreError> {
    Ok(r.opt_text(index)?.map(str::to_owned))
}

pub const ACCOUNT_COLUMNS: &str = "sid, friendly_name, auth_token_hash, date_created, date_updated";
pub const API_KEY_COLUMNS: &str =
    "sid, account_sid, friendly_name, secret_hash, date_created, date_updated";
pub const SERVICE_COLUMNS: &str =
    "sid, account_sid, friendly_name, settings, date_created, date_updated";
pub const CREDENTIAL_COLUMNS: &str =
    "sid, account_sid, friendly_name, type, sandbox, secrets, date_created, date_updated, profile";
pub const USER_COLUMNS: &str =
    "sid, account_sid, service_sid, identity, friendly_name, attributes, \
     role_sid, date_created, date_updated";
pub const BINDING_COLUMNS: &str = "sid, account_sid, service_sid, user_sid, identity, endpoint, \
     binding_type, address, credential_sid, message_types, date_created, date_updated";

pub fn account(r: &dyn SqlRow) -> Result<Account, StoreError> {
    Ok(Account {
        sid: valid(r, 0)?,
        friendly_name: r.text(1)?.to_owned(),
        auth_token_hash: valid(r, 2)?,
        date_created: at(r, 3)?,
        date_updated: at(r, 4)?,
    })
}

pub fn api_key(r: &dyn SqlRow) -> Result<ApiKey, StoreError> {
    Ok(ApiKey {
        sid: valid(r, 0)?,
        account_sid: valid(r, 1)?,
        friendly_name: r.text(2)?.to_owned(),
        secret_hash: valid(r, 3)?,
        date_created: at(r, 4)?,
        date_updated: at(r, 5)?,
    })
}

pub fn service(r: &dyn SqlRow) -> Result<Service, StoreError> {
    Ok(Service {
        sid: valid(r, 0)?,
        account_sid: valid(r, 1)?,
        friendly_name: r.text(2)?.to_owned(),
        settings: from_json(r, 3)?,
        date_created: at(r, 4)?,
        date_updated: at(r, 5)?,
    })
}

pub fn credential(r: &dyn SqlRow) -> Result<Credential, StoreError> {
    Ok(Credential {
        sid: valid(r, 0)?,
        account_sid: valid(r, 1)?,
        friendly_name: text_opt(r, 2)?,
        credential_type: valid(r, 3)?,
        sandbox: r.opt_bool(4)?,
        secrets: from_json(r, 5)?,
        date_created: at(r, 6)?,
        date_updated: at(r, 7)?,
        profile: from_json(r, 8)?,
    })
}

pub fn user(r: &dyn SqlRow) -> Result<User, StoreError> {
    Ok(User {
        sid: valid(r, 0)?,
        account_sid: valid(r, 1)?,
        service_sid: valid(r, 2)?,
        identity: valid(r, 3)?,
        friendly_name: text_opt(r, 4)?,
        attributes: valid_opt(r, 5)?,
        role_sid: text_opt(r, 6)?,
        date_created: at(r, 7)?,
        date_updated: at(r, 8)?,
    })
}

pub fn binding(r: &dyn SqlRow) -> Result<Binding, StoreError> {
    Ok(Binding {
        sid: valid(r, 0)?,
        account_sid: valid(r, 1)?,
        service_sid: valid(r, 2)?,
        user_sid: valid(r, 3)?,
        identity: valid(r, 4)?,
        endpoint: valid(r, 5)?,
        binding_type: valid(r, 6)?,
        address: valid(r, 7)?,
        credential_sid: valid_opt(r, 8)?,
        message_types: from_json(r, 9)?,
        date_created: at(r, 10)?,
        date_updated: at(r, 11)?,
    })
}

pub fn table(kind: EntityKind) -> &'static str {
    match kind {
        EntityKind::Account => "accounts",
        EntityKind::ApiKey => "api_keys",
        EntityKind::Service => "services",
        EntityKind::Credential => "credentials",
        EntityKind::User => "users",
        EntityKind::Binding => "bindings",
    }
}

/// The current row of an entity, by its SID.
pub fn load(db: &dyn Db, kind: EntityKind, sid: &str) -> Result<Option<Row>, StoreError> {
    let args = [Arg::Text(sid)];
    match kind {
        EntityKind::Account => db.one(
            cached_sql!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE sid = ?1"),
            &args,
            |r| account(r).map(Row::Account),
        ),
        EntityKind::ApiKey => db.one(
            cached_sql!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE sid = ?1"),
            &args,
            |r| api_key(r).map(Row::ApiKey),
        ),
        EntityKind::Service => db.one(
            cached_sql!("SELECT {SERVICE_COLUMNS} FROM services WHERE sid = ?1"),
            &args,
            |r| service(r).map(Row::Service),
        ),
        EntityKind::Credential => db.one(
            cached_sql!("SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE sid = ?1"),
            &args,
            |r| credential(r).map(Row::Credential),
        ),
        EntityKind::User => db.one(
            cached_sql!("SELECT {USER_COLUMNS} FROM users WHERE sid = ?1"),
            &args,
            |r| user(r).map(Row::User),
        ),
        EntityKind::Binding => db.one(
            cached_sql!("SELECT {BINDING_COLUMNS} FROM bindings WHERE sid = ?1"),
            &args,
            |r| binding(r).map(Row::Binding),
        ),
    }
}

/// Writes a row: inserted, or updated in place when its SID exists. Only a clash on the SID
/// updates; any other unique index that would be broken fails the statement.
pub fn store(db: &dyn Db, row: &Row) -> Result<(), StoreError> {
    /// `INSERT … ON CONFLICT (sid) DO UPDATE` of every column.
    fn upsert_sql(table: &str, columns: &str) -> String {
        let names: Vec<&str> = columns.split(',').map(str::trim).collect();
        let placeholders: Vec<String> = (1..=names.len()).map(|i| format!("?{i}")).collect();
        let updates: Vec<String> = names
            .iter()
            .skip(1)
            .map(|n| format!("{n} = excluded.{n}"))
            .collect();
        format!(
            "INSERT INTO {table} ({columns}) VALUES ({}) ON CONFLICT (sid) DO UPDATE SET {}",
            placeholders.join(", "),
            updates.join(", ")
        )
    }
    use Arg::*;
    match row {
        Row::Account(a) => db.execute(
            cached_sql!("{}", upsert_sql("accounts", ACCOUNT_COLUMNS)),
            &[
                Text(a.sid.as_str()),
                Text(&a.friendly_name),
                Text(&a.auth_token_hash.to_hex()),
                Int(a.date_created.unix()),
                Int(a.date_updated.unix()),
            ],
        )?,
        Row::ApiKey(k) => db.execute(
            cached_sql!("{}", upsert_sql("api_keys", API_KEY_COLUMNS)),
            &[
                Text(k.sid.as_str()),
                Text(k.account_sid.as_str()),
                Text(&k.friendly_name),
                Text(&k.secret_hash.to_hex()),
                Int(k.date_created.unix()),
                Int(k.date_updated.unix()),
            ],
        )?,
        Row::Service(s) => db.execute(
            cached_sql!("{}", upsert_sql("services", SERVICE_COLUMNS)),
            &[
                Text(s.sid.as_str()),
                Text(s.account_sid.as_str()),
                Text(&s.friendly_name),
                Text(&json(&s.settings)),
                Int(s.date_created.unix()),
                Int(s.date_updated.unix()),
            ],
        )?,
        Row::Credential(c) => db.execute(
            cached_sql!("{}", upsert_sql("credentials", CREDENTIAL_COLUMNS)),
            &[
                Text(c.sid.as_str()),
                Text(c.account_sid.as_str()),
                OptText(c.friendly_name.as_deref()),
                Text(c.credential_type.as_str()),
                OptBool(c.sandbox),
                Text(&json(&c.secrets)),
                Int(c.date_created.unix()),
                Int(c.date_updated.unix()),
                Text(&json(&c.profile)),
            ],
        )?,
        Row::User(u) => db.execute(
            cached_sql!("{}", upsert_sql("users", USER_COLUMNS)),
            &[
                Text(u.sid.as_str()),
                Text(u.account_sid.as_str()),
                Text(u.service_sid.as_str()),
                Text(u.identity.as_str()),
                OptText(u.friendly_name.as_deref()),
                OptText(u.attributes.as_ref().map(|a| a.as_str())),
                OptText(u.role_sid.as_deref()),
                Int(u.date_created.unix()),
                Int(u.date_updated.unix()),
            ],
        )?,
        Row::Binding(b) => db.execute(
            cached_sql!("{}", upsert_sql("bindings", BINDING_COLUMNS)),
            &[
                Text(b.sid.as_str()),
                Text(b.account_sid.as_str()),
                Text(b.service_sid.as_str()),
                Text(b.user_sid.as_str()),
                Text(b.identity.as_str()),
                Text(b.endpoint.as_str()),
                Text(b.binding_type.as_str()),
                Text(b.address.as_str()),
                OptText(b.credential_sid.as_ref().map(|c| c.as_str())),
                Text(&json(&b.message_types)),
                Int(b.date_created.unix()),
                Int(b.date_updated.unix()),
            ],
        )?,
    };
    Ok(())
}

pub fn remove(db: &dyn Db, kind: EntityKind, sid: &str) -> Result<(), StoreError> {
    let sql = match kind {
        EntityKind::Account => "DELETE FROM accounts WHERE sid = ?1",
        EntityKind::ApiKey => "DELETE FROM api_keys WHERE sid = ?1",
        EntityKind::Service => "DELETE FROM services WHERE sid = ?1",
        EntityKind::Credential => "DELETE FROM credentials WHERE sid = ?1",
        EntityKind::User => "DELETE FROM users WHERE sid = ?1",
        EntityKind::Binding => "DELETE FROM bindings WHERE sid = ?1",
    };
    db.execute(sql, &[Arg::Text(sid)])?;
    Ok(())
}

/// The registry's state as the projections in `db` hold it: what decisions read.
pub struct SqlState<'c>(pub &'c dyn Db);

impl SqlState<'_> {
    fn sids<K: SidKind>(&self, sql: &str, key: &str) -> Result<Vec<Sid<K>>, StoreError> {
        self.0.all(sql, &[Arg::Text(key)], |r| valid(r, 0))
    }
}

macro_rules! by_sid {
    ($self:ident, $columns:ident, $table:literal, $read:ident, $sid:expr) => {
        $self.0.one(
            cached_sql!("SELECT {} FROM {} WHERE sid = ?1", $columns, $table),
            &[Arg::Text($sid.as_str())],
            $read,
        )
    };
}

impl State for SqlState<'_> {
    type Error = StoreError;

    fn account(&self, sid: &AccountSid) -> Result<Option<Account>, StoreError> {
        by_sid!(self, ACCOUNT_COLUMNS, "accounts", account, sid)
    }
    fn has_accounts(&self) -> Result<bool, StoreError> {
        self.0
            .value("SELECT EXISTS (SELECT 1 FROM accounts)", &[], |r| r.bool(0))
    }
    fn api_key(&self, sid: &ApiKeySid) -> Result<Option<ApiKey>, StoreError> {
        by_sid!(self, API_KEY_COLUMNS, "api_keys", api_key, sid)
    }
    fn service(&self, sid: &ServiceSid) -> Result<Option<Service>, StoreError> {
        by_sid!(self, SERVICE_COLUMNS, "services", service, sid)
    }
    fn credential(&self, sid: &CredentialSid) -> Result<Option<Credential>, StoreError> {
        by_sid!(self, CREDENTIAL_COLUMNS, "credentials", credential, sid)
    }
    fn user(&self, sid: &UserSid) -> Result<Option<User>, StoreError> {
        by_sid!(self, USER_COLUMNS, "users", user, sid)
    }
    fn user_by_identity(
        &self,
        service: &ServiceSid,
        identity: &Identity,
    ) -> Result<Option<User>, StoreError> {
        self.0.one(
            cached_sql!(
                "SELECT {USER_COLUMNS} FROM users WHERE service_sid = ?1 AND identity = ?2"
            ),
            &[Arg::Text(service.as_str()), Arg::Text(identity.as_str())],
            user,
        )
    }
    fn binding(&self, sid: &BindingSid) -> Result<Option<Binding>, StoreError> {
        by_sid!(self, BINDING_COLUMNS, "bindings", binding, sid)
    }
    fn binding_at_endpoint(
        &self,
        user: &UserSid,
        endpoint: &Endpoint,
        binding_type: BindingType,
    ) -> Result<Option<Binding>, StoreError> {
        self.0.one(
            cached_sql!(
                "SELECT {BINDING_COLUMNS} FROM bindings \
                 WHERE user_sid = ?1 AND endpoint = ?2 AND binding_type = ?3"
            ),
            &[
                Arg::Text(user.as_str()),
                Arg::Text(endpoint.as_str()),
                Arg::Text(binding_type.as_str()),
            ],
            binding,
        )
    }
    fn binding_holding(
        &self,
        service: &ServiceSid,
        binding_type: BindingType,
        address: &PushAddress,
    ) -> Result<Option<Binding>, StoreError> {
        self.0.one(
            cached_sql!(
                "SELECT {BINDING_COLUMNS} FROM bindings \
                 WHERE service_sid = ?1 AND binding_type = ?2 AND address = ?3"
            ),
            &[
                Arg::Text(service.as_str()),
                Arg::Text(binding_type.as_str()),
                Arg::Text(address.as_str()),
            ],
            binding,
        )
    }
    fn count_bindings_of_user(&self, user: &UserSid) -> Result<u64, StoreError> {
        self.0
            .value(
                "SELECT count(*) FROM bindings WHERE user_sid = ?1",
                &[Arg::Text(user.as_str())],
                |r| r.int(0),
            )
            .map(|count| count as u64)
    }
    fn bindings_of_user(&self, user: &UserSid) -> Result<Vec<BindingSid>, StoreError> {
        self.sids(
            "SELECT sid FROM bindings WHERE user_sid = ?1 ORDER BY sid",
            user.as_str(),
        )
    }
    fn bindings_of_service(&self, service: &ServiceSid) -> Result<Vec<BindingSid>, StoreError> {
        self.sids(
            "SELECT sid FROM bindings WHERE service_sid = ?1 ORDER BY sid",
            service.as_str(),
        )
    }
    fn users_of_service(&self, service: &ServiceSid) -> Result<Vec<UserSid>, StoreError> {
        self.sids(
            "SELECT sid FROM users WHERE service_sid = ?1 ORDER BY sid",
            service.as_str(),
        )
    }
    fn stale_bindings(
        &self,
        older_than: Timestamp,
        limit: u32,
    ) -> Result<Vec<Binding>, StoreError> {
        self.0.all(
            cached_sql!(
                "SELECT {BINDING_COLUMNS} FROM bindings WHERE date_updated < ?1 \
                 ORDER BY date_updated, sid LIMIT ?2"
            ),
            &[Arg::Int(older_than.unix()), Arg::Int(i64::from(limit))],
            binding,
        )
    }
}
