//! Applying recorded events to the projection tables, with the domain's pure `project` rule:
//! by a command as it commits, and by a replay.

use bindery_domain::{project, RecordedEvent, Row};

use super::sql::Db;
use super::{rows, BindingCounts, StoreError};

/// Applies one recorded event to the projection tables, returning the stream's new row.
pub(super) fn apply(db: &dyn Db, recorded: &RecordedEvent) -> Result<Option<Row>, StoreError> {
    apply_counting(db, recorded, &mut BindingCounts::default())
}

/// [`apply`], adding to `counts` the binding it created (+1) or removed (-1).
pub(super) fn apply_counting(
    db: &dyn Db,
    recorded: &RecordedEvent,
    counts: &mut BindingCounts,
) -> Result<Option<Row>, StoreError> {
    let kind = recorded.event.entity();
    let current = if recorded.event.is_creation() {
        None
    } else {
        rows::load(db, kind, &recorded.stream)?
    };
    if let Some(Row::Binding(removed)) = &current {
        counts.add(removed.binding_type, -1);
    }
    let row = project(current, recorded)?;
    match &row {
        Some(row) => rows::store(db, row)?,
        None => rows::remove(db, kind, &recorded.stream)?,
    }
    if let Some(Row::Binding(binding)) = &row {
        counts.add(binding.binding_type, 1);
    }
    Ok(row)
}
