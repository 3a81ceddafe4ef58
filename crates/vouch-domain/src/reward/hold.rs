//! When a hold ends, and which date a referral counts on.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

use super::RewardError;

/// The end of a hold that starts on `start` (a contract date): `months` calendar
/// months later, then `days` more days, at the start of that day in the program's
/// time zone.
///
/// Months are added first and clamp to the end of a shorter month: 31 January + 1
/// month is 28 February (29 in a leap year), 29 February 2024 + 12 months is
/// 28 February 2025. "Start of the day" is midnight, or the first instant of the
/// day when a time-zone transition skips midnight (the gap resolves forward).
pub fn release_at(start: Date, months: u32, days: u32, tz: &TimeZone) -> Result<Timestamp, RewardError> {
    let months = i64::from(months);
    let days = i64::from(days);
    let date = start.checked_add(months.months())?.checked_add(days.days())?;
    Ok(date.to_zoned_datetime(tz.clone())?.timestamp())
}

/// The date a referral counts on: its contract date, or for a `won` without one,
/// the date the `won` happened in the program's time zone.
pub fn counting_date(contract_date: Option<Date>, won_at: Timestamp, tz: &TimeZone) -> Date {
    contract_date.unwrap_or_else(|| won_at.to_zoned_datetime(tz.clone()).date())
}
