//! Bindings counted by type: for the `bindings` gauge at start, and as each command changes it.

use bindery_domain::BindingType;
use serde::{Deserialize, Serialize};

use super::sql::Db;
use super::{Store, StoreError};

/// How many bindings of each type a command added (or removed, when negative).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindingCounts([i64; 3]);

impl BindingCounts {
    fn index(binding_type: BindingType) -> usize {
        match binding_type {
            BindingType::Apn => 0,
            BindingType::Gcm => 1,
            BindingType::Fcm => 2,
        }
    }
    pub fn add(&mut self, binding_type: BindingType, change: i64) {
        self.0[Self::index(binding_type)] += change;
    }
    pub fn get(&self, binding_type: BindingType) -> i64 {
        self.0[Self::index(binding_type)]
    }
    /// Adds another command's changes to these.
    pub fn add_all(&mut self, other: &BindingCounts) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            *mine += theirs;
        }
    }
}

impl Store {
    /// The bindings stored, by type.
    pub fn binding_counts(&self) -> Result<BindingCounts, StoreError> {
        binding_counts(self.db())
    }
}

/// The bindings stored, by type, as `db` sees them.
pub fn binding_counts(db: &dyn Db) -> Result<BindingCounts, StoreError> {
    // One pass with a count per type. GROUP BY would sort every row first, and in memory
    // (SQLite's temp_store = MEMORY): with a million bindings that left the heap 50 MB
    // larger after start-up.
    let counts: Vec<String> = BindingType::ALL
        .iter()
        .map(|t| format!("count(*) FILTER (WHERE binding_type = '{}')", t.as_str()))
        .collect();
    let sql = format!("SELECT {} FROM bindings", counts.join(", "));
    db.value(&sql, &[], |row| {
        let mut counts = BindingCounts::default();
        for (i, binding_type) in BindingType::ALL.into_iter().enumerate() {
            counts.add(binding_type, row.int(i)?);
        }
        Ok(counts)
    })
}
