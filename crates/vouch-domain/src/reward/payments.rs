//! Recurring rewards on payments: which payments a `percent of payments for N
//! months` rule pays for.

use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

use super::RewardError;

/// Whether a payment made at `at` falls within `months` calendar months of the
/// referral's first payment, made at `first` (in the program's time zone, so
/// "3 months after 31 January 10:00" is 30 April 10:00, clamped like a hold).
/// The first payment itself is within; the instant the window closes is not.
pub fn within_payment_window(first: Timestamp, months: u32, at: Timestamp, tz: &TimeZone) -> Result<bool, RewardError> {
    let end = first.to_zoned_datetime(tz.clone()).checked_add(i64::from(months).months())?.timestamp();
    Ok(first <= at && at < end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn payments_within_n_months_of_the_first_count() {
        let tz = TimeZone::get("America/New_York").unwrap();
        let first = ts("2026-01-31T15:00:00Z");
        let within = |at: &str| within_payment_window(first, 3, ts(at), &tz).unwrap();
        assert!(within("2026-01-31T15:00:00Z"));
        // 10:00 EST on 31 January + 3 months clamps to 10:00 EDT (UTC-4) on 30 April.
        assert!(within("2026-04-30T13:59:59Z"));
        assert!(!within("2026-04-30T14:00:00Z"));
        assert!(!within("2026-06-01T00:00:00Z"));
        // Before the first payment (cannot be: the first is the earliest).
        assert!(!within("2026-01-30T00:00:00Z"));
        assert_eq!(
            within_payment_window(ts("9999-12-01T00:00:00Z"), 1, first, &TimeZone::UTC),
            Err(RewardError::DateRange)
        );
    }
}
