//! A referral's stage, derived from what happened rather than from what arrived.
//!
//! Facts come from the company's backend, late, out of order and sometimes twice;
//! staff moves come from people looking at the referral. Replaying both in the
//! order they happened, with a tie-break that depends only on their content, makes
//! every delivery order end where in-order delivery would.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::Stage;

/// What the company's backend reports about a prospect (`type` of `POST /api/v1/events`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FactKind {
    Signup,
    Qualified,
    Won,
    Payment,
    Churned,
    Refunded,
}

impl FactKind {
    /// In the order a customer's life goes, which is also how facts reported at
    /// the same instant are replayed (a `won` and a `churned` stamped alike churn).
    pub const ALL: [FactKind; 6] =
        [Self::Signup, Self::Qualified, Self::Won, Self::Payment, Self::Churned, Self::Refunded];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Signup => "signup",
            Self::Qualified => "qualified",
            Self::Won => "won",
            Self::Payment => "payment",
            Self::Churned => "churned",
            Self::Refunded => "refunded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// A payment is recognised as a duplicate only by the sender's own id (its
    /// invoice or charge id): two payments of the same amount on the same day are
    /// two payments.
    pub fn requires_event_id(self) -> bool {
        self == Self::Payment
    }

    /// The stage after this fact, from `stage`. Facts are never refused: a `won`
    /// at `new` is a won deal, and a `qualified` or `won` after `lost` reopens it,
    /// because the backend saw it happen. Only `churned` needs a customer to leave.
    pub fn apply(self, stage: Stage) -> Stage {
        match (self, stage) {
            (Self::Qualified, Stage::New | Stage::Contacted | Stage::Lost) => Stage::Qualified,
            (Self::Won, _) => Stage::Won,
            (Self::Churned, Stage::Won) => Stage::Churned,
            _ => stage,
        }
    }
}

impl std::fmt::Display for FactKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One fact about a referral's prospect, with when it happened (not when it arrived).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fact {
    pub kind: FactKind,
    pub occurred_at: Timestamp,
}

impl Fact {
    pub fn new(kind: FactKind, occurred_at: Timestamp) -> Self {
        Self { kind, occurred_at }
    }
}

/// A stage change a staff member made. `seq` is the order in which staff made
/// their moves (the store's insertion order): it breaks ties between moves stamped
/// at the same instant, and since staff act live, it is their true order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaffMove {
    pub to: Stage,
    pub occurred_at: Timestamp,
    pub seq: u64,
}

impl StaffMove {
    pub fn new(to: Stage, occurred_at: Timestamp, seq: u64) -> Self {
        Self { to, occurred_at, seq }
    }
}

/// What caused a stage change: an index into the `facts` or `staff_moves` slice
/// given to [`stage_timeline`], so the caller can find its own record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "by", content = "index")]
pub enum Cause {
    Fact(usize),
    StaffMove(usize),
}

/// One change of stage in the replayed history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageChange {
    pub at: Timestamp,
    pub from: Stage,
    pub to: Stage,
    pub cause: Cause,
}

/// The referral's current stage (`new` when nothing has happened yet).
pub fn derive_stage(facts: &[Fact], staff_moves: &[StaffMove]) -> Stage {
    stage_timeline(facts, staff_moves).last().map_or(Stage::New, |c| c.to)
}

/// Every change of stage, replayed in the order things happened.
///
/// Order: by `occurred_at`; at the same instant facts before staff moves, facts in
/// [`FactKind::ALL`] order and staff moves by `seq`. Nothing in that key depends on
/// arrival, so any permutation of the inputs gives the same timeline.
///
/// A staff move counts only if the pipeline allowed it from the stage at that
/// point of the replay: had a late fact arrived in time, staff would have been
/// refused that move. A staff move to `won` is then a win like a `won` fact.
pub fn stage_timeline(facts: &[Fact], staff_moves: &[StaffMove]) -> Vec<StageChange> {
    // (occurred_at, facts first, kind or seq, target stage as the last resort)
    type Key = (Timestamp, u8, u64, Stage);
    let mut items: Vec<(Key, Cause)> = facts
        .iter()
        .enumerate()
        .map(|(i, f)| ((f.occurred_at, 0, f.kind as u64, Stage::New), Cause::Fact(i)))
        .chain(staff_moves.iter().enumerate().map(|(i, m)| ((m.occurred_at, 1, m.seq, m.to), Cause::StaffMove(i))))
        .collect();
    items.sort_by_key(|&(key, _)| key);

    let mut stage = Stage::New;
    let mut changes = Vec::new();
    for ((at, ..), cause) in items {
        let next = match cause {
            Cause::Fact(i) => facts[i].kind.apply(stage),
            Cause::StaffMove(i) => stage.staff_move(staff_moves[i].to).unwrap_or(stage),
        };
        if next != stage {
            changes.push(StageChange { at, from: stage, to: next, cause });
            stage = next;
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::FactKind::*;
    use super::*;

    fn t(minute: i64) -> Timestamp {
        Timestamp::from_second(1_780_000_000 + minute * 60).unwrap()
    }

    fn f(kind: FactKind, minute: i64) -> Fact {
        Fact::new(kind, t(minute))
    }

    fn m(to: Stage, minute: i64, seq: u64) -> StaffMove {
        StaffMove::new(to, t(minute), seq)
    }

    /// A small deterministic generator (SplitMix64): shuffles and random histories
    /// from fixed seeds, reproducible without a dependency.
    struct SplitMix(u64);

    impl SplitMix {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn shuffle<T>(&mut self, items: &mut [T]) {
            for i in (1..items.len()).rev() {
                items.swap(i, self.below(i + 1));
            }
        }
    }

    /// Every ordering of `items` (Heap's algorithm), for the small sets where all
    /// of them can be tried.
    fn permutations<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
        fn heap<T: Clone>(k: usize, a: &mut Vec<T>, out: &mut Vec<Vec<T>>) {
            if k <= 1 {
                out.push(a.clone());
                return;
            }
            for i in 0..k {
                heap(k - 1, a, out);
                let j = if k.is_multiple_of(2) { i } else { 0 };
                a.swap(j, k - 1);
            }
        }
        let mut out = Vec::new();
        heap(items.len(), &mut items.to_vec(), &mut out);
        out
    }

    #[test]
    fn published_fact_rules_give_these_stages() {
        use Stage::*;
        let cases: &[(&str, Vec<Fact>, Stage)] = &[
            ("nothing happened yet", vec![], New),
            ("a signup alone leaves the referral new", vec![f(Signup, 0)], New),
            ("a won at new is won: facts are never refused for skipping", vec![f(FactKind::Won, 0)], Won),
            ("qualified then won", vec![f(FactKind::Qualified, 0), f(FactKind::Won, 1)], Won),
            ("a qualified after won does not go back", vec![f(FactKind::Won, 0), f(FactKind::Qualified, 1)], Won),
            ("churned counts after a won", vec![f(FactKind::Won, 0), f(FactKind::Churned, 1)], Churned),
            ("churned before any won does not count", vec![f(FactKind::Churned, 0)], New),
            ("churned earlier than the won does not count", vec![f(FactKind::Churned, 0), f(FactKind::Won, 1)], Won),
            ("refunded does not change the stage", vec![f(FactKind::Won, 0), f(Refunded, 1)], Won),
            ("payment does not change the stage", vec![f(FactKind::Qualified, 0), f(Payment, 1)], Qualified),
            (
                "a won after churning wins the customer back",
                vec![f(FactKind::Won, 0), f(FactKind::Churned, 1), f(FactKind::Won, 2)],
                Won,
            ),
            ("won and churned at the same instant churn", vec![f(FactKind::Churned, 5), f(FactKind::Won, 5)], Churned),
            (
                "a repeated won is one won",
                vec![f(FactKind::Won, 3), f(FactKind::Won, 3), f(FactKind::Churned, 4)],
                Churned,
            ),
        ];
        for (what, facts, expected) in cases {
            assert_eq!(derive_stage(facts, &[]), *expected, "{what}");
        }
    }

    #[test]
    fn staff_moves_replay_with_facts_in_time_order() {
        use Stage::*;
        let cases: &[(&str, Vec<Fact>, Vec<StaffMove>, Stage)] = &[
            ("staff move along the pipeline", vec![], vec![m(Contacted, 0, 1), m(Qualified, 1, 2)], Qualified),
            ("a staff move to won counts like a won fact", vec![f(FactKind::Churned, 2)], vec![m(Won, 1, 1)], Churned),
            ("staff may mark an open referral lost", vec![f(Signup, 0)], vec![m(Lost, 1, 1)], Lost),
            ("a won fact after lost wins the deal", vec![f(FactKind::Won, 2)], vec![m(Lost, 1, 1)], Won),
            (
                "a late won dated before a staff move to lost makes that move one staff could not have made",
                vec![f(FactKind::Won, 1)],
                vec![m(Lost, 2, 1)],
                Won,
            ),
            ("a reopened referral starts again at new", vec![], vec![m(Lost, 0, 1), m(New, 1, 2)], New),
            (
                "staff moves at the same instant apply in the order staff made them",
                vec![],
                vec![m(New, 0, 2), m(Lost, 0, 1)],
                New,
            ),
            (
                "a staff move dated like a fact comes after it",
                vec![f(FactKind::Won, 0)],
                vec![m(Churned, 0, 1)],
                Churned,
            ),
        ];
        for (what, facts, moves, expected) in cases {
            assert_eq!(derive_stage(facts, moves), *expected, "{what}");
        }
    }

    #[test]
    fn timeline_names_each_change_and_its_cause() {
        let facts = [f(Won, 2), f(Signup, 0), f(Churned, 3)];
        let moves = [m(Stage::Contacted, 1, 1)];
        let timeline = stage_timeline(&facts, &moves);
        let got: Vec<_> = timeline.iter().map(|c| (c.from, c.to, c.cause, c.at)).collect();
        assert_eq!(
            got,
            vec![
                (Stage::New, Stage::Contacted, Cause::StaffMove(0), t(1)),
                (Stage::Contacted, Stage::Won, Cause::Fact(0), t(2)),
                (Stage::Won, Stage::Churned, Cause::Fact(2), t(3)),
            ]
        );
    }

    #[test]
    fn every_delivery_order_of_a_customer_history_ends_at_the_same_stage() {
        let histories: Vec<(Vec<Fact>, Vec<StaffMove>)> = vec![
            (vec![f(Signup, 0), f(Qualified, 1), f(Won, 2), f(Payment, 3), f(Churned, 4), f(Refunded, 5)], vec![]),
            (vec![f(Won, 2), f(Won, 2), f(Churned, 2), f(Signup, 0)], vec![m(Stage::Contacted, 1, 1)]),
            (
                vec![f(Qualified, 3), f(Won, 5)],
                vec![m(Stage::Lost, 4, 1), m(Stage::New, 4, 2), m(Stage::Contacted, 1, 3)],
            ),
            (vec![f(Churned, 1), f(Signup, 0), f(Won, 7)], vec![m(Stage::Won, 1, 1), m(Stage::Churned, 1, 2)]),
        ];
        for (facts, moves) in histories {
            let expected = derive_stage(&facts, &moves);
            let expected_timeline = stage_timeline(&facts, &moves);
            for facts_order in permutations(&facts) {
                for moves_order in permutations(&moves) {
                    assert_eq!(derive_stage(&facts_order, &moves_order), expected, "{facts_order:?} {moves_order:?}");
                    let timeline: Vec<_> =
                        stage_timeline(&facts_order, &moves_order).iter().map(|c| (c.at, c.from, c.to)).collect();
                    let want: Vec<_> = expected_timeline.iter().map(|c| (c.at, c.from, c.to)).collect();
                    assert_eq!(timeline, want);
                }
            }
        }
    }

    /// Random histories (with ties and repeats) from fixed seeds; each one shuffled
    /// many times must end where its in-order delivery ends.
    #[test]
    fn shuffled_delivery_of_random_histories_ends_where_in_order_delivery_would() {
        let mut rng = SplitMix(0x5EED_F00D);
        for _ in 0..300 {
            let facts: Vec<Fact> =
                (0..rng.below(9)).map(|_| f(FactKind::ALL[rng.below(6)], rng.below(6) as i64)).collect();
            let mut seq = 0;
            let moves: Vec<StaffMove> = (0..rng.below(5))
                .map(|_| {
                    seq += 1;
                    m(Stage::ALL[rng.below(6)], rng.below(6) as i64, seq)
                })
                .collect();

            let mut in_order = facts.clone();
            in_order.sort_by_key(|f| (f.occurred_at, f.kind));
            let expected = derive_stage(&in_order, &moves);

            for _ in 0..50 {
                let (mut facts, mut moves) = (facts.clone(), moves.clone());
                rng.shuffle(&mut facts);
                rng.shuffle(&mut moves);
                // Repeated delivery: the same fact arriving twice changes nothing.
                if let Some(&again) = facts.first() {
                    facts.push(again);
                }
                assert_eq!(derive_stage(&facts, &moves), expected, "{facts:?} {moves:?}");
            }
        }
    }

    #[test]
    fn payments_alone_need_the_senders_event_id() {
        let needing: Vec<_> = FactKind::ALL.into_iter().filter(|k| k.requires_event_id()).collect();
        assert_eq!(needing, vec![Payment]);
    }

    #[test]
    fn fact_kinds_round_trip_by_name() {
        for k in FactKind::ALL {
            assert_eq!(FactKind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{k}\""));
        }
        assert_eq!(FactKind::parse("Won"), None);
    }
}
