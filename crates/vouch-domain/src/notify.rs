//! What a participant wants to be told: which stage changes of their referrals
//! reach them by email.

use crate::referral::Stage;

/// Which stage updates a referrer receives. The default is every one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum StageUpdates {
    #[default]
    All,
    /// Only the news that a referral became a customer.
    WonOnly,
    None,
}

impl StageUpdates {
    pub const ALL: [StageUpdates; 3] = [Self::All, Self::WonOnly, Self::None];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::WonOnly => "won_only",
            Self::None => "none",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Whether a referral reaching `stage` is news this referrer wants by email.
    pub fn wants(self, stage: Stage) -> bool {
        match self {
            Self::All => true,
            Self::WonOnly => stage == Stage::Won,
            Self::None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_wants_every_stage_won_only_only_won_and_none_nothing() {
        for &stage in Stage::ALL {
            assert!(StageUpdates::All.wants(stage), "{stage:?}");
            assert_eq!(StageUpdates::WonOnly.wants(stage), stage == Stage::Won, "{stage:?}");
            assert!(!StageUpdates::None.wants(stage), "{stage:?}");
        }
    }

    #[test]
    fn the_names_read_back_and_others_do_not() {
        for p in StageUpdates::ALL {
            assert_eq!(StageUpdates::parse(p.as_str()), Some(p));
        }
        assert_eq!(StageUpdates::parse("All"), None);
        assert_eq!(StageUpdates::parse("won"), None);
        assert_eq!(StageUpdates::default(), StageUpdates::All);
    }
}
