//! Caps: the most one referral, or one beneficiary in a period, can earn under a
//! rule.
//!
//! A reward that would pass a cap is reduced to what the cap has left — possibly
//! nothing. Both caps count the rule's non-voided rewards earned before this one
//! (per referral: the same referral and beneficiary, e.g. earlier payments; per
//! beneficiary: the beneficiary's rewards whose date falls in the same period).
//! Reduced to zero, the reward still exists, so the trigger is recorded once and
//! the sentence says why it earned nothing.

use jiff::civil::Date;

use crate::money::Money;
use crate::program::Period;

use super::{RewardError, YearLabel, format_amount, period_of};

/// One cap and what already counts against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapUse {
    pub max: Money,
    /// Earned under the rule before this reward (same referral, or same period).
    pub earned: Money,
}

impl CapUse {
    /// What the cap has left; never below zero (an edit of the program can lower
    /// a cap under what was already earned).
    fn left(self) -> Result<Money, RewardError> {
        if self.max.currency != self.earned.currency {
            return Err(RewardError::MixedCurrencies(self.max.currency.code(), self.earned.currency.code()));
        }
        let left = self.max.amount_minor.checked_sub(self.earned.amount_minor).ok_or(RewardError::Overflow)?;
        Ok(Money::new(left.max(0), self.max.currency))
    }
}

/// Which cap lowered a reward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapHit {
    PerReferral(CapUse),
    PerBeneficiary(CapUse, YearLabel),
}

/// A reward after its caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capped {
    pub amount: Money,
    pub uncapped: Money,
    /// The cap that lowered it, if one did (the tighter one when both would).
    pub hit: Option<CapHit>,
}

/// Limits `amount` to what the caps have left.
pub fn apply_caps(
    amount: Money,
    per_referral: Option<CapUse>,
    per_beneficiary: Option<(CapUse, YearLabel)>,
) -> Result<Capped, RewardError> {
    let mut capped = Capped { amount, uncapped: amount, hit: None };
    let candidates =
        [per_referral.map(CapHit::PerReferral), per_beneficiary.map(|(c, y)| CapHit::PerBeneficiary(c, y))];
    for hit in candidates.into_iter().flatten() {
        let cap = match hit {
            CapHit::PerReferral(c) | CapHit::PerBeneficiary(c, _) => c,
        };
        if cap.max.currency != amount.currency {
            return Err(RewardError::MixedCurrencies(cap.max.currency.code(), amount.currency.code()));
        }
        let left = cap.left()?;
        if left.amount_minor < capped.amount.amount_minor {
            capped.amount = left;
            capped.hit = Some(hit);
        }
    }
    Ok(capped)
}

/// What the beneficiary earned under the rule in the period holding `this`
/// (a reward's date: its contract date, or the day its trigger happened), from
/// `earned`: the date and amount of each of their non-voided rewards under the
/// rule. The referrer's year is anchored on the earliest of those dates and
/// `this`, as for tiers.
pub fn earned_in_period(
    period: Period,
    max: Money,
    this: Date,
    earned: &[(Date, Money)],
) -> Result<(CapUse, YearLabel), RewardError> {
    let anchor = earned.iter().map(|(d, _)| *d).fold(this, Date::min);
    let (start, end) = period_of(period, anchor, this)?;
    let mut sum = Money::new(0, max.currency);
    for (d, m) in earned {
        if start <= *d && *d < end {
            sum = sum.checked_add(*m)?;
        }
    }
    Ok((CapUse { max, earned: sum }, YearLabel::new(period, start)))
}

/// What to add to a reward's sentence when a cap lowered it, e.g.
/// ", capped at the $100 maximum per referral", ", capped at $20: the rest of the
/// $100 maximum per referral ($80 earned before)", or ", reduced to $0: the $5,000
/// maximum per person in 2026 was reached". Empty when no cap applied.
pub fn explain_cap(capped: &Capped) -> String {
    let Some(hit) = capped.hit else {
        return String::new();
    };
    let (cap, what) = match hit {
        CapHit::PerReferral(c) => (c, format!("the {} maximum per referral", format_amount(c.max))),
        CapHit::PerBeneficiary(c, year) => {
            (c, format!("the {} maximum per person {}", format_amount(c.max), year.phrase()))
        }
    };
    if capped.amount.amount_minor == 0 {
        format!(", reduced to {}: {what} was reached", format_amount(capped.amount))
    } else if cap.earned.amount_minor == 0 {
        format!(", capped at {what}")
    } else {
        format!(
            ", capped at {}: the rest of {what} ({} earned before)",
            format_amount(capped.amount),
            format_amount(cap.earned)
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::inconsistent_digit_grouping)]

    use jiff::civil::date;

    use super::*;
    use crate::money::Currency;

    fn usd(m: i64) -> Money {
        Money::new(m, Currency::parse("USD").unwrap())
    }

    fn cap(max: i64, earned: i64) -> CapUse {
        CapUse { max: usd(max), earned: usd(earned) }
    }

    const Y2026: YearLabel = YearLabel::Calendar { year: 2026 };

    #[test]
    fn no_cap_leaves_the_amount_alone() {
        let c = apply_caps(usd(25_00), None, None).unwrap();
        assert_eq!((c.amount, c.hit), (usd(25_00), None));
        assert_eq!(explain_cap(&c), "");
        // Under both caps: untouched.
        let c = apply_caps(usd(25_00), Some(cap(100_00, 50_00)), Some((cap(1_000_00, 0), Y2026))).unwrap();
        assert_eq!((c.amount, c.hit), (usd(25_00), None));
        // Exactly what is left: untouched too.
        let c = apply_caps(usd(50_00), Some(cap(100_00, 50_00)), None).unwrap();
        assert_eq!((c.amount, c.hit), (usd(50_00), None));
    }

    #[test]
    fn a_reward_over_the_per_referral_cap_gets_what_is_left() {
        let c = apply_caps(usd(30_00), Some(cap(100_00, 80_00)), None).unwrap();
        assert_eq!((c.amount, c.uncapped), (usd(20_00), usd(30_00)));
        assert_eq!(c.hit, Some(CapHit::PerReferral(cap(100_00, 80_00))));
        assert_eq!(explain_cap(&c), ", capped at $20: the rest of the $100 maximum per referral ($80 earned before)");
        let c = apply_caps(usd(240_00), Some(cap(100_00, 0)), None).unwrap();
        assert_eq!(c.amount, usd(100_00));
        assert_eq!(explain_cap(&c), ", capped at the $100 maximum per referral");
    }

    #[test]
    fn a_reached_cap_reduces_the_reward_to_zero_and_says_so() {
        let c = apply_caps(usd(30_00), Some(cap(100_00, 100_00)), None).unwrap();
        assert_eq!(c.amount, usd(0));
        assert_eq!(explain_cap(&c), ", reduced to $0: the $100 maximum per referral was reached");
        // A cap lowered below what was earned: still zero, never negative.
        let c = apply_caps(usd(30_00), None, Some((cap(50_00, 80_00), Y2026))).unwrap();
        assert_eq!(c.amount, usd(0));
        assert_eq!(explain_cap(&c), ", reduced to $0: the $50 maximum per person in 2026 was reached");
    }

    #[test]
    fn the_tighter_of_two_caps_applies() {
        let year = YearLabel::Referrer { start: date(2026, 3, 14) };
        let c = apply_caps(usd(100_00), Some(cap(100_00, 40_00)), Some((cap(5_000_00, 4_970_00), year))).unwrap();
        assert_eq!(c.amount, usd(30_00));
        assert_eq!(
            explain_cap(&c),
            ", capped at $30: the rest of the $5,000 maximum per person in your year from 14 Mar 2026 \
             ($4,970 earned before)"
        );
        let c = apply_caps(usd(100_00), Some(cap(100_00, 90_00)), Some((cap(5_000_00, 4_970_00), year))).unwrap();
        assert_eq!((c.amount, c.hit), (usd(10_00), Some(CapHit::PerReferral(cap(100_00, 90_00)))));
    }

    #[test]
    fn earned_in_period_counts_the_period_holding_the_reward() {
        let earned = [(date(2025, 12, 31), usd(10_00)), (date(2026, 1, 1), usd(20_00)), (date(2026, 8, 1), usd(40_00))];
        let (c, y) = earned_in_period(Period::CalendarYear, usd(100_00), date(2026, 6, 1), &earned).unwrap();
        // Everything in 2026, before or after this date: "earned so far" in the period.
        assert_eq!((c.earned, y), (usd(60_00), Y2026));
        // The referrer's year from 31 Dec 2025: all three.
        let (c, y) = earned_in_period(Period::ReferrerYear, usd(100_00), date(2026, 6, 1), &earned).unwrap();
        assert_eq!((c.earned, y), (usd(70_00), YearLabel::Referrer { start: date(2025, 12, 31) }));
        let (c, _) = earned_in_period(Period::ReferrerYear, usd(100_00), date(2027, 1, 1), &earned).unwrap();
        assert_eq!(c.earned, usd(0));
        let c = apply_caps(
            usd(50_00),
            None,
            Some(earned_in_period(Period::CalendarYear, usd(100_00), date(2026, 6, 1), &earned).unwrap()),
        )
        .unwrap();
        assert_eq!(c.amount, usd(40_00));
    }

    #[test]
    fn caps_refuse_other_currencies_and_overflow() {
        let eur = Money::new(100_00, Currency::parse("EUR").unwrap());
        let mixed = CapUse { max: eur, earned: Money::new(0, eur.currency) };
        assert_eq!(apply_caps(usd(1), Some(mixed), None), Err(RewardError::MixedCurrencies("EUR", "USD")));
        assert_eq!(apply_caps(usd(1), Some(cap(i64::MIN, 1)), None), Err(RewardError::Overflow));
    }
}
