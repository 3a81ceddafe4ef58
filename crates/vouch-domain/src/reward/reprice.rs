//! Pricing a beneficiary's per-unit rewards as in-order delivery would have.
//!
//! Design brief, program C: everything is ordered by contract date (then won
//! time, then referral id), never by arrival. A late `won` with an earlier
//! contract date, or a voided reward, changes the yearly totals before the
//! rewards that follow it, so those are priced again. [`price_in_order`] prices
//! every non-voided reward of one beneficiary under one rule in that order — tiers
//! and caps alike — and the caller compares the result with what each reward is
//! worth now: a pending reward takes the new price, an approved or paid one keeps
//! its amount and the difference ([`delta`]) becomes an adjustment entry.

use crate::money::{Currency, Money};
use crate::program::{PerUnit, PeriodCap};

use super::{
    CapUse, EarlierReward, Placement, Priced, ReferralKey, RewardError, YearLabel, apply_caps, explain_cap,
    explain_per_unit, format_amount, period_of, price_units, prior_total,
};

/// One non-voided per-unit reward of the beneficiary under the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldReward {
    pub key: ReferralKey,
    pub units: u32,
}

/// The caps of a per-unit rule, in the program's currency.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnitCaps {
    pub per_referral: Option<Money>,
    pub per_beneficiary: Option<(Money, crate::program::Period)>,
}

impl UnitCaps {
    /// The caps as a program states them.
    pub fn new(per_referral_minor: Option<i64>, per_beneficiary: Option<PeriodCap>, currency: Currency) -> Self {
        Self {
            per_referral: per_referral_minor.map(|m| Money::new(m, currency)),
            per_beneficiary: per_beneficiary.map(|c| (Money::new(c.amount_minor, currency), c.period)),
        }
    }
}

/// What one reward is worth in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InOrder {
    pub amount: Money,
    pub priced: Priced,
    pub placement: Placement,
    /// The reward's sentence, caps included.
    pub explanation: String,
}

/// Prices every reward in `rewards` (one beneficiary, one rule, voided ones
/// left out by the caller) as if they had arrived in contract-date order.
/// The result is in the order of `rewards`.
pub fn price_in_order(
    rule: &PerUnit,
    caps: UnitCaps,
    currency: Currency,
    rewards: &[HeldReward],
) -> Result<Vec<InOrder>, RewardError> {
    price_each_in_order(|_| (rule, caps), currency, rewards)
}

/// As [`price_in_order`], with each reward priced by the rule `rule_of(i)`
/// gives for `rewards[i]`: the rule of the program version it was made under.
/// A program may change its rates during a referrer's year; the units counted
/// before a reward do not restart, but a reward made under the old rates keeps
/// them when it is priced again, as the simulation of that version would.
pub fn price_each_in_order<'a>(
    rule_of: impl Fn(usize) -> (&'a PerUnit, UnitCaps),
    currency: Currency,
    rewards: &[HeldReward],
) -> Result<Vec<InOrder>, RewardError> {
    let others: Vec<EarlierReward> =
        rewards.iter().map(|r| EarlierReward { key: r.key, units: r.units, voided: false }).collect();
    let mut order: Vec<usize> = (0..rewards.len()).collect();
    order.sort_by_key(|&i| rewards[i].key);
    let mut out: Vec<Option<InOrder>> = vec![None; rewards.len()];
    // (contract date, amount) of the rewards priced so far, in order.
    let mut earned: Vec<(jiff::civil::Date, Money)> = Vec::with_capacity(rewards.len());
    for i in order {
        let r = rewards[i];
        let (rule, caps) = rule_of(i);
        let placement = prior_total(rule.period, r.key, &others)?;
        let priced = price_units(&rule.tiers, rule.tier_policy, placement.prior_total, r.units, currency)?;
        let per_referral = caps.per_referral.map(|max| CapUse { max, earned: Money::new(0, currency) });
        let per_beneficiary = match caps.per_beneficiary {
            Some((max, period)) => {
                let (start, end) = period_of(period, placement.anchor, r.key.contract_date)?;
                let mut sum = Money::new(0, currency);
                for (d, m) in &earned {
                    if start <= *d && *d < end {
                        sum = sum.checked_add(*m)?;
                    }
                }
                Some((CapUse { max, earned: sum }, YearLabel::new(period, start)))
            }
            None => None,
        };
        let capped = apply_caps(priced.amount, per_referral, per_beneficiary)?;
        let mut explanation = explain_per_unit(&rule.unit, &priced, YearLabel::new(rule.period, placement.start));
        explanation.push_str(&explain_cap(&capped));
        earned.push((r.key.contract_date, capped.amount));
        out[i] = Some(InOrder { amount: capped.amount, priced, placement, explanation });
    }
    Ok(out.into_iter().flatten().collect())
}

/// What must be added to `now` to make it `should`.
pub fn delta(now: Money, should: Money) -> Result<Money, RewardError> {
    if now.currency != should.currency {
        return Err(RewardError::MixedCurrencies(now.currency.code(), should.currency.code()));
    }
    let d = should.amount_minor.checked_sub(now.amount_minor).ok_or(RewardError::Overflow)?;
    Ok(Money::new(d, now.currency))
}

/// The sentence of a re-price, recorded on the reward's history or its
/// adjustment: "re-priced from $2,500 to $3,750 (+$1,250) after the referrer's
/// earlier rewards changed: 25 technicians × $150 (...) = $3,750", or, when
/// only the count before it changed, "re-counted after the referrer's earlier
/// rewards changed, still $1,000: ...".
pub fn explain_reprice(from: Money, to: &InOrder) -> Result<String, RewardError> {
    let d = delta(from, to.amount)?;
    if d.amount_minor == 0 {
        return Ok(format!(
            "re-counted after the referrer's earlier rewards changed, still {}: {}",
            format_amount(from),
            to.explanation
        ));
    }
    let sign = if d.amount_minor > 0 { "+" } else { "" };
    Ok(format!(
        "re-priced from {} to {} ({sign}{}) after the referrer's earlier rewards changed: {}",
        format_amount(from),
        format_amount(to.amount),
        format_amount(d),
        to.explanation
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::inconsistent_digit_grouping)]

    use jiff::Timestamp;
    use jiff::civil::{Date, date};
    use uuid::Uuid;

    use super::*;
    use crate::ReferralId;
    use crate::program::{Computation, Period, TierPolicy, parse_program};

    const PER_TECHNICIAN: &str = include_str!("../../../../examples/programs/per-technician.toml");

    fn usd() -> Currency {
        Currency::parse("USD").unwrap()
    }

    fn dollars(n: i64) -> Money {
        Money::new(n * 100, usd())
    }

    fn technicians() -> PerUnit {
        match &parse_program(PER_TECHNICIAN).unwrap().rule("technician-cash").unwrap().computation {
            Computation::PerUnit(p) => p.clone(),
            other => panic!("expected per_unit, got {other:?}"),
        }
    }

    fn held(d: Date, n: u128, units: u32) -> HeldReward {
        let won_at: Timestamp = d.to_zoned_datetime(jiff::tz::TimeZone::UTC).unwrap().timestamp();
        HeldReward { key: ReferralKey { contract_date: d, won_at, referral: ReferralId(Uuid::from_u128(n)) }, units }
    }

    fn amounts(v: &[InOrder]) -> Vec<Money> {
        v.iter().map(|p| p.amount).collect()
    }

    /// The program raised its rates in July (version 2: $120 / $170 / $220).
    /// A late `won` of 15 under version 1 moves the August reward of 16 into the
    /// second tier, which it is priced at by its own version's rates, not by
    /// the rates of the version the late referral belongs to.
    #[test]
    fn each_reward_keeps_the_rates_of_its_own_version_when_priced_again() {
        let v1 = technicians();
        let mut v2 = v1.clone();
        for tier in &mut v2.tiers {
            tier.each_minor += 20_00;
        }
        let rewards = [held(date(2026, 3, 1), 1, 20), held(date(2026, 8, 1), 2, 16), held(date(2026, 2, 1), 3, 15)];
        let version = [&v1, &v2, &v1];
        let priced = price_each_in_order(|i| (version[i], UnitCaps::default()), usd(), &rewards).unwrap();
        assert_eq!(amounts(&priced), [dollars(2_000), dollars(16 * 170), dollars(1_500)]);
        assert_eq!(priced[1].placement.prior_total, 35);
        // Under one rule for all, the August reward would have lost its version's rates.
        let one_rule = price_in_order(&v1, UnitCaps::default(), usd(), &rewards).unwrap();
        assert_eq!(one_rule[1].amount, dollars(16 * 150));
    }

    /// Design brief, program C: 10 technicians (1 Mar), then 25 (1 May), then a
    /// late `won` of 30 dated 1 April. In order the 25 follow 40 in the year.
    #[test]
    fn a_late_earlier_contract_reprices_the_rewards_after_it() {
        let rule = technicians();
        let arrived = [held(date(2026, 3, 1), 1, 10), held(date(2026, 5, 1), 2, 25)];
        let before = price_in_order(&rule, UnitCaps::default(), usd(), &arrived).unwrap();
        assert_eq!(amounts(&before), [dollars(1_000), dollars(2_500)]);

        let late = [arrived[0], arrived[1], held(date(2026, 4, 1), 3, 30)];
        let after = price_in_order(&rule, UnitCaps::default(), usd(), &late).unwrap();
        assert_eq!(amounts(&after), [dollars(1_000), dollars(3_750), dollars(3_000)]);
        assert_eq!(after[1].placement.prior_total, 40);
        assert_eq!(
            after[1].explanation,
            "25 technicians × $150 (tier 31–60: 40 technicians in your year from 1 Mar 2026 before this referral) \
             = $3,750"
        );
        // What the 25-unit reward needs: $1,250 more, whichever way it is booked.
        assert_eq!(delta(before[1].amount, after[1].amount).unwrap(), dollars(1_250));
        assert_eq!(
            explain_reprice(before[1].amount, &after[1]).unwrap(),
            format!("re-priced from $2,500 to $3,750 (+$1,250) after the referrer's earlier rewards changed: {}", {
                &after[1].explanation
            })
        );
        // The balance ends where in-order delivery puts it, whatever the arrival order.
        let in_order = [late[0], late[2], late[1]];
        let total = |v: &[InOrder]| v.iter().map(|p| p.amount.amount_minor).sum::<i64>();
        assert_eq!(total(&after), total(&price_in_order(&rule, UnitCaps::default(), usd(), &in_order).unwrap()));
        assert_eq!(total(&after), 7_750_00);
    }

    #[test]
    fn a_late_referral_within_the_same_tier_changes_the_count_not_the_price() {
        let rule = technicians();
        let before = price_in_order(
            &rule,
            UnitCaps::default(),
            usd(),
            &[held(date(2026, 3, 1), 1, 10), held(date(2026, 5, 1), 2, 5)],
        )
        .unwrap();
        let late = [held(date(2026, 3, 1), 1, 10), held(date(2026, 5, 1), 2, 5), held(date(2026, 4, 1), 3, 5)];
        let after = price_in_order(&rule, UnitCaps::default(), usd(), &late).unwrap();
        assert_eq!((before[1].amount, after[1].amount), (dollars(500), dollars(500)));
        assert_ne!(before[1].explanation, after[1].explanation);
        assert_eq!(
            explain_reprice(before[1].amount, &after[1]).unwrap(),
            "re-counted after the referrer's earlier rewards changed, still $500: 5 technicians × $100 (tier 0–30: \
             15 technicians in your year from 1 Mar 2026 before this referral) = $500"
        );
    }

    #[test]
    fn a_voided_reward_leaves_the_count_and_lowers_what_follows() {
        let rule = technicians();
        let all = [held(date(2026, 1, 10), 1, 40), held(date(2026, 3, 1), 2, 10)];
        assert_eq!(
            amounts(&price_in_order(&rule, UnitCaps::default(), usd(), &all).unwrap()),
            [dollars(4_000), dollars(1_500)]
        );
        // The 40 voided: the caller leaves it out, and the 10 start the year.
        let left = price_in_order(&rule, UnitCaps::default(), usd(), &all[1..]).unwrap();
        assert_eq!(amounts(&left), [dollars(1_000)]);
        assert_eq!(left[0].placement.start, date(2026, 3, 1));
        assert!(delta(dollars(1_500), left[0].amount).unwrap().amount_minor < 0);
        assert!(
            explain_reprice(dollars(1_500), &left[0]).unwrap().starts_with("re-priced from $1,500 to $1,000 (-$500)")
        );
    }

    #[test]
    fn caps_apply_in_contract_date_order() {
        let rule = technicians();
        let caps = UnitCaps {
            per_referral: Some(dollars(2_000)),
            per_beneficiary: Some((dollars(4_000), Period::CalendarYear)),
        };
        let rewards = [
            held(date(2026, 6, 1), 3, 10), // third in order: the year's cap is used up
            held(date(2026, 2, 1), 1, 25), // $2,500, capped per referral at $2,000
            held(date(2026, 4, 1), 2, 10), // $1,000 ($100: 25 before)
            held(date(2027, 1, 5), 4, 5),  // 45 before in the referrer's year, but a new calendar year for the cap
        ];
        let priced = price_in_order(&rule, caps, usd(), &rewards).unwrap();
        assert_eq!(amounts(&priced), [dollars(1_000), dollars(2_000), dollars(1_000), dollars(750)]);
        assert!(priced[1].explanation.ends_with("= $2,500, capped at the $2,000 maximum per referral"));
        assert_eq!(
            priced[0].explanation,
            "10 technicians × $150 (tier 31–60: 35 technicians in your year from 1 Feb 2026 before this referral) \
             = $1,500, capped at $1,000: the rest of the $4,000 maximum per person in 2026 ($3,000 earned before)"
        );
        let more = [rewards[0], rewards[1], rewards[2], held(date(2026, 7, 1), 5, 1)];
        let priced = price_in_order(&rule, caps, usd(), &more).unwrap();
        assert_eq!(priced[3].amount, dollars(0));
        assert!(priced[3].explanation.ends_with(", reduced to $0: the $4,000 maximum per person in 2026 was reached"));
    }

    #[test]
    fn marginal_and_whole_at_end_reprice_too() {
        let mut rule = technicians();
        rule.tier_policy = TierPolicy::Marginal;
        let late = [held(date(2026, 3, 1), 1, 10), held(date(2026, 5, 1), 2, 25), held(date(2026, 4, 1), 3, 30)];
        // 10 × 100; 25 from 40: 20 × 150 + 5 × 200; 30 from 10: 20 × 100 + 10 × 150.
        let p = price_in_order(&rule, UnitCaps::default(), usd(), &late).unwrap();
        assert_eq!(amounts(&p), [dollars(1_000), dollars(4_000), dollars(3_500)]);
        rule.tier_policy = TierPolicy::WholeAtEnd;
        // 10 × 100; 25 reaching 65: × 200; 30 reaching 40: × 150.
        let p = price_in_order(&rule, UnitCaps::default(), usd(), &late).unwrap();
        assert_eq!(amounts(&p), [dollars(1_000), dollars(5_000), dollars(4_500)]);
    }

    #[test]
    fn delta_refuses_mixed_currencies_and_overflow() {
        let eur = Money::new(1, Currency::parse("EUR").unwrap());
        assert_eq!(delta(dollars(1), eur), Err(RewardError::MixedCurrencies("USD", "EUR")));
        assert_eq!(delta(Money::new(i64::MIN, usd()), Money::new(1, usd())), Err(RewardError::Overflow));
    }
}
