//! Projection rows in and out of SQL: one reader and one writer per entity, and the queries the
//! decisions and the readers share.

use bindery_domain::*;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef};
use rusqlite::{params, Connection, OptionalExtension, ToSql};

/// Reads a validated domain value from a column; a value the domain refuses means the
/// database was changed behind Bindery's back.
struct Valid<T>(T);

impl<T: serde::de::DeserializeOwned> FromSql for Valid<T> {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        serde_json::from_value(serde_json::Value::String(text.to_owned()))
            .map(Valid)
            .map_err(|e| FromSqlError::Other(Box::new(e)))
    }
}

/// Reads a JSON column into a domain value.
struct Json<T>(T);

impl<T: serde::de::DeserializeOwned> FromSql for Json<T> {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        serde_json::from_str(value.as_str()?)
            .map(Json)
            .map_err(|e| FromSqlError::Other(Box::new(e)))
    }
}

fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).expect("domain values serialize")
}

fn valid<T: serde::de::DeserializeOwned>(row: &rusqlite::Row, index: usize) -> rusqlite::Result<T> {
    Ok(row.get::<_, Valid<T>>(index)?.0)
}

fn valid_opt<T: serde::de::DeserializeOwned>(
    row: &rusqlite::Row,
    index: usize,
) -> rusqlite::Result<Option<T>> {
    Ok(row.get::<_, Option<Valid<T>>>(index)?.map(|v| v.0))
}

fn at(row: &rusqlite::Row, index: usize) -> rusqlite::Result<Timestamp> {
    Ok(Timestamp::from_unix(row.get(index)?))
}

struct Sql<'a>(&'a str);
impl ToSql for Sql<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(ValueRef::Text(self.0.as_bytes())))
    }
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

pub fn account(r: &rusqlite::Row) -> rusqlite::Result<Account> {
    Ok(Account {
        sid: valid(r, 0)?,
        friendly_name: r.get(1)?,
        auth_token_hash: valid(r, 2)?,
        date_created: at(r, 3)?,
        date_updated: at(r, 4)?,
    })
}

pub fn api_key(r: &rusqlite::Row) -> rusqlite::Result<ApiKey> {
    Ok(ApiKey {
        sid: valid(r, 0)?,
        account_sid: valid(r, 1)?,
        friendly_name: r.get(2)?,
        secret_hash: valid(r, 3)?,
        date_created: at(r, 4)?,
        date_updated: at(r, 5)?,
    })
}

pub fn service(r: &rusqlite::Row) -> rusqlite::Result<Service> {
    Ok(Service {
        sid: valid(r, 0)?,
        account_sid: valid(r, 1)?,
        friendly_name: r.get(2)?,
        settings: r.get::<_, Json<_>>(3)?.0,
        date_created: at(r, 4)?,
        date_updated: at(r, 5)?,
    })
}

pub fn credential(r: &rusqlite::Row) -> rusqlite::Result<Credential> {
    Ok(Credential {
        sid: valid(r, 0)?,
        account_sid: valid(r, 1)?,
        friendly_name: r.get(2)?,
        credential_type: valid(r, 3)?,
        sandbox: r.get(4)?,
        secrets: r.get::<_, Json<_>>(5)?.0,
        date_created: at(r, 6)?,
        date_updated: at(r, 7)?,
        profile: r.get::<_, Json<_>>(8)?.0,
    })
}

pub fn user(r: &rusqlite::Row) -> rusqlite::Result<User> {
    Ok(User {
        sid: valid(r, 0)?,
        account_sid: valid(r, 1)?,
        service_sid: valid(r, 2)?,
        identity: valid(r, 3)?,
        friendly_name: r.get(4)?,
        attributes: valid_opt(r, 5)?,
        role_sid: r.get(6)?,
        date_created: at(r, 7)?,
        date_updated: at(r, 8)?,
    })
}

pub fn binding(r: &rusqlite::Row) -> rusqlite::Result<Binding> {
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
        message_types: r.get::<_, Json<_>>(9)?.0,
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

/// SQL text built with `format!` once, on first use, then kept: statements are looked up in
/// the connection's cache by their text, on every call.
macro_rules! cached_sql {
    ($($format:tt)*) => {{
        static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        SQL.get_or_init(|| format!($($format)*)).as_str()
    }};
}

/// The current row of an entity, by its SID.
pub fn load(conn: &Connection, kind: EntityKind, sid: &str) -> rusqlite::Result<Option<Row>> {
    fn one(
        conn: &Connection,
        sql: &str,
        sid: &str,
        read: fn(&rusqlite::Row) -> rusqlite::Result<Row>,
    ) -> rusqlite::Result<Option<Row>> {
        conn.prepare_cached(sql)?.query_row([sid], read).optional()
    }
    match kind {
        EntityKind::Account => one(
            conn,
            cached_sql!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE sid = ?1"),
            sid,
            |r| account(r).map(Row::Account),
        ),
        EntityKind::ApiKey => one(
            conn,
            cached_sql!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE sid = ?1"),
            sid,
            |r| api_key(r).map(Row::ApiKey),
        ),
        EntityKind::Service => one(
            conn,
            cached_sql!("SELECT {SERVICE_COLUMNS} FROM services WHERE sid = ?1"),
            sid,
            |r| service(r).map(Row::Service),
        ),
        EntityKind::Credential => one(
            conn,
            cached_sql!("SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE sid = ?1"),
            sid,
            |r| credential(r).map(Row::Credential),
        ),
        EntityKind::User => one(
            conn,
            cached_sql!("SELECT {USER_COLUMNS} FROM users WHERE sid = ?1"),
            sid,
            |r| user(r).map(Row::User),
        ),
        EntityKind::Binding => one(
            conn,
            cached_sql!("SELECT {BINDING_COLUMNS} FROM bindings WHERE sid = ?1"),
            sid,
            |r| binding(r).map(Row::Binding),
        ),
    }
}

/// Writes a row: inserted, or updated in place when its SID exists. Only a clash on the SID
/// updates; any other unique index that would be broken fails the statement.
pub fn store(conn: &Connection, row: &Row) -> rusqlite::Result<()> {
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
    fn upsert(conn: &Connection, sql: &str, values: &[&dyn ToSql]) -> rusqlite::Result<()> {
        conn.prepare_cached(sql)?.execute(values)?;
        Ok(())
    }
    match row {
        Row::Account(a) => upsert(
            conn,
            cached_sql!("{}", upsert_sql("accounts", ACCOUNT_COLUMNS)),
            params![
                Sql(a.sid.as_str()),
                a.friendly_name,
                a.auth_token_hash.to_hex(),
                a.date_created.unix(),
                a.date_updated.unix()
            ],
        ),
        Row::ApiKey(k) => upsert(
            conn,
            cached_sql!("{}", upsert_sql("api_keys", API_KEY_COLUMNS)),
            params![
                Sql(k.sid.as_str()),
                Sql(k.account_sid.as_str()),
                k.friendly_name,
                k.secret_hash.to_hex(),
                k.date_created.unix(),
                k.date_updated.unix()
            ],
        ),
        Row::Service(s) => upsert(
            conn,
            cached_sql!("{}", upsert_sql("services", SERVICE_COLUMNS)),
            params![
                Sql(s.sid.as_str()),
                Sql(s.account_sid.as_str()),
                s.friendly_name,
                json(&s.settings),
                s.date_created.unix(),
                s.date_updated.unix()
            ],
        ),
        Row::Credential(c) => upsert(
            conn,
            cached_sql!("{}", upsert_sql("credentials", CREDENTIAL_COLUMNS)),
            params![
                Sql(c.sid.as_str()),
                Sql(c.account_sid.as_str()),
                c.friendly_name,
                Sql(c.credential_type.as_str()),
                c.sandbox,
                json(&c.secrets),
                c.date_created.unix(),
                c.date_updated.unix(),
                json(&c.profile)
            ],
        ),
        Row::User(u) => upsert(
            conn,
            cached_sql!("{}", upsert_sql("users", USER_COLUMNS)),
            params![
                Sql(u.sid.as_str()),
                Sql(u.account_sid.as_str()),
                Sql(u.service_sid.as_str()),
                Sql(u.identity.as_str()),
                u.friendly_name,
                u.attributes.as_ref().map(|a| Sql(a.as_str())),
                u.role_sid,
                u.date_created.unix(),
                u.date_updated.unix()
            ],
        ),
        Row::Binding(b) => upsert(
            conn,
            cached_sql!("{}", upsert_sql("bindings", BINDING_COLUMNS)),
            params![
                Sql(b.sid.as_str()),
                Sql(b.account_sid.as_str()),
                Sql(b.service_sid.as_str()),
                Sql(b.user_sid.as_str()),
                Sql(b.identity.as_str()),
                Sql(b.endpoint.as_str()),
                Sql(b.binding_type.as_str()),
                Sql(b.address.as_str()),
                b.credential_sid.as_ref().map(|c| Sql(c.as_str())),
                json(&b.message_types),
                b.date_created.unix(),
                b.date_updated.unix()
            ],
        ),
    }
}

pub fn remove(conn: &Connection, kind: EntityKind, sid: &str) -> rusqlite::Result<()> {
    let sql = match kind {
        EntityKind::Account => "DELETE FROM accounts WHERE sid = ?1",
        EntityKind::ApiKey => "DELETE FROM api_keys WHERE sid = ?1",
        EntityKind::Service => "DELETE FROM services WHERE sid = ?1",
        EntityKind::Credential => "DELETE FROM credentials WHERE sid = ?1",
        EntityKind::User => "DELETE FROM users WHERE sid = ?1",
        EntityKind::Binding => "DELETE FROM bindings WHERE sid = ?1",
    };
    conn.prepare_cached(sql)?.execute([sid])?;
    Ok(())
}

/// The registry's state as the projections in `conn` hold it: what decisions read.
pub struct SqlState<'c>(pub &'c Connection);

impl SqlState<'_> {
    fn one<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        read: fn(&rusqlite::Row) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<Option<T>> {
        self.0
            .prepare_cached(sql)?
            .query_row(params, read)
            .optional()
    }

    fn sids<K: SidKind>(&self, sql: &str, key: &str) -> rusqlite::Result<Vec<Sid<K>>> {
        let mut statement = self.0.prepare_cached(sql)?;
        let rows = statement.query_map([key], |r| valid(r, 0))?;
        rows.collect()
    }
}

macro_rules! by_sid {
    ($self:ident, $columns:ident, $table:literal, $read:ident, $sid:expr) => {
        $self.one(
            cached_sql!("SELECT {} FROM {} WHERE sid = ?1", $columns, $table),
            [$sid.as_str()],
            $read,
        )
    };
}

impl State for SqlState<'_> {
    type Error = rusqlite::Error;

    fn account(&self, sid: &AccountSid) -> rusqlite::Result<Option<Account>> {
        by_sid!(self, ACCOUNT_COLUMNS, "accounts", account, sid)
    }
    fn api_key(&self, sid: &ApiKeySid) -> rusqlite::Result<Option<ApiKey>> {
        by_sid!(self, API_KEY_COLUMNS, "api_keys", api_key, sid)
    }
    fn service(&self, sid: &ServiceSid) -> rusqlite::Result<Option<Service>> {
        by_sid!(self, SERVICE_COLUMNS, "services", service, sid)
    }
    fn credential(&self, sid: &CredentialSid) -> rusqlite::Result<Option<Credential>> {
        by_sid!(self, CREDENTIAL_COLUMNS, "credentials", credential, sid)
    }
    fn user(&self, sid: &UserSid) -> rusqlite::Result<Option<User>> {
        by_sid!(self, USER_COLUMNS, "users", user, sid)
    }
    fn user_by_identity(
        &self,
        service: &ServiceSid,
        identity: &Identity,
    ) -> rusqlite::Result<Option<User>> {
        self.one(
            cached_sql!(
                "SELECT {USER_COLUMNS} FROM users WHERE service_sid = ?1 AND identity = ?2"
            ),
            [service.as_str(), identity.as_str()],
            user,
        )
    }
    fn binding(&self, sid: &BindingSid) -> rusqlite::Result<Option<Binding>> {
        by_sid!(self, BINDING_COLUMNS, "bindings", binding, sid)
    }
    fn binding_at_endpoint(
        &self,
        user: &UserSid,
        endpoint: &Endpoint,
        binding_type: BindingType,
    ) -> rusqlite::Result<Option<Binding>> {
        self.one(
            cached_sql!(
                "SELECT {BINDING_COLUMNS} FROM bindings \
                 WHERE user_sid = ?1 AND endpoint = ?2 AND binding_type = ?3"
            ),
            [user.as_str(), endpoint.as_str(), binding_type.as_str()],
            binding,
        )
    }
    fn binding_holding(
        &self,
        service: &ServiceSid,
        binding_type: BindingType,
        address: &PushAddress,
    ) -> rusqlite::Result<Option<Binding>> {
        self.one(
            cached_sql!(
                "SELECT {BINDING_COLUMNS} FROM bindings \
                 WHERE service_sid = ?1 AND binding_type = ?2 AND address = ?3"
            ),
            [service.as_str(), binding_type.as_str(), address.as_str()],
            binding,
        )
    }
    fn count_bindings_of_user(&self, user: &UserSid) -> rusqlite::Result<u64> {
        self.0
            .prepare_cached("SELECT count(*) FROM bindings WHERE user_sid = ?1")?
            .query_row([user.as_str()], |r| r.get::<_, i64>(0))
            .map(|count| count as u64)
    }
    fn bindings_of_user(&self, user: &UserSid) -> rusqlite::Result<Vec<BindingSid>> {
        self.sids(
            "SELECT sid FROM bindings WHERE user_sid = ?1 ORDER BY sid",
            user.as_str(),
        )
    }
    fn bindings_of_service(&self, service: &ServiceSid) -> rusqlite::Result<Vec<BindingSid>> {
        self.sids(
            "SELECT sid FROM bindings WHERE service_sid = ?1 ORDER BY sid",
            service.as_str(),
        )
    }
    fn users_of_service(&self, service: &ServiceSid) -> rusqlite::Result<Vec<UserSid>> {
        self.sids(
            "SELECT sid FROM users WHERE service_sid = ?1 ORDER BY sid",
            service.as_str(),
        )
    }
    fn stale_bindings(&self, older_than: Timestamp, limit: u32) -> rusqlite::Result<Vec<Binding>> {
        let mut statement = self.0.prepare_cached(&format!(
            "SELECT {BINDING_COLUMNS} FROM bindings WHERE date_updated < ?1 \
             ORDER BY date_updated, sid LIMIT ?2"
        ))?;
        let rows = statement.query_map(rusqlite::params![older_than.unix(), limit], binding)?;
        rows.collect()
    }
}
