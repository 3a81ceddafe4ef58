//! Idempotency-Key records: a repeated write gets the first answer, not a
//! second effect.

use jiff::Timestamp;
use vouch_domain::ApiKeyId;

use crate::sql::{query, query_as};
use crate::{Result, Store, StoreError, micros, on_fast_each, on_write};

/// What a request with an Idempotency-Key should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyClaim {
    /// First sight of the key (or a stale claim taken over): do the work, then
    /// `complete_idempotency_key` or `release_idempotency_key`.
    New,
    /// Already answered: send this again.
    Replay { status: u16, body: String },
    /// Another request with this key is being handled right now.
    InFlight,
    /// The key was used for a different request.
    Mismatch,
}

/// A claim not completed within this time belongs to a process that died: a
/// retry may take it over.
const STALE_MICROS: i64 = 60 * 1_000_000;

impl Store {
    pub async fn claim_idempotency_key(
        &self,
        api_key: ApiKeyId,
        key: &str,
        request_hash: &str,
        now: Timestamp,
    ) -> Result<IdempotencyClaim> {
        on_fast_each!(self, conn, StoreError => {
            let inserted = query(
                "INSERT INTO idempotency_keys (api_key_id, key, request_hash, status, created_at)
                 VALUES ($1, $2, $3, 0, $4) ON CONFLICT (api_key_id, key) DO NOTHING",
            )
            .bind(api_key.0)
            .bind(key)
            .bind(request_hash)
            .bind(micros(now))
            .execute(&mut *conn)
            .await?;
            if inserted.rows_affected() == 1 {
                return Ok(IdempotencyClaim::New);
            }
            let (hash, status, body, created_at): (String, i32, Option<String>, i64) = query_as(
                "SELECT request_hash, status, body, created_at FROM idempotency_keys WHERE api_key_id = $1 AND key = $2",
            )
            .bind(api_key.0)
            .bind(key)
            .fetch_one(&mut *conn)
            .await?;
            if hash != request_hash {
                return Ok(IdempotencyClaim::Mismatch);
            }
            if status != 0 {
                let status = u16::try_from(status).unwrap_or(500);
                return Ok(IdempotencyClaim::Replay { status, body: body.unwrap_or_default() });
            }
            if created_at + STALE_MICROS < micros(now) {
                // Compare-and-set on the old claim time: of several retries, one wins.
                let taken = query(
                    "UPDATE idempotency_keys SET created_at = $3
                     WHERE api_key_id = $1 AND key = $2 AND status = 0 AND created_at = $4",
                )
                .bind(api_key.0)
                .bind(key)
                .bind(micros(now))
                .bind(created_at)
                .execute(&mut *conn)
                .await?;
                if taken.rows_affected() == 1 {
                    return Ok(IdempotencyClaim::New);
                }
            }
            Ok(IdempotencyClaim::InFlight)
        })
    }

    /// Records the answer to replay.
    pub async fn complete_idempotency_key(&self, api_key: ApiKeyId, key: &str, status: u16, body: &str) -> Result<()> {
        on_fast_each!(self, conn, StoreError => {
            query("UPDATE idempotency_keys SET status = $3, body = $4 WHERE api_key_id = $1 AND key = $2")
                .bind(api_key.0)
                .bind(key)
                .bind(i32::from(status))
                .bind(body)
                .execute(&mut *conn)
                .await?;
            Ok(())
        })
    }

    /// Forgets a claim whose request failed on our side, so a retry can run.
    pub async fn release_idempotency_key(&self, api_key: ApiKeyId, key: &str) -> Result<()> {
        on_fast_each!(self, conn, StoreError => {
            query("DELETE FROM idempotency_keys WHERE api_key_id = $1 AND key = $2 AND status = 0")
                .bind(api_key.0)
                .bind(key)
                .execute(&mut *conn)
                .await?;
            Ok(())
        })
    }

    /// Drops records older than `before` (kept at least 24 hours by the caller).
    pub async fn purge_idempotency_keys(&self, before: Timestamp) -> Result<u64> {
        let done = on_write!(self, p => sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(micros(before))
            .execute(p)
            .await?
            .rows_affected());
        Ok(done)
    }
}
