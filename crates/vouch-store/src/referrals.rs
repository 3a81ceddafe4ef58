//! Referrals and their timelines.
//!
//! The store gathers what attribution needs and persists what the domain
//! decided: [`Store::create_referral`] reads the referrer, the prospect, the
//! current holder and the referrer's recent leads inside one write transaction,
//! hands them to the caller's decision function (the domain's `attribute`, with
//! the rules of the program version in force) and stores the referral with its
//! `created` and `decision` events. One holder per prospect and program is a
//! partial unique index: when another replica wins the race, the insert does
//! nothing, the decision is taken again with the winner as holder, and the
//! referral is stored rejected (`already_referred`) pointing to it.

use jiff::Timestamp;
use serde_json::{Value, json};
use uuid::Uuid;
use vouch_domain::customer::{CompanyDomain, KnownBy};
use vouch_domain::participant::ParticipantStatus;
use vouch_domain::referral::{
    Decision, EventId, Fact, FactKind, Holder, NotAttributable, Prospect, ReferralId, Referrer, Refusal,
    RejectionReason, ReviewSignal, Source, StaffMove, Stage, Status, derive_stage, person_key,
};
use vouch_domain::{Email, EnrollmentId, ParticipantId, ParticipantKind, ProgramId, ProgramVersionId, ReferralCode};

use crate::{Result, Store, StoreError, micros, on_read, on_write, on_write_tx, timestamp};

/// The actor of what Vouch itself decides (the attribution decision).
pub const SYSTEM_ACTOR: &str = "vouch";

/// A referral to create. Ids and times are the caller's, like everywhere.
#[derive(Debug, Clone)]
pub struct NewReferral {
    pub id: ReferralId,
    pub program_id: ProgramId,
    /// The program version in force now: the one the referral is judged by.
    pub program_version_id: ProgramVersionId,
    pub code: ReferralCode,
    pub source: Source,
    pub prospect: NewProspect,
    pub consent: Option<Consent>,
    pub note: Option<String>,
    /// Who created it (for the `created` event).
    pub actor: String,
    pub now: Timestamp,
    /// The referrer's leads and invites created at or after this instant are
    /// "recent" (the program's burst window, computed by the caller).
    pub recent_since: Timestamp,
    /// The domain to look up in the customer registry besides the email and
    /// external id: the prospect's company domain in business programs, `None`
    /// where a domain says nothing (the caller decides).
    pub registry_domain: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewProspect {
    pub email: Option<Email>,
    pub name: Option<String>,
    pub company: Option<String>,
    pub phone: Option<String>,
    pub external_id: Option<String>,
}

/// The wording the referrer confirmed (the prospect agreed to be contacted), and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    pub text: String,
    pub at: Timestamp,
}

/// The email that goes with a new referral, written in its transaction when
/// the referral holds the prospect (`active` or `in_review`): a rejected
/// referral tells no one. The outbox row bears the referral's id.
#[derive(Debug, Clone, Default)]
pub enum ReferralMail {
    #[default]
    None,
    /// Tell the referrer their lead arrived.
    LeadReceived,
    /// Send the prospect the referrer's invitation.
    Invite(InviteMail),
}

/// An invitation's email, and the referrer's invitation allowance.
#[derive(Debug, Clone)]
pub struct InviteMail {
    pub message: Option<String>,
    pub unsubscribe_token: String,
    /// At most this many invites (stored, rejected ones included) by the
    /// referrer in the program since `since`, this one included.
    pub limit: u32,
    pub since: Timestamp,
}

/// What the store found for a new referral: everything attribution judges
/// besides the program's rules, the source and the time, which the caller has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributionFacts {
    pub referrer: Referrer,
    pub prospect: Prospect,
    /// How the customer registry knows the prospect, if it does.
    pub registry_match: Option<KnownBy>,
    /// The referral holding the prospect in the program (`active` or `in_review`).
    pub holder: Option<Holder>,
    /// The referrer's leads and invites since `recent_since`, not counting this one.
    pub recent_leads: u32,
    /// The IP hashes the referrer enrolled or handed over leads and invites from.
    pub referrer_ip_hashes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateReferralError {
    /// No such code, or a code of another program.
    #[error("no referral code `{0}` in this program")]
    UnknownCode(String),
    /// The decision function found no claim to judge (a revoked code, an
    /// expired click): nothing is stored.
    #[error(transparent)]
    NotAttributable(NotAttributable),
    /// The referrer sent their allowance of invites ([`InviteMail::limit`]): nothing is stored.
    #[error("the referrer sent {limit} invites already in the period")]
    RateLimited { limit: u32 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

crate::store_error_from_sqlx!(CreateReferralError);

/// Why a staff action on a referral was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReferralActionError {
    #[error("not found")]
    NotFound,
    /// The pipeline forbids the move (or it changes nothing).
    #[error(transparent)]
    Stage(Refusal),
    /// An override needs a rejected referral.
    #[error("the referral is {0}, not rejected")]
    NotRejected(Status),
    /// A review decision needs a referral in review.
    #[error("the referral is {0}, not in review")]
    NotInReview(Status),
    /// Another referral holds the prospect: overriding would make two holders.
    #[error("another referral holds the prospect")]
    ProspectHeld(Option<ReferralId>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

crate::store_error_from_sqlx!(ReferralActionError);

/// A staff decision on a referral in review.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewDecision {
    Accept,
    Reject,
}

impl ReviewDecision {
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewDecision::Accept => "accept",
            ReviewDecision::Reject => "reject",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [ReviewDecision::Accept, ReviewDecision::Reject].into_iter().find(|d| d.as_str() == s)
    }
}

/// What a timeline entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReferralEventKind {
    Created,
    Decision,
    Stage,
    Fact,
    Override,
    Review,
    Note,
    Assign,
}

impl ReferralEventKind {
    pub const ALL: [ReferralEventKind; 8] = [
        Self::Created,
        Self::Decision,
        Self::Stage,
        Self::Fact,
        Self::Override,
        Self::Review,
        Self::Note,
        Self::Assign,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Decision => "decision",
            Self::Stage => "stage",
            Self::Fact => "fact",
            Self::Override => "override",
            Self::Review => "review",
            Self::Note => "note",
            Self::Assign => "assign",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One entry of a referral's timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferralEvent {
    pub id: EventId,
    pub seq: i64,
    pub kind: ReferralEventKind,
    pub stage_from: Option<Stage>,
    pub stage_to: Option<Stage>,
    pub actor: String,
    pub note: Option<String>,
    pub data: Value,
    pub occurred_at: Timestamp,
    pub recorded_at: Timestamp,
}

/// A stored referral.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferralRecord {
    pub id: ReferralId,
    pub program_id: ProgramId,
    pub program_slug: String,
    pub program_version_id: ProgramVersionId,
    pub program_version: i64,
    pub enrollment_id: EnrollmentId,
    pub participant_id: ParticipantId,
    pub code: String,
    pub source: String,
    pub prospect: NewProspect,
    pub consent: Option<Consent>,
    pub note: Option<String>,
    pub stage: Stage,
    pub status: Status,
    pub rejection_reason: Option<RejectionReason>,
    pub review_signals: Vec<ReviewSignal>,
    pub holder: Option<ReferralId>,
    pub explanation: String,
    pub assignee: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// A `won` lacked the units a per-unit rule needs; staff send them with `PATCH`.
    pub units_missing: bool,
    /// Oldest first; empty in listings.
    pub timeline: Vec<ReferralEvent>,
}

/// Filters of [`Store::referrals`]; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct ReferralFilter {
    pub program: Option<ProgramId>,
    pub stage: Option<Stage>,
    pub status: Option<Status>,
    pub participant: Option<ParticipantId>,
    pub source: Option<String>,
    pub assignee: Option<String>,
    /// Created at or after.
    pub created_from: Option<Timestamp>,
    /// Created before.
    pub created_to: Option<Timestamp>,
}

#[derive(sqlx::FromRow)]
struct ReferralRow {
    id: Uuid,
    program_id: Uuid,
    slug: String,
    program_version_id: Uuid,
    version: i64,
    enrollment_id: Uuid,
    participant_id: Uuid,
    code: String,
    source: String,
    prospect_email: Option<String>,
    prospect_name: Option<String>,
    prospect_company: Option<String>,
    prospect_phone: Option<String>,
    prospect_external_id: Option<String>,
    consent_text: Option<String>,
    consent_at: Option<i64>,
    note: Option<String>,
    stage: String,
    status: String,
    rejection_reason: Option<String>,
    review_signals: String,
    holder_referral_id: Option<Uuid>,
    explanation: String,
    assignee: Option<String>,
    created_at: i64,
    updated_at: i64,
    units_missing: bool,
}

const SELECT_REFERRALS: &str = "SELECT r.id, r.program_id, g.slug, r.program_version_id, v.version, r.enrollment_id,
        r.participant_id, r.code, r.source, r.prospect_email, r.prospect_name, r.prospect_company, r.prospect_phone,
        r.prospect_external_id, r.consent_text, r.consent_at, r.note, r.stage, r.status, r.rejection_reason,
        r.review_signals, r.holder_referral_id, r.explanation, r.assignee, r.created_at, r.updated_at,
        r.units_missing
     FROM referrals r
     JOIN programs g ON g.id = r.program_id
     JOIN program_versions v ON v.id = r.program_version_id";

impl TryFrom<ReferralRow> for ReferralRecord {
    type Error = StoreError;
    fn try_from(r: ReferralRow) -> Result<Self> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("referral {}: {what}", r.id));
        let review_signals = r
            .review_signals
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| ReviewSignal::parse(s).ok_or_else(|| corrupt("review signal")))
            .collect::<Result<Vec<_>>>()?;
        let consent = match (r.consent_text, r.consent_at) {
            (Some(text), Some(at)) => Some(Consent { text, at: timestamp(at)? }),
            _ => None,
        };
        Ok(ReferralRecord {
            id: ReferralId(r.id),
            program_id: ProgramId(r.program_id),
            program_slug: r.slug,
            program_version_id: ProgramVersionId(r.program_version_id),
            program_version: r.version,
            enrollment_id: EnrollmentId(r.enrollment_id),
            participant_id: ParticipantId(r.participant_id),
            code: r.code,
            source: r.source,
            prospect: NewProspect {
                email: r.prospect_email.as_deref().map(Email::parse).transpose().map_err(|_| corrupt("email"))?,
                name: r.prospect_name,
                company: r.prospect_company,
                phone: r.prospect_phone,
                external_id: r.prospect_external_id,
            },
            consent,
            note: r.note,
            stage: Stage::parse(&r.stage).ok_or_else(|| corrupt("stage"))?,
            status: Status::parse(&r.status).ok_or_else(|| corrupt("status"))?,
            rejection_reason: r
                .rejection_reason
                .as_deref()
                .map(|s| RejectionReason::parse(s).ok_or_else(|| corrupt("rejection reason")))
                .transpose()?,
            review_signals,
            holder: r.holder_referral_id.map(ReferralId),
            explanation: r.explanation,
            assignee: r.assignee,
            created_at: timestamp(r.created_at)?,
            updated_at: timestamp(r.updated_at)?,
            units_missing: r.units_missing,
            timeline: Vec::new(),
        })
    }
}

crate::sql::lite_row! {
    #[derive(sqlx::FromRow)]
    pub(crate) struct EventRow {
        id: Uuid,
        seq: i64,
        kind: String,
        stage_from: Option<String>,
        stage_to: Option<String>,
        actor: String,
        note: Option<String>,
        data: String,
        occurred_at: i64,
        recorded_at: i64,
    }
}

pub(crate) const SELECT_EVENTS: &str =
    "SELECT id, seq, kind, stage_from, stage_to, actor, note, data, occurred_at, recorded_at
     FROM referral_events WHERE referral_id = $1 ORDER BY seq";

impl TryFrom<EventRow> for ReferralEvent {
    type Error = StoreError;
    fn try_from(r: EventRow) -> Result<Self> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("referral event {}: {what}", r.id));
        let stage = |s: Option<String>| s.map(|s| Stage::parse(&s).ok_or_else(|| corrupt("stage"))).transpose();
        Ok(ReferralEvent {
            id: EventId(r.id),
            seq: r.seq,
            kind: ReferralEventKind::parse(&r.kind).ok_or_else(|| corrupt("kind"))?,
            stage_from: stage(r.stage_from)?,
            stage_to: stage(r.stage_to)?,
            actor: r.actor,
            note: r.note,
            data: serde_json::from_str(&r.data).map_err(|_| corrupt("data"))?,
            occurred_at: timestamp(r.occurred_at)?,
            recorded_at: timestamp(r.recorded_at)?,
        })
    }
}

crate::sql::lite_row! {
    /// The referrer behind a code, with the code's program.
    pub(crate) struct ReferrerRow {
        code_status: String,
        pub(crate) enrollment_id: Uuid,
        pub(crate) program_id: Uuid,
        participant_id: Uuid,
        email: String,
        kind: String,
        team: Option<String>,
        company: Option<String>,
        status: String,
    }
}

pub(crate) const FIND_REFERRER: &str = "SELECT c.status AS code_status, e.id AS enrollment_id, e.program_id,
        pa.id AS participant_id, pa.email, pa.kind, pa.team, pa.company, pa.status
     FROM codes c
     JOIN enrollments e ON e.id = c.enrollment_id
     JOIN participants pa ON pa.id = e.participant_id
     WHERE c.code = $1";

/// The referral holding a prospect (by person key or external id) in a program.
/// Two lookups rather than one `OR`: each half is answered by its holder
/// index, where the `OR` made SQLite read every referral of the program.
pub(crate) const FIND_HOLDER: &str = "SELECT id, status FROM (
       SELECT id, status, created_at FROM referrals
       WHERE program_id = $1 AND status IN ('active', 'in_review') AND prospect_person_key = $2
       UNION ALL
       SELECT id, status, created_at FROM referrals
       WHERE program_id = $1 AND status IN ('active', 'in_review') AND prospect_external_id = $3
     ) AS holders ORDER BY created_at, id LIMIT 1";

pub(crate) const RECENT_LEADS: &str = "SELECT COUNT(*) FROM referrals
     WHERE participant_id = $1 AND program_id = $2 AND source IN ('lead', 'invite') AND created_at >= $3";

pub(crate) const INSERT_REFERRAL: &str = "INSERT INTO referrals (id, program_id, program_version_id, enrollment_id,
        participant_id, code, source, prospect_email, prospect_email_norm, prospect_person_key, prospect_name,
        prospect_company, prospect_phone, prospect_external_id, consent_text, consent_at, note, stage, status,
        rejection_reason, review_signals, holder_referral_id, explanation, assignee, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, 'new', $18, $19, $20, $21,
        $22, NULL, $23, $23)
     ON CONFLICT DO NOTHING";

pub(crate) const INSERT_EVENT: &str =
    "INSERT INTO referral_events (id, referral_id, seq, kind, stage_from, stage_to, actor, note,
        data, occurred_at, recorded_at)
     VALUES ($1, $2, (SELECT COALESCE(MAX(seq), 0) + 1 FROM referral_events WHERE referral_id = $2), $3, $4, $5, $6,
        $7, $8, $9, $10)";

/// Takes the referral's row lock (Postgres) before reading it, so two staff
/// actions on one referral run one after the other; answers its status.
const TOUCH: &str = "UPDATE referrals SET updated_at = $2 WHERE id = $1 RETURNING status";

/// One timeline entry; `$exec` is a transaction.
macro_rules! insert_event {
    ($exec:expr, $referral:expr, $kind:expr, $from:expr, $to:expr, $actor:expr, $note:expr, $data:expr, $at:expr) => {
        $crate::sql::query($crate::referrals::INSERT_EVENT)
            .bind(uuid::Uuid::now_v7())
            .bind($referral.0)
            .bind($kind.as_str())
            .bind($from.map(vouch_domain::referral::Stage::as_str))
            .bind($to.map(vouch_domain::referral::Stage::as_str))
            .bind($actor)
            .bind($note)
            .bind(serde_json::Value::to_string(&$data))
            .bind($crate::micros($at))
            .bind($crate::micros($at))
            .execute($exec)
    };
}
pub(crate) use insert_event;

pub(crate) fn signals_text(signals: &[ReviewSignal]) -> String {
    signals.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
}

pub(crate) fn decision_data(d: &Decision) -> Value {
    serde_json::to_value(d).unwrap_or(Value::Null)
}

impl ReferrerRow {
    pub(crate) fn into_referrer(self) -> Result<Referrer> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("participant {}: {what}", self.participant_id));
        Ok(Referrer {
            participant: ParticipantId(self.participant_id),
            email: Email::parse(&self.email).map_err(|_| corrupt("email"))?,
            kind: ParticipantKind::parse(&self.kind).ok_or_else(|| corrupt("kind"))?,
            team: self.team,
            // A company written as a web domain says which domain is theirs.
            company_domain: self
                .company
                .as_deref()
                .and_then(|c| CompanyDomain::parse(c).ok())
                .map(|d| d.as_str().to_string()),
            status: ParticipantStatus::parse(&self.status).ok_or_else(|| corrupt("status"))?,
            code_active: self.code_status == "active",
        })
    }
}

impl Store {
    /// Creates a referral, attributed by `decide` (the domain's `attribute`
    /// with the program's rules) from what the store finds, in one write
    /// transaction. Rejected referrals are stored too; only "no claim"
    /// (`NotAttributable`) and an unknown code store nothing.
    ///
    /// The customer registry is asked first, outside the transaction: it only
    /// grows, so the answer can only be older than the transaction by the
    /// moments before it, as if the lead had arrived that much earlier.
    pub async fn create_referral(
        &self,
        new: &NewReferral,
        decide: impl Fn(&AttributionFacts) -> Result<Decision, NotAttributable>,
    ) -> Result<ReferralRecord, CreateReferralError> {
        self.create_referral_with_mail(new, &ReferralMail::None, decide).await
    }

    /// [`Store::create_referral`], writing `mail`'s outbox row in the same
    /// transaction when the referral holds the prospect. For an invite, the
    /// referrer's allowance is checked in the transaction too (on Postgres under
    /// the referrer's row lock, so concurrent invites cannot both squeeze in).
    pub async fn create_referral_with_mail(
        &self,
        new: &NewReferral,
        mail: &ReferralMail,
        decide: impl Fn(&AttributionFacts) -> Result<Decision, NotAttributable>,
    ) -> Result<ReferralRecord, CreateReferralError> {
        let registry_match = self.registry_match_for(new).await?;
        on_write_tx!(self, tx, CreateReferralError => {
            crate::referrals::create_referral_tx!(tx, new, mail, &decide, registry_match).await
        })?;
        Ok(self.referral(new.id).await?)
    }

    /// What the customer registry knows of the prospect. Asked outside the
    /// write transaction: the registry only grows, so the answer can only be
    /// older than the transaction by the moments before it, as if the lead had
    /// arrived that much earlier.
    pub(crate) async fn registry_match_for(&self, new: &NewReferral) -> Result<Option<KnownBy>> {
        let email_norm = new.prospect.email.as_ref().map(Email::normalized);
        self.is_known_customer(
            email_norm.as_deref(),
            new.registry_domain.as_deref(),
            new.prospect.external_id.as_deref(),
        )
        .await
    }

    /// A referral with its timeline.
    pub async fn referral(&self, id: ReferralId) -> Result<ReferralRecord> {
        on_read!(self, p => {
            let row: Option<ReferralRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT_REFERRALS} WHERE r.id = $1")))
                .bind(id.0)
                .fetch_optional(p)
                .await?;
            let mut record = ReferralRecord::try_from(row.ok_or(StoreError::NotFound)?)?;
            let events: Vec<EventRow> = sqlx::query_as(SELECT_EVENTS).bind(id.0).fetch_all(p).await?;
            record.timeline = events.into_iter().map(ReferralEvent::try_from).collect::<Result<_>>()?;
            Ok(record)
        })
    }

    /// Referrals matching `filter`, newest first, `limit` at most, after the
    /// referral `before` (the last one of the previous page). Without timelines.
    pub async fn referrals(
        &self,
        filter: &ReferralFilter,
        before: Option<ReferralId>,
        limit: u32,
    ) -> Result<Vec<ReferralRecord>> {
        let rows: Vec<ReferralRow> = on_read!(self, p => {
            let mut q = sqlx::QueryBuilder::new(SELECT_REFERRALS);
            q.push(" WHERE 1 = 1");
            if let Some(program) = filter.program {
                q.push(" AND r.program_id = ").push_bind(program.0);
            }
            if let Some(stage) = filter.stage {
                q.push(" AND r.stage = ").push_bind(stage.as_str());
            }
            if let Some(status) = filter.status {
                q.push(" AND r.status = ").push_bind(status.as_str());
            }
            if let Some(participant) = filter.participant {
                q.push(" AND r.participant_id = ").push_bind(participant.0);
            }
            if let Some(source) = &filter.source {
                q.push(" AND r.source = ").push_bind(source.as_str());
            }
            if let Some(assignee) = &filter.assignee {
                q.push(" AND r.assignee = ").push_bind(assignee.as_str());
            }
            if let Some(from) = filter.created_from {
                q.push(" AND r.created_at >= ").push_bind(micros(from));
            }
            if let Some(to) = filter.created_to {
                q.push(" AND r.created_at < ").push_bind(micros(to));
            }
            if let Some(before) = before {
                q.push(" AND r.id < ").push_bind(before.0);
            }
            q.push(" ORDER BY r.id DESC LIMIT ").push_bind(i64::from(limit));
            q.build_query_as().fetch_all(p).await?
        });
        rows.into_iter().map(ReferralRecord::try_from).collect()
    }

    /// A staff move along the pipeline, judged by `Stage::staff_move` from the
    /// stage derived so far (facts and earlier moves, in the order they happened).
    pub async fn move_stage(
        &self,
        id: ReferralId,
        to: Stage,
        actor: &str,
        note: Option<&str>,
        now: Timestamp,
    ) -> Result<ReferralRecord, ReferralActionError> {
        on_write!(self, p => {
            let mut tx = p.begin().await?;
            let touched: Option<(String,)> =
                sqlx::query_as(TOUCH).bind(id.0).bind(micros(now)).fetch_optional(&mut *tx).await?;
            let Some((status,)) = touched else {
                return Err(ReferralActionError::NotFound);
            };
            let rows: Vec<EventRow> = sqlx::query_as(SELECT_EVENTS).bind(id.0).fetch_all(&mut *tx).await?;
            let events = rows.into_iter().map(ReferralEvent::try_from).collect::<Result<Vec<_>>>()?;
            let (facts, mut moves) = stage_inputs(&events);
            let from = derive_stage(&facts, &moves);
            from.staff_move(to).map_err(ReferralActionError::Stage)?;
            let seq = events.last().map_or(1, |e| e.seq + 1);
            moves.push(StaffMove::new(to, now, u64::try_from(seq).unwrap_or(u64::MAX)));
            let stage = derive_stage(&facts, &moves);
            insert_event!(&mut *tx, id, ReferralEventKind::Stage, Some(from), Some(to), actor, note, json!({}), now)
                .await?;
            sqlx::query("UPDATE referrals SET stage = $2 WHERE id = $1")
                .bind(id.0)
                .bind(stage.as_str())
                .execute(&mut *tx)
                .await?;
            // A staff move counts like the fact it stands for: the rewards follow.
            let cause = crate::rewards::AwardCause::staff_move(from, stage, &status);
            crate::rewards::award!(tx, id, cause, actor, now).await?;
            // The referrer hears of each staff move on a referral that counts, as
            // their preference says.
            crate::preferences::stage_mail!(tx, id, to, Uuid::now_v7(), now).await?;
            tx.commit().await?;
        });
        Ok(self.referral(id).await?)
    }

    /// Overturns a rejection: the referral becomes `active`, unless another
    /// referral holds the prospect. Audited as an `override` event.
    pub async fn override_rejection(
        &self,
        id: ReferralId,
        reason: &str,
        actor: &str,
        now: Timestamp,
    ) -> Result<ReferralRecord, ReferralActionError> {
        // An async block, so that its early returns end the transaction, not the method.
        let outcome: Result<(), ReferralActionError> = on_write!(self, p => async {
            let mut tx = p.begin().await?;
            let current: Option<OverrideRow> = sqlx::query_as(
                "UPDATE referrals SET updated_at = $2 WHERE id = $1
                 RETURNING status, rejection_reason, program_id, prospect_person_key, prospect_external_id",
            )
            .bind(id.0)
            .bind(micros(now))
            .fetch_optional(&mut *tx)
            .await?;
            let Some((status, old_reason, program_id, key, external_id)) = current else {
                return Err(ReferralActionError::NotFound);
            };
            let status = Status::parse(&status).ok_or_else(|| StoreError::Corrupt(format!("referral {id}: status")))?;
            if status != Status::Rejected {
                return Err(ReferralActionError::NotRejected(status));
            }
            let holder: Option<(Uuid, String)> = sqlx::query_as(FIND_HOLDER)
                .bind(program_id)
                .bind(key.as_deref())
                .bind(external_id.as_deref())
                .fetch_optional(&mut *tx)
                .await?;
            if let Some((holder, _)) = holder {
                return Err(ReferralActionError::ProspectHeld(Some(ReferralId(holder))));
            }
            let old_reason = old_reason.unwrap_or_default();
            let explanation = format!(
                "Active by staff override ({actor}): {reason}. It had been rejected ({old_reason})."
            );
            let updated = sqlx::query(
                "UPDATE referrals SET status = 'active', rejection_reason = NULL, holder_referral_id = NULL,
                    review_signals = '', explanation = $2 WHERE id = $1",
            )
            .bind(id.0)
            .bind(&explanation)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::classify);
            match updated {
                // A holder committed since we looked.
                Err(e) if e.is_conflict_on("referrals") => return Err(ReferralActionError::ProspectHeld(None)),
                other => other?,
            };
            let data = json!({"from_status": "rejected", "from_reason": old_reason, "to_status": "active", "reason": reason});
            insert_event!(&mut *tx, id, ReferralEventKind::Override, None::<Stage>, None::<Stage>, actor, Some(reason),
                data, now).await?;
            tx.commit().await?;
            Ok(())
        }.await);
        match outcome {
            Err(ReferralActionError::ProspectHeld(None)) => {
                // Name the winner, read after the failed transaction.
                let r = self.referral(id).await?;
                let key = r.prospect.email.as_ref().map(person_key);
                let holder: Option<(Uuid,)> = on_read!(self, p => sqlx::query_as(FIND_HOLDER_ID)
                    .bind(r.program_id.0)
                    .bind(key.as_deref())
                    .bind(r.prospect.external_id.as_deref())
                    .fetch_optional(p)
                    .await.map_err(StoreError::from)?);
                Err(ReferralActionError::ProspectHeld(holder.map(|(h,)| ReferralId(h))))
            }
            Err(e) => Err(e),
            Ok(()) => Ok(self.referral(id).await?),
        }
    }

    /// Decides a referral in review: `accept` makes it `active`, `reject` makes
    /// it `rejected` (`staff`). Audited as a `review` event.
    pub async fn review(
        &self,
        id: ReferralId,
        decision: ReviewDecision,
        reason: &str,
        actor: &str,
        now: Timestamp,
    ) -> Result<ReferralRecord, ReferralActionError> {
        on_write!(self, p => {
            let mut tx = p.begin().await?;
            let current: Option<(String, String)> = sqlx::query_as(
                "UPDATE referrals SET updated_at = $2 WHERE id = $1 RETURNING status, review_signals",
            )
            .bind(id.0)
            .bind(micros(now))
            .fetch_optional(&mut *tx)
            .await?;
            let Some((status, signals)) = current else {
                return Err(ReferralActionError::NotFound);
            };
            let status = Status::parse(&status).ok_or_else(|| StoreError::Corrupt(format!("referral {id}: status")))?;
            if status != Status::InReview {
                return Err(ReferralActionError::NotInReview(status));
            }
            let (to, rejection, explanation) = match decision {
                ReviewDecision::Accept => (
                    Status::Active,
                    None,
                    format!("Active after review by {actor}: {reason}. It had been flagged ({signals})."),
                ),
                ReviewDecision::Reject => (
                    Status::Rejected,
                    Some(RejectionReason::Staff),
                    format!("Rejected (staff) after review by {actor}: {reason}. It had been flagged ({signals})."),
                ),
            };
            sqlx::query("UPDATE referrals SET status = $2, rejection_reason = $3, explanation = $4 WHERE id = $1")
                .bind(id.0)
                .bind(to.as_str())
                .bind(rejection.map(RejectionReason::as_str))
                .bind(&explanation)
                .execute(&mut *tx)
                .await?;
            let data = json!({
                "decision": decision.as_str(), "reason": reason, "signals": signals,
                "from_status": "in_review", "to_status": to.as_str(),
            });
            insert_event!(&mut *tx, id, ReferralEventKind::Review, None::<Stage>, None::<Stage>, actor, Some(reason),
                data, now).await?;
            tx.commit().await?;
        });
        Ok(self.referral(id).await?)
    }

    /// Sets (or, with `None`, clears) the sales rep working the referral.
    pub async fn assign_referral(
        &self,
        id: ReferralId,
        assignee: Option<&str>,
        actor: &str,
        now: Timestamp,
    ) -> Result<ReferralRecord, ReferralActionError> {
        on_write!(self, p => {
            let mut tx = p.begin().await?;
            let current: Option<(Option<String>,)> = sqlx::query_as(
                "UPDATE referrals SET updated_at = $2 WHERE id = $1 RETURNING assignee",
            )
            .bind(id.0)
            .bind(micros(now))
            .fetch_optional(&mut *tx)
            .await?;
            let Some((previous,)) = current else {
                return Err(ReferralActionError::NotFound);
            };
            if previous.as_deref() != assignee {
                sqlx::query("UPDATE referrals SET assignee = $2 WHERE id = $1")
                    .bind(id.0)
                    .bind(assignee)
                    .execute(&mut *tx)
                    .await?;
                let data = json!({"from": previous, "to": assignee});
                insert_event!(&mut *tx, id, ReferralEventKind::Assign, None::<Stage>, None::<Stage>, actor,
                    None::<&str>, data, now).await?;
            }
            tx.commit().await?;
        });
        Ok(self.referral(id).await?)
    }

    /// Counts referrals (for "nothing was stored" assertions).
    pub async fn count_referrals(&self) -> Result<i64> {
        let (n,): (i64,) = on_read!(self, p => sqlx::query_as("SELECT COUNT(*) FROM referrals").fetch_one(p).await?);
        Ok(n)
    }
}

/// The referrer's invites in a program since `$3` (rejected ones too).
pub(crate) const INVITES_SINCE: &str = "SELECT COUNT(*) FROM referrals
     WHERE participant_id = $1 AND program_id = $2 AND source = 'invite' AND created_at >= $3";

/// The referrer's name and email, and the program's slug, for mail.
pub(crate) const REFERRER_AND_PROGRAM: &str = "SELECT pa.name, pa.email, g.slug FROM participants pa, programs g
     WHERE pa.id = $1 AND g.id = $2";

/// The prospect as a referrer knows them: by name, else by email.
pub(crate) fn prospect_label(p: &NewProspect) -> String {
    match (&p.name, &p.email) {
        (Some(name), _) => name.clone(),
        (None, Some(email)) => email.as_str().to_string(),
        (None, None) => p.external_id.clone().unwrap_or_else(|| "your contact".into()),
    }
}

const FIND_HOLDER_ID: &str = "SELECT id FROM referrals
     WHERE program_id = $1 AND status IN ('active', 'in_review')
       AND (prospect_person_key = $2 OR prospect_external_id = $3)
     ORDER BY created_at, id LIMIT 1";

/// status, rejection_reason, program_id, prospect_person_key, prospect_external_id
type OverrideRow = (String, Option<String>, Uuid, Option<String>, Option<String>);

/// The facts and staff moves of a timeline, as `derive_stage` takes them.
pub(crate) fn stage_inputs(events: &[ReferralEvent]) -> (Vec<Fact>, Vec<StaffMove>) {
    let mut facts = Vec::new();
    let mut moves = Vec::new();
    for e in events {
        match e.kind {
            ReferralEventKind::Fact => {
                if let Some(kind) = e.data.get("fact").and_then(Value::as_str).and_then(FactKind::parse) {
                    facts.push(Fact::new(kind, e.occurred_at));
                }
            }
            // A stage change the facts caused (see `events`) records a
            // derivation, not a staff move: replaying it would count it twice.
            ReferralEventKind::Stage if e.data.get("derived").is_some() => {}
            ReferralEventKind::Stage => {
                if let Some(to) = e.stage_to {
                    moves.push(StaffMove::new(to, e.occurred_at, u64::try_from(e.seq).unwrap_or(0)));
                }
            }
            _ => {}
        }
    }
    (facts, moves)
}

/// The body of [`Store::create_referral_with_mail`], run inside the caller's
/// open write transaction `$tx` (a `signup` creates its referral and records
/// itself in one). Evaluates to `Result<(), CreateReferralError>`.
macro_rules! create_referral_tx {
    ($tx:ident, $new:expr, $mail:expr, $decide:expr, $registry_match:expr) => {
        async {
            #[allow(unused_imports)]
            use $crate::referrals::*;
            use uuid::Uuid;
            use vouch_domain::referral::{Holder, Prospect, RejectionReason, Stage, Status};
            use vouch_domain::{Email, ParticipantId};
            use $crate::{StoreError, micros, outbox::MailPayload};
            let new: &NewReferral = $new;
            let mail: &ReferralMail = $mail;
            let postgres = $crate::sql::on_postgres(&*$tx);
            let decide = $decide;
            let registry_match = $registry_match;
            let email_norm = new.prospect.email.as_ref().map(Email::normalized);
            let key = new.prospect.email.as_ref().map(vouch_domain::referral::person_key);
            let row: Option<ReferrerRow> =
                $crate::sql::query_as(FIND_REFERRER).bind(new.code.as_str()).fetch_optional(&mut *$tx).await?;
            let row = match row {
                Some(r) if r.program_id == new.program_id.0 => r,
                _ => return Err(CreateReferralError::UnknownCode(new.code.to_string())),
            };
            let enrollment_id = row.enrollment_id;
            let referrer = row.into_referrer()?;
            if let ReferralMail::Invite(invite) = mail {
                if postgres {
                    $crate::sql::query("SELECT id FROM participants WHERE id = $1 FOR UPDATE")
                        .bind(referrer.participant.0)
                        .execute(&mut *$tx)
                        .await?;
                }
                let (sent,): (i64,) = $crate::sql::query_as(INVITES_SINCE)
                    .bind(referrer.participant.0)
                    .bind(new.program_id.0)
                    .bind(micros(invite.since))
                    .fetch_one(&mut *$tx)
                    .await?;
                if sent >= i64::from(invite.limit) {
                    return Err(CreateReferralError::RateLimited { limit: invite.limit });
                }
            }
            let known: Option<(Uuid, Option<String>)> = match &email_norm {
                Some(norm) => $crate::sql::query_as("SELECT id, team FROM participants WHERE email_norm = $1")
                    .bind(norm)
                    .fetch_optional(&mut *$tx)
                    .await?,
                None => None,
            };
            let prospect = Prospect {
                email: new.prospect.email.clone(),
                external_id: new.prospect.external_id.clone(),
                participant: known.as_ref().map(|(id, _)| ParticipantId(*id)),
                team: known.and_then(|(_, team)| team),
            };
            let (recent,): (i64,) = $crate::sql::query_as(RECENT_LEADS)
                .bind(referrer.participant.0)
                .bind(new.program_id.0)
                .bind(micros(new.recent_since))
                .fetch_one(&mut *$tx)
                .await?;
            let referrer_ip_hashes =
                crate::preferences::referrer_ip_hashes!(&mut *$tx, referrer.participant.0).await?;
            let mut facts = AttributionFacts {
                referrer,
                prospect,
                registry_match,
                holder: None,
                recent_leads: u32::try_from(recent).unwrap_or(u32::MAX),
                referrer_ip_hashes,
            };
            // Twice at most: a lost race shows the winner, who then holds.
            let mut attempts = 0;
            let decision = loop {
                attempts += 1;
                let holder: Option<(Uuid, String)> = $crate::sql::query_as(FIND_HOLDER)
                    .bind(new.program_id.0)
                    .bind(key.as_deref())
                    .bind(new.prospect.external_id.as_deref())
                    .fetch_optional(&mut *$tx)
                    .await?;
                facts.holder = holder
                    .map(|(id, status)| -> Result<Holder> {
                        let status = Status::parse(&status)
                            .ok_or_else(|| StoreError::Corrupt(format!("referral {id}: status")))?;
                        Ok(Holder { referral: ReferralId(id), status })
                    })
                    .transpose()?;
                let decision = decide(&facts).map_err(CreateReferralError::NotAttributable)?;
                let inserted = $crate::sql::query(INSERT_REFERRAL)
                    .bind(new.id.0)
                    .bind(new.program_id.0)
                    .bind(new.program_version_id.0)
                    .bind(enrollment_id)
                    .bind(facts.referrer.participant.0)
                    .bind(new.code.as_str())
                    .bind(new.source.as_str())
                    .bind(new.prospect.email.as_ref().map(Email::as_str))
                    .bind(email_norm.as_deref())
                    .bind(key.as_deref())
                    .bind(new.prospect.name.as_deref())
                    .bind(new.prospect.company.as_deref())
                    .bind(new.prospect.phone.as_deref())
                    .bind(new.prospect.external_id.as_deref())
                    .bind(new.consent.as_ref().map(|c| c.text.as_str()))
                    .bind(new.consent.as_ref().map(|c| micros(c.at)))
                    .bind(new.note.as_deref())
                    .bind(decision.status.as_str())
                    .bind(decision.rejection_reason.map(RejectionReason::as_str))
                    .bind(signals_text(&decision.review_signals))
                    .bind(decision.holder.map(|h| h.0))
                    .bind(&decision.explanation)
                    .bind(micros(new.now))
                    .execute(&mut *$tx)
                    .await?;
                if inserted.rows_affected() == 1 {
                    break decision;
                }
                tracing::debug!(referral = %new.id, "another referral took the prospect meanwhile; deciding again");
                // Another transaction committed a holder since we looked (the
                // partial unique index refused a second one): decide again.
                if attempts >= 3 || !decision.status.holds_prospect() {
                    return Err(StoreError::Conflict { constraint: "referrals_holder".into() }.into());
                }
            };
            let created = json!({"source": new.source.as_str(), "code": new.code.as_str()});
            $crate::referrals::insert_event!(&mut *$tx, new.id, ReferralEventKind::Created, None::<Stage>, Some(Stage::New), &new.actor,
                new.note.as_deref(), created, new.now).await?;
            $crate::referrals::insert_event!(&mut *$tx, new.id, ReferralEventKind::Decision, None::<Stage>, None::<Stage>, SYSTEM_ACTOR,
                None::<&str>, decision_data(&decision), new.now).await?;
            if decision.status.holds_prospect() && !matches!(mail, ReferralMail::None) {
                let (name, email, slug): (String, String, String) = $crate::sql::query_as(REFERRER_AND_PROGRAM)
                    .bind(facts.referrer.participant.0)
                    .bind(new.program_id.0)
                    .fetch_one(&mut *$tx)
                    .await?;
                let payload = match mail {
                    ReferralMail::Invite(invite) => new.prospect.email.as_ref().map(|to| MailPayload::Invite {
                        to: to.as_str().to_string(),
                        referrer_name: name,
                        program: slug,
                        code: new.code.as_str().to_string(),
                        message: invite.message.clone(),
                        unsubscribe_token: invite.unsubscribe_token.clone(),
                    }),
                    ReferralMail::LeadReceived => Some(MailPayload::LeadReceived {
                        to: email,
                        name,
                        program: slug,
                        prospect: prospect_label(&new.prospect),
                    }),
                    ReferralMail::None => None,
                };
                if let Some(payload) = payload {
                    let payload = serde_json::to_value(&payload).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    crate::outbox::enqueue!(&mut *$tx, new.id.0, crate::outbox::EMAIL, &payload, new.now).await?;
                }
            }
            Ok::<Decision, CreateReferralError>(decision)
        }
    };
}
pub(crate) use create_referral_tx;
