//! Who is behind an email address, as far as self-referral is concerned: the same
//! person however they spell their address, and whether a domain says anything
//! about a company (free mail does not) or about intent (throwaway mail does).

use std::collections::HashSet;
use std::sync::LazyLock;

use crate::Email;

/// How one provider reads the local part. Only providers that document ignoring
/// dots or tags get them stripped: elsewhere `j.doe` and `jdoe` may be two people.
struct Provider {
    /// The domain that other spellings of this provider become.
    canonical: Option<&'static str>,
    ignores_dots: bool,
    /// The character that starts a tag (`+` for most, `-` for Yahoo's disposable
    /// addresses, whose base name is the same for all of a person's addresses).
    tag: Option<char>,
}

const GMAIL: Provider = Provider { canonical: Some("gmail.com"), ignores_dots: true, tag: Some('+') };
const PLUS_TAGS: Provider = Provider { canonical: None, ignores_dots: false, tag: Some('+') };
const DASH_TAGS: Provider = Provider { canonical: None, ignores_dots: false, tag: Some('-') };

fn provider(domain: &str) -> Option<Provider> {
    let plus = [
        // Microsoft's consumer domains all take `+` sub-addresses.
        "outlook.com",
        "hotmail.com",
        "live.com",
        "msn.com",
        "hotmail.co.uk",
        "hotmail.fr",
        "hotmail.de",
        "hotmail.it",
        "hotmail.es",
        "live.co.uk",
        "live.fr",
        "outlook.fr",
        "outlook.de",
        // Apple
        "icloud.com",
        "me.com",
        "mac.com",
        // Fastmail
        "fastmail.com",
        "fastmail.fm",
        // Proton
        "proton.me",
        "protonmail.com",
        "protonmail.ch",
        "pm.me",
    ];
    match domain {
        "gmail.com" | "googlemail.com" => Some(GMAIL),
        d if plus.contains(&d) => Some(PLUS_TAGS),
        d if d == "yahoo.com" || d.starts_with("yahoo.") => Some(DASH_TAGS),
        _ => None,
    }
}

/// The identity used to tell whether a prospect is the referrer: lower case
/// everywhere, and dots and tags removed only where the provider ignores them
/// (`J.Doe+ref@GoogleMail.com` → `jdoe@gmail.com`; `j.doe+x@example.com` keeps its
/// dot and tag, because example.com may deliver them to different people).
pub fn person_key(email: &Email) -> String {
    let normalized = email.normalized();
    let Some((local, domain)) = normalized.rsplit_once('@') else {
        return normalized;
    };
    let Some(rule) = provider(domain) else {
        return normalized;
    };
    let mut base = match rule.tag {
        Some(tag) => local.split(tag).next().unwrap_or(local),
        None => local,
    };
    // `+news@gmail.com` is not an address anyone can own without its tag: keep it whole
    // rather than collapse it onto every other tag-only address.
    if base.is_empty() {
        base = local;
    }
    let base: String = if rule.ignores_dots { base.chars().filter(|&c| c != '.').collect() } else { base.into() };
    format!("{base}@{}", rule.canonical.unwrap_or(domain))
}

/// A free webmail or consumer ISP domain (`free_mail_domains.txt`): it never
/// identifies a company, so two people at gmail.com are not colleagues.
pub fn is_free_mail(domain: &str) -> bool {
    listed(&FREE_MAIL, domain)
}

/// A throwaway-address service (`disposable_domains.txt`), subdomains included.
pub fn is_disposable(domain: &str) -> bool {
    listed(&DISPOSABLE, domain)
}

static FREE_MAIL: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| domain_list(include_str!("free_mail_domains.txt")));
static DISPOSABLE: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| domain_list(include_str!("disposable_domains.txt")));

fn domain_list(text: &'static str) -> HashSet<&'static str> {
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect()
}

/// The domain or any parent of it is listed (`x.mailinator.com` is Mailinator),
/// matched whole label by whole label so `notgmail.com` is not `gmail.com`.
fn listed(list: &HashSet<&'static str>, domain: &str) -> bool {
    let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    let mut rest = domain.as_str();
    loop {
        if list.contains(rest) {
            return true;
        }
        match rest.split_once('.') {
            Some((_, parent)) if parent.contains('.') => rest = parent,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(raw: &str) -> String {
        person_key(&Email::parse(raw).unwrap())
    }

    #[test]
    fn person_key_follows_each_providers_published_rules() {
        let cases = [
            // Gmail ignores dots and `+tags`; googlemail.com is the same mailbox.
            ("gmail: dots and plus tags", "J.Doe+Referral@Gmail.com", "jdoe@gmail.com"),
            ("gmail: googlemail is gmail", "j.d.o.e@googlemail.com", "jdoe@gmail.com"),
            ("gmail: a tag-only address keeps its tag", "+news@gmail.com", "+news@gmail.com"),
            // Microsoft: plus tags, but dots are significant.
            ("outlook: plus tags only", "Jane.Doe+x@Outlook.com", "jane.doe@outlook.com"),
            ("hotmail: plus tags only", "jane.doe+x@hotmail.com", "jane.doe@hotmail.com"),
            ("live: plus tags only", "jane.doe+x@live.com", "jane.doe@live.com"),
            // Apple
            ("icloud: plus tags only", "jane.doe+x@iCloud.com", "jane.doe@icloud.com"),
            ("me.com: plus tags only", "jane.doe+x@me.com", "jane.doe@me.com"),
            // Fastmail
            ("fastmail: plus tags only", "jane.doe+x@fastmail.com", "jane.doe@fastmail.com"),
            // Yahoo's disposable addresses are `base-keyword`; plus is an ordinary character there.
            ("yahoo: dash tags only", "Jane.Doe-shopping@Yahoo.com", "jane.doe@yahoo.com"),
            ("yahoo: plus is kept", "jane+x@yahoo.com", "jane+x@yahoo.com"),
            ("yahoo regional: dash tags", "jane-x@yahoo.co.uk", "jane@yahoo.co.uk"),
            // Proton
            ("proton.me: plus tags only", "jane.doe+x@proton.me", "jane.doe@proton.me"),
            ("protonmail: plus tags only", "jane.doe+x@ProtonMail.com", "jane.doe@protonmail.com"),
            // Everyone else: only case.
            ("others: case only", "Jane.Doe+X@Example.COM", "jane.doe+x@example.com"),
            ("others: dashes kept", "jane-doe@acme.io", "jane-doe@acme.io"),
            ("lookalike domains are not gmail", "j.doe+x@notgmail.com", "j.doe+x@notgmail.com"),
        ];
        for (what, raw, expected) in cases {
            assert_eq!(key(raw), expected, "{what}");
        }
    }

    #[test]
    fn the_same_gmail_user_is_one_person_however_they_type_it() {
        assert_eq!(key("JaneDoe@gmail.com"), key("jane.doe+vouch@googlemail.com"));
        assert_ne!(key("jane.doe@example.com"), key("janedoe@example.com"));
    }

    #[test]
    fn free_mail_domains_never_identify_a_company() {
        for d in ["gmail.com", "GMAIL.COM", "outlook.com", "yahoo.co.uk", "proton.me", "web.de", "qq.com"] {
            assert!(is_free_mail(d), "{d}");
        }
        for d in ["acme.com", "notgmail.com", "gmail.com.evil.io", "com"] {
            assert!(!is_free_mail(d), "{d}");
        }
    }

    #[test]
    fn disposable_domains_and_their_subdomains_are_recognised() {
        for d in [
            "mailinator.com",
            "10minutemail.com",
            "guerrillamail.com",
            "sharklasers.com",
            "temp-mail.org",
            "yopmail.com",
            "inbox.mailinator.com",
            "Mailinator.COM.",
        ] {
            assert!(is_disposable(d), "{d}");
        }
        for d in ["gmail.com", "acme.com", "mailinator.com.acme.com", "notmailinator.co"] {
            assert!(!is_disposable(d), "{d}");
        }
    }

    #[test]
    fn domain_lists_record_their_source_and_date_and_do_not_overlap() {
        for text in [include_str!("free_mail_domains.txt"), include_str!("disposable_domains.txt")] {
            assert!(text.lines().any(|l| l.starts_with("# Source:")));
            assert!(text.lines().any(|l| l.starts_with("# Date: 20")));
            for entry in domain_list(text) {
                assert!(entry.contains('.') && entry == entry.to_ascii_lowercase() && !entry.contains(' '), "{entry}");
            }
        }
        assert!(DISPOSABLE.len() >= 300, "{}", DISPOSABLE.len());
        let overlap: Vec<_> = FREE_MAIL.intersection(&DISPOSABLE).collect();
        assert!(overlap.is_empty(), "{overlap:?}");
    }
}
