//! Whom a referral belongs to, or why it belongs to no one.
//!
//! The store gathers the facts (is the prospect in the customer registry, which
//! referral holds them, how many leads the referrer sent lately) and this module
//! judges them, in one documented order, with a sentence naming the rule applied.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::identity::{is_disposable, is_free_mail, person_key};
use super::{ReferralId, RejectionReason, ReviewSignal, Status};
use crate::participant::ParticipantStatus;
use crate::program::ProgramDefinition;
use crate::{Email, ParticipantId, ParticipantKind};

/// The program version's rules that attribution needs: the version in force when
/// the referral is created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rules {
    /// Whether a prospect at the referrer's own company domain is a self-referral.
    pub business: bool,
    pub eligible: Vec<ParticipantKind>,
    /// How old a click may be, in days of 24 hours, and still attribute a sign-up.
    pub window_days: u32,
    /// The lead that makes this many from one referrer within `burst_window_minutes`
    /// is flagged for review (0: never).
    pub burst_leads: u32,
    pub burst_window_minutes: u32,
}

impl Rules {
    pub fn from_program(program: &ProgramDefinition) -> Self {
        let review = program.review();
        Self {
            business: program.business(),
            eligible: program.eligible().to_vec(),
            window_days: program.attribution_window_days(),
            burst_leads: review.burst_leads,
            burst_window_minutes: review.burst_window_minutes,
        }
    }
}

/// The participant the referral would belong to, as the store knows them now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Referrer {
    pub participant: ParticipantId,
    pub email: Email,
    pub kind: ParticipantKind,
    pub team: Option<String>,
    /// The company's web domain when known (`acme.com`). The referrer's own email
    /// domain counts as well, unless it is free mail.
    pub company_domain: Option<String>,
    pub status: ParticipantStatus,
    /// False once staff revoked the code the referral came through.
    pub code_active: bool,
}

/// Who was referred. At least one of `email` and `external_id` is expected; rules
/// about the address are skipped when there is none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prospect {
    pub email: Option<Email>,
    pub external_id: Option<String>,
    /// The participant the prospect already is, when the store found one by email.
    pub participant: Option<ParticipantId>,
    /// That participant's team.
    pub team: Option<String>,
}

/// How the referral arrived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Source {
    /// A lead handed over by the referrer: attributed at submission.
    Lead,
    /// An email invite sent by the referrer: attributed at submission.
    Invite,
    /// A `signup` event carrying the referrer's code (no click to date it).
    SignupWithCode,
    /// A `signup` event carrying a click id: the click must be within the window.
    SignupWithClick { click_at: Timestamp, click_ip_hash: Option<String> },
    /// Created by staff, who have already looked at it: no review signals.
    Staff,
}

impl Source {
    pub fn as_str(&self) -> &'static str {
        match self {
            Source::Lead => "lead",
            Source::Invite => "invite",
            Source::SignupWithCode => "signup_with_code",
            Source::SignupWithClick { .. } => "signup_with_click",
            Source::Staff => "staff",
        }
    }

    /// Submitted by the referrer themselves: what a burst counts.
    fn submitted_by_referrer(&self) -> bool {
        matches!(self, Source::Lead | Source::Invite)
    }
}

/// The referral that already holds the prospect in this program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub referral: ReferralId,
    /// `active` or `in_review` hold the prospect; a `rejected` one is ignored.
    pub status: Status,
}

/// Everything [`attribute`] judges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributionInput {
    pub rules: Rules,
    pub referrer: Referrer,
    pub prospect: Prospect,
    pub source: Source,
    pub now: Timestamp,
    /// The prospect is in the customer registry (by email, domain or external id).
    pub in_registry: bool,
    pub holder: Option<Holder>,
    /// IP hashes seen on the referrer's own visits (empty when unknown).
    pub referrer_ip_hashes: Vec<String>,
    /// The referrer's leads and invites in the burst window, not counting this one.
    pub recent_leads: u32,
}

/// What the program decided about a referral. Stored beside it, with the
/// explanation, so that staff and referrer can read why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub status: Status,
    /// Set exactly when `status` is `rejected`.
    pub rejection_reason: Option<RejectionReason>,
    /// Non-empty exactly when `status` is `in_review`.
    pub review_signals: Vec<ReviewSignal>,
    /// The referral that holds the prospect, for `already_referred`.
    pub holder: Option<ReferralId>,
    /// One sentence naming the rule applied.
    pub explanation: String,
}

impl Decision {
    /// The rule that decided, as a stable name: the rejection reason, or the status.
    pub fn code(&self) -> &'static str {
        self.rejection_reason.map_or(self.status.as_str(), RejectionReason::as_str)
    }

    fn rejected(reason: RejectionReason, why: impl std::fmt::Display) -> Self {
        Self {
            status: Status::Rejected,
            rejection_reason: Some(reason),
            review_signals: Vec::new(),
            holder: None,
            explanation: format!("Rejected ({reason}): {why}."),
        }
    }
}

/// Why no referral is made at all. Not a stored rejection: the referrer has no
/// claim to judge. For a `signup` the caller still records the prospect in the
/// registry and answers with this; for a lead or invite it is a refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{explanation}")]
pub struct NotAttributable {
    pub reason: NotAttributableReason,
    pub explanation: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotAttributableReason {
    /// Staff revoked the code the referral came through.
    CodeRevoked,
    /// The click is older than the program's attribution window.
    ClickExpired,
}

impl NotAttributable {
    pub fn code(&self) -> &'static str {
        match self.reason {
            NotAttributableReason::CodeRevoked => "code_revoked",
            NotAttributableReason::ClickExpired => "click_expired",
        }
    }
}

/// Decides a new referral. The checks, in order; the first that applies decides:
///
/// 1. **No claim** (`Err`): the code is revoked, or the sign-up's click is older
///    than the window. Judging a claim that does not exist would store rejections
///    nobody can act on, so this comes before every rule about the prospect.
/// 2. `ineligible`: the referrer is suspended, or of a kind the program is not open to.
/// 3. `self_referral`: the prospect is the referrer (same participant, or the same
///    [`person_key`]); then `same_team`; then, in business programs, `self_referral`
///    for a prospect at the referrer's company domain (never a free-mail domain).
/// 4. `existing_customer`: the prospect is in the customer registry.
/// 5. `already_referred`: another referral holds the prospect (an `in_review` one
///    too, until decided); first referrer wins.
/// 6. `in_review` with every signal that applies: the click came from the
///    referrer's IP hash, the email domain is disposable, the referrer's leads
///    reached the burst threshold.
/// 7. `active`.
pub fn attribute(input: &AttributionInput) -> Result<Decision, NotAttributable> {
    let AttributionInput { rules, referrer, prospect, source, now, .. } = input;

    // 1. No claim.
    if !referrer.code_active {
        return Err(NotAttributable {
            reason: NotAttributableReason::CodeRevoked,
            explanation: "No referral: the referrer's code has been revoked, and a revoked code attributes nothing."
                .into(),
        });
    }
    if let Source::SignupWithClick { click_at, .. } = source {
        let age = now.duration_since(*click_at);
        if age > SignedDuration::from_hours(i64::from(rules.window_days) * 24) {
            return Err(NotAttributable {
                reason: NotAttributableReason::ClickExpired,
                explanation: format!(
                    "No referral: the prospect clicked the referrer's link {} days before signing up, outside the \
                     program's {}-day attribution window.",
                    age.as_hours() / 24,
                    rules.window_days
                ),
            });
        }
    }

    // 2. Ineligible referrer.
    if referrer.status == ParticipantStatus::Suspended {
        return Ok(Decision::rejected(
            RejectionReason::Ineligible,
            "the referrer is suspended, and a suspended referrer's referrals do not count",
        ));
    }
    if !rules.eligible.contains(&referrer.kind) {
        return Ok(Decision::rejected(
            RejectionReason::Ineligible,
            format_args!("the program is not open to referrers of kind `{}`", referrer.kind.as_str()),
        ));
    }

    // 3. Self-referral and same team.
    let prospect_domain = prospect.email.as_ref().map(Email::domain);
    if prospect.participant == Some(referrer.participant)
        || prospect.email.as_ref().is_some_and(|e| person_key(e) == person_key(&referrer.email))
    {
        return Ok(Decision::rejected(
            RejectionReason::SelfReferral,
            "the prospect is the referrer themselves (the same email address, once case and the tags or dots \
             their provider ignores are set aside)",
        ));
    }
    if let (Some(ours), Some(theirs)) = (team_name(&referrer.team), team_name(&prospect.team))
        && ours.eq_ignore_ascii_case(theirs)
    {
        return Ok(Decision::rejected(
            RejectionReason::SameTeam,
            "the prospect is on the referrer's own team, and no one may refer their own team",
        ));
    }
    if rules.business
        && let Some(domain) = prospect_domain.as_deref().filter(|d| !is_free_mail(d))
        && company_domains(referrer).any(|own| own == domain)
    {
        return Ok(Decision::rejected(
            RejectionReason::SelfReferral,
            format_args!(
                "in this business program a prospect at the referrer's own company domain `{domain}` counts as a \
                 self-referral"
            ),
        ));
    }

    // 4. Customer registry.
    if input.in_registry {
        return Ok(Decision::rejected(
            RejectionReason::ExistingCustomer,
            "the prospect is already in the customer registry, and a referral must be someone who has never \
             signed up before",
        ));
    }

    // 5. Already held.
    if let Some(holder) = input.holder.filter(|h| h.status.holds_prospect()) {
        let pending = if holder.status == Status::InReview {
            " (it is in review, and holds the prospect until decided)"
        } else {
            ""
        };
        let mut decision = Decision::rejected(
            RejectionReason::AlreadyReferred,
            format_args!(
                "referral {} already holds this prospect in the program{pending}, and the first referrer wins",
                holder.referral
            ),
        );
        decision.holder = Some(holder.referral);
        return Ok(decision);
    }

    // 6. Review signals.
    let mut signals = Vec::new();
    let mut reasons = Vec::new();
    if let Source::SignupWithClick { click_ip_hash: Some(ip), .. } = source
        && input.referrer_ip_hashes.iter().any(|own| own == ip)
    {
        signals.push(ReviewSignal::SameIpAsReferrer);
        reasons.push("the prospect's click came from the referrer's own IP address".to_string());
    }
    if *source != Source::Staff
        && let Some(domain) = prospect_domain.as_deref().filter(|d| is_disposable(d))
    {
        signals.push(ReviewSignal::DisposableEmail);
        reasons.push(format!("the prospect's email domain `{domain}` is a disposable-address service"));
    }
    let this_lead = input.recent_leads.saturating_add(1);
    if source.submitted_by_referrer() && rules.burst_leads > 0 && this_lead >= rules.burst_leads {
        signals.push(ReviewSignal::Burst);
        reasons.push(format!(
            "this is lead {this_lead} from the referrer within {} minutes, and the program flags {} or more",
            rules.burst_window_minutes, rules.burst_leads
        ));
    }
    if !signals.is_empty() {
        let names: Vec<&str> = signals.iter().map(|s| s.as_str()).collect();
        return Ok(Decision {
            status: Status::InReview,
            rejection_reason: None,
            review_signals: signals,
            holder: None,
            explanation: format!(
                "In review ({}): {}; the referral holds the prospect until staff decide.",
                names.join(", "),
                reasons.join("; ")
            ),
        });
    }

    // 7. Active.
    Ok(Decision {
        status: Status::Active,
        rejection_reason: None,
        review_signals: Vec::new(),
        holder: None,
        explanation: format!(
            "Active (first referrer wins): the prospect {}, is not in the customer registry, and no other \
             referral holds them.",
            arrival(source, *now, rules.window_days)
        ),
    })
}

fn arrival(source: &Source, now: Timestamp, window_days: u32) -> String {
    match source {
        Source::Lead => "was submitted as a lead by the referrer".into(),
        Source::Invite => "was invited by the referrer".into(),
        Source::SignupWithCode => "signed up with the referrer's code".into(),
        Source::SignupWithClick { click_at, .. } => format!(
            "signed up {} days after clicking the referrer's link, within the program's {window_days}-day \
             attribution window",
            now.duration_since(*click_at).as_hours().max(0) / 24
        ),
        Source::Staff => "was entered by staff for the referrer".into(),
    }
}

fn team_name(team: &Option<String>) -> Option<&str> {
    team.as_deref().map(str::trim).filter(|t| !t.is_empty())
}

/// The domains that say "the referrer's company": the stated company domain and
/// the referrer's own email domain, free mail excluded.
fn company_domains(referrer: &Referrer) -> impl Iterator<Item = String> {
    let stated = referrer
        .company_domain
        .as_deref()
        .map(|d| d.trim().trim_start_matches('@').trim_end_matches('.').to_ascii_lowercase())
        .map(|d| d.strip_prefix("www.").map(str::to_string).unwrap_or(d));
    [stated, Some(referrer.email.domain())].into_iter().flatten().filter(|d| !d.is_empty() && !is_free_mail(d))
}

#[cfg(test)]
mod tests;
