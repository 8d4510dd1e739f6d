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
use tokio_postgres::config::LoadBalanceHosts;
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
pub fn wait<T, E>(
    future: impl Future<Output = Result<T, E>>,
    timeout: Duration,
) -> Result<T, StoreError>
where
    StoreError: From<E>,
{
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
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Refused(format!("not a connection string: {e}")))?;
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
    ///
    /// Several hosts are tried one after the other, each within its share of the target's
    /// `timeout` (so that all of them fit in it), the start-up exchange included:
    /// tokio-postgres bounds only the socket's connect by `connect_timeout`, so a host that
    /// accepts connections and never answers (a hung primary, after a failover to the next
    /// host) held the whole multi-host connect until its deadline, and the next host was
    /// never tried. A connection given up is given up on the runtime too, its socket closed,
    /// rather than left waiting there.
    pub fn connect(target: &Target, notices: Option<Notices>) -> Result<Client, StoreError> {
        let mut hosts = one_per_host(&target.config);
        if target.config.get_load_balance_hosts() == LoadBalanceHosts::Random {
            shuffle(&mut hosts);
        }
        let share = target.timeout / hosts.len().max(1) as u32;
        let mut failure = None;
        for config in hosts {
            match connect_to(config, share, notices.clone()) {
                Ok(client) => {
                    return Ok(Client {
                        client,
                        statements: RefCell::new(HashMap::new()),
                        timeout: target.timeout,
                        broken: Cell::new(false),
                    })
                }
                Err(e) => failure = Some(e),
            }
        }
        Err(failure.expect("at least one host to try"))
    }
}

/// Connects to the one host of `config` within `timeout`, on the engine's runtime: a
/// connection that is not made by then is given up there, its socket closed.
fn connect_to(
    config: tokio_postgres::Config,
    timeout: Duration,
    notices: Option<Notices>,
) -> Result<tokio_postgres::Client, StoreError> {
    let connecting = runtime().spawn(async move {
        let (client, mut connection) = tokio::time::timeout(timeout, config.connect(NoTls))
            .await
            .map_err(|_| StoreError::Timeout(timeout))??;
        tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(|cx| connection.poll_message(cx));
            while let Some(message) = futures_util::StreamExt::next(&mut messages).await {
                match message {
                    Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                        if let Some(notices) = &notices {
                            let _ = notices.send((n.channel().to_owned(), n.payload().to_owned()));
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
        Ok::<_, StoreError>(client)
    });
    let joined = async move {
        match connecting.await {
            Ok(connected) => connected,
            // The runtime is never shut down while the process runs.
            Err(e) => panic!("connecting to PostgreSQL panicked: {e}"),
        }
    };
    // The task gives up at `timeout` by itself; this only guards against a runtime that
    // cannot run it.
    wait(joined, timeout + Duration::from_secs(1))
}

/// `load_balance_hosts=random`: the hosts in a random order (Fisher-Yates).
fn shuffle<T>(items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let mut bytes = [0u8; 8];
        if getrandom::getrandom(&mut bytes).is_err() {
            return;
        }
        let j = (u64::from_le_bytes(bytes) % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

/// One configuration per host of `config`, in order, each with everything else `config`
/// says; `config` itself when it names one host or none, or hosts and ports that do not
/// pair up (tokio-postgres then says what is wrong).
fn one_per_host(config: &tokio_postgres::Config) -> Vec<tokio_postgres::Config> {
    use tokio_postgres::config::Host;
    let (hosts, addrs, ports) = (
        config.get_hosts(),
        config.get_hostaddrs(),
        config.get_ports(),
    );
    let count = hosts.len().max(addrs.len());
    let pairs = (hosts.is_empty() || addrs.is_empty() || hosts.len() == addrs.len())
        && (ports.len() <= 1 || ports.len() == count);
    if count <= 1 || !pairs {
        return vec![config.clone()];
    }
    (0..count)
        .map(|i| {
            let mut one = tokio_postgres::Config::new();
            if let Some(user) = config.get_user() {
                one.user(user);
            }
            if let Some(password) = config.get_password() {
                one.password(password);
            }
            if let Some(dbname) = config.get_dbname() {
                one.dbname(dbname);
            }
            if let Some(options) = config.get_options() {
                one.options(options);
            }
            if let Some(name) = config.get_application_name() {
                one.application_name(name);
            }
            match hosts.get(i) {
                Some(Host::Tcp(host)) => {
                    one.host(host);
                }
                Some(Host::Unix(path)) => {
                    one.host_path(path);
                }
                None => {}
            }
            if let Some(addr) = addrs.get(i) {
                one.hostaddr(*addr);
            }
            if let Some(port) = ports.get(i).or(ports.first()) {
                one.port(*port);
            }
            if let Some(timeout) = config.get_connect_timeout() {
                one.connect_timeout(*timeout);
            }
            if let Some(timeout) = config.get_tcp_user_timeout() {
                one.tcp_user_timeout(*timeout);
            }
            if let Some(interval) = config.get_keepalives_interval() {
                one.keepalives_interval(interval);
            }
            if let Some(retries) = config.get_keepalives_retries() {
                one.keepalives_retries(retries);
            }
            one.ssl_mode(config.get_ssl_mode())
                .ssl_negotiation(config.get_ssl_negotiation())
                .keepalives(config.get_keepalives())
                .keepalives_idle(config.get_keepalives_idle())
                .target_session_attrs(config.get_target_session_attrs())
                .channel_binding(config.get_channel_binding())
                .load_balance_hosts(config.get_load_balance_hosts());
            one
        })
        .collect()
}

impl Client {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> tokio_postgres::Config {
        text.parse().expect("a connection string")
    }

    #[test]
    fn several_hosts_are_tried_one_at_a_time_with_everything_else_kept() {
        let rest = "user=u password=p dbname=d options=-cwork_mem=8MB application_name=n \
                    sslmode=disable connect_timeout=3 keepalives=0 keepalives_idle=4 \
                    tcp_user_timeout=5 target_session_attrs=read-write";
        let each = one_per_host(&config(&format!("host=a,/run/pg port=1,2 {rest}")));
        assert_eq!(
            each,
            vec![
                config(&format!("host=a port=1 {rest}")),
                config(&format!("host=/run/pg port=2 {rest}")),
            ]
        );
        let shared = one_per_host(&config(
            "host=a,b,c port=7 hostaddr=127.0.0.1,127.0.0.2,::1",
        ));
        assert_eq!(
            shared,
            vec![
                config("host=a port=7 hostaddr=127.0.0.1"),
                config("host=b port=7 hostaddr=127.0.0.2"),
                config("host=c port=7 hostaddr=::1"),
            ]
        );
    }

    #[test]
    fn random_load_balancing_shuffles_the_hosts_and_loses_none() {
        let mut hosts: Vec<u32> = (0..16).collect();
        shuffle(&mut hosts);
        let mut sorted = hosts.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..16).collect::<Vec<_>>());
    }

    #[test]
    fn one_host_or_hosts_that_do_not_pair_with_their_ports_are_left_as_given() {
        for text in ["host=a port=1 user=u", "dbname=d", "host=a,b,c port=1,2"] {
            assert_eq!(one_per_host(&config(text)), vec![config(text)], "{text}");
        }
    }
}
