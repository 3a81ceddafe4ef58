// Amounts in tests are written as whole.cents: `150_00` is USD 150.00.
#![allow(clippy::inconsistent_digit_grouping)]

use jiff::Timestamp;
use jiff::civil::{Date, date};
use jiff::tz::TimeZone;
use uuid::Uuid;

use super::*;
use crate::ReferralId;
use crate::money::{Currency, Money};
use crate::program::{Computation, PerUnit, Percent, PercentOf, Period, Tier, TierPolicy, parse_program};

const PER_TECHNICIAN: &str = include_str!("../../../../examples/programs/per-technician.toml");
const DOUBLE_SIDED: &str = include_str!("../../../../examples/programs/double-sided.toml");

fn usd() -> Currency {
    Currency::parse("USD").unwrap()
}

fn usd_minor(m: i64) -> Money {
    Money::new(m, usd())
}

/// The per-unit computation of the shipped program C.
fn technician_rule() -> PerUnit {
    let program = parse_program(PER_TECHNICIAN).unwrap();
    match &program.rule("technician-cash").unwrap().computation {
        Computation::PerUnit(p) => p.clone(),
        other => panic!("expected per_unit, got {other:?}"),
    }
}

fn price(policy: TierPolicy, prior: u32, units: u32) -> Priced {
    price_units(&technician_rule().tiers, policy, prior, units, usd()).unwrap()
}

// ---- 1. Tiers -------------------------------------------------------------

/// Design brief section 2, program C: every cell of the published table.
#[test]
fn per_technician_fee_table_every_cell() {
    let rule = technician_rule();
    assert_eq!(rule.tier_policy, TierPolicy::WholeAtStart, "the shipped program uses the default policy");
    assert_eq!(rule.period, Period::ReferrerYear);
    let units = [10, 15, 16, 40, 50];
    // (prior yearly totals tested for the row, the row's cells as published)
    let table: [(&[u32], [&str; 5]); 3] = [
        (&[0], ["$1,000", "$1,500", "$1,600", "$4,000", "$5,000"]),
        (&[31, 45, 60], ["$1,500", "$2,250", "$2,400", "$6,000", "$7,500"]),
        (&[61, 200], ["$2,000", "$3,000", "$3,200", "$8,000", "$10,000"]),
    ];
    let mut cells = 0;
    for (priors, row) in table {
        for &prior in priors {
            for (&n, &cell) in units.iter().zip(row.iter()) {
                let p = price_units(&rule.tiers, rule.tier_policy, prior, n, usd()).unwrap();
                assert_eq!(format_amount(p.amount), cell, "{n} technicians after a yearly total of {prior}");
                assert_eq!(p.slices.len(), 1, "whole_at_start prices every unit at one rate");
                assert_eq!(p.amount.amount_minor, p.slices[0].each.amount_minor * i64::from(n));
                cells += 1;
            }
        }
    }
    assert_eq!(cells, 6 * 5);
}

#[test]
fn marginal_35_from_zero_is_3750() {
    let p = price(TierPolicy::Marginal, 0, 35);
    assert_eq!(p.amount, usd_minor(3_750_00));
    let parts: Vec<(u32, i64)> = p.slices.iter().map(|s| (s.units, s.each.amount_minor)).collect();
    assert_eq!(parts, [(30, 100_00), (5, 150_00)]);
}

#[test]
fn whole_at_end_35_from_zero_is_5250() {
    let p = price(TierPolicy::WholeAtEnd, 0, 35);
    assert_eq!(p.amount, usd_minor(5_250_00));
    assert_eq!(p.slices.len(), 1);
    assert_eq!((p.slices[0].first, p.slices[0].last), (31, Some(60)));
}

#[test]
fn boundaries_prior_30_and_60_plus_one() {
    use TierPolicy::*;
    for (policy, prior, each) in [
        (WholeAtStart, 29, 100_00),
        (Marginal, 29, 100_00),
        (WholeAtEnd, 29, 100_00),
        (WholeAtStart, 30, 100_00),
        (Marginal, 30, 150_00),
        (WholeAtEnd, 30, 150_00),
        (WholeAtStart, 60, 150_00),
        (Marginal, 60, 200_00),
        (WholeAtEnd, 60, 200_00),
        (WholeAtStart, 61, 200_00),
    ] {
        assert_eq!(price(policy, prior, 1).amount, usd_minor(each), "{policy:?}, prior {prior} + 1");
    }
}

#[test]
fn marginal_across_three_tiers_and_whole_policies_across_them() {
    // Positions 26..=65: 5 at $100, 30 at $150, 5 at $200.
    let p = price(TierPolicy::Marginal, 25, 40);
    let parts: Vec<(u32, i64)> = p.slices.iter().map(|s| (s.units, s.each.amount_minor)).collect();
    assert_eq!(parts, [(5, 100_00), (30, 150_00), (5, 200_00)]);
    assert_eq!(p.amount, usd_minor(6_000_00));
    assert_eq!(price(TierPolicy::WholeAtStart, 25, 40).amount, usd_minor(4_000_00));
    assert_eq!(price(TierPolicy::WholeAtEnd, 25, 40).amount, usd_minor(8_000_00));
    // Starting inside a later tier skips the earlier ones.
    let p = price(TierPolicy::Marginal, 70, 3);
    assert_eq!(p.slices.len(), 1);
    assert_eq!(p.amount, usd_minor(600_00));
}

#[test]
fn zero_units_earn_nothing() {
    for policy in [TierPolicy::WholeAtStart, TierPolicy::Marginal, TierPolicy::WholeAtEnd] {
        let p = price(policy, 40, 0);
        assert_eq!(p.amount, usd_minor(0));
        assert!(p.slices.is_empty());
    }
}

#[test]
fn overflow_is_an_error() {
    let tiers = [Tier { up_to: Some(1), each_minor: 1 }, Tier { up_to: None, each_minor: i64::MAX / 2 }];
    for policy in [TierPolicy::WholeAtStart, TierPolicy::Marginal, TierPolicy::WholeAtEnd] {
        assert_eq!(price_units(&tiers, policy, 2, 3, usd()), Err(RewardError::Overflow), "{policy:?}");
    }
    // Each subtotal fits, their sum does not.
    let tiers = [Tier { up_to: Some(1), each_minor: i64::MAX }, Tier { up_to: None, each_minor: i64::MAX }];
    assert_eq!(price_units(&tiers, TierPolicy::Marginal, 0, 2, usd()), Err(RewardError::Overflow));
    // Totals beyond u32 do not wrap.
    let open = [Tier { up_to: None, each_minor: 1 }];
    assert_eq!(
        price_units(&open, TierPolicy::WholeAtEnd, u32::MAX, u32::MAX, usd()).unwrap().amount.amount_minor,
        4_294_967_295
    );
}

#[test]
fn invalid_tiers_are_errors() {
    let t = |up_to, each_minor| Tier { up_to, each_minor };
    let p = |tiers: &[Tier], prior| price_units(tiers, TierPolicy::Marginal, prior, 5, usd());
    assert_eq!(p(&[], 0), Err(RewardError::NoTiers));
    assert_eq!(p(&[t(Some(30), 1), t(Some(30), 2), t(None, 3)], 0), Err(RewardError::BadTiers));
    assert_eq!(p(&[t(None, 1), t(Some(30), 2)], 0), Err(RewardError::BadTiers));
    // A bounded last tier prices up to its bound and no further.
    assert_eq!(p(&[t(Some(10), 1)], 5).unwrap().amount.amount_minor, 5);
    assert_eq!(p(&[t(Some(10), 1)], 6), Err(RewardError::NoTierFor(11)));
    assert_eq!(price_units(&[t(Some(10), 1)], TierPolicy::WholeAtEnd, 6, 5, usd()), Err(RewardError::NoTierFor(11)));
}

// ---- 2. Explanations ------------------------------------------------------

#[test]
fn explanation_whole_at_start_matches_the_issue() {
    let p = price(TierPolicy::WholeAtStart, 35, 16);
    let year = YearLabel::new(Period::ReferrerYear, date(2026, 3, 14));
    assert_eq!(
        explain_per_unit("technician", &p, year),
        "16 technicians × $150 (tier 31–60: 35 technicians in your year from 14 Mar 2026 before this referral) = $2,400"
    );
    let first = price(TierPolicy::WholeAtStart, 0, 1);
    assert_eq!(
        explain_per_unit("technician", &first, year),
        "1 technician × $100 (tier 0–30: no technicians in your year from 14 Mar 2026 before this referral) = $100"
    );
    let top = price(TierPolicy::WholeAtStart, 61, 10);
    assert_eq!(
        explain_per_unit("technician", &top, YearLabel::new(Period::CalendarYear, date(2026, 1, 1))),
        "10 technicians × $200 (tier 61+: 61 technicians in 2026 before this referral) = $2,000"
    );
}

#[test]
fn explanation_marginal_and_whole_at_end() {
    let year = YearLabel::Referrer { start: date(2026, 3, 14) };
    assert_eq!(
        explain_per_unit("technician", &price(TierPolicy::Marginal, 0, 35), year),
        "35 technicians after no technicians in your year from 14 Mar 2026: 30 × $100 (tier 0–30) + 5 × $150 (tier 31–60) = $3,750"
    );
    assert_eq!(
        explain_per_unit("technician", &price(TierPolicy::WholeAtEnd, 0, 35), year),
        "35 technicians × $150 (tier 31–60: 35 technicians in your year from 14 Mar 2026 with this referral) = $5,250"
    );
    assert_eq!(explain_per_unit("technician", &price(TierPolicy::Marginal, 3, 0), year), "no technicians = $0");
}

#[test]
fn amounts_are_formatted_for_people() {
    assert_eq!(format_amount(usd_minor(240_000)), "$2,400");
    assert_eq!(format_amount(usd_minor(1_250)), "$12.50");
    assert_eq!(format_amount(usd_minor(5)), "$0.05");
    assert_eq!(format_amount(usd_minor(-500)), "-$5");
    assert_eq!(format_amount(usd_minor(123_456_789_00)), "$123,456,789");
    assert_eq!(format_amount(Money::new(15_000, Currency::parse("CAD").unwrap())), "CAD 150");
    assert_eq!(format_amount(Money::new(1_234, Currency::parse("JPY").unwrap())), "¥1,234");
    assert_eq!(format_amount(Money::new(99_99, Currency::parse("EUR").unwrap())), "€99.99");
}

#[test]
fn units_are_pluralised() {
    let p = price_units(&[Tier { up_to: None, each_minor: 1_00 }], TierPolicy::WholeAtStart, 2, 2, usd()).unwrap();
    let year = YearLabel::Calendar { year: 2026 };
    for (unit, plural) in
        [("seat", "seats"), ("company", "companies"), ("box", "boxes"), ("day", "days"), ("branch", "branches")]
    {
        let s = explain_per_unit(unit, &p, year);
        assert!(s.starts_with(&format!("2 {plural} × $1 (tier 0+: 2 {plural} in 2026")), "{s}");
    }
}

// ---- 3. The referrer's year ---------------------------------------------

#[test]
fn referrer_year_follows_anniversaries_of_the_anchor() {
    let anchor = date(2026, 3, 14);
    let year = |d: Date| referrer_year(anchor, d).unwrap();
    assert_eq!(year(date(2026, 3, 14)), (date(2026, 3, 14), date(2027, 3, 14)));
    assert_eq!(year(date(2027, 3, 13)), (date(2026, 3, 14), date(2027, 3, 14)));
    assert_eq!(year(date(2027, 3, 14)), (date(2027, 3, 14), date(2028, 3, 14)));
    assert_eq!(year(date(2030, 1, 1)), (date(2029, 3, 14), date(2030, 3, 14)));
    // Before the anchor (a late fact about to move it): counted backwards.
    assert_eq!(year(date(2026, 1, 1)), (date(2025, 3, 14), date(2026, 3, 14)));
    assert_eq!(referrer_year(anchor, date(9999, 12, 31)), Err(RewardError::DateRange));
}

#[test]
fn a_29_february_anchor_has_28_february_anniversaries_in_common_years() {
    let anchor = date(2024, 2, 29);
    let year = |d: Date| referrer_year(anchor, d).unwrap();
    assert_eq!(year(date(2024, 2, 29)), (date(2024, 2, 29), date(2025, 2, 28)));
    assert_eq!(year(date(2025, 2, 27)), (date(2024, 2, 29), date(2025, 2, 28)));
    assert_eq!(year(date(2025, 2, 28)), (date(2025, 2, 28), date(2026, 2, 28)));
    assert_eq!(year(date(2028, 2, 28)), (date(2027, 2, 28), date(2028, 2, 29)));
    assert_eq!(year(date(2028, 2, 29)), (date(2028, 2, 29), date(2029, 2, 28)));
    assert_eq!(year(date(2028, 3, 1)), (date(2028, 2, 29), date(2029, 2, 28)));
}

#[test]
fn calendar_year_period() {
    assert_eq!(
        period_of(Period::CalendarYear, date(2020, 5, 5), date(2026, 7, 1)).unwrap(),
        (date(2026, 1, 1), date(2027, 1, 1))
    );
}

fn rid(n: u128) -> ReferralId {
    ReferralId(Uuid::from_u128(n))
}

fn key(d: Date, won: &str, n: u128) -> ReferralKey {
    ReferralKey { contract_date: d, won_at: won.parse::<Timestamp>().unwrap(), referral: rid(n) }
}

fn reward(d: Date, won: &str, n: u128, units: u32) -> EarlierReward {
    EarlierReward { key: key(d, won, n), units, voided: false }
}

#[test]
fn prior_total_sums_earlier_units_in_the_same_year() {
    let others = [
        reward(date(2026, 3, 14), "2026-03-20T10:00:00Z", 1, 10),
        reward(date(2026, 5, 1), "2026-05-02T10:00:00Z", 2, 25),
        // Later in the year than the referral priced: does not count, even if it arrived first.
        reward(date(2026, 9, 1), "2026-09-02T10:00:00Z", 3, 7),
    ];
    let this = key(date(2026, 6, 1), "2026-06-02T10:00:00Z", 4);
    let p = prior_total(Period::ReferrerYear, this, &others).unwrap();
    assert_eq!(
        p,
        Placement { anchor: date(2026, 3, 14), start: date(2026, 3, 14), end: date(2027, 3, 14), prior_total: 35 }
    );
    // And the whole chain, explained: 16 technicians after 35.
    let priced = price(TierPolicy::WholeAtStart, p.prior_total, 16);
    assert!(
        explain_per_unit("technician", &priced, YearLabel::new(Period::ReferrerYear, p.start)).contains("14 Mar 2026")
    );
    assert_eq!(priced.amount, usd_minor(2_400_00));
}

#[test]
fn prior_total_resets_every_year() {
    let others = [
        reward(date(2026, 3, 14), "2026-03-20T10:00:00Z", 1, 50),
        reward(date(2027, 3, 13), "2027-03-13T10:00:00Z", 2, 20),
        reward(date(2027, 4, 1), "2027-04-01T10:00:00Z", 3, 5),
    ];
    let at = |d: Date, n| prior_total(Period::ReferrerYear, key(d, "2028-01-01T00:00:00Z", n), &others).unwrap();
    assert_eq!(at(date(2027, 3, 13), 9).prior_total, 70);
    let p = at(date(2027, 3, 14), 9);
    assert_eq!((p.start, p.prior_total), (date(2027, 3, 14), 0));
    assert_eq!(at(date(2027, 5, 1), 9).prior_total, 5);
}

#[test]
fn a_voided_reward_neither_counts_nor_anchors() {
    let mut others = [
        reward(date(2026, 3, 14), "2026-03-20T10:00:00Z", 1, 10),
        reward(date(2026, 5, 1), "2026-05-02T10:00:00Z", 2, 25),
    ];
    let this = key(date(2027, 4, 1), "2027-04-02T10:00:00Z", 3);
    // Anchored on 14 March: 1 April 2027 is in the second year, where nothing came before.
    assert_eq!(prior_total(Period::ReferrerYear, this, &others).unwrap().prior_total, 0);
    others[0].voided = true;
    let p = prior_total(Period::ReferrerYear, this, &others).unwrap();
    assert_eq!((p.anchor, p.start, p.prior_total), (date(2026, 5, 1), date(2026, 5, 1), 25));
}

#[test]
fn ties_are_broken_by_won_time_then_referral_id() {
    let d = date(2026, 3, 14);
    let others = [
        reward(d, "2026-03-14T09:00:00Z", 9, 1),  // won earlier: counts
        reward(d, "2026-03-14T10:00:00Z", 1, 2),  // same won time, lower id: counts
        reward(d, "2026-03-14T10:00:00Z", 7, 4),  // same won time, higher id: does not
        reward(d, "2026-03-14T11:00:00Z", 2, 8),  // won later: does not
        reward(d, "2026-03-14T10:00:00Z", 5, 16), // this referral's own reward: ignored
    ];
    let this = key(d, "2026-03-14T10:00:00Z", 5);
    assert_eq!(prior_total(Period::ReferrerYear, this, &others).unwrap().prior_total, 3);
}

#[test]
fn the_first_reward_anchors_the_year_on_its_own_contract_date() {
    let this = key(date(2026, 3, 14), "2026-03-14T10:00:00Z", 1);
    let p = prior_total(Period::ReferrerYear, this, &[]).unwrap();
    assert_eq!(
        p,
        Placement { anchor: date(2026, 3, 14), start: date(2026, 3, 14), end: date(2027, 3, 14), prior_total: 0 }
    );
    // A late referral with an earlier contract date moves the anchor.
    let later = [reward(date(2026, 3, 14), "2026-03-14T10:00:00Z", 1, 40)];
    let p = prior_total(Period::ReferrerYear, key(date(2026, 1, 10), "2026-04-01T10:00:00Z", 2), &later).unwrap();
    assert_eq!((p.anchor, p.start, p.prior_total), (date(2026, 1, 10), date(2026, 1, 10), 0));
}

#[test]
fn prior_total_with_a_29_february_anchor() {
    let others = [
        reward(date(2024, 2, 29), "2024-02-29T10:00:00Z", 1, 10),
        reward(date(2025, 2, 27), "2025-02-27T10:00:00Z", 2, 20),
    ];
    let at = |d: Date| prior_total(Period::ReferrerYear, key(d, "2025-03-01T00:00:00Z", 3), &others).unwrap();
    assert_eq!(at(date(2025, 2, 27)).prior_total, 30);
    let p = at(date(2025, 2, 28));
    assert_eq!((p.start, p.end, p.prior_total), (date(2025, 2, 28), date(2026, 2, 28), 0));
}

#[test]
fn prior_total_in_a_calendar_year() {
    let others = [
        reward(date(2025, 12, 31), "2025-12-31T10:00:00Z", 1, 10),
        reward(date(2026, 1, 1), "2026-01-01T10:00:00Z", 2, 3),
    ];
    let p = prior_total(Period::CalendarYear, key(date(2026, 6, 1), "2026-06-01T00:00:00Z", 3), &others).unwrap();
    assert_eq!((p.start, p.end, p.prior_total), (date(2026, 1, 1), date(2027, 1, 1), 3));
}

#[test]
fn prior_total_overflow_is_an_error() {
    let d = date(2026, 3, 14);
    let others = [reward(d, "2026-03-14T01:00:00Z", 1, u32::MAX), reward(d, "2026-03-14T02:00:00Z", 2, 1)];
    assert_eq!(
        prior_total(Period::ReferrerYear, key(d, "2026-03-15T00:00:00Z", 3), &others),
        Err(RewardError::Overflow)
    );
}

// ---- 4. Holds -------------------------------------------------------------

fn chicago() -> TimeZone {
    TimeZone::get("America/Chicago").unwrap()
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

#[test]
fn release_at_is_the_start_of_the_day_n_months_later_in_the_program_zone() {
    let program = parse_program(PER_TECHNICIAN).unwrap();
    let hold = program.rule("technician-cash").unwrap().hold.clone().unwrap();
    let tz = TimeZone::get(program.timezone()).unwrap();
    // Two calendar months; Chicago is on CDT (UTC-5) in May.
    assert_eq!(release_at(date(2026, 3, 14), hold.months, hold.days, &tz).unwrap(), ts("2026-05-14T05:00:00Z"));
    // CST (UTC-6) in February.
    assert_eq!(release_at(date(2025, 12, 14), 2, 0, &tz).unwrap(), ts("2026-02-14T06:00:00Z"));
}

#[test]
fn release_at_clamps_month_ends() {
    let tz = chicago();
    assert_eq!(release_at(date(2026, 1, 31), 1, 0, &tz).unwrap(), ts("2026-02-28T06:00:00Z"));
    assert_eq!(release_at(date(2024, 1, 31), 1, 0, &tz).unwrap(), ts("2024-02-29T06:00:00Z"));
    assert_eq!(release_at(date(2025, 12, 31), 2, 0, &tz).unwrap(), ts("2026-02-28T06:00:00Z"));
    assert_eq!(release_at(date(2024, 2, 29), 12, 0, &tz).unwrap(), ts("2025-02-28T06:00:00Z"));
    assert_eq!(release_at(date(2024, 2, 29), 48, 0, &tz).unwrap(), ts("2028-02-29T06:00:00Z"));
    // Months first, then days: 31 Jan + 1 month = 28 Feb, + 1 day = 1 Mar.
    assert_eq!(release_at(date(2026, 1, 31), 1, 1, &tz).unwrap(), ts("2026-03-01T06:00:00Z"));
    assert_eq!(release_at(date(2026, 3, 14), 0, 30, &tz).unwrap(), ts("2026-04-13T05:00:00Z"));
    assert_eq!(release_at(date(2026, 3, 14), 0, 0, &tz).unwrap(), ts("2026-03-14T05:00:00Z"));
    assert_eq!(release_at(date(9999, 12, 1), 1, 0, &tz), Err(RewardError::DateRange));
}

#[test]
fn release_at_when_midnight_does_not_exist() {
    // São Paulo skipped 4 Nov 2018 00:00-01:00: the day started at 01:00 (UTC-2).
    let tz = TimeZone::get("America/Sao_Paulo").unwrap();
    assert_eq!(release_at(date(2018, 10, 4), 1, 0, &tz).unwrap(), ts("2018-11-04T03:00:00Z"));
}

#[test]
fn counting_date_falls_back_to_the_won_day_in_the_program_zone() {
    let tz = chicago();
    // 03:00 UTC on 15 March is 22:00 CDT on 14 March.
    assert_eq!(counting_date(None, ts("2026-03-15T03:00:00Z"), &tz), date(2026, 3, 14));
    assert_eq!(counting_date(Some(date(2026, 1, 2)), ts("2026-03-15T03:00:00Z"), &tz), date(2026, 1, 2));
}

// ---- 5. Flat and percentage ----------------------------------------------

#[test]
fn flat_is_the_amount() {
    assert_eq!(flat(usd_minor(100_00)).unwrap(), usd_minor(100_00));
    assert_eq!(explain_flat(usd_minor(100_00)), "flat $100 per referral");
}

fn welcome_credit() -> (Percent, PercentOf, Money) {
    let program = parse_program(DOUBLE_SIDED).unwrap();
    let rule = program.rule("welcome-credit").unwrap();
    let max = Money::new(rule.caps.per_referral_minor.unwrap(), program.currency());
    match rule.computation {
        Computation::Percentage(p) => (p.percent, p.of, max),
        ref other => panic!("expected percentage, got {other:?}"),
    }
}

#[test]
fn program_d_gives_20_percent_of_the_contract_value_up_to_100_dollars() {
    let (percent, of, max) = welcome_credit();
    assert_eq!((percent.basis_points(), of, max), (2_000, PercentOf::ContractValue, usd_minor(100_00)));
    let p = percentage(percent, usd_minor(300_00), Some(max)).unwrap();
    assert_eq!((p.amount, p.capped_at, p.rounded), (usd_minor(60_00), None, false));
    assert_eq!(explain_percentage(&p, of), "20% of the $300 contract value = $60");
    // Exactly at the maximum: not capped.
    let p = percentage(percent, usd_minor(500_00), Some(max)).unwrap();
    assert_eq!((p.amount, p.capped_at), (usd_minor(100_00), None));
    let p = percentage(percent, usd_minor(1_000_00), Some(max)).unwrap();
    assert_eq!((p.amount, p.uncapped, p.capped_at), (usd_minor(100_00), usd_minor(200_00), Some(max)));
    assert_eq!(
        explain_percentage(&p, of),
        "20% of the $1,000 contract value = $200, capped at the $100 maximum per referral"
    );
}

#[test]
fn percentages_round_half_up_to_the_minor_unit() {
    let pct = |s| Percent::parse(s).unwrap();
    let share = |p, base| percentage(pct(p), usd_minor(base), None).unwrap().amount.amount_minor;
    assert_eq!(share("20", 2), 0); // 0.4 cent
    assert_eq!(share("25", 2), 1); // 0.5 cent: half rounds up
    assert_eq!(share("12.5", 1_001), 125); // 125.125
    assert_eq!(share("12.5", 1_004), 126); // 125.5
    assert_eq!(share("0.01", 4_999), 0); // 0.4999
    assert_eq!(share("0.01", 5_000), 1); // 0.5
    assert_eq!(share("100", i64::MAX), i64::MAX);
    assert_eq!(share("33.33", 0), 0);
    let p = percentage(pct("12.5"), usd_minor(10_01), None).unwrap();
    assert_eq!(
        explain_percentage(&p, PercentOf::ContractValue),
        "12.5% of the $10.01 contract value = $1.25 (rounded half up)"
    );
    assert_eq!(
        explain_percentage(&p, PercentOf::Payments { months: 12 }),
        "12.5% of the $10.01 payment = $1.25 (rounded half up)"
    );
}

#[test]
fn percentage_refuses_negative_bases_and_mixed_currency_maximums() {
    let pct = Percent::parse("20").unwrap();
    assert_eq!(percentage(pct, usd_minor(-1), None), Err(RewardError::NegativeBase(-1)));
    let eur = Money::new(100_00, Currency::parse("EUR").unwrap());
    assert_eq!(percentage(pct, usd_minor(1_000_00), Some(eur)), Err(RewardError::MixedCurrencies("EUR", "USD")));
}

#[test]
fn large_counts_are_grouped_and_never_wrap() {
    let open = [Tier { up_to: None, each_minor: 1 }];
    let p = price_units(&open, TierPolicy::WholeAtEnd, u32::MAX, 1_000, usd()).unwrap();
    assert_eq!(
        explain_per_unit("seat", &p, YearLabel::Calendar { year: 2026 }),
        "1,000 seats × $0.01 (tier 0+: 4,294,968,295 seats in 2026 with this referral) = $10"
    );
}
