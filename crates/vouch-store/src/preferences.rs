//! What participants want to hear about, and where referrers were seen from.
//!
//! Stage-update emails follow the referrer's `stage_updates` preference:
//! [`stage_mail!`] writes the outbox row in the transaction of the stage change
//! itself, for staff moves and for changes a fact causes alike.
//!
//! The IP hashes from which a referrer enrolled or handed over a lead or invite
//! are kept in `participant_ips`, so attribution can tell a prospect's click
//! from the referrer's own address (docs/decisions/0011-referrer-ip-signal.md).

use jiff::Timestamp;
use vouch_domain::ParticipantId;
use vouch_domain::notify::StageUpdates;

use crate::{Result, Store, StoreError, micros, on_read, on_write};

/// What the stage-update email of a referral needs: its status, the referrer,
/// their preference (NULL: the default) and the prospect.
pub(crate) const STAGE_MAIL: &str = "SELECT r.status, pa.name, pa.email, g.slug, r.prospect_email, r.prospect_name,
        pr.stage_updates
     FROM referrals r
     JOIN participants pa ON pa.id = r.participant_id
     JOIN programs g ON g.id = r.program_id
     LEFT JOIN participant_preferences pr ON pr.participant_id = r.participant_id
     WHERE r.id = $1";

/// status, name, email, slug, prospect_email, prospect_name, stage_updates
pub(crate) type StageMailRow = (String, String, String, String, Option<String>, Option<String>, Option<String>);

/// The stage-update email for a row of [`STAGE_MAIL`], when the referral counts
/// and its referrer wants news of `stage`.
pub(crate) fn stage_mail_payload(
    row: StageMailRow,
    stage: vouch_domain::referral::Stage,
) -> Result<Option<serde_json::Value>> {
    use vouch_domain::referral::Status;
    let (status, name, to, program, prospect_email, prospect_name, wanted) = row;
    let wanted = match wanted {
        Some(w) => StageUpdates::parse(&w).ok_or_else(|| StoreError::Corrupt(format!("stage_updates `{w}`")))?,
        None => StageUpdates::default(),
    };
    if !Status::parse(&status).is_some_and(Status::holds_prospect) || !wanted.wants(stage) {
        return Ok(None);
    }
    let prospect = crate::referrals::NewProspect {
        email: prospect_email.as_deref().and_then(|e| vouch_domain::Email::parse(e).ok()),
        name: prospect_name,
        ..Default::default()
    };
    let payload = crate::outbox::MailPayload::StageUpdate {
        to,
        name,
        program,
        prospect: crate::referrals::prospect_label(&prospect),
        stage: stage.as_str().to_string(),
    };
    serde_json::to_value(&payload).map(Some).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Queues the stage-update email of referral `$referral` (a `ReferralId`)
/// reaching `$stage`, on `$tx` (the transaction of the change), when the
/// referral counts and its referrer wants that news. The row is named `$id`: a
/// cause that can occur once (a stored fact's id) makes a second row for it
/// impossible. Evaluates to a future of `Result<bool, StoreError>` (queued or not).
macro_rules! stage_mail {
    ($tx:expr, $referral:expr, $stage:expr, $id:expr, $now:expr) => {
        async {
            let row: $crate::preferences::StageMailRow =
                $crate::sql::query_as($crate::preferences::STAGE_MAIL).bind($referral.0).fetch_one(&mut *$tx).await?;
            let Some(payload) = $crate::preferences::stage_mail_payload(row, $stage)? else {
                return Ok::<bool, $crate::StoreError>(false);
            };
            let queued = $crate::sql::query(
                "INSERT INTO outbox (id, kind, payload, status, attempts, next_attempt_at, created_at)
                 VALUES ($1, $2, $3, 'pending', 0, $4, $4) ON CONFLICT (id) DO NOTHING",
            )
            .bind($id)
            .bind($crate::outbox::EMAIL)
            .bind(payload.to_string())
            .bind($crate::micros($now))
            .execute(&mut *$tx)
            .await?;
            Ok(queued.rows_affected() == 1)
        }
    };
}
pub(crate) use stage_mail;

/// Evaluates to a future of the IP hashes recorded for participant `$participant`
/// (a `Uuid`), on `$exec`.
macro_rules! referrer_ip_hashes {
    ($exec:expr, $participant:expr) => {
        async {
            let rows: Vec<(String,)> =
                $crate::sql::query_as("SELECT ip_hash FROM participant_ips WHERE participant_id = $1 ORDER BY ip_hash")
                    .bind($participant)
                    .fetch_all($exec)
                    .await?;
            Ok::<Vec<String>, sqlx::Error>(rows.into_iter().map(|(h,)| h).collect())
        }
    };
}
pub(crate) use referrer_ip_hashes;

impl Store {
    /// The participant's stage-update preference (the default when never set).
    /// `NotFound` when there is no such participant.
    pub async fn stage_updates(&self, participant: ParticipantId) -> Result<StageUpdates> {
        let row: Option<(Option<String>,)> = on_read!(self, p => sqlx::query_as(
            "SELECT pr.stage_updates FROM participants pa
             LEFT JOIN participant_preferences pr ON pr.participant_id = pa.id WHERE pa.id = $1",
        )
        .bind(participant.0)
        .fetch_optional(p)
        .await?);
        match row.ok_or(StoreError::NotFound)?.0 {
            Some(w) => StageUpdates::parse(&w).ok_or_else(|| StoreError::Corrupt(format!("stage_updates `{w}`"))),
            None => Ok(StageUpdates::default()),
        }
    }

    /// Sets the participant's stage-update preference. `NotFound` when there is
    /// no such participant.
    pub async fn set_stage_updates(
        &self,
        participant: ParticipantId,
        wanted: StageUpdates,
        now: Timestamp,
    ) -> Result<()> {
        on_write!(self, p => {
            let mut tx = p.begin().await?;
            let known: Option<(uuid::Uuid,)> =
                sqlx::query_as("SELECT id FROM participants WHERE id = $1").bind(participant.0).fetch_optional(&mut *tx).await?;
            if known.is_none() {
                return Err(StoreError::NotFound);
            }
            sqlx::query(
                "INSERT INTO participant_preferences (participant_id, stage_updates, updated_at) VALUES ($1, $2, $3)
                 ON CONFLICT (participant_id) DO UPDATE SET stage_updates = excluded.stage_updates,
                     updated_at = excluded.updated_at",
            )
            .bind(participant.0)
            .bind(wanted.as_str())
            .bind(micros(now))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Records that the participant acted from the address behind `ip_hash`
    /// (enrolled, handed over a lead or an invite). A participant gone missing
    /// records nothing.
    pub async fn record_participant_ip(&self, participant: ParticipantId, ip_hash: &str, now: Timestamp) -> Result<()> {
        on_write!(self, p => sqlx::query(
            "INSERT INTO participant_ips (participant_id, ip_hash, first_seen_at, last_seen_at)
             SELECT id, $2, $3, $3 FROM participants WHERE id = $1
             ON CONFLICT (participant_id, ip_hash) DO UPDATE SET last_seen_at = excluded.last_seen_at",
        )
        .bind(participant.0)
        .bind(ip_hash)
        .bind(micros(now))
        .execute(p)
        .await
        .map(|_| ())?);
        Ok(())
    }

    /// The IP hashes recorded for the participant, in hash order.
    pub async fn participant_ip_hashes(&self, participant: ParticipantId) -> Result<Vec<String>> {
        Ok(crate::on_fast_read!(self, conn => referrer_ip_hashes!(&mut *conn, participant.0).await?))
    }
}
