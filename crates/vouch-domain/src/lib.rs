//! The Vouch domain: types, rules and decisions.
//!
//! Nothing here performs I/O, reads the clock or draws random numbers: time and
//! randomness are passed in, so every rule can be tested with fixed inputs.

pub mod api_key;
pub mod click;
pub mod code;
pub mod customer;
pub mod email;
pub mod ids;
pub mod money;
pub mod notify;
pub mod participant;
pub mod payout;
pub mod program;
pub mod referral;
pub mod reward;

pub use code::ReferralCode;
pub use email::Email;
pub use ids::*;
pub use money::{Currency, Money};
pub use participant::ParticipantKind;
