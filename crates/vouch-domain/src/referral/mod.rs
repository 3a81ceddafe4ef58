//! The referral lifecycle: the words (stage, status, reasons, signals), the
//! pipeline staff move referrals through, the stage derived from facts, the email
//! identity that catches self-referrals, and the attribution decision.
//!
//! Everything here is a pure function of its inputs: the store gathers what a
//! rule needs (registry hits, the current holder, recent lead counts) and persists
//! what the domain decided, with the decision's explanation beside it.

mod attribution;
mod facts;
mod identity;
mod pipeline;
mod vocab;

pub use attribution::{
    AttributionInput, Decision, Holder, NotAttributable, NotAttributableReason, Prospect, Referrer, Rules, Source,
    attribute,
};
pub use facts::{Cause, Fact, FactKind, StaffMove, StageChange, derive_stage, stage_timeline};
pub use identity::{is_disposable, is_free_mail, person_key};
pub use pipeline::{Refusal, STAFF_MOVES};
pub use vocab::{RejectionReason, ReviewSignal, Stage, Status};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            pub fn parse(s: &str) -> Option<Self> {
                Uuid::parse_str(s).ok().map(Self)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    )*};
}

id_type!(
    /// A referral (UUIDv7, minted by the caller like every other id).
    ReferralId,
    /// One entry of a referral's timeline: a fact received or a staff action.
    EventId,
);
