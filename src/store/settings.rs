//! Small facts supportd keeps about itself (the `settings` table), by key.

use chrono::{DateTime, Utc};

use super::{args, exec, query_opt, ts, Store, StoreError};

impl Store {
    /// The value stored under `key`, if any.
    pub fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.with_conn(|c| {
            query_opt(
                c,
                "SELECT value FROM settings WHERE key = ?1",
                args![key],
                |r| r.get("value"),
            )
        })
    }

    /// Stores `value` under `key`, replacing what was there.
    pub fn set_setting(&self, key: &str, value: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.with_conn(|c| {
            exec(
                c,
                "INSERT INTO settings (key, value, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value,
                     updated_at = excluded.updated_at",
                args![key, value, ts(at)],
            )?;
            Ok(())
        })
    }
}
