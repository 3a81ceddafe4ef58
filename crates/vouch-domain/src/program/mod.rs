//! Programs as code: the model of a referral program, read from a TOML file.
//!
//! `parse_program` turns a file into a [`ProgramDefinition`], reporting every
//! problem at once with its field path and line. Storage keeps a definition as
//! JSON (the serde derives below), and `diff` says what an edit changes.
//! Computing rewards from the rules is the rewards engine's job, not this module's.
//! The format is described for program managers in `docs/programs.md`.

mod diff;
mod emails;
mod parse;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::money::Currency;
use crate::participant::ParticipantKind;

pub use diff::{Change, diff};
pub use emails::{EmailTemplate, EmailTemplates, MessageKind, TemplateError, check_template, fill, uses_placeholder};
pub use parse::parse_program;

/// The largest amount a file may state, in minor units (10^12: USD 10 billion).
/// Far above any real reward, and low enough that an amount times any plausible
/// number of units (up to a million) still fits in an i64.
pub const MAX_AMOUNT_MINOR: i64 = 1_000_000_000_000;

/// One version of a program, validated: every value in it is usable as is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramDefinition {
    slug: ProgramSlug,
    name: String,
    description: Option<String>,
    currency: Currency,
    timezone: String,
    landing_url: HttpUrl,
    terms_url: Option<HttpUrl>,
    eligible: Vec<ParticipantKind>,
    join: JoinPolicy,
    business: bool,
    attribution: Attribution,
    review: ReviewPolicy,
    enroll_converted: bool,
    rewards: Vec<RewardRule>,
    /// The program's own wording of its emails (none: the built-in wording).
    /// Versions stored before overrides existed have none.
    #[serde(default, skip_serializing_if = "EmailTemplates::is_empty")]
    emails: EmailTemplates,
}

impl ProgramDefinition {
    pub fn slug(&self) -> &ProgramSlug {
        &self.slug
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }
    pub fn currency(&self) -> Currency {
        self.currency
    }
    /// The IANA name, canonical (`America/Chicago` even if the file wrote it in lower case).
    pub fn timezone(&self) -> &str {
        &self.timezone
    }
    pub fn landing_url(&self) -> &Url {
        &self.landing_url.0
    }
    pub fn terms_url(&self) -> Option<&Url> {
        self.terms_url.as_ref().map(|u| &u.0)
    }
    pub fn eligible(&self) -> &[ParticipantKind] {
        &self.eligible
    }
    pub fn is_eligible(&self, kind: ParticipantKind) -> bool {
        self.eligible.contains(&kind)
    }
    pub fn join(&self) -> JoinPolicy {
        self.join
    }
    /// Whether a prospect at the referrer's own company domain counts as a self-referral.
    pub fn business(&self) -> bool {
        self.business
    }
    pub fn attribution_window_days(&self) -> u32 {
        self.attribution.window_days
    }
    pub fn attribution_rule(&self) -> AttributionRule {
        self.attribution.rule
    }
    pub fn review(&self) -> ReviewPolicy {
        self.review
    }
    /// The viral loop: a referred customer who converts is enrolled as a referrer.
    pub fn enroll_converted(&self) -> bool {
        self.enroll_converted
    }
    /// The program's wording of a message kind, if it rewords it.
    pub fn email(&self, kind: MessageKind) -> Option<&EmailTemplate> {
        self.emails.get(&kind)
    }

    pub fn emails(&self) -> &EmailTemplates {
        &self.emails
    }

    pub fn rewards(&self) -> &[RewardRule] {
        &self.rewards
    }
    pub fn rule(&self, id: &str) -> Option<&RewardRule> {
        self.rewards.iter().find(|r| r.id.as_str() == id)
    }
}

/// Every problem found in a program file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramErrors {
    pub errors: Vec<FieldError>,
}

/// One problem, at a field path such as `rewards[0].tiers[1].each` (empty for a
/// TOML syntax error). Line and column are 1-based; a missing top-level field has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub reason: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, "line {line}, column {column}: ")?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.reason)
    }
}

impl std::fmt::Display for ProgramErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ProgramErrors {}

/// Why a slug or a rule id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlugError {
    #[error("must be 2 to 64 characters")]
    Length,
    #[error("may contain only lowercase letters a-z, digits and `-`")]
    BadCharacter,
    #[error("must start with a letter")]
    BadStart,
}

fn check_slug(raw: &str) -> Result<(), SlugError> {
    if !(2..=64).contains(&raw.len()) {
        return Err(SlugError::Length);
    }
    if !raw.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err(SlugError::BadCharacter);
    }
    if !raw.as_bytes()[0].is_ascii_lowercase() {
        return Err(SlugError::BadStart);
    }
    Ok(())
}

macro_rules! slug_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn parse(raw: &str) -> Result<Self, SlugError> {
                check_slug(raw).map(|()| Self(raw.to_owned()))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = SlugError;
            fn try_from(raw: String) -> Result<Self, SlugError> {
                check_slug(&raw).map(|()| Self(raw))
            }
        }

        impl From<$name> for String {
            fn from(s: $name) -> String {
                s.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

slug_type!(
    /// A program's name in URLs, API paths and file names: lowercase `[a-z0-9-]`,
    /// 2 to 64 characters, starting with a letter.
    ProgramSlug
);
slug_type!(
    /// A reward rule's stable name within its program, spelled like a slug. Rewards
    /// point to it, so it must survive edits of everything else in the rule.
    RuleId
);

/// An absolute http or https URL: the redirect sends visitors there, so nothing
/// else (`javascript:`, `file:`) may get in.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HttpUrl(Url);

impl HttpUrl {
    fn parse(raw: &str) -> Result<Self, String> {
        let url = Url::parse(raw).map_err(|e| format!("`{raw}` is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("`{raw}` must start with https:// or http://"));
        }
        Ok(Self(url))
    }
}

// The url crate's serde feature is off; a string is all storage needs.
impl Serialize for HttpUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

impl<'de> Deserialize<'de> for HttpUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        HttpUrl::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// An exact percentage in hundredths of a percent (basis points): "12.5" is 1250.
/// Anything outside (0, 100], or finer than 0.01, is refused rather than rounded, so the
/// file always means what it says. Rounding a share of an amount to minor units is
/// the rewards engine's rule, documented where it computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Percent(u32);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PercentError {
    #[error("`{0}` is not a percentage: write digits with an optional decimal point, like \"12.5\"")]
    Syntax(String),
    #[error("`{0}` has more than 2 decimals; hundredths of a percent is the finest allowed")]
    TooPrecise(String),
    #[error("`{0}` is out of range: a percentage must be more than 0 and at most 100")]
    Range(String),
}

impl Percent {
    pub const DECIMALS: u32 = 2;

    pub fn parse(raw: &str) -> Result<Self, PercentError> {
        let (whole, frac) = raw.split_once('.').unwrap_or((raw, ""));
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole) || (raw.contains('.') && !digits(frac)) {
            return Err(PercentError::Syntax(raw.to_owned()));
        }
        let frac = frac.trim_end_matches('0');
        if frac.len() > Self::DECIMALS as usize {
            return Err(PercentError::TooPrecise(raw.to_owned()));
        }
        let whole = whole.trim_start_matches('0');
        if whole.len() > 3 {
            return Err(PercentError::Range(raw.to_owned()));
        }
        // Both parts are at most three ASCII digits here; an empty one is zero.
        let whole: u32 = whole.parse().unwrap_or(0);
        let frac: u32 = format!("{frac:0<2}").parse().unwrap_or(0);
        let basis_points = whole * 100 + frac;
        if basis_points == 0 || basis_points > 10_000 {
            return Err(PercentError::Range(raw.to_owned()));
        }
        Ok(Self(basis_points))
    }

    /// Hundredths of a percent: 100% is 10_000.
    pub fn basis_points(self) -> u32 {
        self.0
    }
}

impl std::fmt::Display for Percent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (whole, frac) = (self.0 / 100, self.0 % 100);
        match frac {
            0 => write!(f, "{whole}"),
            _ if frac % 10 == 0 => write!(f, "{whole}.{}", frac / 10),
            _ => write!(f, "{whole}.{frac:02}"),
        }
    }
}

impl TryFrom<String> for Percent {
    type Error = PercentError;
    fn try_from(raw: String) -> Result<Self, PercentError> {
        Self::parse(&raw)
    }
}

impl From<Percent> for String {
    fn from(p: Percent) -> String {
        p.to_string()
    }
}

/// Enums whose values are written as words in program files.
trait Named: Copy + PartialEq + 'static {
    const ALL: &'static [Self];
    fn name(self) -> &'static str;
}

impl Named for ParticipantKind {
    const ALL: &'static [Self] = &ParticipantKind::ALL;
    fn name(self) -> &'static str {
        self.as_str()
    }
}

macro_rules! named_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }

        impl Named for $name {
            const ALL: &'static [Self] = $name::ALL;
            fn name(self) -> &'static str {
                self.as_str()
            }
        }
    };
}

named_enum!(
    /// Who may enroll: anyone through the sign-up form, or only people staff invite.
    JoinPolicy { Open = "open", InviteOnly = "invite_only" }
);
named_enum!(
    /// Which referrer gets a prospect that several referred.
    AttributionRule { FirstReferrer = "first_referrer" }
);
named_enum!(Beneficiary { Referrer = "referrer", Referee = "referee" });
named_enum!(
    /// The fact about the referral that earns the reward.
    Trigger { Qualified = "qualified", Won = "won", Payment = "payment" }
);
named_enum!(RewardKind {
    Credit = "credit",
    GiftCard = "gift_card",
    Cash = "cash",
    PlanUpgrade = "plan_upgrade",
    Custom = "custom",
});
named_enum!(
    /// The span of time over which tiers count units, or a cap adds up.
    Period {
        /// Yearly from the contract date of the beneficiary's first rewarded referral.
        ReferrerYear = "referrer_year",
        CalendarYear = "calendar_year",
    }
);
named_enum!(
    /// Which tier prices the units of one referral (see design brief, program C).
    TierPolicy {
        /// All units at the tier the yearly total was in before this referral.
        WholeAtStart = "whole_at_start",
        /// Each unit at the tier of its own position in the year.
        Marginal = "marginal",
        /// All units at the tier reached with this referral.
        WholeAtEnd = "whole_at_end",
    }
);
named_enum!(
    /// When a hold's clock starts.
    HoldStart {
        ContractDate = "contract_date",
        Won = "won",
        /// When the rule's trigger happened.
        Event = "event",
    }
);
named_enum!(VoidOn { Churned = "churned", Refunded = "refunded" });
named_enum!(
    /// Whether a reward is approved as soon as it is due (after any hold), or waits for finance.
    Approval { Auto = "auto", Manual = "manual" }
);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attribution {
    pub window_days: u32,
    pub rule: AttributionRule,
}

impl Default for Attribution {
    fn default() -> Self {
        Self { window_days: 90, rule: AttributionRule::FirstReferrer }
    }
}

/// When a referrer's leads come in so fast that a person should look at them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewPolicy {
    /// This many leads from one referrer...
    pub burst_leads: u32,
    /// ...within this many minutes flag the last of them for review.
    pub burst_window_minutes: u32,
}

impl Default for ReviewPolicy {
    fn default() -> Self {
        Self { burst_leads: 10, burst_window_minutes: 60 }
    }
}

/// What one beneficiary earns from one referral, and under which conditions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewardRule {
    pub id: RuleId,
    pub beneficiary: Beneficiary,
    pub trigger: Trigger,
    pub kind: RewardKind,
    pub computation: Computation,
    pub hold: Option<Hold>,
    pub approval: Approval,
    pub caps: Caps,
    /// A churn or refund after payment creates a negative adjustment.
    pub clawback: bool,
}

/// How a reward's value is found. All amounts are minor units of the program's currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Computation {
    Flat { amount_minor: i64 },
    PerUnit(PerUnit),
    Percentage(Percentage),
    PlanUpgrade { plan: String, months: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerUnit {
    /// What is counted, singular: "technician".
    pub unit: String,
    pub period: Period,
    pub tier_policy: TierPolicy,
    /// At least one; `up_to` strictly increasing, and only the last one open-ended.
    pub tiers: Vec<Tier>,
}

/// Units at yearly positions up to and including `up_to` (no bound when `None`)
/// earn `each_minor` apiece.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tier {
    pub up_to: Option<u32>,
    pub each_minor: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Percentage {
    pub percent: Percent,
    pub of: PercentOf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PercentOf {
    /// The value reported with `won`.
    ContractValue,
    /// Each `payment` within `months` of the first one.
    Payments { months: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub after: HoldStart,
    pub months: u32,
    pub days: u32,
    /// A fact of these kinds dated before the hold ends voids the reward.
    pub void_on: Vec<VoidOn>,
}

/// Upper bounds on money rewards; a plan upgrade has none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caps {
    pub per_referral_minor: Option<i64>,
    pub per_beneficiary: Option<PeriodCap>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeriodCap {
    pub amount_minor: i64,
    pub period: Period,
}
