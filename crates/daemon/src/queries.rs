//! The read side: typed queries over the projections. They run on the caller's own thread (an
//! HTTP worker), on a read-only connection lent by `actors::Readers`, one read transaction per
//! `Daemon::read`.

use bindery_domain::*;

use crate::records::DeliveryRecord;
use crate::secrets;
use crate::store::deliveries;
use crate::store::rows::{self, SqlState};
use crate::store::sql::{Arg, Db, Engine, SqlRow};
use crate::store::StoreError;

/// A read-only view of the projections on one connection, of either engine.
pub struct ReadView<'c> {
    db: &'c dyn Db,
}

impl<'c> ReadView<'c> {
    pub fn new(db: &'c dyn Db) -> Self {
        ReadView { db }
    }

    fn state(&self) -> SqlState<'c> {
        SqlState(self.db)
    }

    /// The account that `username:password` (HTTP Basic) signs in as: an account SID with its
    /// auth token, or an API key SID with its secret. `None` for anything else.
    pub fn authenticate(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<AccountSid>, StoreError> {
        if let Ok(sid) = AccountSid::parse(username) {
            let account = self.state().account(&sid)?;
            return Ok(account
                .filter(|a| secrets::matches(password, &a.auth_token_hash))
                .map(|a| a.sid));
        }
        if let Ok(sid) = ApiKeySid::parse(username) {
            let key = self.state().api_key(&sid)?;
            return Ok(key
                .filter(|k| secrets::matches(password, &k.secret_hash))
                .map(|k| k.account_sid));
        }
        Ok(None)
    }

    pub fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        self.db.all(
            &format!(
                "SELECT {} FROM accounts ORDER BY sid",
                rows::ACCOUNT_COLUMNS
            ),
            &[],
            rows::account,
        )
    }

    /// (projection checkpoint, newest log position), read in one statement.
    pub fn positions(&self) -> Result<(i64, i64), StoreError> {
        self.db.value(
            "SELECT (SELECT position FROM checkpoint WHERE id = 1), \
                    (SELECT COALESCE(MAX(position), 0) FROM events)",
            &[],
            |r| Ok((r.int(0)?, r.int(1)?)),
        )
    }

    /// The console session whose token hashes to `token_hash`, while it lasts and its key
    /// is not revoked (see `store::console_sessions`).
    pub fn console_session(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<Option<crate::store::console_sessions::ConsoleSession>, StoreError> {
        crate::store::console_sessions::find(self.db, token_hash, now)
    }

    pub fn has_accounts(&self) -> Result<bool, StoreError> {
        self.db
            .value("SELECT EXISTS (SELECT 1 FROM accounts)", &[], |r| r.bool(0))
    }
}

/// Where a page starts: keyset paging on SIDs, which sort in creation order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor {
    Start,
    /// The page after this SID.
    After(String),
    /// The page before this SID.
    Before(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub cursor: Cursor,
    pub size: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Whether more items follow the last one.
    pub more: bool,
}

impl ReadView<'_> {
    /// One page of `SELECT {columns} FROM {table} WHERE {filter}`, in SID order. `filter` uses
    /// `?1`, `?2`…; the cursor and limit are bound after `params`.
    fn page<T>(
        &self,
        columns: &str,
        table: &str,
        filter: &str,
        params: &[Arg<'_>],
        request: &PageRequest,
        read: fn(&dyn SqlRow) -> Result<T, StoreError>,
    ) -> Result<Page<T>, StoreError> {
        let n = params.len();
        let (condition, order, cursor) = match &request.cursor {
            Cursor::Start => (String::new(), "ASC", None),
            Cursor::After(sid) => (format!(" AND sid > ?{}", n + 1), "ASC", Some(sid)),
            Cursor::Before(sid) => (format!(" AND sid < ?{}", n + 1), "DESC", Some(sid)),
        };
        let limit_index = n + 1 + usize::from(cursor.is_some());
        let sql = format!(
            "SELECT {columns} FROM {table} WHERE {filter}{condition} ORDER BY sid {order} LIMIT ?{limit_index}"
        );
        let limit = (request.size + 1) as i64;
        let mut bound: Vec<Arg> = params.to_vec();
        if let Some(sid) = cursor {
            bound.push(Arg::Text(sid));
        }
        bound.push(Arg::Int(limit));
        let mut items = self.db.all(&sql, &bound, read)?;
        let overflow = items.len() > request.size;
        items.truncate(request.size);
        Ok(match request.cursor {
            // Walking backwards, the page read is the one before `sid`: something follows it.
            Cursor::Before(_) => {
                items.reverse();
                Page { items, more: true }
            }
            _ => Page {
                items,
                more: overflow,
            },
        })
    }

    pub fn service(
        &self,
        account: &AccountSid,
        sid: &ServiceSid,
    ) -> Result<Option<Service>, StoreError> {
        Ok(self
            .state()
            .service(sid)?
            .filter(|s| s.account_sid == *account))
    }

    /// Whether this account has the service (without reading its settings).
    pub fn service_exists(
        &self,
        account: &AccountSid,
        sid: &ServiceSid,
    ) -> Result<bool, StoreError> {
        self.db.value(
            "SELECT EXISTS (SELECT 1 FROM services WHERE sid = ?1 AND account_sid = ?2)",
            &[Arg::Text(sid.as_str()), Arg::Text(account.as_str())],
            |r| r.bool(0),
        )
    }

    pub fn services(
        &self,
        account: &AccountSid,
        request: &PageRequest,
    ) -> Result<Page<Service>, StoreError> {
        self.page(
            rows::SERVICE_COLUMNS,
            "services",
            "account_sid = ?1",
            &[Arg::Text(account.as_str())],
            request,
            rows::service,
        )
    }
}

/// Which bindings a list shows: every filter given must match (values within one filter OR).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BindingFilter {
    pub user: Option<UserSid>,
    pub types: Vec<BindingType>,
    pub identities: Vec<Identity>,
}

impl ReadView<'_> {
    /// A user of a service of this account, by SID or identity.
    pub fn user(
        &self,
        account: &AccountSid,
        service: &ServiceSid,
        user: &UserRef,
    ) -> Result<Option<User>, StoreError> {
        let state = self.state();
        let found = match user {
            UserRef::Sid(sid) => state.user(sid)?,
            UserRef::Identity(identity) => state.user_by_identity(service, identity)?,
        };
        Ok(found.filter(|u| u.account_sid == *account && u.service_sid == *service))
    }

    /// The user named, or why it is not found: the service is missing (of this account), or
    /// the user. The user is looked up first, so a user found costs one lookup.
    pub fn find_user(
        &self,
        account: &AccountSid,
        service: &ServiceSid,
        user: &UserRef,
    ) -> Result<Result<User, DomainError>, StoreError> {
        if let Some(found) = self.user(account, service, user)? {
            return Ok(Ok(found));
        }
        if !self.service_exists(account, service)? {
            return Ok(Err(DomainError::ServiceNotFound(*service)));
        }
        Ok(Err(DomainError::UserNotFound(user.to_string())))
    }

    pub fn users(
        &self,
        account: &AccountSid,
        service: &ServiceSid,
        request: &PageRequest,
    ) -> Result<Page<User>, StoreError> {
        self.page(
            rows::USER_COLUMNS,
            "users",
            "account_sid = ?1 AND service_sid = ?2",
            &[Arg::Text(account.as_str()), Arg::Text(service.as_str())],
            request,
            rows::user,
        )
    }

    /// Whether the user has a binding to push to.
    pub fn has_bindings(&self, user: &UserSid) -> Result<bool, StoreError> {
        self.db.value(
            "SELECT EXISTS (SELECT 1 FROM bindings WHERE user_sid = ?1)",
            &[Arg::Text(user.as_str())],
            |r| r.bool(0),
        )
    }

    pub fn credential(
        &self,
        account: &AccountSid,
        sid: &CredentialSid,
    ) -> Result<Option<Credential>, StoreError> {
        Ok(self
            .state()
            .credential(sid)?
            .filter(|c| c.account_sid == *account))
    }

    /// The account's one credential of these kinds; none when it has none, or several (a
    /// binding that names none cannot then say which).
    pub fn only_credential(
        &self,
        account: &AccountSid,
        kinds: &[BindingType],
    ) -> Result<Option<Credential>, StoreError> {
        let (first, second) = match kinds {
            [one] => (one.as_str(), one.as_str()),
            [one, two, ..] => (one.as_str(), two.as_str()),
            [] => return Ok(None),
        };
        let found = self.db.all(
            &format!(
                "SELECT {} FROM credentials WHERE account_sid = ?1 AND type IN (?2, ?3) LIMIT 2",
                rows::CREDENTIAL_COLUMNS
            ),
            &[
                Arg::Text(account.as_str()),
                Arg::Text(first),
                Arg::Text(second),
            ],
            rows::credential,
        )?;
        Ok(match <[Credential; 1]>::try_from(found) {
            Ok([only]) => Some(only),
            Err(_) => None,
        })
    }

    /// Every account's credentials that expire by themselves (certificates), for
    /// `bindery_credential_expiry_timestamp_seconds` at start-up.
    pub fn expiring_credentials(&self) -> Result<Vec<Credential>, StoreError> {
        let mut all = self.db.all(
            &format!("SELECT {} FROM credentials", rows::CREDENTIAL_COLUMNS),
            &[],
            rows::credential,
        )?;
        all.retain(|credential| credential.profile.expires.is_some());
        Ok(all)
    }

    pub fn credentials(
        &self,
        account: &AccountSid,
        request: &PageRequest,
    ) -> Result<Page<Credential>, StoreError> {
        self.page(
            rows::CREDENTIAL_COLUMNS,
            "credentials",
            "account_sid = ?1",
            &[Arg::Text(account.as_str())],
            request,
            rows::credential,
        )
    }

    /// A binding of a service of this account.
    pub fn binding(
        &self,
        account: &AccountSid,
        service: &ServiceSid,
        sid: &BindingSid,
    ) -> Result<Option<Binding>, StoreError> {
        Ok(self
            .state()
            .binding(sid)?
            .filter(|b| b.account_sid == *account && b.service_sid == *service))
    }

    pub fn bindings(
        &self,
        account: &AccountSid,
        service: &ServiceSid,
        filter: &BindingFilter,
        request: &PageRequest,
    ) -> Result<Page<Binding>, StoreError> {
        let mut values: Vec<String> = vec![account.to_string(), service.to_string()];
        // With a user or identities to look up, the unary `+` keeps SQLite from walking the
        // whole service in SID order (bindings_by_service) and makes it seek the user's or the
        // identities' few rows instead; without them, that walk is the right plan, since the
        // page stops at its LIMIT.
        let narrow = filter.user.is_some() || !filter.identities.is_empty();
        let mut sql = String::from(if narrow && self.db.engine() == Engine::Sqlite {
            "+account_sid = ?1 AND +service_sid = ?2"
        } else {
            "account_sid = ?1 AND service_sid = ?2"
        });
        let mut any_of = |column: &str, given: Vec<String>, sql: &mut String| {
            if given.is_empty() {
                return;
            }
            let first = values.len() + 1;
            let marks: Vec<String> = (first..first + given.len())
                .map(|i| format!("?{i}"))
                .collect();
            sql.push_str(&format!(" AND {column} IN ({})", marks.join(", ")));
            values.extend(given);
        };
        if let Some(user) = &filter.user {
            any_of("user_sid", vec![user.to_string()], &mut sql);
        }
        any_of(
            "binding_type",
            filter.types.iter().map(|t| t.as_str().to_owned()).collect(),
            &mut sql,
        );
        any_of(
            "identity",
            filter
                .identities
                .iter()
                .map(|i| i.as_str().to_owned())
                .collect(),
            &mut sql,
        );
        let params: Vec<Arg> = values.iter().map(Arg::from).collect();
        self.page(
            rows::BINDING_COLUMNS,
            "bindings",
            &sql,
            &params,
            request,
            rows::binding,
        )
    }
}

/// Which events a history or feed page shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventFilter {
    /// Every event of the account.
    Account,
    /// The events of one binding's stream.
    Binding(ServiceSid, BindingSid),
    /// The events of a user's stream and of every binding ever registered to the user.
    User(ServiceSid, UserSid),
}

impl ReadView<'_> {
    /// A page of an account's events in log order; the cursor is a position.
    pub fn events(
        &self,
        account: &AccountSid,
        filter: &EventFilter,
        request: &PageRequest,
    ) -> Result<Page<RecordedEvent>, StoreError> {
        let position = |text: &String| text.parse::<i64>().unwrap_or(0);
        let (cursor, order, key) = match &request.cursor {
            Cursor::Start => ("AND position > ?4", "ASC", 0),
            Cursor::After(p) => ("AND position > ?4", "ASC", position(p)),
            Cursor::Before(p) => ("AND position < ?4", "DESC", position(p)),
        };
        let (condition, subject, service) = match filter {
            // Every statement binds five parameters; this one names two only to type them.
            EventFilter::Account => (
                "CAST(?2 AS TEXT) = CAST(?2 AS TEXT) AND CAST(?3 AS TEXT) = CAST(?3 AS TEXT)"
                    .to_owned(),
                String::new(),
                String::new(),
            ),
            EventFilter::Binding(service, binding) => (
                "stream = ?2 AND service_sid = ?3".to_owned(),
                binding.to_string(),
                service.to_string(),
            ),
            EventFilter::User(service, user) => (
                format!(
                    "service_sid = ?3 AND (stream = ?2 OR stream IN (SELECT stream FROM events \
                     WHERE type = 'BindingRegistered' AND {} = ?2))",
                    self.db.engine().json_field("data", "user_sid")
                ),
                user.to_string(),
                service.to_string(),
            ),
        };
        let limit = request.size as i64 + 1;
        let mut events = crate::store::log::select(
            self.db,
            &format!("account_sid = ?1 AND {condition} {cursor}"),
            &format!("ORDER BY position {order} LIMIT ?5"),
            &[
                Arg::Text(account.as_str()),
                Arg::Text(&subject),
                Arg::Text(&service),
                Arg::Int(key),
                Arg::Int(limit),
            ],
        )?
        .iter()
        .map(|stored| stored.decode())
        .collect::<Result<Vec<_>, _>>()?;
        let overflow = events.len() > request.size;
        events.truncate(request.size);
        Ok(match request.cursor {
            Cursor::Before(_) => {
                events.reverse();
                Page {
                    items: events,
                    more: true,
                }
            }
            _ => Page {
                items: events,
                more: overflow,
            },
        })
    }

    /// The newest user of a service ever created with this identity, even if since deleted.
    pub fn user_ever(
        &self,
        account: &AccountSid,
        service: &ServiceSid,
        identity: &Identity,
    ) -> Result<Option<UserSid>, StoreError> {
        let found = crate::store::log::select(
            self.db,
            &format!(
                "type = 'UserCreated' AND service_sid = ?1 AND {} = ?2 AND account_sid = ?3",
                self.db.engine().json_field("data", "identity")
            ),
            "ORDER BY position DESC LIMIT 1",
            &[
                Arg::Text(service.as_str()),
                Arg::Text(identity.as_str()),
                Arg::Text(account.as_str()),
            ],
        )?;
        Ok(found.first().and_then(|e| UserSid::parse(&e.stream).ok()))
    }

    /// Every binding of a user (at most the per-user limit), in creation order.
    pub fn bindings_of_user(&self, user: &UserSid) -> Result<Vec<Binding>, StoreError> {
        self.db.all(
            &format!(
                "SELECT {} FROM bindings WHERE user_sid = ?1 ORDER BY sid",
                rows::BINDING_COLUMNS
            ),
            &[Arg::Text(user.as_str())],
            rows::binding,
        )
    }
}

impl ReadView<'_> {
    /// A page of a binding's delivery records, newest first (the cursor is a notification
    /// SID); `None` when the binding is not one of this account's service's (missing,
    /// removed, or another's).
    pub fn deliveries(
        &self,
        account: &AccountSid,
        service: &ServiceSid,
        binding: &BindingSid,
        request: &PageRequest,
    ) -> Result<Option<Page<DeliveryRecord>>, StoreError> {
        if self.binding(account, service, binding)?.is_none() {
            return Ok(None);
        }
        // Newest first: "after" a record is older than it, "before" newer.
        let (condition, order, cursor) = match &request.cursor {
            Cursor::Start => ("", "DESC", None),
            Cursor::After(sid) => (" AND notification_sid < ?2", "DESC", Some(sid)),
            Cursor::Before(sid) => (" AND notification_sid > ?2", "ASC", Some(sid)),
        };
        let limit = (request.size + 1) as i64;
        let limit_index = if cursor.is_some() { 3 } else { 2 };
        let sql = format!(
            "SELECT {} FROM deliveries WHERE binding_sid = ?1{condition} \
             ORDER BY notification_sid {order} LIMIT ?{limit_index}",
            deliveries::COLUMNS
        );
        let mut bound = vec![Arg::Text(binding.as_str())];
        if let Some(sid) = cursor {
            bound.push(Arg::Text(sid));
        }
        bound.push(Arg::Int(limit));
        let mut items = self.db.all(&sql, &bound, deliveries::read)?;
        let overflow = items.len() > request.size;
        items.truncate(request.size);
        Ok(Some(match request.cursor {
            Cursor::Before(_) => {
                items.reverse();
                Page { items, more: true }
            }
            _ => Page {
                items,
                more: overflow,
            },
        }))
    }
}

/// What the console shows of a service's failures, newest first.
impl ReadView<'_> {
    /// A page of the service's failed delivery records, newest first; `older_than` a
    /// notification SID continues after it.
    pub fn failed_deliveries(
        &self,
        account: &AccountSid,
        service: &ServiceSid,
        older_than: Option<&str>,
        size: usize,
    ) -> Result<Page<DeliveryRecord>, StoreError> {
        let limit = (size + 1) as i64;
        let mut items = self.db.all(
            &format!(
                "SELECT {} FROM deliveries \
                 WHERE service_sid = ?1 AND account_sid = ?2 AND status = 'failed' \
                   AND notification_sid < ?3 \
                 ORDER BY notification_sid DESC LIMIT ?4",
                deliveries::COLUMNS
            ),
            &[
                Arg::Text(service.as_str()),
                Arg::Text(account.as_str()),
                // Every notification SID sorts before "NP".
                Arg::Text(older_than.unwrap_or("NP")),
                Arg::Int(limit),
            ],
            deliveries::read,
        )?;
        let more = items.len() > size;
        items.truncate(size);
        Ok(Page { items, more })
    }

    /// A page of the service's bindings that a push provider rejected (removed with reason
    /// `token_invalid`), newest first; `older_than` a log position continues before it.
    pub fn rejected_bindings(
        &self,
        account: &AccountSid,
        service: &ServiceSid,
        older_than: Option<i64>,
        size: usize,
    ) -> Result<Page<RecordedEvent>, StoreError> {
        let limit = (size + 1) as i64;
        let mut events = crate::store::log::select(
            self.db,
            &format!(
                "service_sid = ?1 AND account_sid = ?2 AND type = 'BindingDeleted' \
                 AND position < ?3 AND {} = 'token_invalid'",
                self.db.engine().json_field("data", "reason")
            ),
            "ORDER BY position DESC LIMIT ?4",
            &[
                Arg::Text(service.as_str()),
                Arg::Text(account.as_str()),
                Arg::Int(older_than.unwrap_or(i64::MAX)),
                Arg::Int(limit),
            ],
        )?
        .iter()
        .map(|stored| stored.decode())
        .collect::<Result<Vec<_>, _>>()?;
        let more = events.len() > size;
        events.truncate(size);
        Ok(Page {
            items: events,
            more,
        })
    }
}
