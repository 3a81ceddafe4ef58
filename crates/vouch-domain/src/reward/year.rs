//! The beneficiary's year, and the units counted in it before a referral.
//!
//! Design brief, program C: the referrer's year starts on the contract date of the
//! earliest referral that earned them a non-voided reward under the rule, and the
//! years follow on from it without gaps: anchor + 1 year, + 2 years, … Each
//! anniversary is computed from the anchor itself (never from the previous
//! anniversary), and a day that does not exist in a year is clamped to the end
//! of the month: a 29 February anchor has its anniversaries on 28 February in
//! common years and on 29 February again in leap years.

use jiff::Timestamp;
use jiff::civil::Date;

use crate::ReferralId;
use crate::program::Period;

use super::RewardError;

/// The anniversary `k` years after `anchor` (before it when `k` is negative).
fn anniversary(anchor: Date, k: i32) -> Result<Date, RewardError> {
    let year = i32::from(anchor.year()) + k;
    let year = i16::try_from(year).map_err(|_| RewardError::DateRange)?;
    let first = Date::new(year, anchor.month(), 1)?;
    Ok(Date::new(year, anchor.month(), anchor.day().min(first.days_in_month()))?)
}

/// The referrer's year holding `date`, for a year anchored on `anchor`:
/// `(start, end)` with `start` included and `end` (the next anniversary) excluded.
/// A date before the anchor falls in the year counted backwards from it.
pub fn referrer_year(anchor: Date, date: Date) -> Result<(Date, Date), RewardError> {
    let mut k = i32::from(date.year()) - i32::from(anchor.year());
    if anniversary(anchor, k)? > date {
        k -= 1;
    }
    Ok((anniversary(anchor, k)?, anniversary(anchor, k + 1)?))
}

/// The period holding `date`: the referrer's year from `anchor`, or the calendar
/// year. `(start, end)`, `end` excluded.
pub fn period_of(period: Period, anchor: Date, date: Date) -> Result<(Date, Date), RewardError> {
    match period {
        Period::ReferrerYear => referrer_year(anchor, date),
        Period::CalendarYear => {
            let start = Date::new(date.year(), 1, 1)?;
            let next = date.year().checked_add(1).ok_or(RewardError::DateRange)?;
            Ok((start, Date::new(next, 1, 1)?))
        }
    }
}

/// Where a referral sits in the order that counts: its contract date (or, for a
/// `won` without one, the date it happened in the program's time zone, see
/// [`counting_date`](super::counting_date)), then when the `won` happened, then the
/// referral id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReferralKey {
    pub contract_date: Date,
    pub won_at: Timestamp,
    pub referral: ReferralId,
}

/// One of the beneficiary's rewards under the same rule, as the count needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EarlierReward {
    pub key: ReferralKey,
    pub units: u32,
    pub voided: bool,
}

/// A referral placed in its beneficiary's period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// The contract date the referrer's year is anchored on (the earliest
    /// non-voided one, this referral included).
    pub anchor: Date,
    /// The period holding this referral: `start` included, `end` excluded.
    pub start: Date,
    pub end: Date,
    /// Units of the non-voided rewards before this referral in the same period.
    pub prior_total: u32,
}

/// Places the referral `this` in its period and sums the units before it.
///
/// `others` are the beneficiary's rewards under the same rule, in any order and
/// whatever their dates (a late fact can put one before `this`); voided ones and
/// any for `this` referral itself are ignored. A reward counts when its key sorts
/// before `this` and its contract date is in the same period.
pub fn prior_total(period: Period, this: ReferralKey, others: &[EarlierReward]) -> Result<Placement, RewardError> {
    let live = || others.iter().filter(|r| !r.voided && r.key.referral != this.referral);
    let anchor = live().map(|r| r.key.contract_date).fold(this.contract_date, Date::min);
    let (start, end) = period_of(period, anchor, this.contract_date)?;
    let mut total: u32 = 0;
    for r in live() {
        let d = r.key.contract_date;
        if r.key < this && start <= d && d < end {
            total = total.checked_add(r.units).ok_or(RewardError::Overflow)?;
        }
    }
    Ok(Placement { anchor, start, end, prior_total: total })
}
