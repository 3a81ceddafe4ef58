//! Holds, finance's actions and clawbacks through the HTTP API, with the shipped
//! `per-technician` program (held two months after the contract date, voided by
//! a churn or refund dated before then, approved automatically) and
//! `agent-gift-card` (approved by finance): the release job, late churns, the
//! approve and void routes with their refusals, a clawback in a program that
//! asks for one, and the balances on the participant.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::Connection;
use uuid::Uuid;
use vouch_domain::program::parse_program;
use vouch_domain::{ProgramId, ProgramVersionId};
use vouch_store::DatabaseConfig;
use vouch_store::testing::TestDatabase;

use crate::helpers::{TestApp, company_email, expect_problem, json_of, lead, pointers, uniq};

const TECH: &str = "per-technician";
const AGENT: &str = "agent-gift-card";

/// A server whose holds are released only when the test says so.
async fn spawn(db: TestDatabase) -> TestApp {
    TestApp::spawn_with(db, |c| c.holds_interval = None).await
}

async fn event(app: &TestApp, body: Value) -> Value {
    let res = app.api(Method::POST, "/events").header("Idempotency-Key", uniq()).json(&body).send().await.unwrap();
    let status = res.status();
    let text = res.text().await.unwrap_or_default();
    assert!(status.is_success(), "{}: {status} {text}", app.engine);
    serde_json::from_str(&text).unwrap()
}

async fn won(app: &TestApp, slug: &str, referral: &str, units: Option<u32>, contract_date: &str) {
    let mut body = json!({
        "type": "won", "program": slug, "occurred_at": format!("{contract_date}T15:00:00Z"),
        "referral_id": referral, "contract_date": contract_date,
    });
    if let Some(units) = units {
        body["units"] = json!(units);
    }
    event(app, body).await;
}

async fn reversal(app: &TestApp, slug: &str, referral: &str, kind: &str, occurred_at: &str) -> Value {
    event(app, json!({"type": kind, "program": slug, "occurred_at": occurred_at, "referral_id": referral})).await
}

async fn only_reward(app: &TestApp, referral: &str) -> Value {
    let res = app.api_get(&format!("/rewards?referral={referral}")).await;
    let page = json_of(app, res, StatusCode::OK).await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{}: one reward for {referral}: {items:?}", app.engine);
    items[0].clone()
}

async fn reward(app: &TestApp, id: &str) -> Value {
    let res = app.api_get(&format!("/rewards/{id}")).await;
    json_of(app, res, StatusCode::OK).await
}

async fn release(app: &TestApp) -> vouch_store::ReleaseReport {
    vouch_server::holds::release_all_due(&app.store, jiff::Timestamp::now()).await.expect("release")
}

async fn post(app: &TestApp, path: &str, body: Value) -> reqwest::Response {
    app.api(Method::POST, path).json(&body).send().await.unwrap()
}

async fn events_of(app: &TestApp, id: &str) -> usize {
    app.store.reward_events(Uuid::parse_str(id).unwrap()).await.unwrap().len()
}

/// Marks a reward paid straight in the database (payouts are not this suite's).
async fn set_paid(app: &TestApp, id: &str) {
    let sql = "UPDATE rewards SET status = 'paid' WHERE id = $1";
    let id = Uuid::parse_str(id).unwrap();
    match app.database() {
        DatabaseConfig::Sqlite { dir } => {
            let url = format!("sqlite://{}", dir.join("vouch.db").display());
            let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query(sql).bind(id).execute(&mut c).await.unwrap();
        }
        DatabaseConfig::Postgres { url, .. } => {
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query(sql).bind(id).execute(&mut c).await.unwrap();
        }
    }
}

#[tokio::test]
async fn a_due_hold_is_approved_and_a_late_churn_dated_before_it_ended_voids_it() {
    for db in TestDatabase::all().await {
        let app = spawn(db).await;
        let e = app.engine;
        let referrer = app.enroll(TECH, &company_email("ref"), "customer").await;
        let churned = lead(&app, TECH, &referrer.code).await;
        let kept = lead(&app, TECH, &referrer.code).await;
        won(&app, TECH, &churned, Some(10), "2026-03-14").await;
        won(&app, TECH, &kept, Some(10), "2026-03-14").await;
        let held = only_reward(&app, &churned).await;
        assert_eq!(
            (held["status"].as_str(), held["release_at"].as_str()),
            (Some("pending"), Some("2026-05-14T05:00:00Z"))
        );

        // The contract date + 2 months has passed on the wall clock.
        let report = release(&app).await;
        assert_eq!(report.count(vouch_store::ReleaseOutcome::Approved), 2, "{e}: {report:?}");
        let approved = only_reward(&app, &churned).await;
        assert_eq!(approved["status"], "approved", "{e}: {approved}");
        assert_eq!(approved["amount"], held["amount"], "{e}");
        assert!(release(&app).await.is_empty(), "{e}: released once");

        // Reported now, dated April: before the hold ended, so it was never passed.
        reversal(&app, TECH, &churned, "churned", "2026-04-20T12:00:00Z").await;
        let voided = only_reward(&app, &churned).await;
        assert_eq!(voided["status"], "voided", "{e}: {voided}");
        let reason = voided["void_reason"].as_str().unwrap();
        assert!(reason.starts_with("churned at 2026-04-20T12:00:00Z (fact "), "{e}: {reason}");
        assert!(reason.ends_with("before the hold ended at 2026-05-14T05:00:00Z"), "{e}: {reason}");
        let id = voided["id"].as_str().unwrap();
        let history = events_of(&app, id).await;

        // The same churn again, and another one: nothing changes.
        reversal(&app, TECH, &churned, "churned", "2026-04-20T12:00:00Z").await;
        reversal(&app, TECH, &churned, "refunded", "2026-04-25T12:00:00Z").await;
        assert_eq!(reward(&app, id).await, voided, "{e}");
        assert_eq!(events_of(&app, id).await, history, "{e}");

        // A churn dated after the hold ended voids nothing.
        reversal(&app, TECH, &kept, "churned", "2026-06-01T00:00:00Z").await;
        let still = only_reward(&app, &kept).await;
        assert_eq!(still["status"], "approved", "{e}: {still}");

        let res = app.api_get(&format!("/participants/{}", referrer.participant_id)).await;
        let p = json_of(&app, res, StatusCode::OK).await;
        assert_eq!(
            p["rewards"],
            json!([{"currency": "USD", "pending_minor": 0, "approved_minor": 100_000, "paid_minor": 0,
                "adjustments_minor": 0}]),
            "{e}: {p}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn finance_approves_and_voids_and_each_refusal_is_specific_and_changes_nothing() {
    for db in TestDatabase::all().await {
        let app = spawn(db).await;
        let e = app.engine;
        let agent = app.enroll(AGENT, &company_email("agent"), "other").await;
        let referral = lead(&app, AGENT, &agent.code).await;
        won(&app, AGENT, &referral, None, "2026-03-14").await;
        let pending = only_reward(&app, &referral).await;
        assert_eq!(pending["status"], "pending", "{e}: {pending}");
        let id = pending["id"].as_str().unwrap().to_string();

        // No reason, or a blank one: 422 at /reason, nothing changed.
        for body in [json!({}), json!({"reason": "   "})] {
            let problem = expect_problem(
                e,
                post(&app, &format!("/rewards/{id}/void"), body).await,
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
            )
            .await;
            assert_eq!(pointers(&problem), vec!["/reason"], "{e}: {problem}");
        }
        assert_eq!(reward(&app, &id).await, pending, "{e}");

        // Approve, then approve again: the same answer, nothing recorded twice.
        let res = post(&app, &format!("/rewards/{id}/approve"), json!({"note": "invoice checked"})).await;
        let approved = json_of(&app, res, StatusCode::OK).await;
        assert_eq!(approved["status"], "approved", "{e}: {approved}");
        assert_eq!(approved["amount"], pending["amount"], "{e}");
        let events = app.store.reward_events(Uuid::parse_str(&id).unwrap()).await.unwrap();
        let last = events.last().unwrap();
        assert_eq!((last.actor.as_str(), last.reason.as_deref()), ("api-key:tests", Some("invoice checked")));
        let res = post(&app, &format!("/rewards/{id}/approve"), json!({})).await;
        assert_eq!(json_of(&app, res, StatusCode::OK).await, approved, "{e}");
        assert_eq!(events_of(&app, &id).await, events.len(), "{e}");

        // Void the approved reward; approving it now is refused.
        let res = post(&app, &format!("/rewards/{id}/void"), json!({"reason": "the customer was already ours"})).await;
        let voided = json_of(&app, res, StatusCode::OK).await;
        assert_eq!(
            (voided["status"].as_str(), voided["void_reason"].as_str()),
            (Some("voided"), Some("the customer was already ours"))
        );
        let res = post(&app, &format!("/rewards/{id}/approve"), json!({})).await;
        expect_problem(e, res, StatusCode::CONFLICT, "reward_voided").await;
        assert_eq!(reward(&app, &id).await, voided, "{e}");

        // A reward still on hold cannot be approved.
        let referrer = app.enroll(TECH, &company_email("ref"), "customer").await;
        let future = lead(&app, TECH, &referrer.code).await;
        won(&app, TECH, &future, Some(10), "2030-01-10").await;
        let held = only_reward(&app, &future).await;
        let held_id = held["id"].as_str().unwrap();
        let res = post(&app, &format!("/rewards/{held_id}/approve"), json!({})).await;
        let problem = expect_problem(e, res, StatusCode::CONFLICT, "reward_on_hold").await;
        assert!(problem["detail"].as_str().unwrap().contains("2030-03-10T06:00:00Z"), "{e}: {problem}");
        assert_eq!(reward(&app, held_id).await, held, "{e}");

        // A paid reward cannot be voided.
        let other = lead(&app, AGENT, &agent.code).await;
        won(&app, AGENT, &other, None, "2026-03-14").await;
        let other_id = only_reward(&app, &other).await["id"].as_str().unwrap().to_string();
        set_paid(&app, &other_id).await;
        let paid = reward(&app, &other_id).await;
        let res = post(&app, &format!("/rewards/{other_id}/void"), json!({"reason": "changed our mind"})).await;
        expect_problem(e, res, StatusCode::CONFLICT, "reward_paid").await;
        assert_eq!(reward(&app, &other_id).await, paid, "{e}");

        // Unknown and malformed ids.
        for unknown in [Uuid::now_v7().to_string(), "not-an-id".to_string()] {
            let res = post(&app, &format!("/rewards/{unknown}/approve"), json!({})).await;
            expect_problem(e, res, StatusCode::NOT_FOUND, "not_found").await;
            let res = post(&app, &format!("/rewards/{unknown}/void"), json!({"reason": "x"})).await;
            expect_problem(e, res, StatusCode::NOT_FOUND, "not_found").await;
        }
        app.stop().await;
    }
}

const CLAWBACK_PROGRAM: &str = r#"
slug = "clawback-cash"
name = "Cash that is taken back on a refund"
currency = "USD"
timezone = "America/Chicago"
landing_url = "https://example.com/referred"
eligible = ["customer"]

[[rewards]]
id = "cash"
beneficiary = "referrer"
trigger = "won"
kind = "cash"
amount = 300_00
approval = "auto"
clawback = true
"#;

#[tokio::test]
async fn a_refund_after_payment_claws_back_with_a_negative_entry_once() {
    for db in TestDatabase::all().await {
        let app = spawn(db).await;
        let e = app.engine;
        let definition = parse_program(CLAWBACK_PROGRAM).expect("valid");
        let ids = (ProgramId(Uuid::now_v7()), ProgramVersionId(Uuid::now_v7()));
        app.store.apply_program(&definition, CLAWBACK_PROGRAM, ids, jiff::Timestamp::now()).await.unwrap();
        let slug = "clawback-cash";
        let referrer = app.enroll(slug, &company_email("ref"), "customer").await;
        let referral = lead(&app, slug, &referrer.code).await;
        won(&app, slug, &referral, None, "2026-03-14").await;
        let id = only_reward(&app, &referral).await["id"].as_str().unwrap().to_string();
        set_paid(&app, &id).await;
        let paid = reward(&app, &id).await;
        assert_eq!((paid["status"].as_str(), &paid["adjustments"]), (Some("paid"), &json!([])), "{e}");

        let fact = reversal(&app, slug, &referral, "refunded", "2026-09-01T00:00:00Z").await;
        let after = reward(&app, &id).await;
        assert_eq!((&after["status"], &after["amount"]), (&paid["status"], &paid["amount"]), "{e}: never edited");
        let entries = after["adjustments"].as_array().unwrap();
        assert_eq!(entries.len(), 1, "{e}: {after}");
        assert_eq!(entries[0]["kind"], "clawback", "{e}");
        assert_eq!(entries[0]["amount"], json!({"amount_minor": -30_000, "currency": "USD"}), "{e}");
        assert_eq!(entries[0]["actor"], "api-key:tests", "{e}");
        assert_eq!(entries[0]["cause"], fact["fact_id"], "{e}: caused by the refund");

        // A churn later takes nothing more back.
        reversal(&app, slug, &referral, "churned", "2026-10-01T00:00:00Z").await;
        assert_eq!(reward(&app, &id).await, after, "{e}");
        let res = app.api_get(&format!("/participants/{}", referrer.participant_id)).await;
        let p = json_of(&app, res, StatusCode::OK).await;
        assert_eq!(
            p["rewards"],
            json!([{"currency": "USD", "pending_minor": 0, "approved_minor": 0, "paid_minor": 30_000,
                "adjustments_minor": -30_000}]),
            "{e}: {p}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn the_servers_holds_worker_releases_a_due_hold_by_itself() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn_with(db, |c| c.holds_interval = Some(std::time::Duration::from_millis(50))).await;
        let e = app.engine;
        let referrer = app.enroll(TECH, &company_email("ref"), "customer").await;
        let referral = lead(&app, TECH, &referrer.code).await;
        won(&app, TECH, &referral, Some(16), "2026-03-14").await;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        let released = loop {
            let r = only_reward(&app, &referral).await;
            if r["status"] != "pending" || tokio::time::Instant::now() > deadline {
                break r;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        assert_eq!(released["status"], "approved", "{e}: {released}");
        assert_eq!(released["amount"], json!({"amount_minor": 160_000, "currency": "USD"}), "{e}");
        app.stop().await;
    }
}
