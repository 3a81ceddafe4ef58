//! API key scopes. Keys themselves are random secrets minted by the server and
//! stored only as a hash; here is what a key may do.

use serde::{Deserialize, Serialize};

/// One area of the API and whether the key may change it. `write` implies `read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Scope {
    pub area: Area,
    pub write: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Area {
    Programs,
    Participants,
    Codes,
    Referrals,
    Events,
    Customers,
    Rewards,
    Payouts,
}

impl Area {
    pub const ALL: [Area; 8] = [
        Area::Programs,
        Area::Participants,
        Area::Codes,
        Area::Referrals,
        Area::Events,
        Area::Customers,
        Area::Rewards,
        Area::Payouts,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Area::Programs => "programs",
            Area::Participants => "participants",
            Area::Codes => "codes",
            Area::Referrals => "referrals",
            Area::Events => "events",
            Area::Customers => "customers",
            Area::Rewards => "rewards",
            Area::Payouts => "payouts",
        }
    }
}

impl Scope {
    pub fn read(area: Area) -> Self {
        Self { area, write: false }
    }

    pub fn write(area: Area) -> Self {
        Self { area, write: true }
    }

    /// Every scope there is: what a key created without `--scope` gets.
    pub fn all() -> Vec<Scope> {
        Area::ALL.into_iter().map(Scope::write).collect()
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        let (area, access) =
            s.split_once(':').ok_or_else(|| format!("scope `{s}` is not of the form area:read or area:write"))?;
        let area = Area::ALL.into_iter().find(|a| a.as_str() == area).ok_or_else(|| {
            format!("scope `{s}` names no area; areas are {}", Area::ALL.map(Area::as_str).join(", "))
        })?;
        let write = match access {
            "read" => false,
            "write" => true,
            _ => return Err(format!("scope `{s}` must end in :read or :write")),
        };
        Ok(Self { area, write })
    }

    /// Whether holding `self` allows what `needed` asks for.
    pub fn grants(self, needed: Scope) -> bool {
        self.area == needed.area && (self.write || !needed.write)
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.area.as_str(), if self.write { "write" } else { "read" })
    }
}

impl TryFrom<String> for Scope {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Scope::parse(&s)
    }
}

impl From<Scope> for String {
    fn from(s: Scope) -> String {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_implies_read_but_not_the_reverse() {
        let w = Scope::parse("codes:write").unwrap();
        let r = Scope::parse("codes:read").unwrap();
        assert!(w.grants(r));
        assert!(!r.grants(w));
        assert!(!w.grants(Scope::read(Area::Programs)));
    }

    #[test]
    fn malformed_scopes_are_explained() {
        assert!(Scope::parse("codes").unwrap_err().contains("area:read"));
        assert!(Scope::parse("nope:read").unwrap_err().contains("names no area"));
        assert!(Scope::parse("codes:admin").unwrap_err().contains(":read or :write"));
    }
}
