//! An in-memory registry: the projection rules folded over events into maps. It is the model
//! the decisions are tested against (given/when/then) and that property tests compare the SQL
//! store with.

use std::collections::BTreeMap;
use std::convert::Infallible;

use crate::commands::Command;
use crate::decide::{decide, Decided, NewSids, State};
use crate::entities::*;
use crate::events::{PendingEvent, RecordedEvent};
use crate::ids::*;
use crate::projection::{project, ProjectionError};
use crate::values::*;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryState {
    pub rows: BTreeMap<String, Row>,
    pub log: Vec<RecordedEvent>,
}

impl MemoryState {
    /// Folds an event into the state, as the store's projection does.
    pub fn apply(&mut self, recorded: &RecordedEvent) -> Result<(), ProjectionError> {
        let current = self.rows.remove(&recorded.stream);
        if let Some(row) = project(current, recorded)? {
            self.rows.insert(recorded.stream.clone(), row);
        }
        self.log.push(recorded.clone());
        Ok(())
    }

    /// Records pending events at `at`, numbering them as the store does, and applies them.
    pub fn append(
        &mut self,
        events: &[PendingEvent],
        at: Timestamp,
    ) -> Result<(), ProjectionError> {
        for event in events {
            let stream_version =
                self.log.iter().filter(|e| e.stream == event.stream).count() as i64 + 1;
            let recorded = RecordedEvent {
                position: self.log.len() as i64 + 1,
                stream: event.stream.clone(),
                stream_version,
                account_sid: event.account_sid,
                service_sid: event.service_sid,
                recorded_at: at,
                request_id: None,
                event: event.event.clone(),
            };
            self.apply(&recorded)?;
        }
        Ok(())
    }

    /// Decides a command and, when accepted, appends its events.
    pub fn execute(
        &mut self,
        ids: &mut impl NewSids,
        command: &Command,
        at: Timestamp,
    ) -> Decided<Infallible> {
        let decision = decide(self, ids, command)?;
        self.append(&decision.events, at)
            .expect("decided events project");
        Ok(decision)
    }

    fn rows<'a, T: 'a>(
        &'a self,
        pick: fn(&'a Row) -> Option<&'a T>,
    ) -> impl Iterator<Item = &'a T> {
        self.rows.values().filter_map(pick)
    }

    pub fn bindings(&self) -> impl Iterator<Item = &Binding> {
        self.rows(|r| {
            if let Row::Binding(b) = r {
                Some(b)
            } else {
                None
            }
        })
    }

    pub fn users(&self) -> impl Iterator<Item = &User> {
        self.rows(|r| if let Row::User(u) = r { Some(u) } else { None })
    }

    fn get<T: Clone>(
        &self,
        sid: &str,
        pick: fn(&Row) -> Option<&T>,
    ) -> Result<Option<T>, Infallible> {
        Ok(self.rows.get(sid).and_then(pick).cloned())
    }
}

impl State for MemoryState {
    type Error = Infallible;

    fn account(&self, sid: &AccountSid) -> Result<Option<Account>, Infallible> {
        self.get(sid.as_str(), |r| {
            if let Row::Account(a) = r {
                Some(a)
            } else {
                None
            }
        })
    }
    fn api_key(&self, sid: &ApiKeySid) -> Result<Option<ApiKey>, Infallible> {
        self.get(sid.as_str(), |r| {
            if let Row::ApiKey(a) = r {
                Some(a)
            } else {
                None
            }
        })
    }
    fn service(&self, sid: &ServiceSid) -> Result<Option<Service>, Infallible> {
        self.get(sid.as_str(), |r| {
            if let Row::Service(s) = r {
                Some(s)
            } else {
                None
            }
        })
    }
    fn credential(&self, sid: &CredentialSid) -> Result<Option<Credential>, Infallible> {
        self.get(sid.as_str(), |r| {
            if let Row::Credential(c) = r {
                Some(c)
            } else {
                None
            }
        })
    }
    fn user(&self, sid: &UserSid) -> Result<Option<User>, Infallible> {
        self.get(sid.as_str(), |r| {
            if let Row::User(u) = r {
                Some(u)
            } else {
                None
            }
        })
    }
    fn user_by_identity(
        &self,
        service: &ServiceSid,
        identity: &Identity,
    ) -> Result<Option<User>, Infallible> {
        Ok(self
            .users()
            .find(|u| u.service_sid == *service && u.identity == *identity)
            .cloned())
    }
    fn binding(&self, sid: &BindingSid) -> Result<Option<Binding>, Infallible> {
        self.get(sid.as_str(), |r| {
            if let Row::Binding(b) = r {
                Some(b)
            } else {
                None
            }
        })
    }
    fn binding_at_endpoint(
        &self,
        user: &UserSid,
        endpoint: &Endpoint,
        binding_type: BindingType,
    ) -> Result<Option<Binding>, Infallible> {
        Ok(self
            .bindings()
            .find(|b| {
                b.user_sid == *user && b.endpoint == *endpoint && b.binding_type == binding_type
            })
            .cloned())
    }
    fn binding_holding(
        &self,
        service: &ServiceSid,
        binding_type: BindingType,
        address: &PushAddress,
    ) -> Result<Option<Binding>, Infallible> {
        Ok(self
            .bindings()
            .find(|b| {
                b.service_sid == *service && b.binding_type == binding_type && b.address == *address
            })
            .cloned())
    }
    fn has_accounts(&self) -> Result<bool, Infallible> {
        Ok(self.rows.values().any(|r| matches!(r, Row::Account(_))))
    }
    fn count_bindings_of_user(&self, user: &UserSid) -> Result<u64, Infallible> {
        Ok(self.bindings().filter(|b| b.user_sid == *user).count() as u64)
    }
    fn bindings_of_user(&self, user: &UserSid) -> Result<Vec<BindingSid>, Infallible> {
        Ok(self
            .bindings()
            .filter(|b| b.user_sid == *user)
            .map(|b| b.sid)
            .collect())
    }
    fn bindings_of_service(&self, service: &ServiceSid) -> Result<Vec<BindingSid>, Infallible> {
        Ok(self
            .bindings()
            .filter(|b| b.service_sid == *service)
            .map(|b| b.sid)
            .collect())
    }
    fn users_of_service(&self, service: &ServiceSid) -> Result<Vec<UserSid>, Infallible> {
        Ok(self
            .users()
            .filter(|u| u.service_sid == *service)
            .map(|u| u.sid)
            .collect())
    }
    fn stale_bindings(
        &self,
        older_than: Timestamp,
        limit: u32,
    ) -> Result<Vec<Binding>, Infallible> {
        let mut stale: Vec<Binding> = self
            .bindings()
            .filter(|b| b.date_updated < older_than)
            .cloned()
            .collect();
        stale.sort_by_key(|b| (b.date_updated, b.sid));
        stale.truncate(limit as usize);
        Ok(stale)
    }
}

/// SIDs from a counter: deterministic, and increasing like the daemon's.
#[derive(Debug, Default)]
pub struct CountingSids(u128);

impl NewSids for CountingSids {
    fn new_sid<K: SidKind>(&mut self) -> Sid<K> {
        self.0 += 1;
        Sid::from_bytes(self.0.to_be_bytes())
    }
}
