//! The transactional outbox: every change that must tell someone (an email, later
//! a webhook) writes an outbox row in the same transaction as the change, through
//! `enqueue!`; a worker claims due rows, delivers them, and reports back with
//! [`Store::outbox_delivered`] or [`Store::outbox_failed`]. A change that rolls
//! back takes its rows with it, so nothing is sent for it.
//!
//! Claiming pushes a row's `next_attempt_at` forward by a lease and counts the
//! attempt, in one statement: two workers (or replicas) never hold the same row,
//! and a worker that dies mid-delivery only delays its rows by the lease.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use vouch_domain::Email;

use crate::sql::{query, query_as};
use crate::{Result, Store, StoreError, micros, on_fast_each, on_read, on_write, timestamp};

/// The kind of every email row.
pub const EMAIL: &str = "email";

/// Where a row stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutboxStatus {
    /// Waiting for its next attempt (at `next_attempt_at`).
    Pending,
    Delivered,
    /// Gave up after the attempt cap, or on an error no retry mends: kept for staff to see.
    Dead,
}

impl OutboxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "dead" => Some(Self::Dead),
            _ => None,
        }
    }
}

/// An email waiting in the outbox (the payload of a row of kind [`EMAIL`]): what
/// to say and to whom, not how it looks; the server renders it at delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "template", rename_all = "snake_case")]
pub enum MailPayload {
    /// To a new participant: hello, and their link.
    Welcome {
        to: String,
        name: String,
        /// The program's slug.
        program: String,
        code: String,
    },
    /// To a prospect a referrer invited: the referrer's personal message, their
    /// link, and a way to never be invited again.
    Invite {
        to: String,
        /// The referrer's name.
        referrer_name: String,
        program: String,
        /// The referrer's code: the link attributes the prospect.
        code: String,
        /// The referrer's own words, plain text (escaped wherever shown).
        message: Option<String>,
        /// The token of `{public_url}/unsubscribe/{token}`, made by the server.
        unsubscribe_token: String,
    },
    /// To a referrer: the lead they handed over arrived and counts.
    LeadReceived {
        to: String,
        /// The referrer's name.
        name: String,
        program: String,
        /// The prospect as the referrer knows them (name, else email).
        prospect: String,
    },
    /// To a referrer: their referral moved along the pipeline (a staff move or a
    /// fact), when their preference asks for the news.
    StageUpdate {
        to: String,
        /// The referrer's name.
        name: String,
        program: String,
        prospect: String,
        /// The stage reached (`contacted`, `won`, ...).
        stage: String,
    },
}

impl MailPayload {
    /// The recipient's address.
    pub fn to(&self) -> &str {
        match self {
            Self::Welcome { to, .. }
            | Self::Invite { to, .. }
            | Self::LeadReceived { to, .. }
            | Self::StageUpdate { to, .. } => to,
        }
    }

    pub fn template(&self) -> &'static str {
        match self {
            Self::Welcome { .. } => "welcome",
            Self::Invite { .. } => "invite",
            Self::LeadReceived { .. } => "lead_received",
            Self::StageUpdate { .. } => "stage_update",
        }
    }

    /// The program's slug.
    pub fn program(&self) -> &str {
        match self {
            Self::Welcome { program, .. }
            | Self::Invite { program, .. }
            | Self::LeadReceived { program, .. }
            | Self::StageUpdate { program, .. } => program,
        }
    }

    /// The recipient's display name, when known (an invited prospect has none).
    pub fn recipient_name(&self) -> Option<&str> {
        match self {
            Self::Welcome { name, .. } | Self::LeadReceived { name, .. } | Self::StageUpdate { name, .. } => Some(name),
            Self::Invite { .. } => None,
        }
    }
}

/// One outbox row.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxItem {
    pub id: Uuid,
    pub kind: String,
    pub payload: serde_json::Value,
    pub status: OutboxStatus,
    /// Attempts started so far (claiming counts one).
    pub attempts: i64,
    pub next_attempt_at: Timestamp,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub delivered_at: Option<Timestamp>,
}

impl OutboxItem {
    /// The email this row carries, for rows of kind [`EMAIL`].
    pub fn mail(&self) -> Option<Result<MailPayload>> {
        (self.kind == EMAIL).then(|| {
            serde_json::from_value(self.payload.clone())
                .map_err(|e| StoreError::Corrupt(format!("outbox {}: payload: {e}", self.id)))
        })
    }
}

/// What happens after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxRetry {
    /// Try again at this instant.
    At(Timestamp),
    /// Give up: the row becomes `dead`.
    Dead,
}

crate::sql::lite_row! {
    #[derive(sqlx::FromRow)]
    struct OutboxRow {
        id: Uuid,
        kind: String,
        payload: String,
        status: String,
        attempts: i64,
        next_attempt_at: i64,
        last_error: Option<String>,
        created_at: i64,
        delivered_at: Option<i64>,
    }
}

impl TryFrom<OutboxRow> for OutboxItem {
    type Error = StoreError;
    fn try_from(r: OutboxRow) -> Result<Self> {
        let corrupt = |what: String| StoreError::Corrupt(format!("outbox {}: {what}", r.id));
        Ok(OutboxItem {
            payload: serde_json::from_str(&r.payload).map_err(|e| corrupt(format!("payload: {e}")))?,
            status: OutboxStatus::parse(&r.status).ok_or_else(|| corrupt(format!("status {}", r.status)))?,
            next_attempt_at: timestamp(r.next_attempt_at)?,
            created_at: timestamp(r.created_at)?,
            delivered_at: r.delivered_at.map(timestamp).transpose()?,
            id: r.id,
            kind: r.kind,
            attempts: r.attempts,
            last_error: r.last_error,
        })
    }
}

const COLUMNS: &str = "id, kind, payload, status, attempts, next_attempt_at, last_error, created_at, delivered_at";

pub(crate) const INSERT_OUTBOX: &str =
    "INSERT INTO outbox (id, kind, payload, status, attempts, next_attempt_at, created_at)
     VALUES ($1, $2, $3, 'pending', 0, $4, $4)";

/// Claims up to `$3` rows due at `$1`, moving them `$2` (now + lease) ahead and
/// counting the attempt. Postgres: `FOR UPDATE SKIP LOCKED`, so concurrent
/// claimers pass over each other's rows instead of waiting for them or taking
/// them twice. SQLite has one writer connection: the statement runs alone, and
/// the same UPDATE ... RETURNING without the locking clause is enough.
const CLAIM_POSTGRES: &str = "UPDATE outbox SET next_attempt_at = $2, attempts = attempts + 1
     WHERE id IN (SELECT id FROM outbox WHERE status = 'pending' AND kind = 'email' AND next_attempt_at <= $1
                  ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED)
     RETURNING id, kind, payload, status, attempts, next_attempt_at, last_error, created_at, delivered_at";
const CLAIM_SQLITE: &str = "UPDATE outbox SET next_attempt_at = $2, attempts = attempts + 1
     WHERE id IN (SELECT id FROM outbox WHERE status = 'pending' AND kind = 'email' AND next_attempt_at <= $1
                  ORDER BY next_attempt_at, id LIMIT $3)
     RETURNING id, kind, payload, status, attempts, next_attempt_at, last_error, created_at, delivered_at";

/// Writes a pending outbox row, due at once, on `$exec`: pass the transaction of
/// the change that causes it (`&mut *tx`) inside `on_write!`, so the statement is
/// checked against both engines' connections. Evaluates to the `execute` future.
/// The id comes from the caller (the store mints no randomness); naming a row
/// after the record that causes it makes a second row for the same cause
/// impossible. (A macro rather than a function generic over `sqlx::Executor`:
/// such a function's future is not provably `Send`, rust-lang/rust#64552.)
macro_rules! enqueue {
    ($exec:expr, $id:expr, $kind:expr, $payload:expr, $now:expr) => {
        $crate::sql::query($crate::outbox::INSERT_OUTBOX)
            .bind($id)
            .bind(String::from($kind))
            .bind(serde_json::Value::to_string($payload))
            .bind($crate::micros($now))
            .execute($exec)
    };
}
pub(crate) use enqueue;

fn items(rows: Vec<OutboxRow>) -> Result<Vec<OutboxItem>> {
    let mut items = rows.into_iter().map(OutboxItem::try_from).collect::<Result<Vec<_>>>()?;
    // RETURNING promises no order.
    items.sort_by_key(|i| (i.created_at, i.id));
    Ok(items)
}

impl Store {
    /// Claims up to `limit` email rows due at `now` for one delivery attempt each
    /// (rows of other kinds, such as billing hand-overs, wait for their own
    /// deliverer instead of being dead-lettered by the mail worker): they
    /// are invisible to other claimers for `lease` (then due again, should this
    /// worker die), and their `attempts` already count this attempt.
    pub async fn claim_due_outbox(&self, now: Timestamp, limit: u32, lease: SignedDuration) -> Result<Vec<OutboxItem>> {
        let until = now.checked_add(lease).map_err(|e| StoreError::Corrupt(format!("lease: {e}")))?;
        let rows: Vec<OutboxRow> = on_fast_each!(self, conn, StoreError => {
            let claim = if crate::sql::on_postgres(&*conn) { CLAIM_POSTGRES } else { CLAIM_SQLITE };
            Ok(query_as(claim)
                .bind(micros(now))
                .bind(micros(until))
                .bind(i64::from(limit))
                .fetch_all(&mut *conn)
                .await?)
        })?;
        items(rows)
    }

    /// Marks a claimed row delivered. False when it was not pending any more.
    pub async fn outbox_delivered(&self, id: Uuid, now: Timestamp) -> Result<bool> {
        let done = on_fast_each!(self, conn, StoreError => {
            Ok(query(
                "UPDATE outbox SET status = 'delivered', delivered_at = $2, last_error = NULL
                 WHERE id = $1 AND status = 'pending'",
            )
            .bind(id)
            .bind(micros(now))
            .execute(&mut *conn)
            .await?
            .rows_affected())
        })?;
        Ok(done == 1)
    }

    /// Records a failed attempt: the row is due again at the given instant, or
    /// `dead`. False when it was not pending any more.
    pub async fn outbox_failed(&self, id: Uuid, error: &str, next: OutboxRetry) -> Result<bool> {
        let done = on_fast_each!(self, conn, StoreError => {
            let update = match next {
                OutboxRetry::At(at) => query(
                    "UPDATE outbox SET next_attempt_at = $2, last_error = $3 WHERE id = $1 AND status = 'pending'",
                )
                .bind(id)
                .bind(micros(at))
                .bind(error),
                OutboxRetry::Dead => {
                    query("UPDATE outbox SET status = 'dead', last_error = $2 WHERE id = $1 AND status = 'pending'")
                        .bind(id)
                        .bind(error)
                }
            };
            Ok(update.execute(&mut *conn).await?.rows_affected())
        })?;
        Ok(done == 1)
    }

    /// Outbox rows, oldest first, all or those with one status (for the
    /// development mailbox, staff and tests).
    pub async fn outbox_items(&self, status: Option<OutboxStatus>) -> Result<Vec<OutboxItem>> {
        let rows: Vec<OutboxRow> = on_read!(self, p => match status {
            Some(s) => sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM outbox WHERE status = $1 ORDER BY created_at, id"
            ))).bind(s.as_str()).fetch_all(p).await?,
            None => sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM outbox ORDER BY created_at, id")))
                .fetch_all(p)
                .await?,
        });
        items(rows)
    }

    /// The earliest `next_attempt_at` of a pending email row, if any.
    pub async fn next_outbox_attempt(&self) -> Result<Option<Timestamp>> {
        let (next,): (Option<i64>,) = on_read!(self, p => sqlx::query_as(
            "SELECT MIN(next_attempt_at) FROM outbox WHERE status = 'pending' AND kind = 'email'"
        ).fetch_one(p).await?);
        next.map(timestamp).transpose()
    }

    /// Puts an address on the suppression list (suppressing twice keeps the first reason).
    pub async fn suppress_email(&self, email: &Email, reason: &str, now: Timestamp) -> Result<()> {
        on_write!(self, p => sqlx::query(
            "INSERT INTO email_suppressions (email_norm, reason, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (email_norm) DO NOTHING",
        ).bind(email.normalized()).bind(reason).bind(micros(now)).execute(p).await.map(|_| ())?);
        Ok(())
    }

    pub async fn is_suppressed(&self, email: &Email) -> Result<bool> {
        let found: Option<(String,)> = on_read!(self, p => sqlx::query_as(
            "SELECT email_norm FROM email_suppressions WHERE email_norm = $1"
        ).bind(email.normalized()).fetch_optional(p).await?);
        Ok(found.is_some())
    }
}
