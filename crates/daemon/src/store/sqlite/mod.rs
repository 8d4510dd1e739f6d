//! The SQLite engine, the embedded default: one file in WAL mode, one writing connection,
//! read-only connections beside it. Here are what only SQLite has: its connections and
//! pragmas, its migrations (`migrations/`), the write-ahead log's checkpoints, the probe of
//! free space, and backups (`VACUUM INTO`); and [`Db`] over a `rusqlite::Connection`.

pub mod connection;
pub mod health;
pub mod schema;
pub mod wal;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ToSql};

use super::sql::{Arg, Db, Engine, SqlRow, Value};
use crate::store::StoreError;

impl ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match *self {
            Arg::Text(t) | Arg::OptText(Some(t)) => {
                ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes()))
            }
            Arg::Int(i) | Arg::OptInt(Some(i)) => ToSqlOutput::Borrowed(ValueRef::Integer(i)),
            Arg::OptBool(Some(b)) => ToSqlOutput::Borrowed(ValueRef::Integer(i64::from(b))),
            Arg::OptText(None) | Arg::OptInt(None) | Arg::OptBool(None) => {
                ToSqlOutput::Borrowed(ValueRef::Null)
            }
        })
    }
}

impl Db for Connection {
    fn engine(&self) -> Engine {
        Engine::Sqlite
    }

    fn each(
        &self,
        sql: &str,
        args: &[Arg<'_>],
        row: &mut dyn FnMut(&dyn SqlRow) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut statement = self.prepare_cached(sql)?;
        let mut rows = statement.query(rusqlite::params_from_iter(args))?;
        while let Some(found) = rows.next()? {
            row(found)?;
        }
        Ok(())
    }

    fn execute(&self, sql: &str, args: &[Arg<'_>]) -> Result<u64, StoreError> {
        let changed = self
            .prepare_cached(sql)?
            .execute(rusqlite::params_from_iter(args))?;
        Ok(changed as u64)
    }

    fn batch(&self, sql: &str) -> Result<(), StoreError> {
        Ok(self.execute_batch(sql)?)
    }
}

impl SqlRow for rusqlite::Row<'_> {
    fn text(&self, index: usize) -> Result<&str, StoreError> {
        Ok(self.get_ref(index)?.as_str()?)
    }
    fn opt_text(&self, index: usize) -> Result<Option<&str>, StoreError> {
        Ok(self.get_ref(index)?.as_str_or_null()?)
    }
    fn int(&self, index: usize) -> Result<i64, StoreError> {
        Ok(self.get(index)?)
    }
    fn opt_int(&self, index: usize) -> Result<Option<i64>, StoreError> {
        Ok(self.get(index)?)
    }
    fn opt_bool(&self, index: usize) -> Result<Option<bool>, StoreError> {
        Ok(self.get(index)?)
    }
    fn value(&self, index: usize) -> Result<Value, StoreError> {
        Ok(match self.get_ref(index)? {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(i) => Value::Int(i),
            ValueRef::Real(r) => Value::Text(r.to_string()),
            ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => Value::Text(format!("a blob of {} bytes", b.len())),
        })
    }
}
