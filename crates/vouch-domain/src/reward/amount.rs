//! Flat and percentage rewards.
//!
//! Rounding rule (the only one in the engine): a percentage of an amount is
//! computed exactly as `base_minor × basis_points / 10_000` and rounded **half up
//! to the minor unit** — a remainder of exactly half a minor unit or more rounds
//! up, less rounds down. Bases are never negative, so "half up" is unambiguous.
//! The per-referral maximum applies after rounding.

use crate::money::Money;
use crate::program::Percent;

use super::RewardError;

/// A flat reward: the amount itself.
pub fn flat(amount: Money) -> Result<Money, RewardError> {
    Ok(amount)
}

/// A percentage reward, priced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PercentPriced {
    pub amount: Money,
    pub percent: Percent,
    pub base: Money,
    /// The share before the per-referral maximum, rounded half up.
    pub uncapped: Money,
    /// Whether rounding changed the exact share.
    pub rounded: bool,
    /// The maximum, when it lowered the amount.
    pub capped_at: Option<Money>,
}

/// `percent` of `base`, rounded half up to the minor unit, then limited to
/// `max_per_referral` when given (in the base's currency).
pub fn percentage(
    percent: Percent,
    base: Money,
    max_per_referral: Option<Money>,
) -> Result<PercentPriced, RewardError> {
    if base.amount_minor < 0 {
        return Err(RewardError::NegativeBase(base.amount_minor));
    }
    let exact = i128::from(base.amount_minor) * i128::from(percent.basis_points());
    let share = (exact + 5_000) / 10_000;
    let rounded = exact % 10_000 != 0;
    // At most 100% of an i64, so it fits; checked all the same.
    let share = i64::try_from(share).map_err(|_| RewardError::Overflow)?;
    let uncapped = Money::new(share, base.currency);
    let mut amount = uncapped;
    let mut capped_at = None;
    if let Some(max) = max_per_referral {
        if max.currency != base.currency {
            return Err(RewardError::MixedCurrencies(max.currency.code(), base.currency.code()));
        }
        if max.amount_minor < share {
            amount = max;
            capped_at = Some(max);
        }
    }
    Ok(PercentPriced { amount, percent, base, uncapped, rounded, capped_at })
}
