//! Group commit: a batch of commands decided and committed in one transaction.

use bindery_domain::*;
use rusqlite::TransactionBehavior;

use super::apply::apply_counting;
use super::transaction::in_savepoint;
use super::{idempotency, log, rows, Committed, Envelope, Store, StoreError, WriteError};

impl Store {
    /// Decides and commits a batch of commands in one transaction: one fsync for all of them.
    /// Each command runs in its own savepoint, so a refused or failing command rolls back alone.
    /// If the commit itself fails, every command fails.
    pub fn execute(
        &mut self,
        batch: &[Envelope],
        now: Timestamp,
    ) -> Vec<Result<Committed, WriteError>> {
        let fail_all = |e: StoreError| {
            let error = WriteError::from(e);
            batch.iter().map(|_| Err(error.clone())).collect()
        };
        let tx = match self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
        {
            Ok(tx) => tx,
            Err(e) => return fail_all(e.into()),
        };
        let mut results = Vec::with_capacity(batch.len());
        let mut last_position = None;
        for envelope in batch {
            let result = in_savepoint(&tx, |savepoint| -> Result<Committed, WriteError> {
                if let Some(idem) = &envelope.idempotency {
                    let found = idempotency::lookup(savepoint, &idem.scope, &idem.key, now)
                        .map_err(StoreError::from)?;
                    match found {
                        Some(seen) if seen.fingerprint == idem.fingerprint => {
                            return Ok(Committed {
                                response: Some(seen.response),
                                ..Committed::default()
                            });
                        }
                        Some(_) => return Err(WriteError::KeyReused(idem.key.clone())),
                        None => {}
                    }
                }
                let state = rows::SqlState(savepoint);
                let decision = match decide(&state, &mut self.sids, &envelope.command) {
                    Ok(decision) => decision,
                    Err(Refusal::Domain(e)) => return Err(e.into()),
                    Err(Refusal::State(e)) => return Err(StoreError::from(e).into()),
                };
                let mut committed = Committed {
                    created: decision.created,
                    ..Committed::default()
                };
                for pending in &decision.events {
                    let recorded =
                        log::append(savepoint, pending, now, envelope.request_id.as_deref())?;
                    let row = apply_counting(savepoint, &recorded, &mut committed.binding_changes)?;
                    if recorded.stream == decision.subject {
                        committed.row = row;
                    }
                    committed.events.push(recorded);
                }
                if let Some(idem) = &envelope.idempotency {
                    committed.response = (idem.render)(&committed);
                    if let Some(response) = &committed.response {
                        idempotency::remember(
                            savepoint,
                            &idem.scope,
                            &idem.key,
                            &idem.fingerprint,
                            response,
                            now,
                        )
                        .map_err(StoreError::from)?;
                    }
                }
                Ok(committed)
            });
            // Dropping the transaction rolls back the whole batch.
            let result = match result {
                Ok(result) => result,
                Err(e) => return fail_all(e),
            };
            if let Ok(committed) = &result {
                last_position = committed
                    .events
                    .last()
                    .map(|e| e.position)
                    .or(last_position);
            }
            results.push(result);
        }
        let remembered = batch.iter().any(|e| e.idempotency.is_some());
        let finish = |tx: rusqlite::Transaction| -> Result<(), StoreError> {
            if let Some(position) = last_position {
                log::set_checkpoint(&tx, position)?;
            }
            if remembered {
                idempotency::expire(&tx, now)?;
            }
            tx.commit()?;
            Ok(())
        };
        match finish(tx) {
            Ok(()) => results,
            Err(e) => fail_all(e),
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
