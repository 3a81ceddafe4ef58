//! Per-unit rewards priced in contract-date order when one referrer's `won`s
//! arrive at once on two stores (two replicas) and out of order, on every engine
//! available here: each reward ends at the price in-order delivery gives it,
//! and nothing is rewarded twice.

// Amounts are written as whole_cents: `150_00` is USD 150.00.
#![allow(clippy::inconsistent_digit_grouping)]

use jiff::Timestamp;
use serde_json::json;
use uuid::Uuid;
use vouch_domain::referral::{FactKind, ReferralId};
use vouch_store::testing::TestDatabase;
use vouch_store::{FactProspect, NewFact, RewardFilter, Store, StoredProgram};

mod common;

use common::*;

fn won(program: &StoredProgram, referral: ReferralId, contract_date: &str, units: i64) -> NewFact {
    let occurred_at: Timestamp = format!("{contract_date}T15:00:00Z").parse().unwrap();
    NewFact {
        id: Uuid::now_v7(),
        program_id: program.id,
        kind: FactKind::Won,
        occurred_at,
        event_id: None,
        referral_id: Some(referral),
        prospect: FactProspect::default(),
        units: Some(units),
        value: None,
        contract_date: Some(contract_date.into()),
        raw: json!({}),
        actor: "api-key:tests".into(),
        now: Timestamp::now(),
    }
}

/// What the referral's one reward comes to: its amount and its adjustments.
async fn comes_to(store: &Store, referral: ReferralId) -> i64 {
    let filter = RewardFilter { referral: Some(referral), ..RewardFilter::default() };
    let rewards = store.rewards(&filter, None, 10).await.expect("rewards");
    assert_eq!(rewards.len(), 1, "one reward for {referral}: {rewards:?}");
    let adjusted: i64 =
        store.reward_adjustments(rewards[0].id).await.expect("adjustments").iter().map(|a| a.amount.amount_minor).sum();
    rewards[0].amount.amount_minor + adjusted
}

#[tokio::test]
async fn one_referrers_wons_on_two_stores_at_once_end_priced_in_contract_date_order() {
    for db in TestDatabase::all().await {
        let (a, b) = (db.open().await, db.open().await);
        let e = db.engine;
        let program = program(&a, "per-technician").await;
        let code = referrer(&a, &program, "ann@ann-corp.example", "ANN-TECH").await;
        let mut ids = Vec::new();
        for n in 0..6 {
            ids.push(create(&a, &program, &code, &format!("p{n}@prospect-{n}.example")).await.id);
        }
        // Arrival order is neither the contract-date order nor one store's.
        let facts = [
            won(&program, ids[0], "2026-05-01", 25),
            won(&program, ids[1], "2026-04-01", 30),
            won(&program, ids[2], "2026-03-01", 10),
            won(&program, ids[3], "2026-06-01", 12),
            won(&program, ids[4], "2026-07-01", 5),
            won(&program, ids[5], "2026-02-01", 8),
        ];
        let results = tokio::join!(
            a.record_fact(&facts[0], None),
            b.record_fact(&facts[1], None),
            a.record_fact(&facts[2], None),
            b.record_fact(&facts[3], None),
            a.record_fact(&facts[4], None),
            b.record_fact(&facts[5], None),
            // The same fact on the other store: a duplicate.
            b.record_fact(&facts[0], None),
        );
        for r in [results.0, results.1, results.2, results.3, results.4, results.5, results.6] {
            r.unwrap_or_else(|err| panic!("{e}: {err}"));
        }
        let mut got = Vec::new();
        for id in &ids {
            got.push(comes_to(&a, *id).await);
        }
        // In order from 1 Feb: 8 from 0 ($100), 10 from 8 ($100), 30 from 18
        // ($100), 25 from 48 ($150), 12 from 73 ($200), 5 from 85 ($200).
        assert_eq!(got, [3_750_00, 3_000_00, 1_000_00, 2_400_00, 1_000_00, 800_00], "{e}");
        a.close().await;
        b.close().await;
    }
}
