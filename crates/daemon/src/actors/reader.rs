//! Readers: a pool of synchronous actors, each with its own read-only connection. In WAL mode
//! they read the last committed state and never wait for the writer.

use std::marker::PhantomData;

use actix::prelude::*;
use rusqlite::Connection;

use crate::queries::ReadView;
use crate::store::StoreError;

pub struct Reader {
    conn: Connection,
}

impl Reader {
    pub fn new(conn: Connection) -> Self {
        Reader { conn }
    }
}

impl Actor for Reader {
    type Context = SyncContext<Self>;
}

/// A query: a function of a [`ReadView`], run on one of the readers' threads.
pub struct Read<F, R> {
    query: F,
    result: PhantomData<fn() -> R>,
}

impl<F, R> Read<F, R> {
    pub fn new(query: F) -> Self {
        Read {
            query,
            result: PhantomData,
        }
    }
}

impl<F, R> Message for Read<F, R>
where
    F: FnOnce(&ReadView) -> Result<R, StoreError> + Send + 'static,
    R: Send + 'static,
{
    type Result = Result<R, StoreError>;
}

impl<F, R> Handler<Read<F, R>> for Reader
where
    F: FnOnce(&ReadView) -> Result<R, StoreError> + Send + 'static,
    R: Send + 'static,
{
    type Result = Result<R, StoreError>;

    fn handle(&mut self, read: Read<F, R>, _: &mut Self::Context) -> Self::Result {
        (read.query)(&ReadView::new(&self.conn))
    }
}
