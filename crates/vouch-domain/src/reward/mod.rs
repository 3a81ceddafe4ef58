//! The rewards engine's arithmetic: what a rule pays for one referral, and when.
//!
//! Everything here is pure: dates, times, time zones and the referrer's earlier
//! rewards are passed in. Amounts use checked arithmetic, so an overflow is an
//! error, never a wrapped or saturated number.
//!
//! - [`price_units`] prices a per-unit reward under a [`TierPolicy`](crate::program::TierPolicy).
//! - [`referrer_year`], [`period_of`] and [`prior_total`] place a referral in the
//!   beneficiary's year and count the units before it (design brief, program C).
//! - [`release_at`] says when a hold ends.
//! - [`flat`] and [`percentage`] price the other money rules.
//! - [`explain`] writes the one-sentence computation every reward stores.

mod amount;
mod caps;
mod explain;
mod hold;
pub mod ledger;
mod payments;
mod reprice;
pub mod simulate;
mod tiers;
mod year;

#[cfg(test)]
mod tests;

pub use amount::{PercentPriced, flat, percentage};
pub use caps::{CapHit, CapUse, Capped, apply_caps, earned_in_period, explain_cap};
pub use explain::{YearLabel, explain_flat, explain_per_unit, explain_percentage, format_amount};
pub use hold::{counting_date, release_at};
pub use payments::within_payment_window;
pub use reprice::{HeldReward, InOrder, UnitCaps, delta, explain_reprice, price_each_in_order, price_in_order};
pub use tiers::{Priced, TierSlice, price_units, tier_index_for_total};
pub use year::{EarlierReward, Placement, ReferralKey, period_of, prior_total, referrer_year};

use crate::money::MoneyError;

/// Why a reward could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RewardError {
    #[error("the amount overflows")]
    Overflow,
    #[error("a per-unit rule needs at least one tier")]
    NoTiers,
    #[error("tier bounds must strictly increase, and only the last tier may be open-ended")]
    BadTiers,
    #[error("no tier prices a yearly total of {0}: the last tier must be open-ended")]
    NoTierFor(u64),
    #[error("the date is outside the supported calendar range")]
    DateRange,
    #[error("a percentage needs a base that is not negative, got {0} minor units")]
    NegativeBase(i64),
    #[error("cannot combine {0} with {1}")]
    MixedCurrencies(&'static str, &'static str),
}

impl From<MoneyError> for RewardError {
    fn from(e: MoneyError) -> Self {
        match e {
            MoneyError::Overflow => RewardError::Overflow,
            MoneyError::MixedCurrencies(a, b) => RewardError::MixedCurrencies(a, b),
        }
    }
}

impl From<jiff::Error> for RewardError {
    fn from(_: jiff::Error) -> Self {
        RewardError::DateRange
    }
}
