//! What the store-level tests share to run on both engines: SQLite in a temporary data dir,
//! and a real PostgreSQL server of the test's own ([`bindery_pgtest::Cluster`]), never a mock.
//!
//! A test is written once as `fn name(engine: Engine)` (or `async fn`) that starts its
//! [`Server`], takes a fresh [`Database`] for each store it needs, and inspects it only through
//! the store's own seam ([`Database::read`] is `store::with_reader`, SQL over [`Db`]); then
//! [`on_both_engines!`] makes the tests `sqlite::name` and `postgres::name` of it.

// Each test binary uses some of this.
#![allow(dead_code)]

use std::cell::OnceCell;

use bindery_daemon::store::sql::{Arg, Db};
use bindery_daemon::store::{self, Difference, Location, StoreError, StoreOptions};
use bindery_daemon::{DaemonOptions, Store};
use bindery_pgtest::Cluster;
use tempfile::TempDir;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// Where a test's databases live: nowhere shared for SQLite (each database is a file in a data
/// dir of its own), a PostgreSQL server for the whole test, stopped when this is dropped.
pub enum Server {
    Sqlite,
    Postgres {
        cluster: Cluster,
        /// The database [`Server::case_database`] hands out again and again, once made.
        reused: OnceCell<String>,
    },
}

/// Empties a migrated PostgreSQL database back to what the migrations left: every table but
/// the migrations' record emptied, but for the one row each of `checkpoint` and `health`,
/// which are set back; every sequence (the identity of `deliveries`) restarted. DELETE, not
/// TRUNCATE: on tables this small it takes a fraction of the time.
const EMPTY_POSTGRES: &str = "\
DO $$ DECLARE table_name text; BEGIN
    FOR table_name IN SELECT tablename FROM pg_tables WHERE schemaname = current_schema()
            AND tablename NOT IN ('schema_migrations', 'checkpoint', 'health') LOOP
        EXECUTE format('DELETE FROM %I', table_name);
    END LOOP;
    PERFORM setval(format('%I', sequencename)::regclass, 1, false)
        FROM pg_sequences WHERE schemaname = current_schema();
END $$;
UPDATE checkpoint SET position = 0;
UPDATE health SET probes = 0;";

impl Server {
    pub fn start(engine: Engine) -> Server {
        match engine {
            Engine::Sqlite => Server::Sqlite,
            Engine::Postgres => Server::Postgres {
                cluster: Cluster::start(),
                reused: OnceCell::new(),
            },
        }
    }

    pub fn engine(&self) -> Engine {
        match self {
            Server::Sqlite => Engine::Sqlite,
            Server::Postgres { .. } => Engine::Postgres,
        }
    }

    /// A new, empty database with a data dir of its own (where SQLite keeps its file; on
    /// either engine, where the sealing key file is).
    pub fn database(&self) -> Database {
        let dir = TempDir::new().unwrap();
        let location = match self {
            Server::Sqlite => Location::Sqlite(store::database_path(dir.path())),
            Server::Postgres { cluster, .. } => postgres_location(&cluster.create_database()),
        };
        Database { dir, location }
    }

    /// A database for the next case of a property test, as empty as a new one, once the store
    /// of the case before has been dropped. On SQLite a new one; on PostgreSQL one database for
    /// every case, emptied before each but the first (making and migrating a database takes
    /// ~0.3 s here, most of what a case takes).
    pub fn case_database(&self) -> Database {
        let Server::Postgres { cluster, reused } = self else {
            return self.database();
        };
        let url = match reused.get() {
            Some(url) => {
                cluster.psql(url, EMPTY_POSTGRES);
                url
            }
            None => reused.get_or_init(|| cluster.create_database()),
        };
        Database {
            dir: TempDir::new().unwrap(),
            location: postgres_location(url),
        }
    }
}

fn postgres_location(url: &str) -> Location {
    let timeout = StoreOptions::default().busy_timeout;
    Location::Postgres(Box::new(
        store::postgres::Target::parse(url, timeout).unwrap(),
    ))
}

/// One database of a test, and its data dir.
pub struct Database {
    pub dir: TempDir,
    pub location: Location,
}

impl Database {
    pub fn engine(&self) -> Engine {
        match self.location {
            Location::Sqlite(_) => Engine::Sqlite,
            Location::Postgres(_) => Engine::Postgres,
        }
    }

    /// The store's writer on this database (migrating it on first open).
    pub fn open(&self) -> Store {
        self.open_with(&StoreOptions::default()).unwrap()
    }

    pub fn open_with(&self, options: &StoreOptions) -> Result<Store, StoreError> {
        Store::open_at(&self.location, options)
    }

    /// A daemon's options on this database and data dir (the rest as `DaemonOptions::new`).
    pub fn daemon_options(&self) -> DaemonOptions {
        let mut options = DaemonOptions::new(self.dir.path().to_owned());
        if let Location::Postgres(target) = &self.location {
            options.postgres = Some((**target).clone());
        }
        options
    }

    /// `body` on a read connection of the store's own (`store::with_reader`).
    pub fn read<R>(&self, body: impl FnOnce(&dyn Db) -> Result<R, StoreError>) -> R {
        store::with_reader(&self.location, &StoreOptions::default(), body).unwrap()
    }

    /// The integer one query returns (a count).
    pub fn count(&self, sql: &str, args: &[Arg<'_>]) -> i64 {
        self.read(|db| db.value(sql, args, |r| r.int(0)))
    }

    /// How the projections differ from a replay of the log (`store::verify_at`).
    pub fn verify(&self) -> Vec<Difference> {
        store::verify_at(&self.location, &StoreOptions::default()).unwrap()
    }

    /// Asserts that the projections equal a replay of the log.
    #[track_caller]
    pub fn assert_verifies(&self) {
        let differences = self.verify();
        assert!(differences.is_empty(), "{}", unverified(&differences));
    }

    /// The log as `bindery export` writes it.
    pub fn export(&self) -> String {
        let mut out = Vec::new();
        store::export(&self.location, &mut out, &StoreOptions::default()).unwrap();
        String::from_utf8(out).unwrap()
    }
}

/// For each `fn name(engine: Engine)` named, the tests `sqlite::name` and `postgres::name`;
/// after `async:`, for each `async fn name(engine: Engine)`, the same as `actix_rt` tests.
macro_rules! on_both_engines {
    (async: $($test:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[actix_rt::test]
                async fn $test() {
                    super::$test(crate::engines::Engine::Sqlite).await
                }
            )+
        }
        mod postgres {
            $(
                #[actix_rt::test]
                async fn $test() {
                    super::$test(crate::engines::Engine::Postgres).await
                }
            )+
        }
    };
    ($($test:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $test() {
                    super::$test(crate::engines::Engine::Sqlite)
                }
            )+
        }
        mod postgres {
            $(
                #[test]
                fn $test() {
                    super::$test(crate::engines::Engine::Postgres)
                }
            )+
        }
    };
}
pub(crate) use on_both_engines;

/// What a failed verify says: each difference on a line of its own.
pub fn unverified(differences: &[Difference]) -> String {
    let lines: Vec<String> = differences.iter().map(ToString::to_string).collect();
    format!(
        "the projections differ from a replay of the log:\n{}",
        lines.join("\n")
    )
}
