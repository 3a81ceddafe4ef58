//! Pricing units against tiers.
//!
//! Tier `i` covers yearly totals (or, for `marginal`, unit positions) from the
//! previous tier's `up_to + 1` (0 for the first tier) up to and including its own
//! `up_to`. The tier *for a total* `n` is the first tier whose `up_to` is at least
//! `n`: with tiers 30 / 60 / open, totals 0–30 are in the first, 31–60 in the
//! second, 61 and more in the third.
//!
//! - `whole_at_start`: every unit at the tier of the total before this referral.
//! - `marginal`: unit `k` of this referral (position `prior + k` in the year) at
//!   the tier of that position.
//! - `whole_at_end`: every unit at the tier of the total after this referral.

use crate::money::{Currency, Money};
use crate::program::{Tier, TierPolicy};

use super::RewardError;

/// A per-unit reward, priced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Priced {
    pub amount: Money,
    pub policy: TierPolicy,
    /// The beneficiary's units in the period before this referral.
    pub prior_total: u32,
    pub units: u32,
    /// The units split by the tier that priced them, in tier order; one slice for
    /// the whole policies, one per tier crossed for `marginal`. Empty when `units` is 0.
    pub slices: Vec<TierSlice>,
}

/// Units priced at one tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierSlice {
    /// Index into the rule's tiers.
    pub tier: usize,
    /// The tier's range of yearly totals: `first..=last`, `last` `None` when open-ended.
    pub first: u32,
    pub last: Option<u32>,
    pub units: u32,
    pub each: Money,
    pub subtotal: Money,
}

fn check(tiers: &[Tier]) -> Result<(), RewardError> {
    if tiers.is_empty() {
        return Err(RewardError::NoTiers);
    }
    let mut prev: Option<u32> = None;
    for (i, t) in tiers.iter().enumerate() {
        match t.up_to {
            None if i + 1 != tiers.len() => return Err(RewardError::BadTiers),
            None => {}
            Some(u) => {
                if prev.is_some_and(|p| u <= p) {
                    return Err(RewardError::BadTiers);
                }
                prev = Some(u);
            }
        }
    }
    Ok(())
}

/// The first yearly total in tier `i`.
fn tier_first(tiers: &[Tier], i: usize) -> u32 {
    match i {
        0 => 0,
        _ => tiers[i - 1].up_to.map_or(0, |u| u.saturating_add(1)),
    }
}

/// The index of the tier holding yearly total `n` (see the module's rules).
pub fn tier_index_for_total(tiers: &[Tier], n: u64) -> Result<usize, RewardError> {
    check(tiers)?;
    tiers.iter().position(|t| t.up_to.is_none_or(|u| n <= u64::from(u))).ok_or(RewardError::NoTierFor(n))
}

fn slice(tiers: &[Tier], i: usize, units: u32, currency: Currency) -> Result<TierSlice, RewardError> {
    let each = Money::new(tiers[i].each_minor, currency);
    let subtotal = each.checked_mul(i64::from(units))?;
    Ok(TierSlice { tier: i, first: tier_first(tiers, i), last: tiers[i].up_to, units, each, subtotal })
}

/// Prices `units` for a beneficiary who already had `prior_total` units in the
/// period, under `policy`. The tiers must be valid (at least one, bounds strictly
/// increasing, only the last open-ended); a total beyond a bounded last tier is an error.
pub fn price_units(
    tiers: &[Tier],
    policy: TierPolicy,
    prior_total: u32,
    units: u32,
    currency: Currency,
) -> Result<Priced, RewardError> {
    check(tiers)?;
    let start = u64::from(prior_total);
    let end = start + u64::from(units);
    let mut slices = Vec::new();
    if units > 0 {
        match policy {
            TierPolicy::WholeAtStart => {
                slices.push(slice(tiers, tier_index_for_total(tiers, start)?, units, currency)?)
            }
            TierPolicy::WholeAtEnd => slices.push(slice(tiers, tier_index_for_total(tiers, end)?, units, currency)?),
            TierPolicy::Marginal => {
                // Positions start+1 ..= end, split at the tier bounds.
                let mut next = start + 1;
                for (i, t) in tiers.iter().enumerate() {
                    if next > end {
                        break;
                    }
                    let last = t.up_to.map_or(end, |u| end.min(u64::from(u)));
                    if last < next {
                        continue;
                    }
                    // At most `units` positions, so this fits a u32.
                    let n = u32::try_from(last - next + 1).map_err(|_| RewardError::Overflow)?;
                    slices.push(slice(tiers, i, n, currency)?);
                    next = last + 1;
                }
                if next <= end {
                    return Err(RewardError::NoTierFor(next));
                }
            }
        }
    }
    let mut amount = Money::new(0, currency);
    for s in &slices {
        amount = amount.checked_add(s.subtotal)?;
    }
    Ok(Priced { amount, policy, prior_total, units, slices })
}
