//! Payouts: where a participant is paid, and which approved cash rewards make a
//! payout batch (one item per participant, one method and one currency).

use std::collections::BTreeMap;

use crate::money::MoneyError;
use crate::{Currency, Email, Money, ParticipantId};

/// How a participant is paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PayoutMethod {
    BankTransfer,
    Paypal,
}

impl PayoutMethod {
    pub const ALL: [PayoutMethod; 2] = [Self::BankTransfer, Self::Paypal];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::BankTransfer => "bank_transfer",
            Self::Paypal => "paypal",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// A participant's payout details, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayoutDetails {
    BankTransfer { iban: Iban, account_holder: String },
    Paypal { email: Email },
}

impl PayoutDetails {
    pub fn method(&self) -> PayoutMethod {
        match self {
            Self::BankTransfer { .. } => PayoutMethod::BankTransfer,
            Self::Paypal { .. } => PayoutMethod::Paypal,
        }
    }

    /// Where the money goes, in full (for the payout export only).
    pub fn destination(&self) -> String {
        match self {
            Self::BankTransfer { iban, .. } => iban.as_str().to_string(),
            Self::Paypal { email } => email.as_str().to_string(),
        }
    }

    pub fn account_holder(&self) -> Option<&str> {
        match self {
            Self::BankTransfer { account_holder, .. } => Some(account_holder),
            Self::Paypal { .. } => None,
        }
    }

    /// The destination as the API shows it: enough to recognise, not to use.
    pub fn masked(&self) -> String {
        match self {
            Self::BankTransfer { iban, .. } => iban.masked(),
            Self::Paypal { email } => mask_email(email.as_str()),
        }
    }
}

/// `a***@example.org`: the first character of the local part and the domain.
pub fn mask_email(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".to_string(),
    }
}

/// An IBAN in its electronic form (no spaces, upper case), with a valid
/// ISO 13616 check (mod 97).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iban(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IbanError {
    #[error("an IBAN is 15 to 34 letters and digits, starting with a country code and two check digits")]
    Shape,
    #[error("the IBAN's check digits do not match: a character is mistyped")]
    Checksum,
}

impl Iban {
    pub fn parse(raw: &str) -> Result<Iban, IbanError> {
        let s: String = raw.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_uppercase();
        let b = s.as_bytes();
        let shaped = (15..=34).contains(&b.len())
            && b[..2].iter().all(u8::is_ascii_uppercase)
            && b[2..4].iter().all(u8::is_ascii_digit)
            && b.iter().all(u8::is_ascii_alphanumeric);
        if !shaped {
            return Err(IbanError::Shape);
        }
        // Move the first four characters to the end, letters become 10..35, and
        // the number mod 97 must be 1; computed digit by digit to stay in u32.
        let mut rem: u32 = 0;
        for &c in b[4..].iter().chain(&b[..4]) {
            let v = if c.is_ascii_digit() { u32::from(c - b'0') } else { u32::from(c - b'A') + 10 };
            rem = if v >= 10 { (rem * 100 + v) % 97 } else { (rem * 10 + v) % 97 };
        }
        if rem != 1 {
            return Err(IbanError::Checksum);
        }
        Ok(Iban(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The country code and the last four characters: `DE** **** 3000`-like, as `DE…3000`.
    pub fn masked(&self) -> String {
        format!("{}…{}", &self.0[..2], &self.0[self.0.len() - 4..])
    }
}

/// An approved-or-not reward as batching sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchCandidate {
    pub participant: Option<ParticipantId>,
    pub approved: bool,
    pub cash: bool,
    /// The participant's payout method, if they gave details.
    pub method: Option<PayoutMethod>,
    pub amount: Money,
}

/// Where the reward an adjustment entry belongs to stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdjustedReward {
    /// Paid already: the entry is owed (or recovered) on its own.
    Paid,
    /// Approved and among the candidates (its position): the entry goes with it.
    Candidate(usize),
    /// Approved but not in this batch (in another open batch, or not chosen):
    /// the entry waits for its reward, so that a reward voided before payment
    /// never leaves a paid or recovered entry behind.
    NotInBatch,
}

/// An unsettled adjustment entry (a re-price or a clawback) of a payee's cash
/// reward, as batching sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchAdjustment {
    pub participant: ParticipantId,
    /// Negative for a clawback or a downward re-price.
    pub amount: Money,
    pub reward: AdjustedReward,
}

/// What a batch takes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchScope {
    /// Finance named the rewards: every one must be payable, and a payee whose
    /// entries take back as much as the rewards bring is refused, not dropped.
    Chosen,
    /// Everything payable by `method` in `currency`: payees owed less than
    /// `min_amount` (minor units), or nothing, are left for a later batch.
    ByMethod { method: PayoutMethod, currency: Currency, min_amount: Option<i64> },
}

/// Why the rewards cannot make one batch. `index` is the position of the
/// offending candidate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchRefusal {
    #[error("only approved rewards can be paid")]
    NotApproved { index: usize },
    #[error("only cash rewards are paid in payout batches")]
    NotCash { index: usize },
    #[error("the reward has no participant to pay")]
    NoPayee { index: usize },
    #[error("the participant has no payout details")]
    NoPayoutDetails { index: usize },
    #[error("a batch has one payout method: this reward's payee is paid by {found}, the batch by {batch}")]
    MixedMethods { index: usize, batch: &'static str, found: &'static str },
    #[error("a batch has one currency: this reward is in {found}, the batch in {batch}")]
    MixedCurrencies { index: usize, batch: &'static str, found: &'static str },
    #[error("the amounts add up to more than can be represented")]
    Overflow { index: usize },
    #[error("the amounts owed to participant {participant} add up to more than can be represented")]
    PayeeOverflow { participant: ParticipantId },
    #[error(
        "participant {participant} is owed {net} minor units in all: their adjustment entries take back what these rewards bring, so nothing can be paid to them"
    )]
    NetNotPositive { index: usize, participant: ParticipantId, net: i64 },
    #[error("no reward is left to pay")]
    Empty,
}

impl BatchRefusal {
    /// The stable problem code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotApproved { .. } => "reward_not_approved",
            Self::NotCash { .. } => "reward_not_cash",
            Self::NoPayee { .. } => "reward_without_payee",
            Self::NoPayoutDetails { .. } => "no_payout_details",
            Self::MixedMethods { .. } => "mixed_methods",
            Self::MixedCurrencies { .. } => "mixed_currencies",
            Self::Overflow { .. } | Self::PayeeOverflow { .. } => "amount_overflow",
            Self::NetNotPositive { .. } => "net_not_positive",
            Self::Empty => "nothing_to_pay",
        }
    }

    pub fn index(&self) -> Option<usize> {
        match *self {
            Self::NotApproved { index }
            | Self::NotCash { index }
            | Self::NoPayee { index }
            | Self::NoPayoutDetails { index }
            | Self::MixedMethods { index, .. }
            | Self::MixedCurrencies { index, .. }
            | Self::Overflow { index }
            | Self::NetNotPositive { index, .. } => Some(index),
            Self::PayeeOverflow { .. } | Self::Empty => None,
        }
    }
}

/// One item of a planned batch: a participant, what they are paid (their
/// rewards and adjustment entries, net), and the positions of those rewards
/// among the candidates and of those entries among the adjustments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedItem {
    pub participant: ParticipantId,
    pub amount: Money,
    pub rewards: Vec<usize>,
    pub adjustments: Vec<usize>,
}

/// A planned batch: its method, currency, total and items (by participant id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedBatch {
    pub method: PayoutMethod,
    pub total: Money,
    pub items: Vec<PlannedItem>,
}

/// Groups the candidates into one item per participant. Every candidate must be
/// an approved cash reward of a participant with payout details, all of one
/// method and one currency (the first candidate's, unless the scope names
/// them). Each payee's unsettled adjustment entries in the batch's currency are
/// added to their item, net: entries of a paid reward always, entries of an
/// approved one only with the reward itself. By method, a payee owed only
/// entries has an item too, and one whose net is below `min_amount`, zero or
/// negative has none (their rewards and entries wait for a later batch); chosen
/// rewards whose payee's net is not positive are refused. Sums are checked.
pub fn plan_batch(
    candidates: &[BatchCandidate],
    adjustments: &[BatchAdjustment],
    scope: BatchScope,
) -> Result<PlannedBatch, BatchRefusal> {
    let (mut shape, min_amount) = match scope {
        BatchScope::Chosen => (None, None),
        BatchScope::ByMethod { method, currency, min_amount } => (Some((method, currency)), min_amount),
    };
    let mut items: BTreeMap<ParticipantId, PlannedItem> = BTreeMap::new();
    for (index, c) in candidates.iter().enumerate() {
        if !c.approved {
            return Err(BatchRefusal::NotApproved { index });
        }
        if !c.cash {
            return Err(BatchRefusal::NotCash { index });
        }
        let Some(participant) = c.participant else {
            return Err(BatchRefusal::NoPayee { index });
        };
        let Some(method) = c.method else {
            return Err(BatchRefusal::NoPayoutDetails { index });
        };
        let (batch_method, batch_currency) = *shape.get_or_insert((method, c.amount.currency));
        if method != batch_method {
            return Err(BatchRefusal::MixedMethods { index, batch: batch_method.as_str(), found: method.as_str() });
        }
        if c.amount.currency != batch_currency {
            return Err(BatchRefusal::MixedCurrencies {
                index,
                batch: batch_currency.code(),
                found: c.amount.currency.code(),
            });
        }
        let item = items.entry(participant).or_insert_with(|| PlannedItem {
            participant,
            amount: Money::new(0, batch_currency),
            rewards: Vec::new(),
            adjustments: Vec::new(),
        });
        item.amount = item.amount.checked_add(c.amount).map_err(|e| overflow(e, index))?;
        item.rewards.push(index);
    }
    let Some((method, currency)) = shape else {
        return Err(BatchRefusal::Empty);
    };
    for (index, a) in adjustments.iter().enumerate() {
        let owed = match a.reward {
            AdjustedReward::Paid => true,
            AdjustedReward::Candidate(reward) => candidates.get(reward).is_some(),
            AdjustedReward::NotInBatch => false,
        };
        if !owed || a.amount.currency != currency {
            continue;
        }
        let item = match (items.get_mut(&a.participant), scope) {
            (Some(item), _) => item,
            // Chosen rewards name the payees; others' entries wait.
            (None, BatchScope::Chosen) => continue,
            (None, BatchScope::ByMethod { .. }) => items.entry(a.participant).or_insert_with(|| PlannedItem {
                participant: a.participant,
                amount: Money::new(0, currency),
                rewards: Vec::new(),
                adjustments: Vec::new(),
            }),
        };
        item.amount = item
            .amount
            .checked_add(a.amount)
            .map_err(|_| BatchRefusal::PayeeOverflow { participant: a.participant })?;
        item.adjustments.push(index);
    }
    let mut kept = Vec::with_capacity(items.len());
    for item in items.into_values() {
        // Nothing, or less than nothing, cannot be paid out.
        if item.amount.amount_minor <= 0 {
            if let (BatchScope::Chosen, Some(&index)) = (scope, item.rewards.first()) {
                return Err(BatchRefusal::NetNotPositive {
                    index,
                    participant: item.participant,
                    net: item.amount.amount_minor,
                });
            }
            continue;
        }
        if min_amount.is_none_or(|min| item.amount.amount_minor >= min) {
            kept.push(item);
        }
    }
    if kept.is_empty() {
        return Err(BatchRefusal::Empty);
    }
    let mut total = Money::new(0, currency);
    for item in &kept {
        total = total.checked_add(item.amount).map_err(|e| match item.rewards.last() {
            Some(&last) => overflow(e, last),
            None => BatchRefusal::PayeeOverflow { participant: item.participant },
        })?;
    }
    Ok(PlannedBatch { method, total, items: kept })
}

fn overflow(_: MoneyError, index: usize) -> BatchRefusal {
    BatchRefusal::Overflow { index }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd() -> Currency {
        Currency::parse("USD").unwrap()
    }

    fn cand(p: u128, amount: i64) -> BatchCandidate {
        BatchCandidate {
            participant: Some(ParticipantId(uuid::Uuid::from_u128(p))),
            approved: true,
            cash: true,
            method: Some(PayoutMethod::BankTransfer),
            amount: Money::new(amount, usd()),
        }
    }

    fn by_bank(min_amount: Option<i64>) -> BatchScope {
        BatchScope::ByMethod { method: PayoutMethod::BankTransfer, currency: usd(), min_amount }
    }

    fn adj(p: u128, amount: i64, reward: AdjustedReward) -> BatchAdjustment {
        BatchAdjustment {
            participant: ParticipantId(uuid::Uuid::from_u128(p)),
            amount: Money::new(amount, usd()),
            reward,
        }
    }

    #[test]
    fn ibans_are_checked_and_masked() {
        let iban = Iban::parse("de89 3704 0044 0532 0130 00").unwrap();
        assert_eq!(iban.as_str(), "DE89370400440532013000");
        assert_eq!(iban.masked(), "DE…3000");
        assert_eq!(Iban::parse("GB82 WEST 1234 5698 7654 32").unwrap().as_str(), "GB82WEST12345698765432");
        assert_eq!(Iban::parse("DE89370400440532013001"), Err(IbanError::Checksum));
        assert_eq!(Iban::parse("DE8937"), Err(IbanError::Shape));
        assert_eq!(Iban::parse("1289370400440532013000"), Err(IbanError::Shape));
        assert_eq!(Iban::parse("DE89-370400440532013000"), Err(IbanError::Shape));
    }

    #[test]
    fn emails_are_masked() {
        assert_eq!(mask_email("alice@example.org"), "a***@example.org");
    }

    #[test]
    fn one_item_per_participant_with_the_sum_of_their_rewards() {
        let plan = plan_batch(&[cand(1, 100), cand(2, 50), cand(1, 25)], &[], BatchScope::Chosen).unwrap();
        assert_eq!(plan.method, PayoutMethod::BankTransfer);
        assert_eq!(plan.total, Money::new(175, usd()));
        assert_eq!(plan.items.len(), 2);
        assert_eq!((plan.items[0].amount.amount_minor, plan.items[0].rewards.clone()), (125, vec![0, 2]));
        assert_eq!((plan.items[1].amount.amount_minor, plan.items[1].rewards.clone()), (50, vec![1]));
    }

    #[test]
    fn a_minimum_leaves_out_small_items() {
        let plan = plan_batch(&[cand(1, 100), cand(2, 50), cand(1, 25)], &[], by_bank(Some(100))).unwrap();
        assert_eq!(plan.items.len(), 1);
        assert_eq!(plan.total.amount_minor, 125);
        assert_eq!(plan_batch(&[cand(2, 50)], &[], by_bank(Some(100))), Err(BatchRefusal::Empty));
        assert_eq!(plan_batch(&[], &[], BatchScope::Chosen), Err(BatchRefusal::Empty));
    }

    #[test]
    fn refusals_name_the_offending_candidate() {
        let mut pending = cand(1, 10);
        pending.approved = false;
        assert_eq!(
            plan_batch(&[cand(1, 1), pending], &[], BatchScope::Chosen),
            Err(BatchRefusal::NotApproved { index: 1 })
        );
        let mut credit = cand(1, 10);
        credit.cash = false;
        assert_eq!(plan_batch(&[credit], &[], BatchScope::Chosen), Err(BatchRefusal::NotCash { index: 0 }));
        let mut referee = cand(1, 10);
        referee.participant = None;
        assert_eq!(plan_batch(&[referee], &[], BatchScope::Chosen), Err(BatchRefusal::NoPayee { index: 0 }));
        let mut nowhere = cand(1, 10);
        nowhere.method = None;
        assert_eq!(plan_batch(&[nowhere], &[], BatchScope::Chosen), Err(BatchRefusal::NoPayoutDetails { index: 0 }));
        let mut paypal = cand(2, 10);
        paypal.method = Some(PayoutMethod::Paypal);
        let refused = plan_batch(&[cand(1, 1), paypal], &[], BatchScope::Chosen).unwrap_err();
        assert_eq!((refused.code(), refused.index()), ("mixed_methods", Some(1)));
        let mut euro = cand(1, 10);
        euro.amount = Money::new(10, Currency::parse("EUR").unwrap());
        let refused = plan_batch(&[cand(1, 1), euro.clone()], &[], BatchScope::Chosen).unwrap_err();
        assert_eq!((refused.code(), refused.index()), ("mixed_currencies", Some(1)));
        let refused = plan_batch(&[euro], &[], by_bank(None)).unwrap_err();
        assert_eq!(refused.code(), "mixed_currencies");
    }

    #[test]
    fn overflowing_sums_are_refused() {
        let refused = plan_batch(&[cand(1, i64::MAX), cand(1, 1)], &[], BatchScope::Chosen).unwrap_err();
        assert_eq!(refused, BatchRefusal::Overflow { index: 1 });
        let refused = plan_batch(&[cand(1, i64::MAX), cand(2, 1)], &[], BatchScope::Chosen).unwrap_err();
        assert_eq!(refused, BatchRefusal::Overflow { index: 1 });
    }

    #[test]
    fn an_item_pays_its_rewards_and_the_payees_entries_net() {
        let entries = [
            adj(1, 500, AdjustedReward::Paid),
            adj(1, 40, AdjustedReward::Candidate(0)),
            adj(2, -30, AdjustedReward::Paid),
        ];
        let plan = plan_batch(&[cand(1, 100), cand(2, 50)], &entries, BatchScope::Chosen).unwrap();
        assert_eq!(plan.total.amount_minor, 640 + 20);
        assert_eq!((plan.items[0].amount.amount_minor, plan.items[0].adjustments.clone()), (640, vec![0, 1]));
        assert_eq!((plan.items[1].amount.amount_minor, plan.items[1].adjustments.clone()), (20, vec![2]));
    }

    #[test]
    fn an_entry_of_a_reward_not_in_the_batch_waits_for_it() {
        let entries = [adj(1, 500, AdjustedReward::NotInBatch), adj(1, 7, AdjustedReward::Candidate(3))];
        let plan = plan_batch(&[cand(1, 100)], &entries, by_bank(None)).unwrap();
        assert_eq!((plan.total.amount_minor, plan.items[0].adjustments.clone()), (100, vec![]));
    }

    #[test]
    fn entries_in_another_currency_are_left_for_a_batch_in_theirs() {
        let mut euro = adj(1, 500, AdjustedReward::Paid);
        euro.amount = Money::new(500, Currency::parse("EUR").unwrap());
        let plan = plan_batch(&[cand(1, 100)], &[euro], BatchScope::Chosen).unwrap();
        assert_eq!(plan.total.amount_minor, 100);
        assert!(plan.items[0].adjustments.is_empty());
    }

    #[test]
    fn by_method_a_payee_owed_only_entries_is_paid_and_one_owing_is_carried() {
        let entries =
            [adj(2, 300, AdjustedReward::Paid), adj(3, -300, AdjustedReward::Paid), adj(1, -100, AdjustedReward::Paid)];
        let plan = plan_batch(&[cand(1, 100), cand(3, 200)], &entries, by_bank(None)).unwrap();
        let paid: Vec<(u128, i64)> =
            plan.items.iter().map(|i| (i.participant.0.as_u128(), i.amount.amount_minor)).collect();
        assert_eq!(paid, vec![(2, 300)], "1 nets to zero, 3 owes 100: both wait");
        assert_eq!(plan.items[0].rewards, Vec::<usize>::new());
        assert_eq!(plan.total.amount_minor, 300);
        // Only debts: nothing to pay at all.
        assert_eq!(plan_batch(&[], &[adj(3, -300, AdjustedReward::Paid)], by_bank(None)), Err(BatchRefusal::Empty));
    }

    #[test]
    fn the_minimum_applies_to_the_net() {
        let entries = [adj(1, -60, AdjustedReward::Paid), adj(2, 60, AdjustedReward::Paid)];
        let plan = plan_batch(&[cand(1, 100), cand(2, 50)], &entries, by_bank(Some(100))).unwrap();
        assert_eq!(plan.items.len(), 1);
        assert_eq!((plan.items[0].participant.0.as_u128(), plan.items[0].amount.amount_minor), (2, 110));
    }

    #[test]
    fn chosen_rewards_of_a_payee_whose_net_is_not_positive_are_refused() {
        let entries = [adj(2, -200, AdjustedReward::Paid)];
        let refused = plan_batch(&[cand(1, 100), cand(2, 50), cand(2, 150)], &entries, BatchScope::Chosen).unwrap_err();
        assert_eq!(
            refused,
            BatchRefusal::NetNotPositive { index: 1, participant: ParticipantId(uuid::Uuid::from_u128(2)), net: 0 }
        );
        assert_eq!((refused.code(), refused.index()), ("net_not_positive", Some(1)));
        assert!(refused.to_string().contains(&uuid::Uuid::from_u128(2).to_string()), "{refused}");
    }

    #[test]
    fn overflowing_entries_are_refused() {
        let entries = [adj(1, i64::MAX, AdjustedReward::Paid)];
        let refused = plan_batch(&[cand(1, 1)], &entries, BatchScope::Chosen).unwrap_err();
        assert_eq!(refused, BatchRefusal::PayeeOverflow { participant: ParticipantId(uuid::Uuid::from_u128(1)) });
        assert_eq!(refused.code(), "amount_overflow");
        let entries = [adj(1, i64::MAX, AdjustedReward::Paid), adj(2, 1, AdjustedReward::Paid)];
        let refused = plan_batch(&[], &entries, by_bank(None)).unwrap_err();
        assert_eq!(refused, BatchRefusal::PayeeOverflow { participant: ParticipantId(uuid::Uuid::from_u128(2)) });
    }
}
