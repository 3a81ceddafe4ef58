use jiff::Timestamp;
use uuid::Uuid;
use vouch_domain::participant::ParticipantStatus;
use vouch_domain::{Email, EnrollmentId, ParticipantId, ParticipantKind, ProgramId, ReferralCode};

use crate::{BUMP_EPOCH, Result, Store, StoreError, micros, on_read, on_write, timestamp};

/// What enrolling needs. Ids and the code are minted by the caller, so the store
/// stays free of randomness and a retry with a fresh code is the caller's choice.
#[derive(Debug, Clone)]
pub struct NewEnrollment {
    pub program_id: ProgramId,
    pub participant_id: ParticipantId,
    pub enrollment_id: EnrollmentId,
    pub email: Email,
    pub name: String,
    pub kind: ParticipantKind,
    pub team: Option<String>,
    pub company: Option<String>,
    pub code: ReferralCode,
    pub vanity: bool,
    pub now: Timestamp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Enrolled {
    /// False when the email was already enrolled: the existing enrollment is returned.
    pub created: bool,
    pub participant_id: ParticipantId,
    pub enrollment_id: EnrollmentId,
    pub code: ReferralCode,
}

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("the code is already taken")]
    CodeTaken,
    #[error("participants of kind {} cannot join this program", .0.as_str())]
    Ineligible(ParticipantKind),
    #[error("the participant is suspended")]
    Suspended,
    #[error(transparent)]
    Store(#[from] StoreError),
}

crate::store_error_from_sqlx!(EnrollError);

#[derive(Debug, Clone, PartialEq)]
pub struct ParticipantRecord {
    pub id: ParticipantId,
    pub email: String,
    pub name: String,
    pub kind: ParticipantKind,
    pub team: Option<String>,
    pub company: Option<String>,
    pub status: ParticipantStatus,
    pub created_at: Timestamp,
    pub suspended_at: Option<Timestamp>,
    pub enrollments: Vec<EnrollmentRecord>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EnrollmentRecord {
    pub id: EnrollmentId,
    pub program_slug: String,
    pub created_at: Timestamp,
    pub codes: Vec<CodeRecord>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CodeRecord {
    pub code: ReferralCode,
    pub vanity: bool,
    pub active: bool,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    pub clicks: i64,
    pub bot_visits: i64,
}

/// The key of the row `stop_attributing` changes, bound with its own SQL type.
#[derive(Clone, Copy)]
enum RowKey<'a> {
    Id(Uuid),
    Text(&'a str),
}

/// What the redirect needs to know about a code.
#[derive(Debug, Clone, PartialEq)]
pub struct CodeTarget {
    pub landing_url: String,
    /// False for a revoked code or a suspended participant: the visitor still
    /// lands, but nothing is attributed or recorded.
    pub attributes: bool,
}

#[derive(sqlx::FromRow)]
struct ParticipantRow {
    id: Uuid,
    email: String,
    name: String,
    kind: String,
    team: Option<String>,
    company: Option<String>,
    status: String,
    created_at: i64,
    suspended_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct CodeRow {
    enrollment_id: Uuid,
    slug: String,
    enrolled_at: i64,
    code: String,
    vanity: bool,
    status: String,
    created_at: i64,
    revoked_at: Option<i64>,
    clicks: Option<i64>,
    bot_visits: Option<i64>,
}

const FIND_PARTICIPANT: &str =
    "SELECT id, email, name, kind, team, company, status, created_at, suspended_at FROM participants WHERE id = $1";
const FIND_PARTICIPANT_BY_EMAIL: &str = "SELECT id, email, name, kind, team, company, status, created_at, suspended_at FROM participants WHERE email_norm = $1";
const PARTICIPANT_CODES: &str =
    "SELECT e.id AS enrollment_id, g.slug, e.created_at AS enrolled_at, c.code, c.vanity, c.status,
            c.created_at, c.revoked_at,
            (SELECT CAST(SUM(s.clicks) AS BIGINT) FROM code_click_stats s WHERE s.code = c.code) AS clicks,
            (SELECT CAST(SUM(s.bot_visits) AS BIGINT) FROM code_click_stats s WHERE s.code = c.code) AS bot_visits
     FROM enrollments e
     JOIN programs g ON g.id = e.program_id
     JOIN codes c ON c.enrollment_id = e.id
     WHERE e.participant_id = $1
     ORDER BY e.created_at, e.id, c.created_at, c.code";

/// A participant's enrollment in a program, with its newest active code (or,
/// failing that, its newest code) and that code's status.
const EXISTING_ENROLLMENT: &str =
    "SELECT e.id, c.code, c.status FROM enrollments e JOIN codes c ON c.enrollment_id = e.id
     WHERE e.program_id = $1 AND e.participant_id = $2
     ORDER BY CASE WHEN c.status = 'active' THEN 0 ELSE 1 END, c.created_at DESC LIMIT 1";

impl ParticipantRow {
    fn into_record(self, enrollments: Vec<EnrollmentRecord>) -> Result<ParticipantRecord> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("participant {}: {what}", self.id));
        Ok(ParticipantRecord {
            id: ParticipantId(self.id),
            kind: ParticipantKind::parse(&self.kind).ok_or_else(|| corrupt("kind"))?,
            status: ParticipantStatus::parse(&self.status).ok_or_else(|| corrupt("status"))?,
            created_at: timestamp(self.created_at)?,
            suspended_at: self.suspended_at.map(timestamp).transpose()?,
            email: self.email,
            name: self.name,
            team: self.team,
            company: self.company,
            enrollments,
        })
    }
}

fn group_codes(rows: Vec<CodeRow>) -> Result<Vec<EnrollmentRecord>> {
    let mut out: Vec<EnrollmentRecord> = Vec::new();
    for r in rows {
        let code = CodeRecord {
            code: ReferralCode::parse(&r.code).map_err(|e| StoreError::Corrupt(format!("code {}: {e}", r.code)))?,
            vanity: r.vanity,
            active: r.status == "active",
            created_at: timestamp(r.created_at)?,
            revoked_at: r.revoked_at.map(timestamp).transpose()?,
            clicks: r.clicks.unwrap_or(0),
            bot_visits: r.bot_visits.unwrap_or(0),
        };
        match out.last_mut() {
            Some(e) if e.id.0 == r.enrollment_id => e.codes.push(code),
            _ => out.push(EnrollmentRecord {
                id: EnrollmentId(r.enrollment_id),
                program_slug: r.slug,
                created_at: timestamp(r.enrolled_at)?,
                codes: vec![code],
            }),
        }
    }
    Ok(out)
}

impl Store {
    /// Enrolls a person in a program, creating the participant on first sight of
    /// their (case-insensitive) email. An email already enrolled gets its existing
    /// enrollment and newest code back — or, when every code of that enrollment
    /// was revoked, a new code (`new.code`). `eligible` judges the participant's kind
    /// (the stored one, for a participant we already know).
    pub async fn enroll(
        &self,
        new: &NewEnrollment,
        eligible: impl Fn(ParticipantKind) -> bool,
    ) -> Result<Enrolled, EnrollError> {
        let email_norm = new.email.normalized();
        on_write!(self, p => {
            let mut tx = p.begin().await?;
            // ON CONFLICT DO NOTHING, then read: two replicas enrolling the same
            // new email at once end with one participant.
            let new_participant = sqlx::query(
                "INSERT INTO participants (id, email, email_norm, name, kind, team, company, status, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', $8) ON CONFLICT (email_norm) DO NOTHING",
            )
            .bind(new.participant_id.0)
            .bind(new.email.as_str())
            .bind(&email_norm)
            .bind(&new.name)
            .bind(new.kind.as_str())
            .bind(&new.team)
            .bind(&new.company)
            .bind(micros(new.now))
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            let participant: ParticipantRow =
                sqlx::query_as(FIND_PARTICIPANT_BY_EMAIL).bind(&email_norm).fetch_one(&mut *tx).await?;
            let participant = participant.into_record(Vec::new())?;
            if participant.status == ParticipantStatus::Suspended {
                return Err(EnrollError::Suspended);
            }
            if !eligible(participant.kind) {
                return Err(EnrollError::Ineligible(participant.kind));
            }
            let existing: Option<(Uuid, String, String)> = sqlx::query_as(EXISTING_ENROLLMENT)
                .bind(new.program_id.0)
                .bind(participant.id.0)
                .fetch_optional(&mut *tx)
                .await?;
            let existing_enrollment = |(enrollment_id, code, _): (Uuid, String, String)| -> Result<Enrolled, EnrollError> {
                Ok(Enrolled {
                    created: false,
                    participant_id: participant.id,
                    enrollment_id: EnrollmentId(enrollment_id),
                    code: ReferralCode::parse(&code).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                })
            };
            match existing {
                // Every code of theirs was revoked (a leaked link, say): enrolling
                // again is how a referrer gets a working link back. Stopping a
                // person is suspending them, which refuses this above.
                Some((enrollment_id, _, status)) if status != "active" => {
                    let inserted = sqlx::query(
                        "INSERT INTO codes (code, enrollment_id, vanity, status, created_at)
                         VALUES ($1, $2, $3, 'active', $4)",
                    )
                    .bind(new.code.as_str())
                    .bind(enrollment_id)
                    .bind(new.vanity)
                    .bind(micros(new.now))
                    .execute(&mut *tx)
                    .await;
                    match inserted.map_err(StoreError::classify) {
                        Err(e) if e.is_conflict_on("codes") => return Err(EnrollError::CodeTaken),
                        other => other?,
                    };
                    sqlx::query(BUMP_EPOCH).execute(&mut *tx).await?;
                    tx.commit().await?;
                    return Ok(Enrolled {
                        created: false,
                        participant_id: participant.id,
                        enrollment_id: EnrollmentId(enrollment_id),
                        code: new.code.clone(),
                    });
                }
                Some(existing) => return existing_enrollment(existing),
                None => {}
            }
            // A concurrent enrollment of this participant in this program (a
            // double-submitted form, two replicas) may have committed since the
            // read above: on Postgres this insert then waits for it and does
            // nothing, and its enrollment is the answer, not a conflict.
            let inserted = sqlx::query(
                "INSERT INTO enrollments (id, program_id, participant_id, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (program_id, participant_id) DO NOTHING",
            )
            .bind(new.enrollment_id.0)
            .bind(new.program_id.0)
            .bind(participant.id.0)
            .bind(micros(new.now))
            .execute(&mut *tx)
            .await?;
            if inserted.rows_affected() == 0 {
                let existing: (Uuid, String, String) = sqlx::query_as(EXISTING_ENROLLMENT)
                    .bind(new.program_id.0)
                    .bind(participant.id.0)
                    .fetch_one(&mut *tx)
                    .await?;
                return existing_enrollment(existing);
            }
            let inserted = sqlx::query(
                "INSERT INTO codes (code, enrollment_id, vanity, status, created_at) VALUES ($1, $2, $3, 'active', $4)",
            )
            .bind(new.code.as_str())
            .bind(new.enrollment_id.0)
            .bind(new.vanity)
            .bind(micros(new.now))
            .execute(&mut *tx)
            .await;
            match inserted.map_err(StoreError::classify) {
                Err(e) if e.is_conflict_on("codes") => return Err(EnrollError::CodeTaken),
                other => other?,
            };
            if new_participant {
                // The welcome email, in this transaction: a rollback (code taken,
                // ineligible) sends nothing. One per enrollment: it bears its id.
                let (slug,): (String,) =
                    sqlx::query_as("SELECT slug FROM programs WHERE id = $1").bind(new.program_id.0).fetch_one(&mut *tx).await?;
                let welcome = crate::outbox::MailPayload::Welcome {
                    to: new.email.as_str().to_string(),
                    name: new.name.clone(),
                    program: slug,
                    code: new.code.as_str().to_string(),
                };
                let payload = serde_json::to_value(&welcome).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                crate::outbox::enqueue!(&mut *tx, new.enrollment_id.0, crate::outbox::EMAIL, &payload, new.now).await?;
            }
            tx.commit().await?;
            Ok(Enrolled {
                created: true,
                participant_id: participant.id,
                enrollment_id: new.enrollment_id,
                code: new.code.clone(),
            })
        })
    }

    pub async fn participant(&self, id: ParticipantId) -> Result<ParticipantRecord> {
        on_read!(self, p => {
            let row: Option<ParticipantRow> = sqlx::query_as(FIND_PARTICIPANT).bind(id.0).fetch_optional(p).await?;
            let row = row.ok_or(StoreError::NotFound)?;
            let codes: Vec<CodeRow> = sqlx::query_as(PARTICIPANT_CODES).bind(id.0).fetch_all(p).await?;
            row.into_record(group_codes(codes)?)
        })
    }

    /// Suspends a participant: their links stop attributing everywhere.
    pub async fn suspend_participant(&self, id: ParticipantId, now: Timestamp) -> Result<ParticipantRecord> {
        self.stop_attributing(
            "UPDATE participants SET status = 'suspended', suspended_at = COALESCE(suspended_at, $2) WHERE id = $1",
            RowKey::Id(id.0),
            now,
        )
        .await?;
        self.participant(id).await
    }

    /// Revokes a code. Revoking twice keeps the first revocation time.
    pub async fn revoke_code(&self, code: &ReferralCode, now: Timestamp) -> Result<CodeRecord> {
        self.stop_attributing(
            "UPDATE codes SET status = 'revoked', revoked_at = COALESCE(revoked_at, $2) WHERE code = $1",
            RowKey::Text(code.as_str()),
            now,
        )
        .await?;
        self.code(code).await
    }

    /// Runs a one-row `update` (`$1` the key, `$2` now) and bumps the cache epoch
    /// in the same transaction, so every server's redirect sees it; NotFound when
    /// no row matched.
    async fn stop_attributing(&self, update: &'static str, key: RowKey<'_>, now: Timestamp) -> Result<()> {
        on_write!(self, p => {
            let mut tx = p.begin().await?;
            let query = match key {
                RowKey::Id(id) => sqlx::query(update).bind(id),
                RowKey::Text(text) => sqlx::query(update).bind(text),
            };
            let done = query.bind(micros(now)).execute(&mut *tx).await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound);
            }
            sqlx::query(BUMP_EPOCH).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    pub async fn code(&self, code: &ReferralCode) -> Result<CodeRecord> {
        let row: Option<CodeRow> = on_read!(self, p => sqlx::query_as(
            "SELECT e.id AS enrollment_id, g.slug, e.created_at AS enrolled_at, c.code, c.vanity, c.status,
                    c.created_at, c.revoked_at,
            (SELECT CAST(SUM(s.clicks) AS BIGINT) FROM code_click_stats s WHERE s.code = c.code) AS clicks,
            (SELECT CAST(SUM(s.bot_visits) AS BIGINT) FROM code_click_stats s WHERE s.code = c.code) AS bot_visits
             FROM codes c JOIN enrollments e ON e.id = c.enrollment_id JOIN programs g ON g.id = e.program_id WHERE c.code = $1",
        ).bind(code.as_str()).fetch_optional(p).await?);
        let row = row.ok_or(StoreError::NotFound)?;
        let mut grouped = group_codes(vec![row])?;
        Ok(grouped.remove(0).codes.remove(0))
    }

    /// Where a code leads, from the program version now in force.
    pub async fn code_target(&self, code: &ReferralCode) -> Result<Option<CodeTarget>> {
        let row: Option<(String, String, String)> = on_read!(self, p => sqlx::query_as(
            "SELECT v.landing_url, c.status, pa.status
             FROM codes c
             JOIN enrollments e ON e.id = c.enrollment_id
             JOIN participants pa ON pa.id = e.participant_id
             JOIN programs g ON g.id = e.program_id
             JOIN program_versions v ON v.program_id = g.id AND v.version = g.current_version
             WHERE c.code = $1",
        ).bind(code.as_str()).fetch_optional(p).await?);
        Ok(row.map(|(landing_url, code_status, participant_status)| CodeTarget {
            landing_url,
            attributes: code_status == "active" && participant_status == "active",
        }))
    }

    /// Counts participants and enrollments (for the demo summary and tests).
    pub async fn count_participants(&self) -> Result<i64> {
        let (n,): (i64,) = on_read!(self, p => sqlx::query_as("SELECT COUNT(*) FROM participants").fetch_one(p).await?);
        Ok(n)
    }
}
