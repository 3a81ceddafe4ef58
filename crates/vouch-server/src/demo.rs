//! Demo data: the five example programs, referrers of every kind, weeks of
//! clicks, a customer registry, and referrals at every stage of the pipeline,
//! so a newcomer has something real to click through.
//!
//! Referrals are made through the real attribution path ([`crate::refer::refer`]),
//! backdated over the last six weeks and in time order, so every decision and
//! explanation is genuine: some are rejected for each reason (existing customer,
//! already referred, self-referral, same team, a suspended referrer), some wait
//! in review (a disposable address, a burst of leads), and staff (`demo`) move
//! the others along the pipeline with the store's `move_stage`.

use std::collections::HashMap;

use futures::StreamExt;
use jiff::{Timestamp, ToSpan};
use vouch_domain::click::{Utm, derive_channel, is_bot};
use vouch_domain::customer::{CompanyDomain, CustomerEntry, CustomerId, CustomerSource, ExternalId};
use vouch_domain::program::parse_program;
use vouch_domain::referral::{RejectionReason, Source, Stage, Status};
use vouch_domain::{ClickId, Email, ParticipantId, ParticipantKind, ProgramId, ProgramVersionId, ReferralCode};
use vouch_store::{Consent, NewClick, NewCustomer, NewProspect, Store, StoreError, StoredProgram};

use crate::enroll::{Enrollment, enroll};
use crate::refer::{Submission, refer};

mod scale;
pub use scale::fill_scaled;

/// Referrals made by `fill` (and `vouch serve --demo`, `vouch demo` without `--scale`).
pub const DEFAULT_REFERRALS: u64 = 300;
/// The actor of everything the demo does as staff.
pub const DEMO_ACTOR: &str = "demo";

pub const EXAMPLE_PROGRAMS: [(&str, &str); 5] = [
    ("customer-credit", include_str!("../../../examples/programs/customer-credit.toml")),
    ("agent-gift-card", include_str!("../../../examples/programs/agent-gift-card.toml")),
    ("per-technician", include_str!("../../../examples/programs/per-technician.toml")),
    ("double-sided", include_str!("../../../examples/programs/double-sided.toml")),
    ("qualified-lead", include_str!("../../../examples/programs/qualified-lead.toml")),
];

#[derive(Debug)]
pub enum Outcome {
    AlreadyHasData,
    Filled {
        programs: usize,
        participants: usize,
        clicks: usize,
        /// Entries of the customer registry.
        customers: usize,
        referrals: ReferralCounts,
        api_key: String,
        sample_code: String,
    },
}

/// How the demo's referrals ended up, every stage, status and reason listed
/// (zeros included), in the vocabulary's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReferralCounts {
    pub total: usize,
    pub by_stage: Vec<(Stage, usize)>,
    pub by_status: Vec<(Status, usize)>,
    pub by_reason: Vec<(RejectionReason, usize)>,
    /// Referrals with a sales rep assigned.
    pub assigned: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("demo setup failed: {0}")]
    Setup(String),
}

/// SplitMix64: the same demo every time, without pulling randomness from the OS.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const FIRST: &[&str] = &[
    "Ada", "Ben", "Chloé", "Dev", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemi", "Luis", "Maya", "Noah",
    "Olga", "Priya", "Quentin", "Rosa", "Sam", "Tariq", "Uma", "Victor", "Wen", "Yara", "Zoe",
];
const LAST: &[&str] = &[
    "Okafor",
    "Lindqvist",
    "Moreau",
    "Patel",
    "Kowalski",
    "Haddad",
    "Nakamura",
    "Silva",
    "Brennan",
    "Schmidt",
    "Adeyemi",
    "García",
    "Novak",
    "Iyer",
    "Fischer",
];
const COMPANIES: &[(&str, &str)] = &[
    ("Northwind HVAC", "northwind-hvac.example"),
    ("Brightline Plumbing", "brightline.example"),
    ("Summit Electric", "summit-electric.example"),
    ("Harbor Pest Control", "harborpest.example"),
    ("Keystone Roofing", "keystone-roofing.example"),
    ("Acme Field Services", "acme-fs.example"),
];
const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
];
const BOT_AGENTS: &[&str] = &[
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "WhatsApp/2.23.20.0 A",
    "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
];
/// (referring page, utm_source, utm_medium): a spread of how links travel.
const SOURCES: &[(Option<&str>, Option<&str>, Option<&str>)] = &[
    (None, None, None),
    (None, Some("newsletter"), Some("email")),
    (Some("https://mail.google.com/"), None, None),
    (Some("https://www.linkedin.com/feed/"), None, None),
    (Some("https://t.co/x1"), None, None),
    (Some("https://www.facebook.com/"), Some("facebook"), Some("social")),
    (Some("https://forum.fieldpros.example/thread/12"), None, None),
    (None, Some("partner-site"), Some("banner")),
];

/// Kinds in the mix: every kind, customers most.
const KINDS: &[(ParticipantKind, usize)] = &[
    (ParticipantKind::Customer, 22),
    (ParticipantKind::CustomerStaff, 10),
    (ParticipantKind::Employee, 8),
    (ParticipantKind::Partner, 8),
    (ParticipantKind::Influencer, 7),
    (ParticipantKind::Other, 5),
];

/// Fills an empty database with the demo and [`DEFAULT_REFERRALS`] referrals.
pub async fn fill(store: &Store, now: Timestamp) -> Result<Outcome, DemoError> {
    fill_with(store, now, DEFAULT_REFERRALS).await
}

/// Fills an empty database with the demo and `referrals` referrals in all;
/// adds nothing to a database that has a program.
pub async fn fill_with(store: &Store, now: Timestamp, referrals: u64) -> Result<Outcome, DemoError> {
    if store.has_programs().await? {
        return Ok(Outcome::AlreadyHasData);
    }
    let mut programs = Vec::new();
    for (slug, source) in EXAMPLE_PROGRAMS {
        let definition = parse_program(source).map_err(|e| DemoError::Setup(format!("{slug}: {e}")))?;
        let ids = (ProgramId(uuid::Uuid::now_v7()), ProgramVersionId(uuid::Uuid::now_v7()));
        store.apply_program(&definition, source, ids, now).await?;
        programs.push(store.program(slug).await?);
    }

    let mut dice = Dice(2026);
    let mut codes = Vec::new();
    let mut referrers = Vec::new();
    let mut participants = 0;
    for (kind, count) in KINDS {
        for i in 0..*count {
            let (first, last) = (*dice.pick(FIRST), *dice.pick(LAST));
            let (company, domain) = *dice.pick(COMPANIES);
            let email_domain = match kind {
                ParticipantKind::Employee => "vouch-demo.example",
                ParticipantKind::Influencer | ParticipantKind::Other => "mail.example",
                _ => domain,
            };
            let local = format!("{}.{}{}", ascii(first), ascii(last), i).to_lowercase();
            let email =
                Email::parse(&format!("{local}@{email_domain}")).map_err(|e| DemoError::Setup(e.to_string()))?;
            let eligible: Vec<_> = programs.iter().filter(|p| p.definition.is_eligible(*kind)).collect();
            if eligible.is_empty() {
                continue;
            }
            participants += 1;
            // Everyone joins one program; a third join a second one too.
            let joins = if dice.below(3) == 0 { 2 } else { 1 };
            for _ in 0..joins.min(eligible.len()) {
                let program = *dice.pick(&eligible);
                let who = Enrollment {
                    email: email.clone(),
                    name: format!("{first} {last}"),
                    kind: *kind,
                    team: matches!(kind, ParticipantKind::Customer | ParticipantKind::CustomerStaff)
                        .then(|| company.to_string()),
                    company: (!matches!(kind, ParticipantKind::Influencer | ParticipantKind::Other))
                        .then(|| company.to_string()),
                    vanity_code: None,
                };
                let enrolled = enroll(store, program, who, now).await.map_err(|e| DemoError::Setup(e.detail))?;
                if enrolled.created {
                    referrers.push(DemoReferrer {
                        program: programs.iter().position(|p| p.id == program.id).unwrap_or(0),
                        code: enrolled.code.clone(),
                        participant: enrolled.participant_id,
                        email: email.clone(),
                        team: matches!(kind, ParticipantKind::Customer | ParticipantKind::CustomerStaff)
                            .then(|| company.to_string()),
                        busy: codes.len() % 7 == 0,
                    });
                    codes.push(enrolled.code);
                }
            }
        }
    }

    // Clicks over six weeks: a few busy referrers, a long tail, some bots.
    let mut clicks = Vec::new();
    for (i, code) in codes.iter().enumerate() {
        let n = if i % 7 == 0 { 120 + dice.below(120) } else { 10 + dice.below(50) };
        for _ in 0..n {
            let at = now
                .checked_sub((dice.below(42 * 24 * 60) as i64).minutes())
                .map_err(|e| DemoError::Setup(e.to_string()))?;
            let bot = dice.below(20) == 0;
            let user_agent = if bot { *dice.pick(BOT_AGENTS) } else { *dice.pick(USER_AGENTS) };
            let (referer, source, medium) = *dice.pick(SOURCES);
            let utm = Utm { source: source.map(str::to_owned), medium: medium.map(str::to_owned), ..Utm::default() };
            let host = referer.and_then(|r| url::Url::parse(r).ok()).and_then(|u| u.host_str().map(str::to_owned));
            clicks.push(NewClick {
                id: ClickId(uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
                    uuid::NoContext,
                    at.as_second() as u64,
                    at.subsec_nanosecond() as u32,
                ))),
                code: code.clone(),
                occurred_at: at,
                ip_hash: Some(format!("{:032x}", u128::from(dice.next()) << 64 | u128::from(dice.below(5000)))),
                user_agent: Some(user_agent.to_string()),
                referer: referer.map(str::to_owned),
                channel: derive_channel(host.as_deref(), &utm),
                utm,
                is_bot: is_bot(user_agent),
            });
        }
    }
    for chunk in clicks.chunks(2_000) {
        store.insert_clicks(chunk).await?;
    }
    let customers = registry(&mut dice)?;
    store.add_customers(&customers, now).await?;
    let counts = grow_referrals(store, &programs, &referrers, &clicks, &mut dice, referrals, now).await?;
    let (api_key, _) = crate::api_keys::create(store, "demo", vouch_domain::api_key::Scope::all(), now).await?;
    let people_clicks = clicks.iter().filter(|c| !c.is_bot).count();
    Ok(Outcome::Filled {
        programs: programs.len(),
        participants,
        clicks: people_clicks,
        customers: customers.len(),
        referrals: counts,
        api_key,
        sample_code: codes.first().map(ToString::to_string).unwrap_or_default(),
    })
}

/// Email local parts stay ASCII: `Chloé` → `chloe`.
fn ascii(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'é' | 'è' => 'e',
            'í' => 'i',
            'á' => 'a',
            _ => c,
        })
        .filter(char::is_ascii_alphanumeric)
        .collect()
}

// ------------------------------------------------------------------ referrals

/// A referrer's enrollment, as the referral plan needs it.
struct DemoReferrer {
    /// Index into the programs.
    program: usize,
    code: ReferralCode,
    participant: ParticipantId,
    email: Email,
    team: Option<String>,
    /// A few referrers send many referrals; most send a few.
    busy: bool,
}

/// Companies prospects work at: none a customer yet, none a referrer's.
const PROSPECT_COMPANIES: &[(&str, &str)] = &[
    ("Oakridge Dental", "oakridge-dental.example"),
    ("Bluefin Logistics", "bluefin-logistics.example"),
    ("Maple & Co Property", "maple-property.example"),
    ("Riverside Clinics", "riverside-clinics.example"),
    ("Granite Builders", "granite-builders.example"),
    ("Lumen Facilities", "lumen-facilities.example"),
    ("Cedar Hotels", "cedar-hotels.example"),
    ("Pinecrest Schools", "pinecrest-schools.example"),
    ("Atlas Warehousing", "atlas-warehousing.example"),
    ("Sunrise Senior Living", "sunrise-living.example"),
];
/// Companies that already are customers (besides the referrers' own).
const CUSTOMER_COMPANIES: &[(&str, &str)] = &[
    ("Copperleaf Offices", "copperleaf.example"),
    ("Harborview Apartments", "harborview-apts.example"),
    ("Ironwood Manufacturing", "ironwood-mfg.example"),
    ("Meadowbrook Farms", "meadowbrook.example"),
    ("Silverline Gyms", "silverline-gyms.example"),
    ("Tidewater Marinas", "tidewater.example"),
    ("Westgate Retail", "westgate-retail.example"),
    ("Evergreen Storage", "evergreen-storage.example"),
    ("Foxglove Cafés", "foxglove-cafes.example"),
    ("Quarry Lane Studios", "quarrylane.example"),
];
/// Where private people have their mail (free mail: never a company).
const FREE_MAIL: &[&str] = &["gmail.com", "outlook.com", "yahoo.com", "proton.me"];
/// Throwaway-address services (flagged for review).
const DISPOSABLE: &[&str] = &["mailinator.com", "guerrillamail.com", "yopmail.com", "maildrop.cc"];
const SALES_REPS: &[&str] = &["Dana Whitfield", "Marco Rossi", "Aiko Tanaka", "Sipho Dlamini"];
const LEAD_NOTES: &[&str] = &[
    "Looking to switch providers before the next season.",
    "Asked for a call next week, mornings are best.",
    "Has three sites; interested in the multi-site plan.",
    "Met at the trade show, wants a demo.",
    "Current contract ends in two months.",
];

/// The customer registry: the referrers' companies (who are customers), other
/// customer companies with a contact and a CRM id, and private customers.
fn registry(dice: &mut Dice) -> Result<Vec<NewCustomer>, DemoError> {
    let bad = |e: &dyn std::fmt::Display| DemoError::Setup(e.to_string());
    let mut entries = Vec::new();
    for (_, domain) in COMPANIES {
        entries.push(CustomerEntry::new(None, Some(CompanyDomain::parse(domain).map_err(|e| bad(&e))?), None));
    }
    for (i, (_, domain)) in CUSTOMER_COMPANIES.iter().enumerate() {
        let email = Email::parse(&format!("accounts@{domain}")).map_err(|e| bad(&e))?;
        let domain = CompanyDomain::parse(domain).map_err(|e| bad(&e))?;
        let external = ExternalId::parse(&format!("crm-{}", 1001 + i)).map_err(|e| bad(&e))?;
        entries.push(CustomerEntry::new(Some(email), Some(domain), Some(external)));
    }
    for i in 0..20 {
        let (first, last) = (*dice.pick(FIRST), *dice.pick(LAST));
        let local = format!("{}.{}.c{i}", ascii(first), ascii(last)).to_lowercase();
        let email = Email::parse(&format!("{local}@{}", dice.pick(FREE_MAIL))).map_err(|e| bad(&e))?;
        entries.push(CustomerEntry::new(Some(email), None, None));
    }
    Ok(entries
        .into_iter()
        .flatten()
        .map(|entry| NewCustomer { id: CustomerId(uuid::Uuid::now_v7()), entry, source: CustomerSource::Import })
        .collect())
}

/// What a planned referral is meant to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A new prospect: active (or, from the suspended referrer, `ineligible`).
    Fresh,
    /// A prospect another referral already holds: `already_referred`.
    Duplicate,
    /// A prospect in the customer registry: `existing_customer`.
    Existing,
    /// The referrer themselves, or a colleague at their company domain.
    SelfReferral,
    /// A participant on the referrer's team: `same_team`.
    SameTeam,
    /// A disposable address: `in_review`.
    Disposable,
    /// One of a quick run of leads from one referrer: the last ones go to review.
    Burst,
}

struct Planned {
    at: Timestamp,
    referrer: usize,
    kind: Kind,
}

fn ago(now: Timestamp, minutes: u64) -> Result<Timestamp, DemoError> {
    now.checked_sub((minutes as i64).minutes()).map_err(|e| DemoError::Setup(e.to_string()))
}

const SIX_WEEKS_MINUTES: u64 = 42 * 24 * 60;
const DAY_MINUTES: u64 = 24 * 60;

/// The stages staff took a referral `age` minutes old through: none in its
/// first hour (nobody has looked yet), at most `contacted` in its first two
/// days, then one of the paths below, `cuts` giving each one's last roll of a
/// hundred; the rest end won, and churned when older than two weeks.
fn pipeline_path(dice: &mut Dice, age: u64, cuts: &[u64; 7]) -> &'static [Stage] {
    use Stage::{Churned, Contacted, Lost, Qualified, Won};
    const PATHS: [&[Stage]; 7] = [
        &[],
        &[Contacted],
        &[Contacted, Qualified],
        &[Contacted, Qualified, Won],
        &[Qualified, Won],
        &[Contacted, Lost],
        &[Contacted, Qualified, Lost],
    ];
    if age < 60 {
        return &[];
    }
    if age < 2 * DAY_MINUTES {
        return if dice.below(3) == 0 { &[Contacted] } else { &[] };
    }
    let roll = dice.below(100);
    match cuts.iter().position(|&last| roll <= last) {
        Some(i) => PATHS[i],
        None if age > 14 * DAY_MINUTES => &[Contacted, Qualified, Won, Churned],
        None => &[Qualified, Won],
    }
}

/// Makes `n` referrals through attribution, then works the active ones along the
/// pipeline. Answers what came of them.
async fn grow_referrals(
    store: &Store,
    programs: &[StoredProgram],
    referrers: &[DemoReferrer],
    clicks: &[NewClick],
    dice: &mut Dice,
    n: u64,
    now: Timestamp,
) -> Result<ReferralCounts, DemoError> {
    let mut counts = ReferralCounts::default();
    if referrers.len() < 4 || n == 0 {
        return Ok(tally(counts, &[]));
    }
    // Who is suspended two weeks ago.
    let suspended = 3 % referrers.len();
    let suspend_at = ago(now, 14 * DAY_MINUTES)?;
    // The suspended participant refers through one enrollment only, so that
    // programs stay independent of one another.
    let elsewhere = |i: usize| i != suspended && referrers[i].participant == referrers[suspended].participant;
    let healthy: Vec<usize> = (0..referrers.len()).filter(|&i| i != suspended && !elsewhere(i)).collect();
    let h = |k: usize| healthy[k % healthy.len()];
    let with_team: Vec<usize> = (0..referrers.len())
        .filter(|&i| i != suspended && !elsewhere(i) && referrers[i].team.is_some())
        .filter(|&i| referrers.iter().any(|o| o.team == referrers[i].team && o.participant != referrers[i].participant))
        .collect();

    // The plan: first one of everything, then the crowd.
    let mut plan = Vec::new();
    let first = h(0);
    let same_program = healthy
        .iter()
        .copied()
        .find(|&i| i != first && referrers[i].program == referrers[first].program)
        .unwrap_or(first);
    plan.push(Planned { at: ago(now, 30 * DAY_MINUTES)?, referrer: first, kind: Kind::Fresh });
    plan.push(Planned { at: ago(now, 29 * DAY_MINUTES)?, referrer: same_program, kind: Kind::Duplicate });
    plan.push(Planned { at: ago(now, 27 * DAY_MINUTES)?, referrer: h(2), kind: Kind::Existing });
    plan.push(Planned { at: ago(now, 11 * DAY_MINUTES)?, referrer: h(3), kind: Kind::Existing });
    plan.push(Planned { at: ago(now, 25 * DAY_MINUTES)?, referrer: h(4), kind: Kind::SelfReferral });
    plan.push(Planned { at: ago(now, 9 * DAY_MINUTES)?, referrer: h(5), kind: Kind::SelfReferral });
    if let Some(&r) = with_team.first() {
        plan.push(Planned { at: ago(now, 18 * DAY_MINUTES)?, referrer: r, kind: Kind::SameTeam });
    }
    plan.push(Planned { at: ago(now, 7 * DAY_MINUTES)?, referrer: suspended, kind: Kind::Fresh });
    plan.push(Planned { at: ago(now, 4 * DAY_MINUTES)?, referrer: h(6), kind: Kind::Disposable });
    plan.push(Planned { at: ago(now, 2 * DAY_MINUTES)?, referrer: h(7), kind: Kind::Disposable });
    let burst_start = 20 * DAY_MINUTES;
    for i in 0..11 {
        plan.push(Planned { at: ago(now, burst_start - i * 4)?, referrer: h(8), kind: Kind::Burst });
    }
    plan.truncate(usize::try_from(n).unwrap_or(usize::MAX));
    // The crowd: busy referrers send six times as many.
    let weighted: Vec<usize> = (0..referrers.len())
        .filter(|&i| !elsewhere(i))
        .flat_map(|i| std::iter::repeat_n(i, if referrers[i].busy { 6 } else { 1 }))
        .collect();
    while (plan.len() as u64) < n {
        let referrer = *dice.pick(&weighted);
        let kind = match dice.below(100) {
            0..=5 => Kind::Duplicate,
            6..=10 => Kind::Existing,
            11..=13 => Kind::SelfReferral,
            14..=15 if !with_team.is_empty() => Kind::SameTeam,
            16..=17 => Kind::Disposable,
            _ => Kind::Fresh,
        };
        let referrer = if kind == Kind::SameTeam { *dice.pick(&with_team) } else { referrer };
        plan.push(Planned { at: ago(now, dice.below(SIX_WEEKS_MINUTES))?, referrer, kind });
    }
    // In time order, as they would have arrived: holders before latecomers,
    // bursts counted over the leads before them.
    plan.sort_by_key(|p| p.at);

    // Each code's visits by people, oldest first: a sign-up names the last one before it.
    let mut visits: HashMap<&str, Vec<(Timestamp, Option<&str>)>> = HashMap::new();
    for c in clicks.iter().filter(|c| !c.is_bot) {
        visits.entry(c.code.as_str()).or_default().push((c.occurred_at, c.ip_hash.as_deref()));
    }
    for v in visits.values_mut() {
        v.sort_by_key(|(at, _)| *at);
    }

    // Everything random is drawn here, in plan order, so the demo is the same
    // every time; only a duplicate's choice of held prospect waits for the
    // referrals before it.
    let mut ready = Vec::with_capacity(plan.len());
    for (serial, planned) in plan.iter().enumerate() {
        let referrer = &referrers[planned.referrer];
        let prospect = match planned.kind {
            Kind::Existing => existing_prospect(dice, serial)?,
            Kind::SelfReferral => self_prospect(dice, referrer, serial)?,
            Kind::SameTeam => {
                let mates: Vec<&DemoReferrer> = referrers
                    .iter()
                    .filter(|o| o.team == referrer.team && o.participant != referrer.participant)
                    .collect();
                let mate = dice.pick(&mates);
                NewProspect {
                    email: Some(mate.email.clone()),
                    name: None,
                    company: mate.team.clone(),
                    ..NewProspect::default()
                }
            }
            Kind::Disposable => {
                let (first, last) = (*dice.pick(FIRST), *dice.pick(LAST));
                let email = format!("{}{}{serial}@{}", ascii(first), ascii(last), dice.pick(DISPOSABLE)).to_lowercase();
                prospect(&email, Some(format!("{first} {last}")), None)?
            }
            // A duplicate falls back to someone new when nobody is held yet.
            Kind::Fresh | Kind::Burst | Kind::Duplicate => fresh_prospect(dice, serial)?,
        };
        let duplicate = (planned.kind == Kind::Duplicate).then(|| dice.next());
        // Review signals and bursts are about what referrers send themselves.
        let source = match planned.kind {
            Kind::Burst | Kind::Disposable => Source::Lead,
            _ => match dice.below(100) {
                0..=54 => Source::Lead,
                55..=79 => match visits
                    .get(referrer.code.as_str())
                    .and_then(|v| v.iter().rev().find(|(at, _)| *at < planned.at))
                {
                    Some((click_at, ip)) => {
                        Source::SignupWithClick { click_at: *click_at, click_ip_hash: ip.map(str::to_owned) }
                    }
                    None => Source::SignupWithCode,
                },
                80..=89 => Source::SignupWithCode,
                _ => Source::Staff,
            },
        };
        let lead = source == Source::Lead;
        let note = (lead && dice.below(3) == 0).then(|| dice.pick(LEAD_NOTES).to_string());
        let submission = Submission {
            code: referrer.code.clone(),
            consent: lead.then(|| Consent {
                text: "The referrer confirmed that the prospect agreed to be contacted about this referral program."
                    .into(),
                at: planned.at,
            }),
            note,
            source,
            prospect,
            actor: DEMO_ACTOR.into(),
        };
        ready.push((serial, planned.at, planned.referrer, duplicate, submission));
    }

    // Programs share nothing attribution looks at (holders, bursts and the
    // suspended referrer are per program; the registry is read only): each
    // program's referrals are made in time order, the programs side by side.
    let mut per_program: Vec<Vec<_>> = (0..programs.len()).map(|_| Vec::new()).collect();
    for item in ready {
        per_program[referrers[item.2].program].push(item);
    }
    let suspended_referrer = &referrers[suspended];
    let streams = per_program.into_iter().enumerate().map(|(index, items)| async move {
        let program = &programs[index];
        let suspends = suspended_referrer.program == index;
        let mut is_suspended = false;
        let mut held: Vec<NewProspect> = Vec::new();
        let mut made = Vec::with_capacity(items.len());
        for (serial, at, _, duplicate, mut submission) in items {
            if suspends && !is_suspended && at >= suspend_at {
                store.suspend_participant(suspended_referrer.participant, suspend_at).await?;
                is_suspended = true;
            }
            if let Some(pick) = duplicate
                && !held.is_empty()
            {
                submission.prospect = held[(pick % held.len() as u64) as usize].clone();
            }
            let prospect = submission.prospect.clone();
            let record = refer(store, program, submission, at).await.map_err(|e| DemoError::Setup(e.detail))?;
            if record.status.holds_prospect() {
                held.push(prospect);
            }
            made.push((serial, record));
        }
        if suspends && !is_suspended {
            store.suspend_participant(suspended_referrer.participant, suspend_at).await?;
        }
        Ok::<_, DemoError>(made)
    });
    let mut made: Vec<(usize, vouch_store::ReferralRecord)> =
        futures::future::try_join_all(streams).await?.into_iter().flatten().collect();
    made.sort_by_key(|(serial, _)| *serial);
    let mut made: Vec<vouch_store::ReferralRecord> = made.into_iter().map(|(_, r)| r).collect();

    // Staff work the active ones: older referrals got further.
    let mut work = Vec::new();
    for (i, record) in made.iter().enumerate() {
        if record.status != Status::Active {
            continue;
        }
        let age = now.duration_since(record.created_at).as_mins().max(0) as u64;
        let path = pipeline_path(dice, age, &[21, 41, 57, 67, 77, 83, 91]);
        if path.is_empty() {
            continue;
        }
        let mut offsets: Vec<u64> = (0..path.len()).map(|_| 1 + dice.below(age.max(2) - 1)).collect();
        offsets.sort_unstable();
        let moves: Vec<(Stage, Timestamp)> = path
            .iter()
            .zip(offsets)
            .map(|(stage, offset)| Ok((*stage, ago(now, age - offset)?)))
            .collect::<Result<_, DemoError>>()?;
        let rep = (dice.below(2) == 0).then(|| *dice.pick(SALES_REPS));
        work.push((i, rep, moves));
    }
    // Referrals are independent of one another: a few at a time.
    let worked: Vec<Result<(usize, vouch_store::ReferralRecord), DemoError>> =
        futures::stream::iter(work.into_iter().map(|(i, rep, moves)| {
            let id = made[i].id;
            async move {
                let mut last = None;
                if let (Some(rep), Some((_, first_at))) = (rep, moves.first()) {
                    let at = first_at.checked_sub(1.minutes()).unwrap_or(*first_at);
                    last = Some(store.assign_referral(id, Some(rep), DEMO_ACTOR, at).await.map_err(action)?);
                }
                for (stage, at) in moves {
                    last = Some(store.move_stage(id, stage, DEMO_ACTOR, None, at).await.map_err(action)?);
                }
                Ok((i, last.expect("at least one move")))
            }
        }))
        .buffer_unordered(8)
        .collect()
        .await;
    for done in worked {
        let (i, record) = done?;
        made[i] = record;
    }
    counts.total = made.len();
    Ok(tally(counts, &made))
}

fn action(e: vouch_store::ReferralActionError) -> DemoError {
    match e {
        vouch_store::ReferralActionError::Store(e) => DemoError::Store(e),
        other => DemoError::Setup(other.to_string()),
    }
}

fn tally(mut counts: ReferralCounts, made: &[vouch_store::ReferralRecord]) -> ReferralCounts {
    counts.by_stage = Stage::ALL.iter().map(|&s| (s, made.iter().filter(|r| r.stage == s).count())).collect();
    counts.by_status = Status::ALL.iter().map(|&s| (s, made.iter().filter(|r| r.status == s).count())).collect();
    counts.by_reason = RejectionReason::ALL
        .iter()
        .map(|&s| (s, made.iter().filter(|r| r.rejection_reason == Some(s)).count()))
        .collect();
    counts.assigned = made.iter().filter(|r| r.assignee.is_some()).count();
    counts
}

fn prospect(email: &str, name: Option<String>, company: Option<String>) -> Result<NewProspect, DemoError> {
    let email = Email::parse(email).map_err(|e| DemoError::Setup(e.to_string()))?;
    Ok(NewProspect { email: Some(email), name, company, phone: None, external_id: None })
}

/// Someone new: at a prospect company, or a private person at free mail.
fn fresh_prospect(dice: &mut Dice, serial: usize) -> Result<NewProspect, DemoError> {
    let (first, last) = (*dice.pick(FIRST), *dice.pick(LAST));
    let local = format!("{}.{}{serial}", ascii(first), ascii(last)).to_lowercase();
    let mut p = if dice.below(5) < 3 {
        let (company, domain) = *dice.pick(PROSPECT_COMPANIES);
        prospect(&format!("{local}@{domain}"), Some(format!("{first} {last}")), Some(company.to_string()))?
    } else {
        prospect(&format!("{local}@{}", dice.pick(FREE_MAIL)), Some(format!("{first} {last}")), None)?
    };
    if dice.below(2) == 0 {
        p.phone = Some(format!("+1 555 {:03} {:04}", dice.below(1000), dice.below(10_000)));
    }
    Ok(p)
}

/// Someone the registry knows: at a customer company (by domain), or a customer's own address.
fn existing_prospect(dice: &mut Dice, serial: usize) -> Result<NewProspect, DemoError> {
    let (first, last) = (*dice.pick(FIRST), *dice.pick(LAST));
    if dice.below(2) == 0 {
        let (company, domain) = *dice.pick(CUSTOMER_COMPANIES);
        let local = format!("{}.{}{serial}", ascii(first), ascii(last)).to_lowercase();
        prospect(&format!("{local}@{domain}"), Some(format!("{first} {last}")), Some(company.to_string()))
    } else {
        let (_, domain) = *dice.pick(CUSTOMER_COMPANIES);
        prospect(&format!("accounts@{domain}"), None, None)
    }
}

/// The referrer under another spelling of their address, or a colleague at their domain.
fn self_prospect(dice: &mut Dice, referrer: &DemoReferrer, serial: usize) -> Result<NewProspect, DemoError> {
    if dice.below(2) == 0 {
        prospect(&referrer.email.as_str().to_uppercase(), None, None)
    } else {
        let (first, last) = (*dice.pick(FIRST), *dice.pick(LAST));
        let local = format!("{}.{}{serial}", ascii(first), ascii(last)).to_lowercase();
        prospect(&format!("{local}@{}", referrer.email.domain()), Some(format!("{first} {last}")), None)
    }
}
