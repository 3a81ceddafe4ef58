//! The ledger's decisions: what ending a hold does, what a late churn or refund
//! does to a reward, and which finance actions a reward's status allows.
//!
//! A hold is judged by what *happened* before it ended, not by what had arrived:
//! a churn or refund dated before `release_at` voids a reward that is not paid
//! yet, whenever it is reported. Once paid, a reward is never edited: a program
//! with `clawback = true` takes it back with one negative adjustment.

use jiff::Timestamp;
use uuid::Uuid;

use super::RewardError;
use crate::money::Money;
use crate::program::{Approval, RewardRule, VoidOn};

/// A reward's place in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerStatus {
    Pending,
    Approved,
    Paid,
    Voided,
}

/// A churn or refund known for a referral.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reversal {
    pub kind: VoidOn,
    pub occurred_at: Timestamp,
    /// The fact that reported it.
    pub fact: Uuid,
}

impl Reversal {
    /// Why it voids a reward held until `release_at`, in one sentence.
    pub fn void_reason(&self, release_at: Timestamp) -> String {
        format!(
            "{} at {} (fact {}), before the hold ended at {release_at}",
            self.kind.as_str(),
            self.occurred_at,
            self.fact
        )
    }
}

/// What ending a reward's hold does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// A churn or refund dated before the hold ended: the earliest one.
    Void(Reversal),
    /// `approval = "auto"`.
    Approve,
    /// `approval = "manual"`: it stays pending until finance approves it.
    AwaitFinance,
}

/// Ends the hold of a reward under `rule` held until `release_at`, given every
/// churn and refund known for its referral.
pub fn release(rule: &RewardRule, release_at: Timestamp, known: &[Reversal]) -> Release {
    let void_on = rule.hold.as_ref().map(|h| h.void_on.as_slice()).unwrap_or_default();
    let voiding = known
        .iter()
        .filter(|r| void_on.contains(&r.kind) && r.occurred_at < release_at)
        .min_by_key(|r| (r.occurred_at, r.fact));
    match (voiding, rule.approval) {
        (Some(r), _) => Release::Void(*r),
        (None, Approval::Auto) => Release::Approve,
        (None, Approval::Manual) => Release::AwaitFinance,
    }
}

/// What a churn or refund reported now does to one reward of its referral.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LateReversal {
    Void,
    Clawback,
    Nothing,
}

/// A reward not yet paid is voided when its rule's hold lists the fact's kind and
/// the fact is dated before the hold ended (approved or not: the hold was not
/// really passed). A paid one is taken back where the rule asks for clawbacks.
pub fn late_reversal(
    status: LedgerStatus,
    rule: &RewardRule,
    release_at: Option<Timestamp>,
    fact: &Reversal,
) -> LateReversal {
    match status {
        LedgerStatus::Voided => LateReversal::Nothing,
        LedgerStatus::Paid if rule.clawback => LateReversal::Clawback,
        LedgerStatus::Paid => LateReversal::Nothing,
        LedgerStatus::Pending | LedgerStatus::Approved => match (&rule.hold, release_at) {
            (Some(hold), Some(at)) if hold.void_on.contains(&fact.kind) && fact.occurred_at < at => LateReversal::Void,
            _ => LateReversal::Nothing,
        },
    }
}

/// The clawback of a paid reward: minus what it came to (its amount and any
/// re-pricing adjustments), or `None` when it came to nothing (a plan upgrade)
/// or was clawed back already.
pub fn clawback_amount(amount: Money, repriced: &[Money], clawed_back: bool) -> Result<Option<Money>, RewardError> {
    if clawed_back {
        return Ok(None);
    }
    let mut total = amount;
    for r in repriced {
        total = total.checked_add(*r)?;
    }
    if total.amount_minor <= 0 {
        return Ok(None);
    }
    let minor = total.amount_minor.checked_neg().ok_or(RewardError::Overflow)?;
    Ok(Some(Money::new(minor, amount.currency)))
}

/// Why finance cannot do what it asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Voided,
    Paid,
    OnHold { until: Timestamp },
}

impl Refusal {
    pub fn code(self) -> &'static str {
        match self {
            Refusal::Voided => "reward_voided",
            Refusal::Paid => "reward_paid",
            Refusal::OnHold { .. } => "reward_on_hold",
        }
    }
}

/// Whether an action changes the reward or finds it done already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Now,
    AlreadyDone,
}

/// Finance approves a reward: only a pending one whose hold has ended (or that
/// has none); approving an approved one again changes nothing.
pub fn approve(status: LedgerStatus, release_at: Option<Timestamp>, now: Timestamp) -> Result<Action, Refusal> {
    match status {
        LedgerStatus::Pending => match release_at {
            Some(until) if until > now => Err(Refusal::OnHold { until }),
            _ => Ok(Action::Now),
        },
        LedgerStatus::Approved => Ok(Action::AlreadyDone),
        LedgerStatus::Paid => Err(Refusal::Paid),
        LedgerStatus::Voided => Err(Refusal::Voided),
    }
}

/// Finance voids a reward: a pending or approved one; a paid one is taken back
/// only by a clawback; voiding a voided one again changes nothing.
pub fn void(status: LedgerStatus) -> Result<Action, Refusal> {
    match status {
        LedgerStatus::Pending | LedgerStatus::Approved => Ok(Action::Now),
        LedgerStatus::Voided => Ok(Action::AlreadyDone),
        LedgerStatus::Paid => Err(Refusal::Paid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;
    use crate::program::parse_program;

    const PROGRAM: &str = r#"
slug = "held"
name = "Held"
currency = "USD"
timezone = "America/Chicago"
landing_url = "https://example.com/"
eligible = ["customer"]

[[rewards]]
id = "auto"
beneficiary = "referrer"
trigger = "won"
kind = "cash"
amount = 100_00
hold = { after = "contract_date", months = 2, void_on = ["churned"] }
approval = "auto"

[[rewards]]
id = "manual"
beneficiary = "referrer"
trigger = "won"
kind = "cash"
amount = 100_00
hold = { after = "contract_date", months = 2 }
approval = "manual"
clawback = true
"#;

    fn rules() -> (RewardRule, RewardRule) {
        let p = parse_program(PROGRAM).expect("valid");
        (p.rewards()[0].clone(), p.rewards()[1].clone())
    }

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn fact(kind: VoidOn, at: &str) -> Reversal {
        Reversal { kind, occurred_at: t(at), fact: Uuid::now_v7() }
    }

    const RELEASE: &str = "2026-05-14T05:00:00Z";

    #[test]
    fn release_approves_or_waits_for_finance_per_the_approval_mode() {
        let (auto, manual) = rules();
        assert_eq!(release(&auto, t(RELEASE), &[]), Release::Approve);
        assert_eq!(release(&manual, t(RELEASE), &[]), Release::AwaitFinance);
    }

    #[test]
    fn release_voids_on_the_earliest_listed_reversal_dated_before_the_end() {
        let (auto, manual) = rules();
        let late = fact(VoidOn::Churned, "2026-05-14T05:00:00Z");
        let refund = fact(VoidOn::Refunded, "2026-04-01T00:00:00Z");
        let churn = fact(VoidOn::Churned, "2026-04-20T00:00:00Z");
        // At the very instant the hold ends is not before it.
        assert_eq!(release(&auto, t(RELEASE), &[late]), Release::Approve);
        // `auto` lists only churns: the refund does not void it.
        assert_eq!(release(&auto, t(RELEASE), &[late, refund]), Release::Approve);
        assert_eq!(release(&auto, t(RELEASE), &[late, churn, refund]), Release::Void(churn));
        // `manual` lists both (the default): the earliest wins.
        assert_eq!(release(&manual, t(RELEASE), &[churn, refund]), Release::Void(refund));
        assert_eq!(
            refund.void_reason(t(RELEASE)),
            format!("refunded at 2026-04-01T00:00:00Z (fact {}), before the hold ended at {RELEASE}", refund.fact)
        );
    }

    #[test]
    fn a_late_reversal_voids_unpaid_rewards_and_claws_back_paid_ones_where_asked() {
        let (auto, manual) = rules();
        let before = fact(VoidOn::Churned, "2026-04-20T00:00:00Z");
        let after = fact(VoidOn::Churned, "2026-06-01T00:00:00Z");
        let at = Some(t(RELEASE));
        use LedgerStatus::*;
        assert_eq!(late_reversal(Pending, &auto, at, &before), LateReversal::Void);
        assert_eq!(late_reversal(Approved, &auto, at, &before), LateReversal::Void);
        assert_eq!(late_reversal(Approved, &auto, at, &after), LateReversal::Nothing);
        assert_eq!(late_reversal(Voided, &auto, at, &before), LateReversal::Nothing);
        // Paid: only a rule with clawbacks takes it back, whenever the fact is dated.
        assert_eq!(late_reversal(Paid, &auto, at, &before), LateReversal::Nothing);
        assert_eq!(late_reversal(Paid, &manual, at, &after), LateReversal::Clawback);
        // A refund where the hold lists only churns.
        let refund = fact(VoidOn::Refunded, "2026-04-20T00:00:00Z");
        assert_eq!(late_reversal(Pending, &auto, at, &refund), LateReversal::Nothing);
        // Without a hold there is nothing to void.
        assert_eq!(late_reversal(Pending, &auto, None, &before), LateReversal::Nothing);
    }

    #[test]
    fn a_clawback_takes_back_what_the_reward_came_to_once() {
        let usd = |m| Money::new(m, Currency::parse("USD").unwrap());
        assert_eq!(clawback_amount(usd(160_000), &[], false), Ok(Some(usd(-160_000))));
        assert_eq!(clawback_amount(usd(160_000), &[usd(80_000)], false), Ok(Some(usd(-240_000))));
        assert_eq!(clawback_amount(usd(160_000), &[], true), Ok(None));
        assert_eq!(clawback_amount(usd(0), &[], false), Ok(None));
        assert_eq!(clawback_amount(usd(i64::MAX), &[usd(1)], false), Err(RewardError::Overflow));
    }

    #[test]
    fn finance_approves_only_pending_rewards_whose_hold_ended() {
        let now = t("2026-06-01T00:00:00Z");
        use LedgerStatus::*;
        assert_eq!(approve(Pending, None, now), Ok(Action::Now));
        assert_eq!(approve(Pending, Some(t(RELEASE)), now), Ok(Action::Now));
        let later = t("2026-07-01T00:00:00Z");
        assert_eq!(approve(Pending, Some(later), now), Err(Refusal::OnHold { until: later }));
        assert_eq!(approve(Approved, None, now), Ok(Action::AlreadyDone));
        assert_eq!(approve(Voided, None, now).map_err(Refusal::code), Err("reward_voided"));
        assert_eq!(approve(Paid, None, now).map_err(Refusal::code), Err("reward_paid"));
    }

    #[test]
    fn finance_voids_pending_and_approved_rewards_but_not_paid_ones() {
        use LedgerStatus::*;
        assert_eq!(void(Pending), Ok(Action::Now));
        assert_eq!(void(Approved), Ok(Action::Now));
        assert_eq!(void(Voided), Ok(Action::AlreadyDone));
        assert_eq!(void(Paid).map_err(Refusal::code), Err("reward_paid"));
    }
}
