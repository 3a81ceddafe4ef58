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

pub use crate::ids::{EventId, ReferralId};
