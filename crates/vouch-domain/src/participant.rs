use serde::{Deserialize, Serialize};

/// Who a referrer is to the company running the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParticipantKind {
    Customer,
    CustomerStaff,
    Employee,
    Partner,
    Influencer,
    Other,
}

impl ParticipantKind {
    pub const ALL: [ParticipantKind; 6] =
        [Self::Customer, Self::CustomerStaff, Self::Employee, Self::Partner, Self::Influencer, Self::Other];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::CustomerStaff => "customer_staff",
            Self::Employee => "employee",
            Self::Partner => "partner",
            Self::Influencer => "influencer",
            Self::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Whether a participant may refer. A suspended participant's links still take
/// visitors to the landing page, but attribute nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParticipantStatus {
    Active,
    Suspended,
}

impl ParticipantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "suspended" => Some(Self::Suspended),
            _ => None,
        }
    }
}
