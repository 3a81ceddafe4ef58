//! Comparing what two versions of a program would have paid over a period.
//!
//! The replay itself (which rewards each version's rules compute for the
//! period's referrals) runs the ledger's own computation in the store, so the
//! simulation and the ledger cannot drift; this module sums its results the way
//! a program manager reads them: per month of the date each reward counts on,
//! per referrer, and in total, the current version beside the draft.

use std::collections::BTreeMap;

use jiff::civil::Date;

use crate::ParticipantId;
use crate::money::{Currency, Money};
use crate::program::{Beneficiary, RewardKind};
use crate::referral::ReferralId;

use super::{RewardError, delta};

/// One reward a version's rules compute in a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulatedReward {
    pub referral: ReferralId,
    /// The referral's referrer (also for a referee's reward).
    pub referrer: ParticipantId,
    pub rule_id: String,
    pub beneficiary: Beneficiary,
    /// `won`, `qualified`, or a payment fact's id.
    pub occurrence: String,
    /// The date the reward counts on (the contract date for `won`).
    pub date: Date,
    pub kind: RewardKind,
    pub amount: Money,
    /// For a plan upgrade: its months.
    pub months: Option<i64>,
    pub explanation: String,
}

/// One row of a comparison: what the current version and the draft pay, and
/// the draft's difference (negative when the draft pays less).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompareLine<K> {
    pub key: K,
    pub current: Money,
    pub draft: Money,
    pub difference: Money,
}

/// Who a row of the per-referrer table is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Payee {
    /// What the referrer earns themselves.
    Referrer(ParticipantId),
    /// What the referees of all referrals earn, together.
    Referees,
}

/// The two versions' rewards summed per month, per referrer and in total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    /// Months as `YYYY-MM`, oldest first.
    pub by_month: Vec<CompareLine<String>>,
    /// Referrers by id, the referees' row last.
    pub by_referrer: Vec<CompareLine<Payee>>,
    pub total: CompareLine<()>,
}

fn month(d: Date) -> String {
    format!("{:04}-{:02}", d.year(), d.month())
}

fn payee(r: &SimulatedReward) -> Payee {
    match r.beneficiary {
        Beneficiary::Referrer => Payee::Referrer(r.referrer),
        Beneficiary::Referee => Payee::Referees,
    }
}

fn lines<K: Ord + Clone>(
    currency: Currency,
    current: &[SimulatedReward],
    draft: &[SimulatedReward],
    key: impl Fn(&SimulatedReward) -> K,
) -> Result<Vec<CompareLine<K>>, RewardError> {
    let zero = Money::new(0, currency);
    let mut sums: BTreeMap<K, (Money, Money)> = BTreeMap::new();
    for r in current {
        let slot = sums.entry(key(r)).or_insert((zero, zero));
        slot.0 = slot.0.checked_add(r.amount)?;
    }
    for r in draft {
        let slot = sums.entry(key(r)).or_insert((zero, zero));
        slot.1 = slot.1.checked_add(r.amount)?;
    }
    sums.into_iter()
        .map(|(key, (current, draft))| Ok(CompareLine { key, current, draft, difference: delta(current, draft)? }))
        .collect()
}

/// Sums both replays (every amount in `currency`, or the sum fails with
/// [`RewardError::MixedCurrencies`]). A month or referrer that only one version
/// rewards shows zero for the other.
pub fn compare(
    currency: Currency,
    current: &[SimulatedReward],
    draft: &[SimulatedReward],
) -> Result<Comparison, RewardError> {
    let by_month = lines(currency, current, draft, |r| month(r.date))?;
    let by_referrer = lines(currency, current, draft, payee)?;
    let total = lines(currency, current, draft, |_| ())?.pop().unwrap_or(CompareLine {
        key: (),
        current: Money::new(0, currency),
        draft: Money::new(0, currency),
        difference: Money::new(0, currency),
    });
    Ok(Comparison { by_month, by_referrer, total })
}

#[cfg(test)]
#[allow(clippy::inconsistent_digit_grouping)] // `150_00` is USD 150.00
mod tests {
    use uuid::Uuid;

    use super::*;

    fn usd(minor: i64) -> Money {
        Money::new(minor, Currency::parse("USD").unwrap())
    }

    fn reward(referrer: u128, beneficiary: Beneficiary, date: &str, minor: i64) -> SimulatedReward {
        SimulatedReward {
            referral: ReferralId(Uuid::now_v7()),
            referrer: ParticipantId(Uuid::from_u128(referrer)),
            rule_id: "r".into(),
            beneficiary,
            occurrence: "won".into(),
            date: date.parse().unwrap(),
            kind: RewardKind::Cash,
            amount: usd(minor),
            months: None,
            explanation: String::new(),
        }
    }

    #[test]
    fn sums_per_month_per_referrer_and_in_total_with_the_difference() {
        let current = [
            reward(1, Beneficiary::Referrer, "2026-01-05", 1000_00),
            reward(1, Beneficiary::Referrer, "2026-02-10", 1500_00),
            reward(2, Beneficiary::Referee, "2026-02-11", 20_00),
        ];
        let draft = [
            reward(1, Beneficiary::Referrer, "2026-01-05", 1200_00),
            reward(1, Beneficiary::Referrer, "2026-02-10", 1800_00),
            reward(2, Beneficiary::Referrer, "2026-03-01", 50_00),
        ];
        let c = compare(usd(0).currency, &current, &draft).unwrap();
        let months: Vec<(&str, i64, i64, i64)> = c
            .by_month
            .iter()
            .map(|l| (l.key.as_str(), l.current.amount_minor, l.draft.amount_minor, l.difference.amount_minor))
            .collect();
        assert_eq!(
            months,
            [
                ("2026-01", 1000_00, 1200_00, 200_00),
                ("2026-02", 1520_00, 1800_00, 280_00),
                ("2026-03", 0, 50_00, 50_00)
            ]
        );
        let people: Vec<(Payee, i64, i64)> =
            c.by_referrer.iter().map(|l| (l.key, l.current.amount_minor, l.draft.amount_minor)).collect();
        assert_eq!(
            people,
            [
                (Payee::Referrer(ParticipantId(Uuid::from_u128(1))), 2500_00, 3000_00),
                (Payee::Referrer(ParticipantId(Uuid::from_u128(2))), 0, 50_00),
                (Payee::Referees, 20_00, 0),
            ]
        );
        assert_eq!((c.total.current, c.total.draft, c.total.difference), (usd(2520_00), usd(3050_00), usd(530_00)));
    }

    #[test]
    fn nothing_to_compare_is_zero_not_an_error() {
        let c = compare(usd(0).currency, &[], &[]).unwrap();
        assert!(c.by_month.is_empty() && c.by_referrer.is_empty());
        assert_eq!(c.total.difference, usd(0));
    }

    #[test]
    fn an_overflowing_sum_is_an_error() {
        let current = [
            reward(1, Beneficiary::Referrer, "2026-01-05", i64::MAX),
            reward(1, Beneficiary::Referrer, "2026-01-06", 1),
        ];
        assert_eq!(compare(usd(0).currency, &current, &[]), Err(RewardError::Overflow));
    }
}
