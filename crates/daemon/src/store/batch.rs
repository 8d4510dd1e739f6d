//! Group commit: a batch of commands decided and committed in one transaction.

use bindery_domain::*;
use rusqlite::{Connection, Transaction, TransactionBehavior};

use super::apply::apply_counting;
use super::transaction::in_savepoint;
use super::{
    deliveries, idempotency, log, rows, Committed, Envelope, Idempotency, Store, StoreError,
    WriteError,
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
    pub fn execute_with_records(
        &mut self,
        batch: &[Envelope],
        records: &[DeliveryRecord],
        now: Timestamp,
    ) -> (Vec<Result<Committed, WriteError>>, Result<(), WriteError>) {
        let tx = match self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
        {
            Ok(tx) => tx,
            Err(e) => return fail_all(batch, e.into()),
        };
        let mut results = Vec::with_capacity(batch.len());
        for envelope in batch {
            match in_savepoint(&tx, |savepoint| {
                run_command(savepoint, &mut self.sids, envelope, now)
            }) {
                Ok(result) => results.push(result),
                // Dropping the transaction rolls back the whole batch.
                Err(e) => return fail_all(batch, e),
            }
        }
        let recorded = if records.is_empty() {
            Ok(())
        } else {
            match in_savepoint(&tx, |savepoint| {
                deliveries::record(savepoint, records).map_err(|e| StoreError::from(e).into())
            }) {
                Ok(recorded) => recorded,
                Err(e) => return fail_all(batch, e),
            }
        };
        match finish(tx, batch, &results, now) {
            Ok(()) => (results, recorded),
            Err(e) => fail_all(batch, e),
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
    conn: &Connection,
    sids: &mut MonotonicSids,
    envelope: &Envelope,
    now: Timestamp,
) -> Result<Committed, WriteError> {
    if let Some(idem) = &envelope.idempotency {
        if let Some(answered) = remembered_answer(conn, idem, now)? {
            return Ok(answered);
        }
    }
    let mut committed = decide_and_append(conn, sids, envelope, now)?;
    if let Some(idem) = &envelope.idempotency {
        remember_answer(conn, idem, &mut committed, now)?;
    }
    Ok(committed)
}

/// The answer remembered for this key, if the same request used it within a day; refused if
/// a different request did.
fn remembered_answer(
    conn: &Connection,
    idem: &Idempotency,
    now: Timestamp,
) -> Result<Option<Committed>, WriteError> {
    let found = idempotency::lookup(conn, &idem.scope, &idem.key, now).map_err(StoreError::from)?;
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
    conn: &Connection,
    sids: &mut MonotonicSids,
    envelope: &Envelope,
    now: Timestamp,
) -> Result<Committed, WriteError> {
    let decision = match decide(&rows::SqlState(conn), sids, &envelope.command) {
        Ok(decision) => decision,
        Err(Refusal::Domain(e)) => return Err(e.into()),
        Err(Refusal::State(e)) => return Err(StoreError::from(e).into()),
    };
    let mut committed = Committed {
        created: decision.created,
        ..Committed::default()
    };
    for pending in &decision.events {
        let recorded = log::append(conn, pending, now, envelope.request_id.as_deref())?;
        let row = apply_counting(conn, &recorded, &mut committed.binding_changes)?;
        if row.is_none() && recorded.event.entity() == EntityKind::Binding {
            // Its delivery records (not events, so not replayed) go with it, in this
            // transaction: records of removed bindings never pile up.
            deliveries::forget_binding(conn, &recorded.stream).map_err(StoreError::from)?;
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
    conn: &Connection,
    idem: &Idempotency,
    committed: &mut Committed,
    now: Timestamp,
) -> Result<(), WriteError> {
    committed.response = (idem.render)(committed);
    if let Some(response) = &committed.response {
        idempotency::remember(
            conn,
            &idem.scope,
            &idem.key,
            &idem.fingerprint,
            response,
            now,
        )
        .map_err(StoreError::from)?;
    }
    Ok(())
}

/// Ends the batch: moves the projections' checkpoint to the last event appended, drops
/// answers older than a day (only when this batch may have remembered one), and commits.
fn finish(
    tx: Transaction,
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
        log::set_checkpoint(&tx, position)?;
    }
    if batch.iter().any(|e| e.idempotency.is_some()) {
        idempotency::expire(&tx, now)?;
    }
    tx.commit()?;
    Ok(())
}
