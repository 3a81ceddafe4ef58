//! Demo data: the five example programs, referrers of every kind, and weeks of
//! clicks, so a newcomer has something real to click through.

use jiff::{Timestamp, ToSpan};
use vouch_domain::click::{Utm, derive_channel, is_bot};
use vouch_domain::program::parse_program;
use vouch_domain::{ClickId, Email, ParticipantKind, ProgramId, ProgramVersionId};
use vouch_store::{NewClick, Store, StoreError};

use crate::enroll::{Enrollment, enroll};

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
    Filled { programs: usize, participants: usize, clicks: usize, api_key: String, sample_code: String },
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

pub async fn fill(store: &Store, now: Timestamp) -> Result<Outcome, DemoError> {
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
    let (api_key, _) = crate::api_keys::create(store, "demo", vouch_domain::api_key::Scope::all(), now).await?;
    let people_clicks = clicks.iter().filter(|c| !c.is_bot).count();
    Ok(Outcome::Filled {
        programs: programs.len(),
        participants,
        clicks: people_clicks,
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
