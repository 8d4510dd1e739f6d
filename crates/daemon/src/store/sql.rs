//! The seam between the store's logic and its two engines, SQLite and PostgreSQL.
//!
//! The store's SQL is written once, over [`Db`]: a connection that runs a statement with
//! [`Arg`]s and hands each row to a reader as a [`SqlRow`]. Statements use SQLite's numbered
//! placeholders (`?1`, `?2`…); the PostgreSQL engine rewrites them to `$1`, `$2`… when it
//! prepares a statement. Where the two dialects differ (a JSON field, a planner hint, the
//! catalogue), the shared code asks [`Db::engine`] and says both: [`Engine::json_field`] is
//! the one such helper used in more than one place. Everything else an engine needs of its
//! own (opening, pragmas and checkpoints; the write lock, reconnecting, `LISTEN`) lives in
//! `sqlite/` and `postgres/`.

use super::StoreError;

/// Which engine a connection talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    /// The text of a top-level field of a JSON text column, as SQL.
    pub fn json_field(self, column: &str, field: &str) -> String {
        match self {
            Engine::Sqlite => format!("json_extract({column}, '$.{field}')"),
            Engine::Postgres => format!("({column}::json ->> '{field}')"),
        }
    }
}

/// A statement's parameter. The store binds nothing else: integers are 64-bit everywhere
/// (PostgreSQL's `bigint`), text is UTF-8, and a boolean is SQLite's 0/1.
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    Text(&'a str),
    OptText(Option<&'a str>),
    Int(i64),
    OptInt(Option<i64>),
    OptBool(Option<bool>),
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(text: &'a str) -> Self {
        Arg::Text(text)
    }
}

impl<'a> From<&'a String> for Arg<'a> {
    fn from(text: &'a String) -> Self {
        Arg::Text(text)
    }
}

impl From<i64> for Arg<'_> {
    fn from(value: i64) -> Self {
        Arg::Int(value)
    }
}

impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(text: Option<&'a str>) -> Self {
        Arg::OptText(text)
    }
}

/// A column's value as `verify` compares and shows it, the same whichever engine read it
/// (a boolean is the integer SQLite stores).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
}

/// One row of a result, read by column index.
pub trait SqlRow {
    fn text(&self, index: usize) -> Result<&str, StoreError>;
    fn opt_text(&self, index: usize) -> Result<Option<&str>, StoreError>;
    fn int(&self, index: usize) -> Result<i64, StoreError>;
    fn opt_int(&self, index: usize) -> Result<Option<i64>, StoreError>;
    fn opt_bool(&self, index: usize) -> Result<Option<bool>, StoreError>;
    fn value(&self, index: usize) -> Result<Value, StoreError>;

    fn bool(&self, index: usize) -> Result<bool, StoreError> {
        self.opt_bool(index)?
            .ok_or_else(|| StoreError::column(index, "NULL where a boolean was expected"))
    }
}

/// A connection, inside whatever transaction its owner began.
pub trait Db {
    fn engine(&self) -> Engine;

    /// Runs a query, calling `row` on each row in order. Statements are prepared once per
    /// connection and kept, looked up by their text.
    fn each(
        &self,
        sql: &str,
        args: &[Arg<'_>],
        row: &mut dyn FnMut(&dyn SqlRow) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;

    /// Runs a statement that returns no rows; the number of rows it changed.
    fn execute(&self, sql: &str, args: &[Arg<'_>]) -> Result<u64, StoreError>;

    /// Runs statements with neither parameters nor results (transaction control, DDL).
    fn batch(&self, sql: &str) -> Result<(), StoreError>;
}

impl dyn Db + '_ {
    /// The first row's reading, if there is a row.
    pub fn one<T>(
        &self,
        sql: &str,
        args: &[Arg<'_>],
        read: impl Fn(&dyn SqlRow) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let mut found = None;
        self.each(sql, args, &mut |row| {
            if found.is_none() {
                found = Some(read(row)?);
            }
            Ok(())
        })?;
        Ok(found)
    }

    /// Every row's reading, in order.
    pub fn all<T>(
        &self,
        sql: &str,
        args: &[Arg<'_>],
        read: impl Fn(&dyn SqlRow) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let mut found = Vec::new();
        self.each(sql, args, &mut |row| {
            found.push(read(row)?);
            Ok(())
        })?;
        Ok(found)
    }

    /// The reading of the one row a query always returns (an aggregate, `EXISTS`).
    pub fn value<T>(
        &self,
        sql: &str,
        args: &[Arg<'_>],
        read: impl Fn(&dyn SqlRow) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.one(sql, args, read)?
            .ok_or_else(|| StoreError::column(0, "no row where one was expected"))
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
pub(crate) use cached_sql;
