//! The referral's words, as the API, the database and the pages spell them.

use serde::{Deserialize, Serialize};

/// A closed set of snake_case names, each with a sentence for people. One macro so
/// that the serde name, `as_str` and `parse` can never disagree.
macro_rules! named {
    (
        $(#[$doc:meta])*
        $name:ident { $($variant:ident = $text:literal => $explain:literal),* $(,)? }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($variant),*
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),*
                }
            }

            pub fn parse(s: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s)
            }

            /// One sentence for the people who read timelines and exports.
            pub fn explain(self) -> &'static str {
                match self {
                    $($name::$variant => $explain),*
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named!(
    /// How far sales got with a referral. `won`, `lost` and `churned` end the
    /// pipeline; `lost` can be reopened by staff, `churned` cannot.
    Stage {
        New = "new" => "The referral has arrived and nobody has contacted the prospect yet.",
        Contacted = "contacted" => "The sales team has contacted the prospect.",
        Qualified = "qualified" => "The prospect fits the customer profile or has shown up for a demo.",
        Won = "won" => "The prospect became a customer.",
        Lost = "lost" => "The prospect did not become a customer.",
        Churned = "churned" => "The prospect became a customer and has since left.",
    }
);

impl Stage {
    /// Still being worked by sales: the stages from which `lost` is possible.
    pub fn is_open(self) -> bool {
        matches!(self, Stage::New | Stage::Contacted | Stage::Qualified)
    }
}

named!(
    /// Whether a referral counts, independently of how far sales got with it.
    Status {
        Active = "active" => "The referral counts for its referrer.",
        InReview = "in_review" => "A fraud signal flagged the referral; it holds its prospect until staff decide.",
        Rejected = "rejected" => "The referral does not count; it is kept, explained and open to a staff override.",
    }
);

impl Status {
    /// A referral in this status keeps other referrers from claiming its prospect.
    /// A rejected one does not: it never held the prospect.
    pub fn holds_prospect(self) -> bool {
        matches!(self, Status::Active | Status::InReview)
    }
}

named!(
    /// Why a referral was rejected.
    RejectionReason {
        ExistingCustomer = "existing_customer" =>
            "The prospect is already a customer or has signed up before.",
        AlreadyReferred = "already_referred" =>
            "Another referral already holds this prospect in the program; the first referrer wins.",
        SelfReferral = "self_referral" =>
            "The prospect is the referrer, or someone at the referrer's own company.",
        SameTeam = "same_team" =>
            "The prospect is on the referrer's own team.",
        Ineligible = "ineligible" =>
            "The referrer may not refer in this program (suspended, or not of a kind the program is open to).",
        Staff = "staff" =>
            "Staff rejected the referral.",
    }
);

named!(
    /// A reason to have a person look at a referral before it counts.
    ReviewSignal {
        SameIpAsReferrer = "same_ip_as_referrer" =>
            "The prospect's click came from the same IP address as the referrer's own visits.",
        DisposableEmail = "disposable_email" =>
            "The prospect's email address is at a disposable-address service.",
        Burst = "burst" =>
            "The referrer submitted many leads in a short time.",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_round_trips_through_as_str_parse_and_serde() {
        fn check<T>(all: &[T], as_str: fn(T) -> &'static str, parse: fn(&str) -> Option<T>)
        where
            T: Copy + PartialEq + std::fmt::Debug + Serialize + for<'de> Deserialize<'de>,
        {
            for &v in all {
                let s = as_str(v);
                assert_eq!(parse(s), Some(v));
                assert_eq!(serde_json::to_string(&v).unwrap(), format!("\"{s}\""));
                assert_eq!(serde_json::from_str::<T>(&format!("\"{s}\"")).unwrap(), v);
            }
            assert_eq!(parse("nonsense"), None);
        }
        check(Stage::ALL, Stage::as_str, Stage::parse);
        check(Status::ALL, Status::as_str, Status::parse);
        check(RejectionReason::ALL, RejectionReason::as_str, RejectionReason::parse);
        check(ReviewSignal::ALL, ReviewSignal::as_str, ReviewSignal::parse);
    }

    #[test]
    fn published_names_are_spelled_as_the_design_brief_spells_them() {
        let names = |v: Vec<&str>| v.join(",");
        assert_eq!(names(Stage::ALL.iter().map(|s| s.as_str()).collect()), "new,contacted,qualified,won,lost,churned");
        assert_eq!(names(Status::ALL.iter().map(|s| s.as_str()).collect()), "active,in_review,rejected");
        assert_eq!(
            names(RejectionReason::ALL.iter().map(|s| s.as_str()).collect()),
            "existing_customer,already_referred,self_referral,same_team,ineligible,staff"
        );
        assert_eq!(
            names(ReviewSignal::ALL.iter().map(|s| s.as_str()).collect()),
            "same_ip_as_referrer,disposable_email,burst"
        );
    }

    #[test]
    fn every_name_has_a_sentence() {
        let sentences = Stage::ALL
            .iter()
            .map(|s| s.explain())
            .chain(Status::ALL.iter().map(|s| s.explain()))
            .chain(RejectionReason::ALL.iter().map(|s| s.explain()))
            .chain(ReviewSignal::ALL.iter().map(|s| s.explain()));
        for s in sentences {
            assert!(s.ends_with('.') && s.chars().next().is_some_and(char::is_uppercase), "{s}");
        }
    }

    #[test]
    fn rejected_referrals_do_not_hold_their_prospect() {
        assert!(Status::Active.holds_prospect());
        assert!(Status::InReview.holds_prospect());
        assert!(!Status::Rejected.holds_prospect());
    }
}
