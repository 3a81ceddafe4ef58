//! The ledger after a reward is made, on every engine available here: holds
//! released (approved, left to finance, or voided by a churn dated before they
//! ended), two stores releasing at once, late churns voiding approved rewards,
//! clawbacks of paid ones, finance's approvals and voids, a void racing an award for
//! the same referrer, and balances.

use jiff::Timestamp;
use serde_json::json;
use sqlx::Connection;
use uuid::Uuid;
use vouch_domain::program::parse_program;
use vouch_domain::referral::{FactKind, ReferralId};
use vouch_domain::{ProgramId, ProgramVersionId, ReferralCode};
use vouch_store::ledger::HOLDS_ACTOR;
use vouch_store::testing::TestDatabase;
use vouch_store::{
    ApplyOutcome, DatabaseConfig, FactProspect, NewFact, ReleaseOutcome, RewardActionError, RewardFilter, RewardRecord,
    RewardStatus, Store, StoredProgram,
};

mod common;

use common::*;

fn t(s: &str) -> Timestamp {
    s.parse().expect("an instant")
}

/// A one-rule program in Chicago time, whose referrers are never flagged for
/// bursts (these tests make many referrals at once).
async fn program_with(store: &Store, slug: &str, rule: &str) -> StoredProgram {
    let source = format!(
        r#"slug = "{slug}"
name = "{slug}"
currency = "USD"
timezone = "America/Chicago"
landing_url = "https://example.com/"
eligible = ["customer"]
review = {{ burst_leads = 10000, burst_window_minutes = 1 }}

[[rewards]]
id = "cash"
beneficiary = "referrer"
trigger = "won"
kind = "cash"
{rule}
"#
    );
    let definition = parse_program(&source).expect("a valid program");
    let ids = (ProgramId(Uuid::now_v7()), ProgramVersionId(Uuid::now_v7()));
    match store.apply_program(&definition, &source, ids, at(0)).await.expect("apply") {
        ApplyOutcome::Created(p) => p,
        other => panic!("{other:?}"),
    }
}

const HELD_AUTO: &str = r#"amount = 100_00
hold = { after = "contract_date", months = 2, void_on = ["churned", "refunded"] }
approval = "auto""#;
const HELD_MANUAL: &str = r#"amount = 100_00
hold = { after = "contract_date", months = 2 }
approval = "manual""#;
const CLAWBACK: &str = r#"amount = 250_00
approval = "auto"
clawback = true"#;
const NO_CLAWBACK: &str = r#"amount = 250_00
approval = "auto""#;

fn fact(program: &StoredProgram, referral: ReferralId, kind: FactKind, occurred_at: &str) -> NewFact {
    NewFact {
        id: Uuid::now_v7(),
        program_id: program.id,
        kind,
        occurred_at: t(occurred_at),
        event_id: None,
        referral_id: Some(referral),
        prospect: FactProspect::default(),
        units: None,
        value: None,
        contract_date: None,
        raw: json!({}),
        actor: "api-key:tests".into(),
        // Reported as it happens, unless a test says otherwise.
        now: t(occurred_at),
    }
}

/// A referral of a new prospect, won with `units` on `contract_date`.
async fn won_referral(
    store: &Store,
    program: &StoredProgram,
    code: &ReferralCode,
    contract_date: &str,
    units: Option<i64>,
) -> ReferralId {
    let prospect = format!("p{}@prospect-{}.example", Uuid::now_v7().simple(), Uuid::now_v7().simple());
    let r = create(store, program, code, &prospect).await;
    let mut won = fact(program, r.id, FactKind::Won, &format!("{contract_date}T15:00:00Z"));
    won.contract_date = Some(contract_date.into());
    won.units = units;
    store.record_fact(&won, None).await.expect("record won");
    r.id
}

async fn reward_of(store: &Store, referral: ReferralId) -> RewardRecord {
    let filter = RewardFilter { referral: Some(referral), ..RewardFilter::default() };
    let mut all = store.rewards(&filter, None, 10).await.expect("rewards");
    assert_eq!(all.len(), 1, "one reward for {referral}: {all:?}");
    all.remove(0)
}

/// Marks a reward paid straight in the database (payouts are not this suite's).
async fn set_paid(db: &TestDatabase, reward: Uuid) {
    let sql = "UPDATE rewards SET status = 'paid' WHERE id = $1";
    match &db.config {
        DatabaseConfig::Sqlite { dir } => {
            let url = format!("sqlite://{}", dir.join("vouch.db").display());
            let mut c = sqlx::SqliteConnection::connect(&url).await.expect("connect");
            sqlx::query(sql).bind(reward).execute(&mut c).await.expect("set paid");
        }
        DatabaseConfig::Postgres { url, .. } => {
            let mut c = sqlx::PgConnection::connect(url).await.expect("connect");
            sqlx::query(sql).bind(reward).execute(&mut c).await.expect("set paid");
        }
    }
}

#[tokio::test]
async fn a_released_hold_approves_under_auto_and_waits_for_finance_under_manual() {
    for_each_engine(async |store, e| {
        let auto = program_with(&store, "held-auto", HELD_AUTO).await;
        let manual = program_with(&store, "held-manual", HELD_MANUAL).await;
        let code_a = referrer(&store, &auto, "ann@ann.example", "ANN-1").await;
        let code_m = referrer(&store, &manual, "max@max.example", "MAX-1").await;
        let a = won_referral(&store, &auto, &code_a, "2026-03-14", None).await;
        let m = won_referral(&store, &manual, &code_m, "2026-03-14", None).await;
        let held = reward_of(&store, a).await;
        // Two calendar months after the contract date, at midnight in Chicago (CDT).
        assert_eq!(held.release_at, Some(t("2026-05-14T05:00:00Z")), "{e}");
        assert_eq!(held.status, RewardStatus::Pending, "{e}");

        // Not a microsecond early.
        let early = store.release_due_holds(t("2026-05-14T04:59:59.999999Z"), 100).await.unwrap();
        assert!(early.is_empty(), "{e}: {early:?}");

        let now = t("2026-05-14T05:00:00Z");
        let report = store.release_due_holds(now, 100).await.unwrap();
        assert_eq!(report.entries.len(), 2, "{e}: {report:?}");
        assert_eq!(report.count(ReleaseOutcome::Approved), 1, "{e}");
        assert_eq!(report.count(ReleaseOutcome::AwaitingApproval), 1, "{e}");
        let approved = reward_of(&store, a).await;
        assert_eq!(approved.status, RewardStatus::Approved, "{e}");
        assert_eq!(approved.amount, held.amount, "{e}: the amount never changes");
        let events = store.reward_events(approved.id).await.unwrap();
        let last = events.last().unwrap();
        assert_eq!((last.status_from.as_deref(), last.status_to.as_str()), (Some("pending"), "approved"), "{e}");
        assert_eq!(last.actor, HOLDS_ACTOR, "{e}");
        assert_eq!(last.at, now, "{e}");
        assert!(last.reason.as_deref().unwrap().contains("approved automatically"), "{e}: {last:?}");

        // Manual: released, still pending, now for finance; never found again.
        let waiting = reward_of(&store, m).await;
        assert_eq!(waiting.status, RewardStatus::Pending, "{e}");
        let last = store.reward_events(waiting.id).await.unwrap().pop().unwrap();
        assert!(last.reason.as_deref().unwrap().contains("awaiting approval by finance"), "{e}: {last:?}");
        let later = store.release_due_holds(t("2026-09-01T00:00:00Z"), 100).await.unwrap();
        assert!(later.is_empty(), "{e}: released once: {later:?}");

        let done = store.approve_reward(waiting.id, "api-key:finance", Some("checked"), now).await.unwrap();
        assert_eq!(done.status, RewardStatus::Approved, "{e}");
        let last = store.reward_events(waiting.id).await.unwrap().pop().unwrap();
        assert_eq!((last.actor.as_str(), last.reason.as_deref()), ("api-key:finance", Some("checked")), "{e}");
    })
    .await;
}

#[tokio::test]
async fn a_contract_on_31_december_is_released_on_28_february() {
    for_each_engine(async |store, e| {
        let p = program_with(&store, "held-auto", HELD_AUTO).await;
        let code = referrer(&store, &p, "ann@ann.example", "ANN-1").await;
        let r = won_referral(&store, &p, &code, "2026-12-31", None).await;
        // 31 Dec + 2 months clamps to the end of February (2027 is no leap year),
        // at midnight in Chicago (CST, UTC-6).
        assert_eq!(reward_of(&store, r).await.release_at, Some(t("2027-02-28T06:00:00Z")), "{e}");
        assert!(store.release_due_holds(t("2027-02-28T05:59:59Z"), 10).await.unwrap().is_empty(), "{e}");
        let report = store.release_due_holds(t("2027-02-28T06:00:00Z"), 10).await.unwrap();
        assert_eq!(report.count(ReleaseOutcome::Approved), 1, "{e}: {report:?}");
    })
    .await;
}

#[tokio::test]
async fn release_voids_a_reward_whose_referral_churned_before_the_hold_ended() {
    for_each_engine(async |store, e| {
        let p = program_with(&store, "held-auto", HELD_AUTO).await;
        let code = referrer(&store, &p, "ann@ann.example", "ANN-1").await;
        // A refund known before the reward existed: it arrived before the `won`.
        let prospect = format!("p{}@prospect.example", Uuid::now_v7().simple());
        let r = create(&store, &p, &code, &prospect).await;
        let refund = fact(&p, r.id, FactKind::Refunded, "2026-03-01T12:00:00Z");
        store.record_fact(&refund, None).await.unwrap();
        let mut won = fact(&p, r.id, FactKind::Won, "2026-03-14T15:00:00Z");
        won.contract_date = Some("2026-03-14".into());
        store.record_fact(&won, None).await.unwrap();
        assert_eq!(reward_of(&store, r.id).await.status, RewardStatus::Pending, "{e}");

        let report = store.release_due_holds(t("2026-06-01T00:00:00Z"), 10).await.unwrap();
        assert_eq!(report.count(ReleaseOutcome::Voided), 1, "{e}: {report:?}");
        let voided = reward_of(&store, r.id).await;
        assert_eq!(voided.status, RewardStatus::Voided, "{e}");
        let reason = voided.void_reason.unwrap();
        assert!(reason.contains("refunded at 2026-03-01T12:00:00Z"), "{e}: {reason}");
        assert!(reason.contains(&refund.id.to_string()), "{e}: names the fact: {reason}");
        let last = store.reward_events(voided.id).await.unwrap().pop().unwrap();
        assert_eq!((last.status_to.as_str(), last.actor.as_str()), ("voided", HOLDS_ACTOR), "{e}");
    })
    .await;
}

#[tokio::test]
async fn a_late_churn_dated_before_the_hold_ended_voids_an_approved_reward_once() {
    for_each_engine(async |store, e| {
        let p = program_with(&store, "held-auto", HELD_AUTO).await;
        let code = referrer(&store, &p, "ann@ann.example", "ANN-1").await;
        let r = won_referral(&store, &p, &code, "2026-03-14", None).await;
        let kept = won_referral(&store, &p, &code, "2026-03-14", None).await;
        store.release_due_holds(t("2026-05-14T05:00:00Z"), 10).await.unwrap();
        assert_eq!(reward_of(&store, r).await.status, RewardStatus::Approved, "{e}");
        let balance = store.reward_balance(reward_of(&store, r).await.participant_id.unwrap()).await.unwrap();
        assert_eq!(balance[0].approved.amount_minor, 20_000, "{e}");

        // Reported in June, dated April: the hold was never really passed.
        let churn =
            NewFact { now: t("2026-06-01T00:00:00Z"), ..fact(&p, r, FactKind::Churned, "2026-04-20T00:00:00Z") };
        store.record_fact(&churn, None).await.unwrap();
        let voided = reward_of(&store, r).await;
        assert_eq!(voided.status, RewardStatus::Voided, "{e}");
        assert!(voided.void_reason.as_deref().unwrap().starts_with("churned at 2026-04-20T00:00:00Z"), "{e}");
        let events = store.reward_events(voided.id).await.unwrap();
        let last = events.last().unwrap();
        assert_eq!((last.status_from.as_deref(), last.status_to.as_str()), (Some("approved"), "voided"), "{e}");

        // Another churn report changes nothing more.
        let again =
            NewFact { now: t("2026-06-02T00:00:00Z"), ..fact(&p, r, FactKind::Churned, "2026-04-21T00:00:00Z") };
        store.record_fact(&again, None).await.unwrap();
        assert_eq!(store.reward_events(voided.id).await.unwrap(), events, "{e}");
        assert_eq!(reward_of(&store, r).await, voided, "{e}");

        // A churn dated after the hold ended voids nothing.
        let after = fact(&p, kept, FactKind::Churned, "2026-05-14T05:00:00Z");
        store.record_fact(&after, None).await.unwrap();
        let still = reward_of(&store, kept).await;
        assert_eq!(still.status, RewardStatus::Approved, "{e}");
        let balance = store.reward_balance(still.participant_id.unwrap()).await.unwrap();
        assert_eq!(balance.len(), 1, "{e}");
        assert_eq!(
            (balance[0].pending.amount_minor, balance[0].approved.amount_minor, balance[0].paid.amount_minor),
            (0, 10_000, 0),
            "{e}: the voided reward no longer counts"
        );
    })
    .await;
}

#[tokio::test]
async fn a_paid_reward_is_clawed_back_once_where_the_program_asks_and_never_edited() {
    for db in TestDatabase::all().await {
        let store = db.open().await;
        let e = db.engine;
        let p = program_with(&store, "clawback", CLAWBACK).await;
        let q = program_with(&store, "no-clawback", NO_CLAWBACK).await;
        let code = referrer(&store, &p, "ann@ann.example", "ANN-1").await;
        let code_q = referrer(&store, &q, "bea@bea.example", "BEA-1").await;
        let r = won_referral(&store, &p, &code, "2026-03-14", None).await;
        let s = won_referral(&store, &q, &code_q, "2026-03-14", None).await;
        let reward = reward_of(&store, r).await;
        assert_eq!(reward.status, RewardStatus::Approved, "{e}");
        set_paid(&db, reward.id).await;
        set_paid(&db, reward_of(&store, s).await.id).await;
        let paid = reward_of(&store, r).await;

        let refund = fact(&p, r, FactKind::Refunded, "2026-07-01T00:00:00Z");
        store.record_fact(&refund, None).await.unwrap();
        assert_eq!(reward_of(&store, r).await, paid, "{e}: a paid reward is never edited");
        let entries = store.reward_adjustments(reward.id).await.unwrap();
        assert_eq!(entries.len(), 1, "{e}: {entries:?}");
        assert_eq!((entries[0].kind.as_str(), entries[0].amount.amount_minor), ("clawback", -25_000), "{e}");
        assert_eq!(entries[0].cause, refund.id.to_string(), "{e}");
        assert_eq!(entries[0].actor, "api-key:tests", "{e}");

        // A churn after the refund takes nothing more back.
        let churn = fact(&p, r, FactKind::Churned, "2026-08-01T00:00:00Z");
        store.record_fact(&churn, None).await.unwrap();
        assert_eq!(store.reward_adjustments(reward.id).await.unwrap(), entries, "{e}");

        let balance = store.reward_balance(paid.participant_id.unwrap()).await.unwrap();
        assert_eq!(
            (balance[0].paid.amount_minor, balance[0].adjustments.amount_minor),
            (25_000, -25_000),
            "{e}: {balance:?}"
        );

        // Without `clawback = true`, a paid reward stays as it was.
        let refund = fact(&q, s, FactKind::Refunded, "2026-07-01T00:00:00Z");
        store.record_fact(&refund, None).await.unwrap();
        assert!(store.reward_adjustments(reward_of(&store, s).await.id).await.unwrap().is_empty(), "{e}");
        store.close().await;
    }
}

#[tokio::test]
async fn finance_actions_refuse_what_the_status_forbids_and_change_nothing() {
    for db in TestDatabase::all().await {
        let store = db.open().await;
        let e = db.engine;
        let p = program_with(&store, "held-manual", HELD_MANUAL).await;
        let code = referrer(&store, &p, "ann@ann.example", "ANN-1").await;
        let now = t("2026-04-01T00:00:00Z");
        let held = reward_of(&store, won_referral(&store, &p, &code, "2026-03-14", None).await).await;
        let refused = |r: Result<RewardRecord, RewardActionError>| match r {
            Err(RewardActionError::Refused(r)) => r.code(),
            other => panic!("{e}: refused, not {other:?}"),
        };

        // Still on hold.
        assert_eq!(refused(store.approve_reward(held.id, "fin", None, now).await), "reward_on_hold", "{e}");
        assert_eq!(reward_of(&store, held.referral_id).await, held, "{e}");

        // Voided, then approved: refused; voided again: nothing changes.
        let voided = store.void_reward(held.id, "fin", "duplicate lead", now).await.unwrap();
        assert_eq!((voided.status, voided.void_reason.as_deref()), (RewardStatus::Voided, Some("duplicate lead")));
        let events = store.reward_events(held.id).await.unwrap();
        let last = events.last().unwrap();
        assert_eq!((last.status_from.as_deref(), last.actor.as_str()), (Some("pending"), "fin"), "{e}");
        let later = t("2026-06-01T00:00:00Z");
        assert_eq!(refused(store.approve_reward(held.id, "fin", None, later).await), "reward_voided", "{e}");
        assert_eq!(store.void_reward(held.id, "fin", "again", later).await.unwrap(), voided, "{e}");
        assert_eq!(store.reward_events(held.id).await.unwrap(), events, "{e}");

        // Approved twice: the second changes nothing. Paid: cannot be voided.
        let other = reward_of(&store, won_referral(&store, &p, &code, "2026-03-14", None).await).await;
        let approved = store.approve_reward(other.id, "fin", None, later).await.unwrap();
        assert_eq!(approved.status, RewardStatus::Approved, "{e}");
        let events = store.reward_events(other.id).await.unwrap();
        assert_eq!(store.approve_reward(other.id, "fin", None, later).await.unwrap(), approved, "{e}");
        assert_eq!(store.reward_events(other.id).await.unwrap(), events, "{e}");
        set_paid(&db, other.id).await;
        let paid = reward_of(&store, other.referral_id).await;
        assert_eq!(refused(store.void_reward(other.id, "fin", "oops", later).await), "reward_paid", "{e}");
        assert_eq!(refused(store.approve_reward(other.id, "fin", None, later).await), "reward_paid", "{e}");
        assert_eq!(reward_of(&store, other.referral_id).await, paid, "{e}");

        // A hold that ended unreleased, on a referral refunded before it ended:
        // approving releases it first, which voids it.
        let prospect = format!("p{}@prospect.example", Uuid::now_v7().simple());
        let refunded = create(&store, &p, &code, &prospect).await;
        store.record_fact(&fact(&p, refunded.id, FactKind::Refunded, "2026-03-01T12:00:00Z"), None).await.unwrap();
        let mut won = fact(&p, refunded.id, FactKind::Won, "2026-03-14T15:00:00Z");
        won.contract_date = Some("2026-03-14".into());
        store.record_fact(&won, None).await.unwrap();
        let unreleased = reward_of(&store, refunded.id).await;
        assert_eq!(refused(store.approve_reward(unreleased.id, "fin", None, later).await), "reward_voided", "{e}");
        let voided = reward_of(&store, refunded.id).await;
        assert_eq!(voided.status, RewardStatus::Voided, "{e}");
        let last = store.reward_events(voided.id).await.unwrap().pop().unwrap();
        assert_eq!((last.status_to.as_str(), last.actor.as_str()), ("voided", HOLDS_ACTOR), "{e}");

        assert!(matches!(
            store.approve_reward(Uuid::now_v7(), "fin", None, later).await,
            Err(RewardActionError::NotFound)
        ));
        assert!(matches!(store.void_reward(Uuid::now_v7(), "fin", "x", later).await, Err(RewardActionError::NotFound)));
        store.close().await;
    }
}

#[tokio::test]
async fn two_stores_releasing_at_once_release_each_hold_exactly_once() {
    for db in TestDatabase::all().await {
        let e = db.engine;
        let store = db.open().await;
        let p = program_with(&store, "held-auto", HELD_AUTO).await;
        let code = referrer(&store, &p, "ann@ann.example", "ANN-1").await;
        let mut referrals = Vec::new();
        for _ in 0..24 {
            referrals.push(won_referral(&store, &p, &code, "2026-03-14", None).await);
        }
        // Two handles with their own connections, as two replicas have.
        let (one, two) = (db.open().await, db.open().await);
        let now = t("2026-06-01T00:00:00Z");
        let drain = async |s: &Store| {
            let mut mine = Vec::new();
            loop {
                let report = s.release_due_holds(now, 3).await.expect("release");
                if report.is_empty() {
                    return mine;
                }
                mine.extend(report.entries.into_iter().map(|r| r.reward_id));
            }
        };
        let (a, b) = tokio::join!(drain(&one), drain(&two));
        let mut all: Vec<Uuid> = a.iter().chain(&b).copied().collect();
        assert_eq!(all.len(), 24, "{e}: {} + {}", a.len(), b.len());
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 24, "{e}: each released once");
        for r in referrals {
            let reward = reward_of(&store, r).await;
            assert_eq!(reward.status, RewardStatus::Approved, "{e}");
            let released: Vec<_> = store
                .reward_events(reward.id)
                .await
                .unwrap()
                .into_iter()
                .filter(|ev| ev.actor == HOLDS_ACTOR)
                .collect();
            assert_eq!(released.len(), 1, "{e}: {released:?}");
        }
        one.close().await;
        two.close().await;
        store.close().await;
    }
}

const PER_UNIT_MANUAL: &str = r#"per_unit = "technician"
period = "referrer_year"
tiers = [{ up_to = 30, each = 100_00 }, { up_to = 60, each = 150_00 }, { each = 200_00 }]
approval = "manual""#;

/// Finance voids a referrer's reward on one replica while another awards the
/// same referrer a per-unit reward priced after it. Both take the referrer's
/// lock first, so neither waits on the other in a cycle (no deadlock, no
/// serialization error reaches the caller), and whichever commits first the
/// new reward ends priced without the voided one's units: 31 technicians
/// voided, so the 10 that follow are at $100 (tier 0–30), not $150.
#[tokio::test]
async fn a_void_racing_an_award_for_the_same_referrer_ends_as_either_order_would() {
    for db in TestDatabase::all().await {
        let e = db.engine;
        let store = db.open().await;
        let p = program_with(&store, "per-unit-race", PER_UNIT_MANUAL).await;
        let (one, two) = (db.open().await, db.open().await);
        for round in 0..8 {
            let code = referrer(&store, &p, &format!("r{round}@race-{round}.example"), &format!("RACE-{round}")).await;
            let voided = won_referral(&store, &p, &code, "2026-03-01", Some(31)).await;
            let voided = reward_of(&store, voided).await;
            assert_eq!(voided.amount.amount_minor, 310_000, "{e}");
            let prospect = format!("p{round}@late-{}.example", Uuid::now_v7().simple());
            let later = create(&store, &p, &code, &prospect).await;
            let mut won = fact(&p, later.id, FactKind::Won, "2026-04-01T15:00:00Z");
            won.contract_date = Some("2026-04-01".into());
            won.units = Some(10);
            let now = t("2026-04-02T00:00:00Z");
            let (void, award) =
                tokio::join!(one.void_reward(voided.id, "fin", "duplicate", now), two.record_fact(&won, None));
            void.unwrap_or_else(|err| panic!("{e} round {round}: void: {err:?}"));
            award.unwrap_or_else(|err| panic!("{e} round {round}: award: {err:?}"));
            assert_eq!(reward_of(&store, voided.referral_id).await.status, RewardStatus::Voided, "{e}");
            let priced = reward_of(&store, later.id).await;
            assert_eq!(priced.amount.amount_minor, 100_000, "{e} round {round}: {}", priced.explanation);
            assert!(priced.explanation.contains("no technicians in your year"), "{e}: {}", priced.explanation);
        }
        one.close().await;
        two.close().await;
        store.close().await;
    }
}
