//! The customer registry's entries: who already is a customer or has signed up,
//! known by an email address, a company domain or the company's own id. It
//! answers "has this prospect ever signed up before?".

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Email;

/// A registry entry's id (UUIDv7, minted by the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CustomerId(pub Uuid);

impl std::fmt::Display for CustomerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A company's domain (`acme.com`): lower-case, a valid host name with a dot, as
/// the domain of an email address would be. A leading `www.` is dropped, since
/// addresses never carry it and the registry compares domains with theirs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CompanyDomain(String);

/// Why a field of an entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a valid {what}: {reason}")]
pub struct FieldError {
    pub what: &'static str,
    /// The input, cut to 80 characters.
    pub value: String,
    pub reason: String,
}

fn refuse(what: &'static str, raw: &str, reason: impl Into<String>) -> FieldError {
    FieldError { what, value: raw.chars().take(80).collect(), reason: reason.into() }
}

impl CompanyDomain {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let what = "company domain";
        let trimmed = raw.trim();
        if trimmed.contains("://") || trimmed.contains('/') {
            return Err(refuse(what, trimmed, "give the domain alone (example.com), not a web address"));
        }
        if trimmed.contains('@') {
            return Err(refuse(what, trimmed, "give the domain alone (example.com), not an email address"));
        }
        if !trimmed.is_ascii() {
            return Err(refuse(what, trimmed, "write an international domain in its ASCII (xn--) form"));
        }
        let lower = trimmed.to_ascii_lowercase();
        let lower = lower.strip_suffix('.').unwrap_or(&lower);
        let domain = lower.strip_prefix("www.").filter(|rest| rest.contains('.')).unwrap_or(lower);
        if domain.len() > 253 {
            return Err(refuse(what, trimmed, "longer than 253 characters"));
        }
        // The same rules as the domain of an email address, so that a company's
        // domain is one its people's addresses can have.
        Email::parse(&format!("x@{domain}")).map_err(|e| refuse(what, trimmed, e.1))?;
        Ok(Self(domain.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CompanyDomain {
    type Error = FieldError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        CompanyDomain::parse(&s)
    }
}

impl From<CompanyDomain> for String {
    fn from(d: CompanyDomain) -> String {
        d.0
    }
}

impl std::fmt::Display for CompanyDomain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The company's own id for a customer (a CRM or billing id), compared exactly
/// as given, surrounding blanks aside.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ExternalId(String);

impl ExternalId {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let what = "external id";
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(refuse(what, trimmed, "it is empty"));
        }
        if trimmed.chars().count() > Self::MAX_CHARS {
            return Err(refuse(what, trimmed, format!("longer than {} characters", Self::MAX_CHARS)));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(refuse(what, trimmed, "it contains control characters"));
        }
        Ok(Self(trimmed.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ExternalId {
    type Error = FieldError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        ExternalId::parse(&s)
    }
}

impl From<ExternalId> for String {
    fn from(d: ExternalId) -> String {
        d.0
    }
}

/// The fields of an entry, named as in the CSV header and the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CustomerField {
    Email,
    Domain,
    ExternalId,
}

impl CustomerField {
    pub const ALL: [CustomerField; 3] = [Self::Email, Self::Domain, Self::ExternalId];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Domain => "domain",
            Self::ExternalId => "external_id",
        }
    }
}

/// Which identifier of the registry matched a prospect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KnownBy {
    Email,
    ExternalId,
    Domain,
}

impl KnownBy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::ExternalId => "external_id",
            Self::Domain => "domain",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Email, Self::ExternalId, Self::Domain].into_iter().find(|k| k.as_str() == s)
    }
}

/// How an entry reached the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CustomerSource {
    /// `vouch import customers FILE.csv`.
    Import,
    /// `POST /api/v1/customers`.
    Api,
    /// A fact (`signup`, `won`) about a prospect no referral holds.
    Event,
}

impl CustomerSource {
    pub const ALL: [CustomerSource; 3] = [Self::Import, Self::Api, Self::Event];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Import => "import",
            Self::Api => "api",
            Self::Event => "event",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One entry of the registry: at least one of an email, a company domain and an
/// external id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerEntry {
    email: Option<Email>,
    domain: Option<CompanyDomain>,
    external_id: Option<ExternalId>,
}

/// A field of an entry at fault (`None`: the entry as a whole, when it is empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryProblem {
    pub field: Option<CustomerField>,
    pub detail: String,
}

impl CustomerEntry {
    /// An entry from parsed parts; `None` when all three are missing.
    pub fn new(email: Option<Email>, domain: Option<CompanyDomain>, external_id: Option<ExternalId>) -> Option<Self> {
        if email.is_none() && domain.is_none() && external_id.is_none() {
            return None;
        }
        Some(Self { email, domain, external_id })
    }

    /// Parses raw fields as typed in a file or a request; a missing or blank
    /// field is absent. Reports every field at fault at once.
    pub fn parse(
        email: Option<&str>,
        domain: Option<&str>,
        external_id: Option<&str>,
    ) -> Result<Self, Vec<EntryProblem>> {
        fn given(s: Option<&str>) -> Option<&str> {
            s.map(str::trim).filter(|s| !s.is_empty())
        }
        let mut problems = Vec::new();
        let mut check = |field, result: Result<(), String>| {
            if let Err(detail) = result {
                problems.push(EntryProblem { field: Some(field), detail });
            }
        };
        let email = given(email).map(Email::parse).transpose();
        let domain = given(domain).map(CompanyDomain::parse).transpose();
        let external_id = given(external_id).map(ExternalId::parse).transpose();
        check(CustomerField::Email, email.as_ref().map(|_| ()).map_err(ToString::to_string));
        check(CustomerField::Domain, domain.as_ref().map(|_| ()).map_err(ToString::to_string));
        check(CustomerField::ExternalId, external_id.as_ref().map(|_| ()).map_err(ToString::to_string));
        match (email, domain, external_id) {
            (Ok(email), Ok(domain), Ok(external_id)) => Self::new(email, domain, external_id).ok_or_else(|| {
                vec![EntryProblem { field: None, detail: "give at least one of email, domain and external_id".into() }]
            }),
            _ => Err(problems),
        }
    }

    pub fn email(&self) -> Option<&Email> {
        self.email.as_ref()
    }

    pub fn domain(&self) -> Option<&CompanyDomain> {
        self.domain.as_ref()
    }

    pub fn external_id(&self) -> Option<&ExternalId> {
        self.external_id.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn company_domains_are_lower_cased_without_www_or_a_trailing_dot() {
        for (raw, expected) in [
            ("Acme.COM", "acme.com"),
            (" acme.co.uk ", "acme.co.uk"),
            ("www.Acme.com", "acme.com"),
            ("acme.com.", "acme.com"),
            ("www.io", "www.io"),
            ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ] {
            assert_eq!(CompanyDomain::parse(raw).map(String::from), Ok(expected.to_string()), "{raw}");
        }
    }

    #[test]
    fn malformed_company_domains_are_refused_with_a_reason() {
        for (raw, reason) in [
            ("acme", "dot"),
            ("https://acme.com", "web address"),
            ("acme.com/about", "web address"),
            ("jane@acme.com", "email address"),
            ("ac me.com", "host name"),
            ("-acme.com", "host name"),
            ("acme..com", "host name"),
            ("1.2.3.4", "top-level"),
            ("bücher.de", "xn--"),
            ("", "dot"),
        ] {
            let err = CompanyDomain::parse(raw).expect_err(raw);
            assert!(err.to_string().contains(reason), "{raw}: {err}");
        }
    }

    #[test]
    fn external_ids_are_trimmed_and_bounded() {
        assert_eq!(ExternalId::parse("  cus_123 ").unwrap().as_str(), "cus_123");
        assert!(ExternalId::parse(" ").is_err());
        assert!(ExternalId::parse("a\tb").is_err());
        assert!(ExternalId::parse(&"x".repeat(201)).is_err());
        assert!(ExternalId::parse(&"x".repeat(200)).is_ok());
    }

    #[test]
    fn an_entry_needs_one_identifier_and_reports_every_bad_field() {
        let entry = CustomerEntry::parse(Some(" Jane@Acme.com "), Some(""), None).unwrap();
        assert_eq!(entry.email().map(Email::normalized).as_deref(), Some("jane@acme.com"));
        assert_eq!(entry.domain(), None);
        let empty = CustomerEntry::parse(Some(" "), None, Some("")).unwrap_err();
        assert_eq!(empty.len(), 1);
        assert_eq!(empty[0].field, None);
        let bad = CustomerEntry::parse(Some("jane"), Some("acme"), Some("ok")).unwrap_err();
        let fields: Vec<_> = bad.iter().map(|p| p.field).collect();
        assert_eq!(fields, [Some(CustomerField::Email), Some(CustomerField::Domain)]);
    }
}
