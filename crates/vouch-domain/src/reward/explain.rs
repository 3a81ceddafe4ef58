//! The one-sentence computation every reward stores and the API shows.
//!
//! Amounts are written for people: a symbol for the few currencies whose symbol
//! is unambiguous to our users (`$` for USD, `€`, `£`, `¥` for JPY), the ISO code
//! otherwise (`CAD 150`); thousands grouped with commas; the fraction left out
//! when it is zero (`$2,400`, but `$12.50`). Dates read `14 Mar 2026`. Tiers are
//! named by the yearly totals they cover: `0–30`, `31–60`, `61+`.
//!
//! Per-unit sentences, by policy (unit "technician", tiers 30 / 60 / open):
//! - `whole_at_start`: "16 technicians × $150 (tier 31–60: 35 technicians in your
//!   year from 14 Mar 2026 before this referral) = $2,400"
//! - `whole_at_end`: "35 technicians × $150 (tier 31–60: 35 technicians in your
//!   year from 14 Mar 2026 with this referral) = $5,250"
//! - `marginal`: "35 technicians after no technicians in your year from 14 Mar
//!   2026: 30 × $100 (tier 0–30) + 5 × $150 (tier 31–60) = $3,750"

use jiff::civil::Date;

use crate::money::Money;
use crate::program::{Percent, PercentOf, Period, TierPolicy};

use super::{PercentPriced, Priced, TierSlice};

/// Which period a per-unit sentence counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum YearLabel {
    /// The referrer's own year, from its start date.
    Referrer {
        start: Date,
    },
    Calendar {
        year: i16,
    },
}

impl YearLabel {
    /// The label for the period starting on `start` (from [`super::Placement`]).
    pub fn new(period: Period, start: Date) -> Self {
        match period {
            Period::ReferrerYear => YearLabel::Referrer { start },
            Period::CalendarYear => YearLabel::Calendar { year: start.year() },
        }
    }

    pub(crate) fn phrase(self) -> String {
        match self {
            YearLabel::Referrer { start } => format!("in your year from {}", format_date(start)),
            YearLabel::Calendar { year } => format!("in {year}"),
        }
    }
}

fn format_date(d: Date) -> String {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = MONTHS[usize::try_from(d.month() - 1).unwrap_or(0)];
    format!("{} {month} {}", d.day(), d.year())
}

fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// An amount for people: `$2,400`, `$12.50`, `€1,000`, `CAD 150`, `-$5`.
pub fn format_amount(m: Money) -> String {
    let symbol = match m.currency.code() {
        "USD" => Some("$"),
        "EUR" => Some("€"),
        "GBP" => Some("£"),
        "JPY" => Some("¥"),
        _ => None,
    };
    let exp = m.currency.exponent();
    let abs = m.amount_minor.unsigned_abs();
    let scale = 10u64.pow(exp);
    let (whole, frac) = (abs / scale, abs % scale);
    let mut number = group_thousands(whole);
    if frac != 0 {
        number = format!("{number}.{frac:0width$}", width = exp as usize);
    }
    let sign = if m.amount_minor < 0 { "-" } else { "" };
    match symbol {
        Some(s) => format!("{sign}{s}{number}"),
        None => format!("{sign}{} {number}", m.currency.code()),
    }
}

/// A naive English plural of a unit name given in the singular.
fn plural(unit: &str) -> String {
    let vowel_y = ["ay", "ey", "iy", "oy", "uy"].iter().any(|s| unit.ends_with(s));
    if unit.ends_with('y') && !vowel_y {
        format!("{}ies", &unit[..unit.len() - 1])
    } else if ["s", "x", "z", "ch", "sh"].iter().any(|s| unit.ends_with(s)) {
        format!("{unit}es")
    } else {
        format!("{unit}s")
    }
}

fn count(n: impl Into<u64>, unit: &str) -> String {
    match n.into() {
        0 => format!("no {}", plural(unit)),
        1 => format!("1 {unit}"),
        n => format!("{} {}", group_thousands(n), plural(unit)),
    }
}

fn tier_label(s: &TierSlice) -> String {
    match s.last {
        Some(last) => format!("{}–{last}", s.first),
        None => format!("{}+", s.first),
    }
}

/// The sentence for a per-unit reward; `unit` is the rule's unit, singular.
pub fn explain_per_unit(unit: &str, priced: &Priced, year: YearLabel) -> String {
    let units = count(priced.units, unit);
    let amount = format_amount(priced.amount);
    let year = year.phrase();
    match (priced.policy, priced.slices.as_slice()) {
        (_, []) => format!("{units} = {amount}"),
        (TierPolicy::WholeAtStart, [s, ..]) => format!(
            "{units} × {} (tier {}: {} {year} before this referral) = {amount}",
            format_amount(s.each),
            tier_label(s),
            count(priced.prior_total, unit),
        ),
        (TierPolicy::WholeAtEnd, [s, ..]) => format!(
            "{units} × {} (tier {}: {} {year} with this referral) = {amount}",
            format_amount(s.each),
            tier_label(s),
            count(u64::from(priced.prior_total) + u64::from(priced.units), unit),
        ),
        (TierPolicy::Marginal, slices) => {
            let parts: Vec<String> = slices
                .iter()
                .map(|s| {
                    format!(
                        "{} × {} (tier {})",
                        group_thousands(u64::from(s.units)),
                        format_amount(s.each),
                        tier_label(s)
                    )
                })
                .collect();
            format!("{units} after {} {year}: {} = {amount}", count(priced.prior_total, unit), parts.join(" + "))
        }
    }
}

/// The sentence for a flat reward: "flat $100 per referral".
pub fn explain_flat(amount: Money) -> String {
    format!("flat {} per referral", format_amount(amount))
}

/// The sentence for a percentage reward, e.g. "20% of the $1,000 contract value =
/// $200, capped at the $100 maximum per referral".
pub fn explain_percentage(p: &PercentPriced, of: PercentOf) -> String {
    let of = match of {
        PercentOf::ContractValue => "contract value",
        PercentOf::Payments { .. } => "payment",
    };
    let percent: Percent = p.percent;
    let mut s = format!("{percent}% of the {} {of} = {}", format_amount(p.base), format_amount(p.uncapped));
    if p.rounded {
        s.push_str(" (rounded half up)");
    }
    if let Some(max) = p.capped_at {
        s.push_str(&format!(", capped at the {} maximum per referral", format_amount(max)));
    }
    s
}
