//! What we derive from a visit through a referral link.

use serde::{Deserialize, Serialize};

/// Where a click came from, for people reading reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Email,
    Social,
    Direct,
    Other,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Social => "social",
            Channel::Direct => "direct",
            Channel::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Channel::Email, Channel::Social, Channel::Direct, Channel::Other].into_iter().find(|c| c.as_str() == s)
    }
}

/// The `utm_*` parameters of the visited link.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Utm {
    pub source: Option<String>,
    pub medium: Option<String>,
    pub campaign: Option<String>,
    pub term: Option<String>,
    pub content: Option<String>,
}

const SOCIAL_HOSTS: &[&str] = &[
    "facebook.com",
    "fb.me",
    "instagram.com",
    "twitter.com",
    "x.com",
    "t.co",
    "linkedin.com",
    "lnkd.in",
    "reddit.com",
    "tiktok.com",
    "youtube.com",
    "pinterest.com",
    "whatsapp.com",
    "wa.me",
    "t.me",
    "telegram.org",
    "threads.net",
    "bsky.app",
    "mastodon.social",
    "xing.com",
];
const SOCIAL_WORDS: &[&str] = &[
    "social",
    "facebook",
    "instagram",
    "twitter",
    "x",
    "linkedin",
    "reddit",
    "tiktok",
    "youtube",
    "pinterest",
    "whatsapp",
    "telegram",
    "threads",
    "bluesky",
    "mastodon",
];
const MAIL_HOSTS: &[&str] =
    &["mail.google.com", "outlook.live.com", "outlook.office.com", "mail.yahoo.com", "mail.proton.me"];

/// Derives the channel: UTM tags, which the sharer set on purpose, win over the
/// referring page; a visit with neither is direct (typed, or from an app that
/// sends no referrer).
pub fn derive_channel(referer_host: Option<&str>, utm: &Utm) -> Channel {
    let lower = |s: &Option<String>| s.as_deref().map(str::to_ascii_lowercase);
    let (medium, source) = (lower(&utm.medium), lower(&utm.source));
    if medium.as_deref() == Some("email")
        || source.as_deref() == Some("email")
        || source.as_deref() == Some("newsletter")
    {
        return Channel::Email;
    }
    if medium.as_deref().is_some_and(|m| SOCIAL_WORDS.contains(&m) || m == "social-media")
        || source.as_deref().is_some_and(|s| SOCIAL_WORDS.contains(&s))
    {
        return Channel::Social;
    }
    let host = referer_host.map(|h| h.trim_start_matches("www.").to_ascii_lowercase());
    let matches = |list: &[&str], h: &str| list.iter().any(|d| h == *d || h.ends_with(&format!(".{d}")));
    match host {
        Some(h) if matches(MAIL_HOSTS, &h) => Channel::Email,
        Some(h) if matches(SOCIAL_HOSTS, &h) => Channel::Social,
        Some(_) => Channel::Other,
        None if medium.is_some() || source.is_some() => Channel::Other,
        None => Channel::Direct,
    }
}

const BOT_LIST: &str = include_str!("bots.txt");

/// Whether a user agent belongs to a crawler or link-preview fetcher (see `bots.txt`).
/// A missing user agent is not taken for a bot: some privacy tools strip it.
pub fn is_bot(user_agent: &str) -> bool {
    BOT_MATCHER.is_match(user_agent)
}

/// All tokens in one automaton: one pass over the user agent, on every redirect.
static BOT_MATCHER: std::sync::LazyLock<aho_corasick::AhoCorasick> = std::sync::LazyLock::new(|| {
    let tokens = BOT_LIST.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'));
    aho_corasick::AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .build(tokens)
        .expect("bots.txt holds plain tokens")
});

/// The click id handed to the landing page as `vclid`: the code and the click's
/// own id, so that a click id alone finds its click by primary key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickRef {
    pub code: crate::ReferralCode,
    pub id: crate::ClickId,
}

impl ClickRef {
    pub fn parse(raw: &str) -> Option<ClickRef> {
        let (code, id) = raw.rsplit_once('.')?;
        let code = crate::ReferralCode::parse(code).ok()?;
        let id = uuid::Uuid::try_parse(id).ok()?;
        Some(ClickRef { code, id: crate::ClickId(id) })
    }
}

impl std::fmt::Display for ClickRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.code, self.id.0.simple())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn click_refs_round_trip_and_reject_garbage() {
        let r = ClickRef {
            code: crate::ReferralCode::parse("ab-cd").unwrap(),
            id: crate::ClickId(uuid::Uuid::from_u128(7)),
        };
        let s = r.to_string();
        assert_eq!(s, "AB-CD.00000000000000000000000000000007");
        assert_eq!(ClickRef::parse(&s), Some(r));
        assert_eq!(ClickRef::parse("AB-CD"), None);
        assert_eq!(ClickRef::parse("AB/CD.00000000000000000000000000000007"), None);
    }

    #[test]
    fn link_preview_fetchers_are_bots() {
        for ua in [
            "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
            "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
            "Twitterbot/1.0",
            "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
            "WhatsApp/2.23.20.0 A",
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
            "TelegramBot (like TwitterBot)",
        ] {
            assert!(is_bot(ua), "{ua}");
        }
    }

    #[test]
    fn browsers_and_phones_are_not_bots() {
        for ua in [
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
            "Mozilla/5.0 (Linux; Android 12; CUBOT_X30) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
            "",
        ] {
            assert!(!is_bot(ua), "{ua}");
        }
    }

    fn utm(source: &str, medium: &str) -> Utm {
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        Utm { source: opt(source), medium: opt(medium), ..Utm::default() }
    }

    #[test]
    fn channel_follows_utm_then_referring_page() {
        assert_eq!(derive_channel(None, &Utm::default()), Channel::Direct);
        assert_eq!(derive_channel(None, &utm("", "email")), Channel::Email);
        assert_eq!(derive_channel(Some("www.linkedin.com"), &Utm::default()), Channel::Social);
        assert_eq!(derive_channel(Some("t.co"), &Utm::default()), Channel::Social);
        assert_eq!(derive_channel(Some("mail.google.com"), &Utm::default()), Channel::Email);
        assert_eq!(derive_channel(Some("blog.example.org"), &Utm::default()), Channel::Other);
        assert_eq!(derive_channel(Some("blog.example.org"), &utm("facebook", "")), Channel::Social);
        assert_eq!(derive_channel(None, &utm("partner-site", "banner")), Channel::Other);
        assert_eq!(derive_channel(Some("notfacebook.com"), &Utm::default()), Channel::Other);
    }
}
