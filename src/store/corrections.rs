//! Agents' corrections of triage (migration 0010): what the rules saw and said for a
//! ticket, and the category and urgency the agents finally gave it. The pipeline records
//! one when an agent's `#category`/`#urgency` changes a ticket; `supportd triage report`
//! and `supportd triage tune` read them all.

use chrono::{DateTime, Utc};

use super::{args, exec, from_ts, query_all, ts, Store, StoreError, Tx};

/// One corrected ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Correction {
    pub ticket_id: i64,
    /// JSON of `triage::Evidence`: the rules and features that fired, hashed n-grams.
    pub features: String,
    /// ISO 639-1 code triage detected.
    pub language: String,
    pub rules_category: String,
    pub rules_urgency: u8,
    pub final_category: String,
    pub final_urgency: u8,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Tx {
    /// Records the agents' labels for a ticket. The first correction of a ticket stores what
    /// triage saw (`features`, `language`, the rules' labels); later ones only move the
    /// final labels and `updated_at`.
    pub fn save_correction(&mut self, c: &Correction) -> Result<(), StoreError> {
        exec(
            self.conn(),
            "INSERT INTO corrections (ticket_id, features, language, rules_category, rules_urgency,
                                      final_category, final_urgency, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (ticket_id) DO UPDATE SET final_category = excluded.final_category,
                 final_urgency = excluded.final_urgency, updated_at = excluded.updated_at",
            args![
                c.ticket_id,
                c.features,
                c.language,
                c.rules_category,
                c.rules_urgency,
                c.final_category,
                c.final_urgency,
                ts(c.created_at),
                ts(c.updated_at)
            ],
        )?;
        Ok(())
    }
}

impl Store {
    /// Every correction, oldest first.
    pub fn corrections(&self) -> Result<Vec<Correction>, StoreError> {
        self.with_conn(|conn| {
            query_all(
                conn,
                "SELECT ticket_id, features, language, rules_category, rules_urgency,
                        final_category, final_urgency, created_at, updated_at
                   FROM corrections ORDER BY created_at, id",
                args![],
                |r| {
                    let level = |col: &str| -> Result<u8, StoreError> {
                        let v: i64 = r.get(col)?;
                        u8::try_from(v)
                            .map_err(|_| StoreError::Corrupt(format!("corrections.{col} = {v}")))
                    };
                    Ok(Correction {
                        ticket_id: r.get("ticket_id")?,
                        features: r.get("features")?,
                        language: r.get("language")?,
                        rules_category: r.get("rules_category")?,
                        rules_urgency: level("rules_urgency")?,
                        final_category: r.get("final_category")?,
                        final_urgency: level("final_urgency")?,
                        created_at: from_ts(r.get("created_at")?),
                        updated_at: from_ts(r.get("updated_at")?),
                    })
                },
            )
        })
    }
}
