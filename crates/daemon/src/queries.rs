//! The read side: typed queries over the projections, run by the reader actors.

use bindery_domain::*;
use rusqlite::Connection;

use crate::secrets;
use crate::store::rows::{self, SqlState};
use crate::store::StoreError;

/// A read-only view of the projections on one connection.
pub struct ReadView<'c> {
    conn: &'c Connection,
}

impl<'c> ReadView<'c> {
    pub fn new(conn: &'c Connection) -> Self {
        ReadView { conn }
    }

    fn state(&self) -> SqlState<'c> {
        SqlState(self.conn)
    }

    /// The account that `username:password` (HTTP Basic) signs in as: an account SID with its
    /// auth token, or an API key SID with its secret. `None` for anything else.
    pub fn authenticate(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<AccountSid>, StoreError> {
        if let Ok(sid) = AccountSid::parse(username) {
            let account = self.state().account(&sid)?;
            return Ok(account
                .filter(|a| secrets::matches(password, &a.auth_token_hash))
                .map(|a| a.sid));
        }
        if let Ok(sid) = ApiKeySid::parse(username) {
            let key = self.state().api_key(&sid)?;
            return Ok(key
                .filter(|k| secrets::matches(password, &k.secret_hash))
                .map(|k| k.account_sid));
        }
        Ok(None)
    }

    pub fn accounts(&self) -> Result<Vec<Account>, StoreError> {
        let mut statement = self.conn.prepare_cached(&format!(
            "SELECT {} FROM accounts ORDER BY sid",
            rows::ACCOUNT_COLUMNS
        ))?;
        let accounts = statement
            .query_map([], rows::account)?
            .collect::<Result<_, _>>()?;
        Ok(accounts)
    }

    pub fn has_accounts(&self) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT EXISTS (SELECT 1 FROM accounts)", [], |r| r.get(0))?)
    }
}
