//! Email addresses, as people type them and as we compare them.

use serde::{Deserialize, Serialize};

/// A syntactically valid address with a dotted domain. `as_str` keeps what was
/// typed; `normalized` is the identity used for uniqueness (case-insensitive).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a valid email address: {1}")]
pub struct EmailError(pub String, pub &'static str);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, EmailError> {
        let raw = raw.trim();
        let bad = |why| Err(EmailError(raw.chars().take(80).collect(), why));
        if raw.len() > 254 {
            return bad("longer than 254 characters");
        }
        let Some((local, domain)) = raw.rsplit_once('@') else {
            return bad("it has no `@`");
        };
        if local.is_empty() || local.len() > 64 {
            return bad("the part before `@` must be 1 to 64 characters");
        }
        let local_ok = local.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.".contains(&b));
        if !local_ok || local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return bad("the part before `@` has characters an address cannot have");
        }
        let labels: Vec<&str> = domain.split('.').collect();
        if labels.len() < 2 {
            return bad("the domain needs a dot");
        }
        let label_ok = |l: &&str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if !labels.iter().all(label_ok) {
            return bad("the domain is not a valid host name");
        }
        if labels.last().is_some_and(|tld| tld.len() < 2 || tld.bytes().all(|b| b.is_ascii_digit())) {
            return bad("the domain has no valid top-level domain");
        }
        Ok(Self(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Lower-cased: the same person however they capitalise their address.
    pub fn normalized(&self) -> String {
        self.0.to_ascii_lowercase()
    }

    pub fn domain(&self) -> String {
        self.0.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()).unwrap_or_default()
    }

    /// For logs: enough to recognise, not enough to harvest (`j***@example.com`).
    pub fn redacted(&self) -> String {
        let (local, domain) = self.0.rsplit_once('@').unwrap_or((&self.0, ""));
        let first: String = local.chars().take(1).collect();
        format!("{first}***@{domain}")
    }
}

impl TryFrom<String> for Email {
    type Error = EmailError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Email::parse(&s)
    }
}

impl From<Email> for String {
    fn from(e: Email) -> String {
        e.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_addresses_and_compares_case_insensitively() {
        let a = Email::parse("Jane.Doe+ref@Example.COM").unwrap();
        assert_eq!(a.normalized(), "jane.doe+ref@example.com");
        assert_eq!(a.domain(), "example.com");
        assert_eq!(a.as_str(), "Jane.Doe+ref@Example.COM");
        assert_eq!(a.redacted(), "J***@Example.COM");
    }

    #[test]
    fn refuses_malformed_addresses() {
        for bad in [
            "",
            "jane",
            "jane@",
            "@example.com",
            "jane@localhost",
            "ja ne@example.com",
            "jane@exa_mple.com",
            "jane..doe@example.com",
            "jane@example.c",
            "jane@-example.com",
            "jane@1.2.3.4",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad} should be refused");
        }
    }
}
