//! Group commit: a batch of commands decided and committed in one transaction.

use bindery_domain::*;

use super::apply::apply_counting;
use super::sql::{Db, Engine};
use super::transaction::in_savepoint;
use super::{
    deliveries, idempotency, log, postgres, rows, Committed, Envelope, Idempotency, Store,
    StoreError, WriteError,
};
use crate::records::DeliveryRecord;
use crate::sids::MonotonicSids;

impl Store {
    /// Decides and commits a batch of commands in one transaction: one fsync for all of them.
    /// Each command runs in its own savepoint, so a refused or failing command rolls back alone.
    /// If the commit itself fails, every command fails.
    pub fn execute(
        &mut self,
        batch: &[Envelope],
        now: Timestamp,
    ) -> Vec<Result<Committed, WriteError>> {
        self.execute_with_records(batch, &[], now).0
    }

    /// [`Store::execute`], then writes delivery records in the same transaction, after the
    /// commands (so a binding a command of the batch removed gets none), in a savepoint of
    /// their own: failing, they roll back alone and the commands still commit. The second
    /// result is the records'.
    ///
    /// On PostgreSQL a batch that failed before its commit because the database could not
    /// take it (the connection lost, a failover, a serialization failure) runs again, on a
    /// new connection, while `storage.busy_timeout` allows: nothing of it had committed. A
    /// commit that fails is not run again, since whether it committed is unknown: its callers
    /// hear "unavailable", and an `Idempotency-Key` makes their retry safe.
    pub fn execute_with_records(
        &mut self,
        batch: &[Envelope],
        records: &[DeliveryRecord],
        now: Timestamp,
    ) -> (Vec<Result<Committed, WriteError>>, Result<(), WriteError>) {
        let started = std::time::Instant::now();
        let mut tries = 1;
        loop {
            match self.try_batch(batch, records, now) {
                Ok(done) => return done,
                Err(e)
                    if e.is_unavailable()
                        && tries < MAX_TRIES
                        && self.retry_within().is_some_and(|t| started.elapsed() < t) =>
                {
                    tracing::warn!(error = %e, tries, "the batch did not commit; running it again");
                    tries += 1;
                }
                Err(e) => return fail_all(batch, e),
            }
        }
    }

    /// One run of a batch. `Err` when it failed before its commit (nothing of it committed).
    #[allow(clippy::type_complexity)]
    fn try_batch(
        &mut self,
        batch: &[Envelope],
        records: &[DeliveryRecord],
        now: Timestamp,
    ) -> Result<(Vec<Result<Committed, WriteError>>, Result<(), WriteError>), StoreError> {
        let mut head = self.begin_write()?;
        let (db, sids) = self.db_and_sids();
        let mut run = || -> Result<_, StoreError> {
            let mut results = Vec::with_capacity(batch.len());
            for envelope in batch {
                let before = head;
                let result = in_savepoint(db, |savepoint| {
                    run_command(savepoint, sids, &mut head, envelope, now)
                })?;
                if result.is_err() {
                    // Its events rolled back with its savepoint, and their positions are free.
                    head = before;
                }
                results.push(result);
            }
            let recorded = if records.is_empty() {
                Ok(())
            } else {
                in_savepoint(db, |savepoint| Ok(deliveries::record(savepoint, records)?))?
            };
            finish(db, batch, &results, now)?;
            Ok((results, recorded))
        };
        match run() {
            Ok((results, recorded)) => Ok(match self.commit_write() {
                Ok(()) => (results, recorded),
                Err(e) => fail_all(batch, e),
            }),
            Err(e) => {
                self.rollback_write();
                Err(e)
            }
        }
    }

    /// Runs one command in a transaction of its own.
    pub fn execute_one(
        &mut self,
        envelope: Envelope,
        now: Timestamp,
    ) -> Result<Committed, WriteError> {
        self.execute(std::slice::from_ref(&envelope), now)
            .pop()
            .expect("one result per command")
    }
}

/// How many times a batch is run before its callers hear that the database is unavailable.
const MAX_TRIES: u32 = 3;

/// The same failure for every command of the batch and its records: nothing of it committed.
fn fail_all(
    batch: &[Envelope],
    error: StoreError,
) -> (Vec<Result<Committed, WriteError>>, Result<(), WriteError>) {
    let error = WriteError::from(error);
    (
        batch.iter().map(|_| Err(error.clone())).collect(),
        Err(error),
    )
}

/// One command, inside its savepoint: answered from its idempotency key when the same request
/// was seen, else decided, appended, projected and (with a key) remembered.
fn run_command(
    db: &dyn Db,
    sids: &mut MonotonicSids,
    head: &mut i64,
    envelope: &Envelope,
    now: Timestamp,
) -> Result<Committed, WriteError> {
    if let Some(idem) = &envelope.idempotency {
        if let Some(answered) = remembered_answer(db, idem, now)? {
            return Ok(answered);
        }
    }
    let mut committed = decide_and_append(db, sids, head, envelope, now)?;
    if let Some(idem) = &envelope.idempotency {
        remember_answer(db, idem, &mut committed, now)?;
    }
    Ok(committed)
}

/// The answer remembered for this key, if the same request used it within a day; refused if
/// a different request did.
fn remembered_answer(
    db: &dyn Db,
    idem: &Idempotency,
    now: Timestamp,
) -> Result<Option<Committed>, WriteError> {
    let found = idempotency::lookup(db, &idem.scope, &idem.key, now)?;
    match found {
        Some(seen) if seen.fingerprint == idem.fingerprint => Ok(Some(Committed {
            response: Some(seen.response),
            ..Committed::default()
        })),
        Some(_) => Err(WriteError::KeyReused(idem.key.clone())),
        None => Ok(None),
    }
}

/// Decides the command against the projections, then appends each event to the log and
/// applies it to them.
fn decide_and_append(
    db: &dyn Db,
    sids: &mut MonotonicSids,
    head: &mut i64,
    envelope: &Envelope,
    now: Timestamp,
) -> Result<Committed, WriteError> {
    let decision = match decide(&rows::SqlState(db), sids, &envelope.command) {
        Ok(decision) => decision,
        Err(Refusal::Domain(e)) => return Err(e.into()),
        Err(Refusal::State(e)) => return Err(e.into()),
    };
    let mut committed = Committed {
        created: decision.created,
        ..Committed::default()
    };
    for pending in &decision.events {
        *head += 1;
        let recorded = log::append(db, pending, *head, now, envelope.request_id.as_deref())?;
        let row = apply_counting(db, &recorded, &mut committed.binding_changes)?;
        if row.is_none() && recorded.event.entity() == EntityKind::Binding {
            // Its delivery records (not events, so not replayed) go with it, in this
            // transaction: records of removed bindings never pile up.
            deliveries::forget_binding(db, &recorded.stream)?;
        }
        if recorded.stream == decision.subject {
            committed.row = row;
        }
        committed.events.push(recorded);
    }
    Ok(committed)
}

/// Renders the committed command's answer and remembers it under its key.
fn remember_answer(
    db: &dyn Db,
    idem: &Idempotency,
    committed: &mut Committed,
    now: Timestamp,
) -> Result<(), WriteError> {
    committed.response = (idem.render)(committed);
    if let Some(response) = &committed.response {
        idempotency::remember(db, &idem.scope, &idem.key, &idem.fingerprint, response, now)?;
    }
    Ok(())
}

/// Ends the batch before its commit: moves the projections' checkpoint to the last event
/// appended, and drops answers older than a day (only when this batch may have remembered
/// one).
fn finish(
    db: &dyn Db,
    batch: &[Envelope],
    results: &[Result<Committed, WriteError>],
    now: Timestamp,
) -> Result<(), StoreError> {
    let last_position = results
        .iter()
        .rev()
        .flatten()
        .find_map(|committed| committed.events.last())
        .map(|event| event.position);
    if let Some(position) = last_position {
        log::set_checkpoint(db, position)?;
    }
    if db.engine() == Engine::Postgres {
        if let Some(notice) = postgres::Notice::of(results.iter().flatten()) {
            postgres::notify(db, &notice)?;
        }
    }
    if batch.iter().any(|e| e.idempotency.is_some()) {
        idempotency::expire(db, now)?;
    }
    Ok(())
}
