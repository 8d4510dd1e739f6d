//! One connection to PostgreSQL that the store's synchronous code can use from any thread.
//!
//! The store's logic is synchronous (the domain's decisions read state as they go), and it
//! runs on threads that already drive an async runtime (the writer's arbiter, the HTTP
//! workers), where a runtime's `block_on` panics. So each connection's socket is driven by a
//! task on a runtime of the engine's own (one thread, [`runtime`]), and a caller waits for
//! its query with `futures_executor::block_on`, which parks the calling thread without
//! entering any runtime: the query's future only exchanges messages with that task.
//! Every wait is bounded by the store's `busy_timeout`: a database that does not answer makes
//! the call fail as unavailable, never hang, and the connection is then dropped (what was in
//! flight on it is unknown).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use futures_util::future::{select, Either};
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use tokio_postgres::{NoTls, Statement};

use crate::store::sql::{Arg, Db, Engine, SqlRow, Value};
use crate::store::StoreError;

/// The runtime that drives every PostgreSQL connection of the process (their sockets, the
/// `LISTEN` stream, the timers of the waits).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("postgres")
            .enable_all()
            .build()
            .expect("a runtime for the PostgreSQL connections")
    })
}

/// Waits for `future` on this thread, at most `timeout`.
pub fn wait<T>(
    future: impl Future<Output = Result<T, tokio_postgres::Error>>,
    timeout: Duration,
) -> Result<T, StoreError> {
    // The timer belongs to the engine's runtime, whose thread fires it.
    let timer = {
        let _entered = runtime().enter();
        tokio::time::sleep(timeout)
    };
    let future = std::pin::pin!(future);
    let timer = std::pin::pin!(timer);
    match futures_executor::block_on(select(future, timer)) {
        Either::Left((result, _)) => Ok(result?),
        Either::Right(_) => Err(StoreError::Timeout(timeout)),
    }
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Target {
    pub config: tokio_postgres::Config,
    /// The longest any one wait may take (connecting, a statement).
    pub timeout: Duration,
}

impl Target {
    /// Reads a libpq connection string or `postgres://` URI (several hosts, with
    /// `target_session_attrs=read-write`, follow a failover).
    pub fn parse(url: &str, timeout: Duration) -> Result<Target, StoreError> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| {
            StoreError::Refused(format!(
                "storage.postgres.url is not a connection string: {e}"
            ))
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(timeout);
        }
        if config.get_application_name().is_none() {
            config.application_name("bindery");
        }
        Ok(Target { config, timeout })
    }
}

/// A connection, its prepared statements, and whether it can still be trusted.
pub struct Client {
    client: tokio_postgres::Client,
    statements: RefCell<HashMap<String, Statement>>,
    timeout: Duration,
    /// Set when a wait timed out or the connection closed: what it was doing is unknown, so
    /// its owner drops it and connects again.
    broken: Cell<bool>,
}

/// What arrives on a connection besides answers: `NOTIFY` payloads, by channel.
pub type Notices = std::sync::mpsc::Sender<(String, String)>;

impl Client {
    /// Connects; with `notices`, the connection's notifications are sent there (and the
    /// channel closes when the connection does).
    pub fn connect(target: &Target, notices: Option<Notices>) -> Result<Client, StoreError> {
        let config = target.config.clone();
        let connecting = runtime().spawn(async move {
            let (client, mut connection) = config.connect(NoTls).await?;
            tokio::spawn(async move {
                let mut messages = futures_util::stream::poll_fn(|cx| connection.poll_message(cx));
                while let Some(message) = futures_util::StreamExt::next(&mut messages).await {
                    match message {
                        Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                            if let Some(notices) = &notices {
                                let _ =
                                    notices.send((n.channel().to_owned(), n.payload().to_owned()));
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "a PostgreSQL connection failed");
                            break;
                        }
                    }
                }
            });
            Ok::<_, tokio_postgres::Error>(client)
        });
        let joined = async move {
            match connecting.await {
                Ok(connected) => connected,
                // The runtime is never shut down while the process runs.
                Err(e) => panic!("connecting to PostgreSQL panicked: {e}"),
            }
        };
        let client = wait(joined, target.timeout + Duration::from_secs(1))?;
        Ok(Client {
            client,
            statements: RefCell::new(HashMap::new()),
            timeout: target.timeout,
            broken: Cell::new(false),
        })
    }

    /// Whether this connection must be dropped: it closed, or a wait on it timed out.
    pub fn is_broken(&self) -> bool {
        self.broken.get() || self.client.is_closed()
    }

    fn wait<T>(
        &self,
        future: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, StoreError> {
        let result = wait(future, self.timeout);
        if let Err(e) = &result {
            if e.is_unavailable() {
                self.broken.set(true);
            }
        }
        result
    }

    fn statement(&self, sql: &str) -> Result<Statement, StoreError> {
        if let Some(statement) = self.statements.borrow().get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.wait(self.client.prepare(&numbered(sql)))?;
        self.statements
            .borrow_mut()
            .insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }
}

/// SQLite's `?N` placeholders as PostgreSQL's `$N`. The store's SQL has no `?` elsewhere.
fn numbered(sql: &str) -> String {
    sql.replace('?', "$")
}

impl Db for Client {
    fn engine(&self) -> Engine {
        Engine::Postgres
    }

    fn each(
        &self,
        sql: &str,
        args: &[Arg<'_>],
        row: &mut dyn FnMut(&dyn SqlRow) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let statement = self.statement(sql)?;
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a as _).collect();
        // Every row is read before the first is handed over: `row` may run statements of its
        // own on this connection, whose answers queue behind this one's.
        let rows = self.wait(self.client.query(&statement, &params))?;
        for found in &rows {
            row(found)?;
        }
        Ok(())
    }

    fn execute(&self, sql: &str, args: &[Arg<'_>]) -> Result<u64, StoreError> {
        let statement = self.statement(sql)?;
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a as _).collect();
        self.wait(self.client.execute(&statement, &params))
    }

    fn batch(&self, sql: &str) -> Result<(), StoreError> {
        self.wait(self.client.batch_execute(sql))
    }
}

impl ToSql for Arg<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match *self {
            Arg::Text(t) | Arg::OptText(Some(t)) => t.to_sql(ty, out),
            Arg::Int(i) | Arg::OptInt(Some(i)) => match *ty {
                Type::INT2 => i16::try_from(i)?.to_sql(ty, out),
                Type::INT4 => i32::try_from(i)?.to_sql(ty, out),
                _ => i.to_sql(ty, out),
            },
            Arg::OptBool(Some(b)) => b.to_sql(ty, out),
            Arg::OptText(None) | Arg::OptInt(None) | Arg::OptBool(None) => Ok(IsNull::Yes),
        }
    }

    fn accepts(ty: &Type) -> bool {
        <&str as ToSql>::accepts(ty)
            || matches!(*ty, Type::INT2 | Type::INT4 | Type::INT8 | Type::BOOL)
    }

    to_sql_checked!();
}

impl SqlRow for tokio_postgres::Row {
    fn text(&self, index: usize) -> Result<&str, StoreError> {
        Ok(self.try_get(index)?)
    }
    fn opt_text(&self, index: usize) -> Result<Option<&str>, StoreError> {
        Ok(self.try_get(index)?)
    }
    fn int(&self, index: usize) -> Result<i64, StoreError> {
        self.opt_int(index)?
            .ok_or_else(|| StoreError::column(index, "NULL where an integer was expected"))
    }
    fn opt_int(&self, index: usize) -> Result<Option<i64>, StoreError> {
        Ok(match *self.columns()[index].type_() {
            Type::INT2 => self.try_get::<_, Option<i16>>(index)?.map(i64::from),
            Type::INT4 => self.try_get::<_, Option<i32>>(index)?.map(i64::from),
            _ => self.try_get(index)?,
        })
    }
    fn opt_bool(&self, index: usize) -> Result<Option<bool>, StoreError> {
        Ok(self.try_get(index)?)
    }
    fn value(&self, index: usize) -> Result<Value, StoreError> {
        let ty = self.columns()[index].type_().clone();
        Ok(match ty {
            Type::BOOL => self
                .opt_bool(index)?
                .map_or(Value::Null, |b| Value::Int(i64::from(b))),
            Type::INT2 | Type::INT4 | Type::INT8 => {
                self.opt_int(index)?.map_or(Value::Null, Value::Int)
            }
            _ => self
                .opt_text(index)?
                .map_or(Value::Null, |t| Value::Text(t.to_owned())),
        })
    }
}
