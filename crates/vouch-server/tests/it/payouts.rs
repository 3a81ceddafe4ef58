//! Fulfilment and payouts through the HTTP API, on both engines: payout details,
//! payout batches of cash rewards (from chosen ids, or by method and currency
//! with a minimum; CSV export; marked paid once; a failed item's rewards back to
//! approved and batchable again), the refusals that change nothing, the
//! gift-card queue, credits and plan upgrades handed to billing exactly once,
//! and the yearly payee report; adjustment entries (a re-price of an approved
//! reward, a clawback after payment) settled through the payee's next item,
//! net. Cash and gift-card rewards come approved from test programs with
//! `approval = "auto"` and no hold.

// Amounts are written as whole_cents: `7_750_00` is USD 7,750.00.
#![allow(clippy::inconsistent_digit_grouping)]

use std::collections::BTreeMap;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use vouch_store::DatabaseConfig;
use vouch_store::testing::TestDatabase;

use crate::helpers::{TestApp, apply, company_email, csv_of, expect_problem, json_of, pointers, uniq};

const IBAN_A: &str = "DE89 3704 0044 0532 0130 00";
const IBAN_B: &str = "GB82 WEST 1234 5698 7654 32";

/// A program paying `amount` minor units of `kind` in `currency`, approved as `approval` says.
fn program(slug: &str, kind: &str, currency: &str, amount: i64, approval: &str) -> String {
    format!(
        r#"slug = "{slug}"
name = "Test {slug}"
description = "A test program."
currency = "{currency}"
timezone = "UTC"
landing_url = "https://example.com/welcome"
terms_url = "https://example.com/terms"
eligible = ["customer"]
join = "open"
business = true
attribution = {{ window_days = 90, rule = "first_referrer" }}

[[rewards]]
id = "reward"
beneficiary = "referrer"
trigger = "won"
kind = "{kind}"
amount = {amount}
approval = "{approval}"
"#
    )
}

/// The test programs: USD cash ($150), EUR cash (€80), a USD gift card ($25),
/// approved at once; USD cash ($70) awaiting approval; USD cash ($90) held a
/// month after the won.
async fn spawn(db: TestDatabase) -> TestApp {
    let app = TestApp::spawn(db).await;
    apply(&app, &program("cash-usd", "cash", "USD", 15_000, "auto")).await;
    apply(&app, &program("cash-eur", "cash", "EUR", 8000, "auto")).await;
    apply(&app, &program("gift-auto", "gift_card", "USD", 2500, "auto")).await;
    apply(&app, &program("cash-manual", "cash", "USD", 7000, "manual")).await;
    let held = program("cash-held", "cash", "USD", 9000, "auto").replace(
        "approval = \"auto\"",
        "hold = { after = \"won\", months = 1, void_on = [\"churned\", \"refunded\"] }\napproval = \"auto\"",
    );
    apply(&app, &held).await;
    app
}

async fn send(app: &TestApp, method: Method, path: &str, body: Value) -> reqwest::Response {
    app.api(method, path).json(&body).send().await.expect("send")
}

/// A participant enrolled in every test program and the shipped ones they use.
struct Payee {
    id: String,
    /// Program slug → referral code.
    codes: BTreeMap<&'static str, String>,
}

async fn payee(app: &TestApp, programs: &[&'static str]) -> Payee {
    let email = company_email("ref");
    let mut codes = BTreeMap::new();
    let mut id = String::new();
    for slug in programs {
        let enrolled = app.enroll(slug, &email, "customer").await;
        id = enrolled.participant_id;
        codes.insert(*slug, enrolled.code);
    }
    Payee { id, codes }
}

async fn set_details(app: &TestApp, who: &Payee, body: Value) -> Value {
    let res = send(app, Method::PUT, &format!("/participants/{}/payout-details", who.id), body).await;
    json_of(app, res, StatusCode::OK).await
}

async fn bank(app: &TestApp, who: &Payee, iban: &str) {
    set_details(app, who, json!({"method": "bank_transfer", "iban": iban, "account_holder": "Ada Lovelace"})).await;
}

/// A won referral of `who` in `slug`, with its one reward.
async fn reward(app: &TestApp, slug: &'static str, who: &Payee) -> Value {
    let code = &who.codes[slug];
    let body = json!({"referrer_code": code, "prospect": {"email": company_email("bob")}, "consent": true});
    let res = send(app, Method::POST, &format!("/programs/{slug}/leads"), body).await;
    let referral = json_of(app, res, StatusCode::CREATED).await;
    let id = referral["id"].as_str().unwrap().to_string();
    let mut won = json!({"type": "won", "program": slug, "occurred_at": "2026-03-14T15:00:00Z", "referral_id": id});
    if slug == "double-sided" {
        won["value"] = json!({"amount_minor": 120_000, "currency": "USD"});
    }
    let res = app.api(Method::POST, "/events").header("Idempotency-Key", uniq()).json(&won).send().await.unwrap();
    assert!(res.status().is_success(), "{}: {}", app.engine, res.text().await.unwrap_or_default());
    let res = app.api_get(&format!("/rewards?referral={id}")).await;
    let page = json_of(app, res, StatusCode::OK).await;
    let items = page["items"].as_array().unwrap();
    assert!(items.iter().all(|r| r["referral_id"] == id.as_str()), "{}: {page}", app.engine);
    assert!(!items.is_empty(), "{}: a reward for {slug}", app.engine);
    items.iter().find(|r| r["beneficiary"] == "referrer").unwrap_or(&items[0]).clone()
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

async fn get_reward(app: &TestApp, id: &str) -> Value {
    let res = app.api_get(&format!("/rewards/{id}")).await;
    json_of(app, res, StatusCode::OK).await
}

async fn create(app: &TestApp, body: Value) -> reqwest::Response {
    send(app, Method::POST, "/payouts", body).await
}

async fn batch_of(app: &TestApp, ids: &[&str]) -> Value {
    let res = create(app, json!({"reward_ids": ids})).await;
    json_of(app, res, StatusCode::CREATED).await
}

fn item_of<'a>(batch: &'a Value, who: &Payee) -> &'a Value {
    batch["items"].as_array().unwrap().iter().find(|i| i["participant_id"] == who.id.as_str()).expect("an item")
}

/// Runs a query returning one integer, on the app's database.
async fn scalar(app: &TestApp, sql: &str) -> i64 {
    match app.database() {
        DatabaseConfig::Sqlite { dir } => {
            let url = format!("sqlite://{}", dir.join("vouch.db").display());
            let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
            let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql.to_string())).fetch_one(&pool).await.unwrap();
            pool.close().await;
            n
        }
        DatabaseConfig::Postgres { url, .. } => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql.to_string())).fetch_one(&pool).await.unwrap();
            pool.close().await;
            n
        }
    }
}

/// Sets a reward's amount directly (amounts the programs cannot produce).
async fn force_amount(app: &TestApp, reward: &str, amount: i64) {
    let sql = "UPDATE rewards SET amount_minor = $1 WHERE id = $2";
    let id = uuid::Uuid::parse_str(reward).unwrap();
    match app.database() {
        DatabaseConfig::Sqlite { dir } => {
            let pool =
                sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.join("vouch.db").display())).await.unwrap();
            sqlx::query(sql).bind(amount).bind(id).execute(&pool).await.unwrap();
            pool.close().await;
        }
        DatabaseConfig::Postgres { url, .. } => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            sqlx::query(sql).bind(amount).bind(id).execute(&pool).await.unwrap();
            pool.close().await;
        }
    }
}

async fn count_batches(app: &TestApp) -> i64 {
    scalar(app, "SELECT COUNT(*) FROM payout_batches").await
}

/// (from, to, actor) of a reward's events, oldest first.
async fn events_of(app: &TestApp, reward: &str) -> Vec<(Option<String>, String, String)> {
    let sql = "SELECT status_from, status_to, actor FROM reward_events WHERE reward_id = $1 ORDER BY at, id";
    let id = uuid::Uuid::parse_str(reward).unwrap();
    match app.database() {
        DatabaseConfig::Sqlite { dir } => {
            let pool =
                sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.join("vouch.db").display())).await.unwrap();
            let rows = sqlx::query_as(sql).bind(id).fetch_all(&pool).await.unwrap();
            pool.close().await;
            rows
        }
        DatabaseConfig::Postgres { url, .. } => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            let rows = sqlx::query_as(sql).bind(id).fetch_all(&pool).await.unwrap();
            pool.close().await;
            rows
        }
    }
}

/// The invariant: the paid total of rewards plus the adjustment entries that
/// paid items settled equals the sum of paid payout items (gift cards and
/// applied credits aside).
async fn assert_paid_total_matches_items(app: &TestApp) {
    let rewards = scalar(
        app,
        "SELECT COALESCE(CAST(SUM(amount_minor) AS BIGINT), 0) FROM rewards WHERE status = 'paid' AND kind = 'cash'",
    )
    .await;
    let settled = scalar(
        app,
        "SELECT COALESCE(CAST(SUM(a.amount_minor) AS BIGINT), 0) FROM reward_adjustments a
         WHERE EXISTS (SELECT 1 FROM payout_item_adjustments l WHERE l.adjustment_id = a.id AND l.state = 'paid')",
    )
    .await;
    let items =
        scalar(app, "SELECT COALESCE(CAST(SUM(amount_minor) AS BIGINT), 0) FROM payout_items WHERE status = 'paid'")
            .await;
    assert_eq!(rewards + settled, items, "{}: paid cash rewards and settled entries = paid payout items", app.engine);
}

#[tokio::test]
async fn a_batch_from_chosen_rewards_pays_each_participant_once() {
    for db in TestDatabase::all().await {
        let app = spawn(db).await;
        let e = app.engine;
        let (a, b) = banked_payees(&app, "cash-usd").await;
        let (a1, a2, b1) = (
            id(&reward(&app, "cash-usd", &a).await),
            id(&reward(&app, "cash-usd", &a).await),
            id(&reward(&app, "cash-usd", &b).await),
        );
        assert_eq!(get_reward(&app, &a1).await["status"], "approved", "{e}");

        let batch = batch_of(&app, &[&a1, &b1, &a2]).await;
        assert_eq!((batch["status"].as_str(), batch["method"].as_str()), (Some("open"), Some("bank_transfer")), "{e}");
        assert_eq!(batch["total"], json!({"amount_minor": 45_000, "currency": "USD"}), "{e}: {batch}");
        assert_eq!(batch["items"].as_array().unwrap().len(), 2, "{e}: one item per participant: {batch}");
        let item_a = item_of(&batch, &a);
        assert_eq!(item_a["amount"], json!({"amount_minor": 30_000, "currency": "USD"}), "{e}");
        let mut ids: Vec<&str> = item_a["reward_ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        ids.sort();
        let mut want = vec![a1.as_str(), a2.as_str()];
        want.sort();
        assert_eq!(ids, want, "{e}");
        assert_eq!(item_a["destination"], "DE…3000", "{e}: masked in JSON");
        // Batched rewards stay approved until the batch is paid.
        assert_eq!(get_reward(&app, &a1).await["status"], "approved", "{e}");
        let res = app.api_get(&format!("/payouts/{}", id(&batch))).await;
        assert_eq!(json_of(&app, res, StatusCode::OK).await, batch, "{e}");

        // The export: full destinations, amounts, reward ids.
        let rows = csv_of(&app, &format!("/payouts/{}/export", id(&batch))).await;
        assert_eq!(rows.len(), 2, "{e}: {rows:?}");
        let row_a = rows.iter().find(|r| r["destination"] == "DE89370400440532013000").expect("A's row");
        assert_eq!(row_a["method"], "bank_transfer", "{e}");
        assert_eq!(row_a["amount_minor"], "30000", "{e}");
        assert_eq!(row_a["amount"], "300.00", "{e}");
        assert_eq!(row_a["currency"], "USD", "{e}");
        assert_eq!(row_a["account_holder"], "Ada Lovelace", "{e}");
        assert_eq!(row_a["payee"], "Test Person", "{e}");
        let mut exported: Vec<&str> = row_a["reward_ids"].split(' ').collect();
        exported.sort();
        assert_eq!(exported, want, "{e}");
        let row_b = rows.iter().find(|r| r["destination"] == "GB82WEST12345698765432").expect("B's row");
        assert_eq!((row_b["amount_minor"].as_str(), row_b["reward_ids"].as_str()), ("15000", b1.as_str()), "{e}");

        // Marked paid: the batch, its items and rewards; twice changes nothing.
        let path = format!("/payouts/{}/paid", id(&batch));
        let res = send(&app, Method::POST, &path, json!({"external_reference": "SEPA-2026-001"})).await;
        let paid = json_of(&app, res, StatusCode::OK).await;
        assert_eq!(
            (paid["status"].as_str(), paid["external_reference"].as_str()),
            (Some("paid"), Some("SEPA-2026-001"))
        );
        assert!(paid["items"].as_array().unwrap().iter().all(|i| i["status"] == "paid"), "{e}: {paid}");
        for r in [&a1, &a2, &b1] {
            assert_eq!(get_reward(&app, r).await["status"], "paid", "{e}");
            let events = events_of(&app, r).await;
            let last = events.last().unwrap();
            assert_eq!(
                (last.0.as_deref(), last.1.as_str(), last.2.as_str()),
                (Some("approved"), "paid", "api-key:tests")
            );
        }
        let events_before = events_of(&app, &a1).await.len();
        let res = send(&app, Method::POST, &path, json!({"external_reference": "SEPA-2026-002"})).await;
        assert_eq!(json_of(&app, res, StatusCode::OK).await, paid, "{e}: paid twice, same answer");
        assert_eq!(events_of(&app, &a1).await.len(), events_before, "{e}: no second event");

        // A paid reward cannot be batched again.
        let res = create(&app, json!({"reward_ids": [a1]})).await;
        let p = expect_problem(e, res, StatusCode::UNPROCESSABLE_ENTITY, "reward_not_approved").await;
        assert_eq!(pointers(&p), ["/reward_ids/0"], "{e}");
        assert_paid_total_matches_items(&app).await;
        app.stop().await;
    }
}

#[tokio::test]
async fn a_batch_by_method_and_currency_has_one_item_per_participant_above_the_minimum() {
    for db in TestDatabase::all().await {
        let app = spawn(db).await;
        let e = app.engine;
        let (a, b, c) = (
            payee(&app, &["cash-usd", "cash-eur"]).await,
            payee(&app, &["cash-usd"]).await,
            payee(&app, &["cash-usd"]).await,
        );
        bank(&app, &a, IBAN_A).await;
        bank(&app, &b, IBAN_B).await;
        set_details(&app, &c, json!({"method": "paypal", "email": "carol@example.org"})).await;
        let a_rewards = [id(&reward(&app, "cash-usd", &a).await), id(&reward(&app, "cash-usd", &a).await)];
        let a_eur = id(&reward(&app, "cash-eur", &a).await);
        let b1 = id(&reward(&app, "cash-usd", &b).await);
        let c1 = id(&reward(&app, "cash-usd", &c).await);

        // Minimum USD 200.00: only A (USD 300.00) is owed that much.
        let body = json!({"method": "bank_transfer", "currency": "USD",
            "min_amount": {"amount_minor": 20_000, "currency": "USD"}});
        let res = create(&app, body).await;
        let first = json_of(&app, res, StatusCode::CREATED).await;
        let items = first["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{e}: {first}");
        assert_eq!(items[0]["participant_id"], a.id.as_str(), "{e}");
        assert_eq!(items[0]["amount"], json!({"amount_minor": 30_000, "currency": "USD"}), "{e}");
        assert_eq!(items[0]["reward_ids"].as_array().unwrap().len(), 2, "{e}: not the EUR one");

        // Without a minimum: B; A's are in the open batch, C is paid by PayPal.
        let res = create(&app, json!({"method": "bank_transfer", "currency": "USD"})).await;
        let second = json_of(&app, res, StatusCode::CREATED).await;
        let items = second["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{e}: {second}");
        assert_eq!((items[0]["participant_id"].as_str(), &items[0]["reward_ids"]), (Some(b.id.as_str()), &json!([b1])));

        let res = create(&app, json!({"method": "paypal", "currency": "USD"})).await;
        let third = json_of(&app, res, StatusCode::CREATED).await;
        assert_eq!(third["items"][0]["reward_ids"], json!([c1]), "{e}");
        assert_eq!(third["items"][0]["destination"], "c***@example.org", "{e}");
        let res = create(&app, json!({"method": "bank_transfer", "currency": "EUR"})).await;
        let euro = json_of(&app, res, StatusCode::CREATED).await;
        assert_eq!(euro["total"], json!({"amount_minor": 8000, "currency": "EUR"}), "{e}");
        assert_eq!(euro["items"][0]["reward_ids"], json!([a_eur]), "{e}");

        // Nothing left: a specific problem, and no batch.
        let before = count_batches(&app).await;
        let res = create(&app, json!({"method": "bank_transfer", "currency": "USD"})).await;
        expect_problem(e, res, StatusCode::UNPROCESSABLE_ENTITY, "nothing_to_pay").await;
        assert_eq!(count_batches(&app).await, before, "{e}");
        for r in a_rewards.iter().chain([&b1, &c1]) {
            assert_eq!(get_reward(&app, r).await["status"], "approved", "{e}");
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn a_failed_item_puts_its_rewards_back_to_approved_and_batchable() {
    for db in TestDatabase::all().await {
        let app = spawn(db).await;
        let e = app.engine;
        let (a, b) = banked_payees(&app, "cash-usd").await;
        let (a1, b1) = (id(&reward(&app, "cash-usd", &a).await), id(&reward(&app, "cash-usd", &b).await));
        let batch = batch_of(&app, &[&a1, &b1]).await;
        let item_a = id(item_of(&batch, &a));

        // Failed before payment: A's reward leaves the batch.
        let path = format!("/payouts/{}/items/{item_a}/failed", id(&batch));
        let res = send(&app, Method::POST, &path, json!({"reason": "IBAN closed"})).await;
        let failed = json_of(&app, res, StatusCode::OK).await;
        assert_eq!(item_of(&failed, &a)["status"], "failed", "{e}: {failed}");
        assert_eq!(item_of(&failed, &a)["failure_reason"], "IBAN closed", "{e}");
        assert_eq!(failed["total"]["amount_minor"], 15_000, "{e}: the total leaves the failed item out");
        assert_eq!(get_reward(&app, &a1).await["status"], "approved", "{e}");
        let rows = csv_of(&app, &format!("/payouts/{}/export", id(&batch))).await;
        assert_eq!(rows.len(), 1, "{e}: the export leaves the failed item out");
        // Failing it again changes nothing.
        let res = send(&app, Method::POST, &path, json!({"reason": "again"})).await;
        assert_eq!(json_of(&app, res, StatusCode::OK).await, failed, "{e}");

        // Marking the batch paid pays B only.
        let res =
            send(&app, Method::POST, &format!("/payouts/{}/paid", id(&batch)), json!({"external_reference": "R1"}))
                .await;
        json_of(&app, res, StatusCode::OK).await;
        assert_eq!(get_reward(&app, &a1).await["status"], "approved", "{e}");
        assert_eq!(get_reward(&app, &b1).await["status"], "paid", "{e}");

        // A's reward is batched again, paid, then returned: approved once more.
        let again = batch_of(&app, &[&a1]).await;
        let res =
            send(&app, Method::POST, &format!("/payouts/{}/paid", id(&again)), json!({"external_reference": "R2"}))
                .await;
        json_of(&app, res, StatusCode::OK).await;
        assert_eq!(get_reward(&app, &a1).await["status"], "paid", "{e}");
        assert_paid_total_matches_items(&app).await;
        let item = id(item_of(&again, &a));
        let path = format!("/payouts/{}/items/{item}/failed", id(&again));
        let res = send(&app, Method::POST, &path, json!({"reason": "returned by the bank"})).await;
        json_of(&app, res, StatusCode::OK).await;
        assert_eq!(get_reward(&app, &a1).await["status"], "approved", "{e}");
        let events = events_of(&app, &a1).await;
        let last = events.last().unwrap();
        assert_eq!((last.0.as_deref(), last.1.as_str()), (Some("paid"), "approved"), "{e}: {events:?}");
        assert_paid_total_matches_items(&app).await;
        batch_of(&app, &[&a1]).await;

        // Bad input: a reason is needed; unknown items and batches are 404.
        let res = send(&app, Method::POST, &path, json!({"reason": " "})).await;
        let p = expect_problem(e, res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
        assert_eq!(pointers(&p), ["/reason"], "{e}");
        let path = format!("/payouts/{}/items/{}/failed", id(&again), uuid::Uuid::now_v7());
        let res = send(&app, Method::POST, &path, json!({"reason": "x"})).await;
        expect_problem(e, res, StatusCode::NOT_FOUND, "not_found").await;
        app.stop().await;
    }
}

#[tokio::test]
async fn bad_payout_requests_get_a_specific_problem_and_change_nothing() {
    for db in TestDatabase::all().await {
        let app = spawn(db).await;
        let e = app.engine;
        let a = payee(&app, &["cash-usd", "cash-eur", "cash-manual", "customer-credit"]).await;
        let (b, c) = (payee(&app, &["cash-usd"]).await, payee(&app, &["cash-usd"]).await);
        bank(&app, &a, IBAN_A).await;
        set_details(&app, &b, json!({"method": "paypal", "email": "bea@example.org"})).await;
        let usd = id(&reward(&app, "cash-usd", &a).await);
        let usd2 = id(&reward(&app, "cash-usd", &a).await);
        let eur = id(&reward(&app, "cash-eur", &a).await);
        let pending = reward(&app, "cash-manual", &a).await;
        assert_eq!(pending["status"], "pending", "{e}: awaiting approval");
        let credit = id(&reward(&app, "customer-credit", &a).await);
        let by_paypal = id(&reward(&app, "cash-usd", &b).await);
        let nowhere = id(&reward(&app, "cash-usd", &c).await);
        let unknown = uuid::Uuid::now_v7().to_string();

        let cases: Vec<(Value, StatusCode, &str, &str)> = vec![
            (
                json!({"reward_ids": [usd, id(&pending)]}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "reward_not_approved",
                "/reward_ids/1",
            ),
            (json!({"reward_ids": [usd, eur]}), StatusCode::UNPROCESSABLE_ENTITY, "mixed_currencies", "/reward_ids/1"),
            (
                json!({"reward_ids": [usd, by_paypal]}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "mixed_methods",
                "/reward_ids/1",
            ),
            (
                json!({"reward_ids": [usd, unknown]}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_reward",
                "/reward_ids/1",
            ),
            (json!({"reward_ids": [usd, "nope"]}), StatusCode::UNPROCESSABLE_ENTITY, "unknown_reward", "/reward_ids/1"),
            (json!({"reward_ids": [usd, usd]}), StatusCode::UNPROCESSABLE_ENTITY, "duplicate_reward", "/reward_ids/1"),
            (json!({"reward_ids": [credit]}), StatusCode::UNPROCESSABLE_ENTITY, "reward_not_cash", "/reward_ids/0"),
            (json!({"reward_ids": [nowhere]}), StatusCode::UNPROCESSABLE_ENTITY, "no_payout_details", "/reward_ids/0"),
            (json!({"reward_ids": []}), StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", "/reward_ids"),
            (json!({}), StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", "/reward_ids"),
            (
                json!({"reward_ids": [usd], "method": "paypal"}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                "/reward_ids",
            ),
            (
                json!({"method": "cheque", "currency": "USD"}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                "/method",
            ),
            (
                json!({"method": "paypal", "currency": "usd"}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                "/currency",
            ),
            (
                json!({"method": "paypal", "currency": "USD", "min_amount": {"amount_minor": 1, "currency": "EUR"}}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                "/min_amount/currency",
            ),
        ];
        for (body, status, code, pointer) in cases {
            let res = create(&app, body.clone()).await;
            let p = expect_problem(e, res, status, code).await;
            assert_eq!(pointers(&p), [pointer], "{e}: {body}");
        }
        assert_eq!(count_batches(&app).await, 0, "{e}: no batch was made");

        // Already in an open batch.
        let open = batch_of(&app, &[&usd]).await;
        let res = create(&app, json!({"reward_ids": [usd2, usd]})).await;
        let p = expect_problem(e, res, StatusCode::CONFLICT, "reward_in_open_batch").await;
        assert_eq!(pointers(&p), ["/reward_ids/1"], "{e}");
        assert!(p["detail"].as_str().unwrap().contains(&id(&open)), "{e}: names the batch: {p}");

        // Overflowing sums (amounts the programs cannot make, set directly).
        let big = [id(&reward(&app, "cash-usd", &a).await), id(&reward(&app, "cash-usd", &a).await)];
        for r in &big {
            force_amount(&app, r, i64::MAX / 2 + 1).await;
        }
        let res = create(&app, json!({"reward_ids": big})).await;
        let p = expect_problem(e, res, StatusCode::UNPROCESSABLE_ENTITY, "amount_overflow").await;
        assert_eq!(pointers(&p), ["/reward_ids/1"], "{e}");
        let res = create(&app, json!({"method": "bank_transfer", "currency": "USD"})).await;
        expect_problem(e, res, StatusCode::UNPROCESSABLE_ENTITY, "amount_overflow").await;

        // Nothing changed: one batch, every reward where it was.
        assert_eq!(count_batches(&app).await, 1, "{e}");
        for r in [&usd2, &eur, &credit, &by_paypal, &nowhere, &big[0], &big[1]] {
            assert_eq!(get_reward(&app, r).await["status"], "approved", "{e}");
        }
        assert_eq!(get_reward(&app, &id(&pending)).await["status"], "pending", "{e}");

        // Marking paid: a reference is needed; unknown batches are 404.
        let res =
            send(&app, Method::POST, &format!("/payouts/{}/paid", id(&open)), json!({"external_reference": ""})).await;
        let p = expect_problem(e, res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
        assert_eq!(pointers(&p), ["/external_reference"], "{e}");
        assert_eq!(get_reward(&app, &usd).await["status"], "approved", "{e}");
        let res = send(
            &app,
            Method::POST,
            &format!("/payouts/{}/paid", uuid::Uuid::now_v7()),
            json!({"external_reference": "x"}),
        )
        .await;
        expect_problem(e, res, StatusCode::NOT_FOUND, "not_found").await;
        let res = app.api_get(&format!("/payouts/{}", uuid::Uuid::now_v7())).await;
        expect_problem(e, res, StatusCode::NOT_FOUND, "not_found").await;
        app.stop().await;
    }
}

#[tokio::test]
async fn payout_details_are_checked_and_shown_masked() {
    for db in TestDatabase::all().await {
        let app = spawn(db).await;
        let e = app.engine;
        let a = payee(&app, &["cash-usd"]).await;
        let shown =
            set_details(&app, &a, json!({"method": "bank_transfer", "iban": IBAN_A, "account_holder": "Ada"})).await;
        assert_eq!(shown, json!({"method": "bank_transfer", "destination": "DE…3000", "account_holder": "Ada"}), "{e}");
        let res = app.api_get(&format!("/participants/{}", a.id)).await;
        let p = json_of(&app, res, StatusCode::OK).await;
        assert_eq!(p["payout_details"], shown, "{e}: {p}");
        assert!(!p.to_string().contains("370400440532"), "{e}: never the full IBAN");

        let cases = [
            (
                json!({"method": "bank_transfer", "iban": "DE89370400440532013001", "account_holder": "Ada"}),
                vec!["/iban"],
            ),
            (json!({"method": "bank_transfer", "iban": IBAN_A}), vec!["/account_holder"]),
            (json!({"method": "paypal"}), vec!["/email"]),
            (json!({"method": "paypal", "email": "not an email"}), vec!["/email"]),
            (json!({"method": "paypal", "email": "a@example.org", "iban": IBAN_A}), vec!["/iban"]),
            (json!({"method": "cheque"}), vec!["/method"]),
        ];
        for (body, want) in cases {
            let res = send(&app, Method::PUT, &format!("/participants/{}/payout-details", a.id), body.clone()).await;
            let problem = expect_problem(e, res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
            assert_eq!(pointers(&problem), want, "{e}: {body}");
        }
        let res = app.api_get(&format!("/participants/{}", a.id)).await;
        assert_eq!(json_of(&app, res, StatusCode::OK).await["payout_details"], shown, "{e}: unchanged");
        let res = send(
            &app,
            Method::PUT,
            &format!("/participants/{}/payout-details", uuid::Uuid::now_v7()),
            json!({"method": "paypal", "email": "a@example.org"}),
        )
        .await;
        expect_problem(e, res, StatusCode::NOT_FOUND, "not_found").await;
        // Replacing them.
        let shown = set_details(&app, &a, json!({"method": "paypal", "email": "ada@example.org"})).await;
        assert_eq!(shown["destination"], "a***@example.org", "{e}");
        app.stop().await;
    }
}

#[tokio::test]
async fn gift_cards_wait_in_a_queue_until_their_card_is_entered() {
    for db in TestDatabase::all().await {
        let app = spawn(db).await;
        let e = app.engine;
        let a = payee(&app, &["gift-auto", "cash-usd"]).await;
        let card = id(&reward(&app, "gift-auto", &a).await);
        let cash = id(&reward(&app, "cash-usd", &a).await);

        let res = app.api_get("/fulfilment/gift-cards").await;
        let queue = json_of(&app, res, StatusCode::OK).await;
        let items = queue["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{e}: {queue}");
        assert_eq!(items[0]["reward_id"], card.as_str(), "{e}");
        assert_eq!(items[0]["amount"], json!({"amount_minor": 2500, "currency": "USD"}), "{e}");
        assert_eq!(items[0]["program"], "gift-auto", "{e}");
        let rows = csv_of(&app, "/fulfilment/gift-cards?format=csv").await;
        assert_eq!(rows.len(), 1, "{e}");
        assert_eq!((rows[0]["reward_id"].as_str(), rows[0]["amount"].as_str()), (card.as_str(), "25.00"), "{e}");

        // Bad input first: nothing changes.
        let res = send(&app, Method::POST, &format!("/rewards/{card}/fulfil"), json!({"card_reference": ""})).await;
        let p = expect_problem(e, res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
        assert_eq!(pointers(&p), ["/card_reference"], "{e}");
        let res = send(&app, Method::POST, &format!("/rewards/{cash}/fulfil"), json!({"card_reference": "X"})).await;
        expect_problem(e, res, StatusCode::CONFLICT, "wrong_reward_kind").await;
        assert_eq!(get_reward(&app, &cash).await["status"], "approved", "{e}");
        let res = app.api_get("/fulfilment/gift-cards?format=xml").await;
        let p = expect_problem(e, res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_query").await;
        assert_eq!(pointers(&p), ["/format"], "{e}");

        let path = format!("/rewards/{card}/fulfil");
        let res = send(&app, Method::POST, &path, json!({"card_reference": "AMZ-123"})).await;
        let done = json_of(&app, res, StatusCode::OK).await;
        assert_eq!(done["status"], "paid", "{e}");
        assert_eq!(get_reward(&app, &card).await["status"], "paid", "{e}");
        let events = events_of(&app, &card).await;
        assert_eq!(events.last().map(|l| (l.1.as_str(), l.2.as_str())), Some(("paid", "api-key:tests")), "{e}");
        let res = app.api_get("/fulfilment/gift-cards").await;
        assert_eq!(json_of(&app, res, StatusCode::OK).await["items"], json!([]), "{e}");
        // The same reference again answers the same; another is refused.
        let res = send(&app, Method::POST, &path, json!({"card_reference": "AMZ-123"})).await;
        assert_eq!(json_of(&app, res, StatusCode::OK).await, done, "{e}");
        let res = send(&app, Method::POST, &path, json!({"card_reference": "AMZ-999"})).await;
        expect_problem(e, res, StatusCode::CONFLICT, "already_fulfilled").await;
        assert_eq!(events_of(&app, &card).await.len(), events.len(), "{e}: no new event");

        // A gift card awaiting approval is not fulfilled.
        let agent = payee(&app, &["agent-gift-card"]).await;
        let waiting = id(&reward(&app, "agent-gift-card", &agent).await);
        let res = send(&app, Method::POST, &format!("/rewards/{waiting}/fulfil"), json!({"card_reference": "X"})).await;
        expect_problem(e, res, StatusCode::CONFLICT, "reward_not_approved").await;
        assert_eq!(get_reward(&app, &waiting).await["status"], "pending", "{e}");
        app.stop().await;
    }
}

#[tokio::test]
async fn credits_and_plan_upgrades_are_handed_to_billing_exactly_once() {
    for db in TestDatabase::all().await {
        let app = spawn(db).await;
        let e = app.engine;
        let a = payee(&app, &["customer-credit", "double-sided"]).await;
        let credit = id(&reward(&app, "customer-credit", &a).await);
        let upgrade = reward(&app, "double-sided", &a).await;
        assert_eq!(upgrade["kind"], "plan_upgrade", "{e}");
        let res = app.api_get(&format!("/rewards?referral={}", upgrade["referral_id"].as_str().unwrap())).await;
        let page = json_of(&app, res, StatusCode::OK).await;
        let welcome = page["items"].as_array().unwrap().iter().find(|r| r["beneficiary"] == "referee").unwrap().clone();
        // One applied before any hand-over is never handed over.
        let early = id(&reward(&app, "customer-credit", &a).await);
        let res = send(&app, Method::POST, &format!("/rewards/{early}/applied"), json!({})).await;
        assert_eq!(json_of(&app, res, StatusCode::OK).await["status"], "paid", "{e}");

        // Twice (and the server's own task may run too): one row per reward.
        let now = jiff::Timestamp::now();
        vouch_server::fulfilment::hand_over_all(&app.store, now).await.unwrap();
        vouch_server::fulfilment::hand_over_all(&app.store, now).await.unwrap();
        // The mail delivery leaves billing rows alone: pending, not dead.
        let mailer = vouch_server::mail::Mailer::from_config(&{
            let mut c = vouch_server::ServerConfig::new(url::Url::parse("http://localhost/").unwrap());
            c.mailbox_dir = app.mailbox.path().to_path_buf();
            c
        });
        vouch_server::mail::deliver_due(&app.store, &mailer, now).await.unwrap();
        let rows: Vec<_> =
            app.store.outbox_items(None).await.unwrap().into_iter().filter(|i| i.kind == "billing").collect();
        assert_eq!(rows.len(), 3, "{e}: {rows:?}");
        assert!(
            rows.iter().all(|r| r.status == vouch_store::OutboxStatus::Pending && r.attempts == 0),
            "{e}: {rows:?}"
        );
        let of = |reward: &str| rows.iter().find(|r| r.payload["reward_id"] == reward).expect("a row").payload.clone();
        let p = of(&credit);
        assert_eq!((p["type"].as_str(), p["beneficiary"].as_str()), (Some("credit"), Some("referrer")), "{e}: {p}");
        assert_eq!(p["amount"], json!({"amount_minor": 10_000, "currency": "USD"}), "{e}: {p}");
        assert_eq!(p["recipient"]["participant_id"], a.id.as_str(), "{e}: {p}");
        let p = of(&id(&upgrade));
        assert_eq!((p["plan"].as_str(), p["months"].as_i64()), (Some("premium"), Some(3)), "{e}: {p}");
        let p = of(&id(&welcome));
        assert_eq!(p["beneficiary"], "referee", "{e}: {p}");
        assert_eq!(p["amount"], json!({"amount_minor": 10_000, "currency": "USD"}), "{e}: {p}");
        assert!(p["recipient"]["email"].as_str().is_some_and(|m| m.contains('@')), "{e}: the referee: {p}");

        // Applied: paid; the same again answers the same; a cash reward is refused.
        let path = format!("/rewards/{credit}/applied");
        let res = send(&app, Method::POST, &path, json!({"reference": "INV-42"})).await;
        let applied = json_of(&app, res, StatusCode::OK).await;
        assert_eq!(applied["status"], "paid", "{e}");
        let res = send(&app, Method::POST, &path, json!({"reference": "INV-42"})).await;
        assert_eq!(json_of(&app, res, StatusCode::OK).await, applied, "{e}");
        let res = send(&app, Method::POST, &path, json!({"reference": "INV-43"})).await;
        expect_problem(e, res, StatusCode::CONFLICT, "already_fulfilled").await;
        let cash_payee = payee(&app, &["cash-usd"]).await;
        let cash = id(&reward(&app, "cash-usd", &cash_payee).await);
        let res = send(&app, Method::POST, &format!("/rewards/{cash}/applied"), json!({})).await;
        expect_problem(e, res, StatusCode::CONFLICT, "wrong_reward_kind").await;
        assert_eq!(get_reward(&app, &cash).await["status"], "approved", "{e}");
        vouch_server::fulfilment::hand_over_all(&app.store, now).await.unwrap();
        let billing = app.store.outbox_items(None).await.unwrap().into_iter().filter(|i| i.kind == "billing").count();
        assert_eq!(billing, 3, "{e}: nothing new");
        app.stop().await;
    }
}

#[tokio::test]
async fn the_payee_report_sums_each_payees_paid_rewards_in_a_year() {
    for db in TestDatabase::all().await {
        let app = spawn(db).await;
        let e = app.engine;
        let (a, b) = (payee(&app, &["cash-usd", "cash-eur"]).await, payee(&app, &["cash-usd"]).await);
        bank(&app, &a, IBAN_A).await;
        bank(&app, &b, IBAN_B).await;
        let ids = [
            id(&reward(&app, "cash-usd", &a).await),
            id(&reward(&app, "cash-usd", &a).await),
            id(&reward(&app, "cash-usd", &b).await),
        ];
        let eur = id(&reward(&app, "cash-eur", &a).await);
        let unpaid = id(&reward(&app, "cash-usd", &b).await);
        for batch in [batch_of(&app, &[&ids[0], &ids[1], &ids[2]]).await, batch_of(&app, &[&eur]).await] {
            let res =
                send(&app, Method::POST, &format!("/payouts/{}/paid", id(&batch)), json!({"external_reference": "R"}))
                    .await;
            json_of(&app, res, StatusCode::OK).await;
        }
        assert_eq!(get_reward(&app, &unpaid).await["status"], "approved", "{e}");
        let year = jiff::Timestamp::now().to_zoned_datetime(jiff::tz::TimeZone::UTC).year();
        let rows = csv_of(&app, &format!("/reports/payees?year={year}")).await;
        let find = |who: &Payee, currency: &str| {
            rows.iter().find(|r| r["participant_id"] == who.id && r["currency"] == currency).cloned()
        };
        let a_usd = find(&a, "USD").expect("A in USD");
        assert_eq!(
            (a_usd["paid_minor"].as_str(), a_usd["paid"].as_str(), a_usd["rewards"].as_str()),
            ("30000", "300.00", "2")
        );
        assert_eq!(find(&a, "EUR").expect("A in EUR")["paid_minor"], "8000", "{e}");
        assert_eq!(find(&b, "USD").expect("B")["paid_minor"], "15000", "{e}: the unpaid one left out");
        assert_eq!(rows.len(), 3, "{e}: {rows:?}");
        assert!(csv_of(&app, &format!("/reports/payees?year={}", year - 1)).await.is_empty(), "{e}");
        let res = app.api_get("/reports/payees").await;
        let p = expect_problem(e, res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_query").await;
        assert_eq!(pointers(&p), ["/year"], "{e}");
        app.stop().await;
    }
}

/// Runs a statement on the app's database; the error's text if it fails.
async fn exec(app: &TestApp, sql: &str) -> Result<u64, String> {
    let sql = sqlx::AssertSqlSafe(sql.to_string());
    match app.database() {
        DatabaseConfig::Sqlite { dir } => {
            let pool =
                sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.join("vouch.db").display())).await.unwrap();
            let done = sqlx::query(sql).execute(&pool).await.map(|r| r.rows_affected()).map_err(|e| e.to_string());
            pool.close().await;
            done
        }
        DatabaseConfig::Postgres { url, .. } => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            let done = sqlx::query(sql).execute(&pool).await.map(|r| r.rows_affected()).map_err(|e| e.to_string());
            pool.close().await;
            done
        }
    }
}

#[tokio::test]
async fn the_schema_keeps_a_reward_in_one_open_batch_and_amounts_whole() {
    for db in TestDatabase::all().await {
        let app = spawn(db).await;
        let e = app.engine;
        let a = payee(&app, &["cash-usd"]).await;
        bank(&app, &a, IBAN_A).await;
        let (r, r2) = (id(&reward(&app, "cash-usd", &a).await), id(&reward(&app, "cash-usd", &a).await));
        let batch = batch_of(&app, &[&r]).await;
        let other = batch_of(&app, &[&r2]).await;
        let (item, item2) = (id(item_of(&batch, &a)), id(item_of(&other, &a)));
        let uuid = |u: &str| match e {
            "sqlite" => format!("X'{}'", u.replace('-', "")),
            _ => format!("'{u}'"),
        };
        // The first batch's reward linked to the second batch too, open (as a
        // racing creation would write it): the partial unique index refuses.
        let second = format!(
            "INSERT INTO payout_item_rewards (item_id, reward_id, batch_id, amount_minor, state)
             VALUES ({}, {}, {}, 15000, 'open')",
            uuid(&item2),
            uuid(&r),
            uuid(&id(&other))
        );
        let refused = exec(&app, &second).await.expect_err("a second open link is refused");
        assert!(refused.to_lowercase().contains("unique"), "{e}: {refused}");
        assert!(refused.contains("payout_item_rewards"), "{e}: {refused}");
        // A failed link does not count: a returned reward can be batched again.
        let failed = format!("UPDATE payout_item_rewards SET state = 'failed' WHERE item_id = {}", uuid(&item));
        assert_eq!(exec(&app, &failed).await, Ok(1), "{e}");
        assert_eq!(exec(&app, &second).await, Ok(1), "{e}");
        // Amounts are whole minor units.
        let fraction = format!("UPDATE payout_items SET amount_minor = 1.5 WHERE id = {}", uuid(&item));
        let refused = exec(&app, &fraction).await;
        let stored = scalar(&app, &format!("SELECT amount_minor FROM payout_items WHERE id = {}", uuid(&item))).await;
        assert!(refused.is_err() || stored == 2, "{e}: {refused:?}, stored {stored}");
        assert_eq!(stored, if refused.is_err() { 15_000 } else { 2 }, "{e}");
        if e == "sqlite" {
            assert!(refused.is_err(), "{e}: SQLite refuses a fraction");
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn a_late_churn_does_not_void_a_reward_in_an_open_batch_unseen() {
    for db in TestDatabase::all().await {
        let app = spawn(db).await;
        let e = app.engine;
        let a = payee(&app, &["cash-held"]).await;
        bank(&app, &a, IBAN_A).await;
        let held = reward(&app, "cash-held", &a).await;
        assert_eq!(held["status"], "pending", "{e}: on hold until {}", held["release_at"]);
        vouch_server::holds::release_all_due(&app.store, jiff::Timestamp::now()).await.unwrap();
        let r = id(&held);
        assert_eq!(get_reward(&app, &r).await["status"], "approved", "{e}");
        let batch = batch_of(&app, &[&r]).await;

        // A churn dated before the hold ended arrives late.
        let churn = json!({"type": "churned", "program": "cash-held", "occurred_at": "2026-03-20T00:00:00Z",
            "referral_id": held["referral_id"]});
        let res = app.api(Method::POST, "/events").header("Idempotency-Key", uniq()).json(&churn).send().await.unwrap();
        assert!(res.status().is_success(), "{e}: {}", res.text().await.unwrap_or_default());
        assert_eq!(get_reward(&app, &r).await["status"], "approved", "{e}: still in the batch");
        let events = events_of(&app, &r).await;
        let last = events.last().unwrap();
        assert_eq!((last.0.as_deref(), last.1.as_str()), (Some("approved"), "approved"), "{e}: {events:?}");
        let res = app.api_get(&format!("/payouts/{}", id(&batch))).await;
        assert_eq!(json_of(&app, res, StatusCode::OK).await, batch, "{e}: the batch is as it was");
        let note = scalar(
            &app,
            "SELECT COUNT(*) FROM reward_events WHERE status_to = 'approved' AND reason LIKE 'not voided: in open payout batch%'",
        )
        .await;
        assert_eq!(note, 1, "{e}: recorded");
        app.stop().await;
    }
}

#[tokio::test]
async fn a_batch_holding_a_reward_voided_meanwhile_is_not_paid_until_its_item_fails() {
    for db in TestDatabase::all().await {
        let app = spawn(db).await;
        let e = app.engine;
        let (a, b) = banked_payees(&app, "cash-usd").await;
        let (a1, b1) = (id(&reward(&app, "cash-usd", &a).await), id(&reward(&app, "cash-usd", &b).await));
        let batch = batch_of(&app, &[&a1, &b1]).await;
        // Finance voids one by hand while the batch is open.
        let res = send(&app, Method::POST, &format!("/rewards/{a1}/void"), json!({"reason": "duplicate"})).await;
        assert!(res.status().is_success(), "{e}: {}", res.text().await.unwrap_or_default());

        let path = format!("/payouts/{}/paid", id(&batch));
        let res = send(&app, Method::POST, &path, json!({"external_reference": "R"})).await;
        let p = expect_problem(e, res, StatusCode::CONFLICT, "reward_not_approved").await;
        assert!(p["detail"].as_str().unwrap().contains(&a1), "{e}: names the reward: {p}");
        assert_eq!(get_reward(&app, &b1).await["status"], "approved", "{e}: nothing paid");
        let res = app.api_get(&format!("/payouts/{}", id(&batch))).await;
        assert_eq!(json_of(&app, res, StatusCode::OK).await, batch, "{e}: the batch is as it was");

        let item = id(item_of(&batch, &a));
        let res = send(
            &app,
            Method::POST,
            &format!("/payouts/{}/items/{item}/failed", id(&batch)),
            json!({"reason": "voided"}),
        )
        .await;
        json_of(&app, res, StatusCode::OK).await;
        let res = send(&app, Method::POST, &path, json!({"external_reference": "R"})).await;
        let paid = json_of(&app, res, StatusCode::OK).await;
        assert_eq!(paid["total"]["amount_minor"], 15_000, "{e}: {paid}");
        assert_eq!(get_reward(&app, &b1).await["status"], "paid", "{e}");
        assert_eq!(get_reward(&app, &a1).await["status"], "voided", "{e}");
        assert_paid_total_matches_items(&app).await;
        app.stop().await;
    }
}

// ---- adjustment entries settled through payouts -----------------------------

/// Per-technician cash like program C, without a hold (approved at once), and
/// taken back on a churn or refund after payment.
const TIERED: &str = r#"
slug = "tiered-cash"
name = "Tiered cash, clawed back"
currency = "USD"
timezone = "UTC"
landing_url = "https://example.com/referred"
eligible = ["customer"]
business = true

[[rewards]]
id = "technician-cash"
beneficiary = "referrer"
trigger = "won"
kind = "cash"
per_unit = "technician"
period = "referrer_year"
tier_policy = "whole_at_start"
tiers = [ { up_to = 30, each = 100_00 }, { up_to = 60, each = 150_00 }, { each = 200_00 } ]
approval = "auto"
clawback = true
"#;

/// Two referrers of `slug`, paid by bank transfer (A and B).
async fn banked_payees(app: &TestApp, slug: &'static str) -> (Payee, Payee) {
    let (a, b) = (payee(app, &[slug]).await, payee(app, &[slug]).await);
    bank(app, &a, IBAN_A).await;
    bank(app, &b, IBAN_B).await;
    (a, b)
}

/// A server with the tiered program and two of its referrers paid by bank transfer.
async fn tiered_payees(db: TestDatabase) -> (TestApp, Payee, Payee) {
    let app = spawn(db).await;
    apply(&app, TIERED).await;
    let (a, b) = banked_payees(&app, "tiered-cash").await;
    (app, a, b)
}

/// A won referral of `who` in the tiered program: (referral id, its reward).
async fn tiered_won(app: &TestApp, slug: &str, who: &Payee, units: u32, contract_date: &str) -> (String, Value) {
    let body = json!({"referrer_code": who.codes[slug], "prospect": {"email": company_email("bob")},
        "consent": true});
    let res = send(app, Method::POST, &format!("/programs/{slug}/leads"), body).await;
    let referral = id(&json_of(app, res, StatusCode::CREATED).await);
    let won = json!({"type": "won", "program": slug, "occurred_at": format!("{contract_date}T15:00:00Z"),
        "referral_id": referral, "contract_date": contract_date, "units": units});
    let res = app.api(Method::POST, "/events").header("Idempotency-Key", uniq()).json(&won).send().await.unwrap();
    assert!(res.status().is_success(), "{}: {}", app.engine, res.text().await.unwrap_or_default());
    let res = app.api_get(&format!("/rewards?referral={referral}")).await;
    let reward = json_of(app, res, StatusCode::OK).await["items"][0].clone();
    assert_eq!(reward["status"], "approved", "{}: {reward}", app.engine);
    (referral, reward)
}

async fn refund(app: &TestApp, slug: &str, referral: &str, occurred_at: &str) {
    let body = json!({"type": "refunded", "program": slug, "occurred_at": occurred_at,
        "referral_id": referral});
    let res = app.api(Method::POST, "/events").header("Idempotency-Key", uniq()).json(&body).send().await.unwrap();
    assert!(res.status().is_success(), "{}: {}", app.engine, res.text().await.unwrap_or_default());
}

async fn pay(app: &TestApp, batch: &Value) -> Value {
    let path = format!("/payouts/{}/paid", id(batch));
    let res = send(app, Method::POST, &path, json!({"external_reference": format!("R-{}", uniq())})).await;
    json_of(app, res, StatusCode::OK).await
}

async fn by_bank(app: &TestApp) -> reqwest::Response {
    create(app, json!({"method": "bank_transfer", "currency": "USD"})).await
}

/// A participant's USD balance: (pending, approved, paid, adjustments) in minor units.
async fn balance(app: &TestApp, who: &Payee) -> (i64, i64, i64, i64) {
    let res = app.api_get(&format!("/participants/{}", who.id)).await;
    let p = json_of(app, res, StatusCode::OK).await;
    let usd = p["rewards"].as_array().unwrap().iter().find(|b| b["currency"] == "USD").expect("a USD balance");
    let n = |k: &str| usd[k].as_i64().unwrap();
    (n("pending_minor"), n("approved_minor"), n("paid_minor"), n("adjustments_minor"))
}

/// The adjustments column of the liability report's USD total (0 without one).
async fn liability_adjustments(app: &TestApp) -> i64 {
    let res = app.api_get("/reports/liability").await;
    let report = json_of(app, res, StatusCode::OK).await;
    let totals = report["totals"].as_array().unwrap();
    totals
        .iter()
        .find(|l| l["currency"] == "USD" || l["adjustments"]["currency"] == "USD")
        .map_or(0, |l| l["adjustments"]["amount_minor"].as_i64().unwrap())
}

/// The only adjustment entry of a reward.
async fn only_entry(app: &TestApp, reward: &str) -> Value {
    let r = get_reward(app, reward).await;
    let entries = r["adjustments"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{}: {r}", app.engine);
    entries[0].clone()
}

/// Design brief, program C: 10 technicians (1 March), 25 (1 May), then a late
/// `won` of 30 dated 1 April: the approved 25 come to $150 each, not $100, so
/// their reward gets a +$1,250 re-pricing entry. Returns the three rewards'
/// ids in contract-date order of the first two, then the late one, and the entry.
async fn repriced(app: &TestApp, who: &Payee) -> ([String; 3], Value) {
    let (_, first) = tiered_won(app, "tiered-cash", who, 10, "2026-03-01").await;
    let (_, second) = tiered_won(app, "tiered-cash", who, 25, "2026-05-01").await;
    let (_, late) = tiered_won(app, "tiered-cash", who, 30, "2026-04-01").await;
    let entry = only_entry(app, &id(&second)).await;
    assert_eq!((entry["kind"].as_str(), entry["amount"]["amount_minor"].as_i64()), (Some("reprice"), Some(125_000)));
    ([id(&first), id(&second), id(&late)], entry)
}

fn ids_of(v: &Value) -> Vec<String> {
    let mut ids: Vec<String> = v.as_array().unwrap().iter().map(|i| i.as_str().unwrap().to_string()).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_repriced_approved_rewards_entry_is_paid_in_the_next_batch_and_never_again() {
    for db in TestDatabase::all().await {
        let app = spawn(db).await;
        apply(&app, TIERED).await;
        let e = app.engine;
        let a = payee(&app, &["tiered-cash"]).await;
        bank(&app, &a, IBAN_A).await;
        let (rewards, entry) = repriced(&app, &a).await;
        assert_eq!(balance(&app, &a).await, (0, 6_500_00, 0, 1_250_00), "{e}: owed 7,750 in all");

        let res = by_bank(&app).await;
        let batch = json_of(&app, res, StatusCode::CREATED).await;
        let item = item_of(&batch, &a);
        assert_eq!(item["amount"], json!({"amount_minor": 7_750_00, "currency": "USD"}), "{e}: {batch}");
        assert_eq!(item["adjustments"], json!({"amount_minor": 1_250_00, "currency": "USD"}), "{e}");
        assert_eq!(item["adjustment_ids"], json!([id(&entry)]), "{e}");
        assert_eq!(
            ids_of(&item["reward_ids"]),
            {
                let mut r = rewards.to_vec();
                r.sort();
                r
            },
            "{e}"
        );
        assert_eq!(batch["total"]["amount_minor"], 7_750_00, "{e}");
        let rows = csv_of(&app, &format!("/payouts/{}/export", id(&batch))).await;
        assert_eq!(
            (rows[0]["amount_minor"].as_str(), rows[0]["amount"].as_str(), rows[0]["adjustments"].as_str()),
            ("775000", "7750.00", "1250.00"),
            "{e}: {rows:?}"
        );
        assert_eq!(rows[0]["adjustment_ids"], id(&entry), "{e}");
        // While the batch is open the entry is in it: another batch does not take it.
        let before = count_batches(&app).await;
        let res = by_bank(&app).await;
        expect_problem(e, res, StatusCode::UNPROCESSABLE_ENTITY, "nothing_to_pay").await;
        assert_eq!(count_batches(&app).await, before, "{e}");

        pay(&app, &batch).await;
        assert_eq!(balance(&app, &a).await, (0, 0, 7_750_00, 0), "{e}: the entry is paid, no longer owed");
        assert_paid_total_matches_items(&app).await;

        // A later reward is paid alone: the entry is not paid twice.
        let (_, later) = tiered_won(&app, "tiered-cash", &a, 5, "2026-06-01").await;
        let res = by_bank(&app).await;
        let next = json_of(&app, res, StatusCode::CREATED).await;
        let item = item_of(&next, &a);
        assert_eq!((&item["amount"], &item["adjustment_ids"]), (&later["amount"], &json!([])), "{e}: {next}");
        assert_eq!(item["adjustments"]["amount_minor"], 0, "{e}");
        pay(&app, &next).await;
        assert_paid_total_matches_items(&app).await;
        app.stop().await;
    }
}

#[tokio::test]
async fn a_clawback_after_payment_is_carried_until_it_can_be_taken_from_the_payees_next_item() {
    for db in TestDatabase::all().await {
        let (app, a, b) = tiered_payees(db).await;
        let e = app.engine;
        let (referral, first) = tiered_won(&app, "tiered-cash", &a, 10, "2026-03-01").await;
        pay(&app, &batch_of(&app, &[&id(&first)]).await).await;
        refund(&app, "tiered-cash", &referral, "2026-09-01T00:00:00Z").await;
        let clawback = only_entry(&app, &id(&first)).await;
        assert_eq!(
            (clawback["kind"].as_str(), clawback["amount"]["amount_minor"].as_i64()),
            (Some("clawback"), Some(-1_000_00))
        );
        assert_eq!(balance(&app, &a).await, (0, 0, 1_000_00, -1_000_00), "{e}: owes 1,000");
        assert_eq!(liability_adjustments(&app).await, -1_000_00, "{e}: the debt is still to be recovered");

        // A's only entry is the debt: B is paid, A gets no item and still owes.
        let (_, b1) = tiered_won(&app, "tiered-cash", &b, 3, "2026-03-01").await;
        let res = by_bank(&app).await;
        let batch = json_of(&app, res, StatusCode::CREATED).await;
        let items = batch["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{e}: {batch}");
        assert_eq!(
            (items[0]["participant_id"].as_str(), &items[0]["reward_ids"]),
            (Some(b.id.as_str()), &json!([id(&b1)]))
        );
        pay(&app, &batch).await;
        assert_eq!(balance(&app, &a).await, (0, 0, 1_000_00, -1_000_00), "{e}: the debt carries");

        // A new reward of exactly the debt: chosen by id, refused by name, nothing changed.
        let (_, second) = tiered_won(&app, "tiered-cash", &a, 10, "2026-06-01").await;
        assert_eq!(second["amount"]["amount_minor"], 1_000_00, "{e}");
        let before = count_batches(&app).await;
        let res = create(&app, json!({"reward_ids": [id(&second)]})).await;
        let p = expect_problem(e, res, StatusCode::UNPROCESSABLE_ENTITY, "net_not_positive").await;
        assert_eq!(pointers(&p), ["/reward_ids/0"], "{e}");
        assert!(p["detail"].as_str().unwrap().contains(&a.id), "{e}: names the participant: {p}");
        // By method, A nets to zero: no item, nothing to pay.
        let res = by_bank(&app).await;
        expect_problem(e, res, StatusCode::UNPROCESSABLE_ENTITY, "nothing_to_pay").await;
        assert_eq!(count_batches(&app).await, before, "{e}: no batch");
        assert_eq!(get_reward(&app, &id(&second)).await["status"], "approved", "{e}");
        assert_eq!(balance(&app, &a).await, (0, 1_000_00, 1_000_00, -1_000_00), "{e}: as it was");

        // One more reward: the next item takes the debt back from both.
        let (_, third) = tiered_won(&app, "tiered-cash", &a, 10, "2026-07-01").await;
        let res = by_bank(&app).await;
        let next = json_of(&app, res, StatusCode::CREATED).await;
        let item = item_of(&next, &a);
        assert_eq!(item["amount"]["amount_minor"], 1_000_00, "{e}: 1,000 + 1,000 - 1,000: {next}");
        assert_eq!(
            (&item["adjustment_ids"], item["adjustments"]["amount_minor"].as_i64()),
            (&json!([id(&clawback)]), Some(-1_000_00))
        );
        let mut want = vec![id(&second), id(&third)];
        want.sort();
        assert_eq!(ids_of(&item["reward_ids"]), want, "{e}");
        pay(&app, &next).await;
        assert_eq!(balance(&app, &a).await, (0, 0, 2_000_00, 0), "{e}: 3,000 paid, 1,000 taken back");
        assert_eq!(liability_adjustments(&app).await, 0, "{e}: recovered, no longer a liability");
        assert_paid_total_matches_items(&app).await;

        // The tax report counts what was paid, net of the settled clawback.
        let year = jiff::Timestamp::now().to_zoned_datetime(jiff::tz::TimeZone::UTC).year();
        let rows = csv_of(&app, &format!("/reports/payees?year={year}")).await;
        let row = rows.iter().find(|r| r["participant_id"] == a.id).expect("A's row");
        assert_eq!(
            (row["paid_minor"].as_str(), row["rewards"].as_str(), row["adjustments"].as_str()),
            ("200000", "3", "1"),
            "{e}: {rows:?}"
        );
        let row = rows.iter().find(|r| r["participant_id"] == b.id).expect("B's row");
        assert_eq!((row["paid_minor"].as_str(), row["adjustments"].as_str()), ("30000", "0"), "{e}");
        app.stop().await;
    }
}

#[tokio::test]
async fn a_failed_item_frees_its_entries_for_the_next_batch() {
    for db in TestDatabase::all().await {
        let app = spawn(db).await;
        apply(&app, TIERED).await;
        let e = app.engine;
        let a = payee(&app, &["tiered-cash"]).await;
        bank(&app, &a, IBAN_A).await;
        let ([_, second, _], entry) = repriced(&app, &a).await;

        // The re-priced reward chosen alone brings its entry: 2,500 + 1,250.
        let batch = batch_of(&app, &[&second]).await;
        let item = item_of(&batch, &a);
        assert_eq!(
            (item["amount"]["amount_minor"].as_i64(), &item["adjustment_ids"]),
            (Some(3_750_00), &json!([id(&entry)]))
        );
        let path = format!("/payouts/{}/items/{}/failed", id(&batch), id(item));
        let res = send(&app, Method::POST, &path, json!({"reason": "IBAN closed"})).await;
        let failed = json_of(&app, res, StatusCode::OK).await;
        assert_eq!(
            item_of(&failed, &a)["adjustment_ids"],
            json!([id(&entry)]),
            "{e}: the item still shows what it held"
        );
        assert_eq!(balance(&app, &a).await.3, 1_250_00, "{e}: owed again");

        // Batched again, paid, then returned by the bank: owed once more.
        let again = batch_of(&app, &[&second]).await;
        assert_eq!(item_of(&again, &a)["adjustment_ids"], json!([id(&entry)]), "{e}: {again}");
        pay(&app, &again).await;
        assert_eq!(balance(&app, &a).await, (0, 4_000_00, 3_750_00, 0), "{e}");
        assert_paid_total_matches_items(&app).await;
        let path = format!("/payouts/{}/items/{}/failed", id(&again), id(item_of(&again, &a)));
        let res = send(&app, Method::POST, &path, json!({"reason": "returned"})).await;
        json_of(&app, res, StatusCode::OK).await;
        assert_eq!(balance(&app, &a).await, (0, 6_500_00, 0, 1_250_00), "{e}: all owed again");
        assert_paid_total_matches_items(&app).await;
        let res = by_bank(&app).await;
        let last = json_of(&app, res, StatusCode::CREATED).await;
        let item = item_of(&last, &a);
        assert_eq!(
            (item["amount"]["amount_minor"].as_i64(), &item["adjustment_ids"]),
            (Some(7_750_00), &json!([id(&entry)]))
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn an_entry_is_settled_by_one_batch_however_many_are_made_at_once() {
    for db in TestDatabase::all().await {
        let (app, a, b) = tiered_payees(db).await;
        let e = app.engine;
        // Both of A's rewards paid, then a late won re-prices the paid one: A is
        // owed the entry and the late reward.
        let (_, first) = tiered_won(&app, "tiered-cash", &a, 10, "2026-03-01").await;
        let (_, second) = tiered_won(&app, "tiered-cash", &a, 25, "2026-05-01").await;
        pay(&app, &batch_of(&app, &[&id(&first), &id(&second)]).await).await;
        let (_, late) = tiered_won(&app, "tiered-cash", &a, 30, "2026-04-01").await;
        let entry = only_entry(&app, &id(&second)).await;
        assert_eq!(entry["amount"]["amount_minor"], 1_250_00, "{e}");
        tiered_won(&app, "tiered-cash", &b, 3, "2026-03-01").await;

        let (one, two) = tokio::join!(by_bank(&app), by_bank(&app));
        let mut holding = 0;
        for res in [one, two] {
            let status = res.status();
            let body: Value = res.json().await.unwrap();
            match status {
                StatusCode::CREATED => {
                    let items = body["items"].as_array().unwrap();
                    let with_entry = items.iter().filter(|i| i["adjustment_ids"] == json!([id(&entry)])).count();
                    holding += with_entry;
                    if with_entry == 1 {
                        let item = item_of(&body, &a);
                        assert_eq!(item["amount"]["amount_minor"], 3_000_00 + 1_250_00, "{e}: {body}");
                        assert_eq!(item["reward_ids"], json!([id(&late)]), "{e}");
                    }
                }
                _ => assert!(
                    ["nothing_to_pay", "adjustment_in_open_batch", "reward_in_open_batch"]
                        .contains(&body["code"].as_str().unwrap_or_default()),
                    "{e}: {status} {body}"
                ),
            }
        }
        assert_eq!(holding, 1, "{e}: the entry is in exactly one batch");
        let links = scalar(&app, "SELECT COUNT(*) FROM payout_item_adjustments WHERE state <> 'failed'").await;
        assert_eq!(links, 1, "{e}");
        // The schema refuses a second open link all the same.
        let uuid = |u: &str| match e {
            "sqlite" => format!("X'{}'", u.replace('-', "")),
            _ => format!("'{u}'"),
        };
        let other_item = scalar(&app, "SELECT COUNT(*) FROM payout_items").await;
        assert!(other_item >= 2, "{e}");
        let second_link = format!(
            "INSERT INTO payout_item_adjustments (item_id, adjustment_id, amount_minor, state)
             SELECT i.id, {}, 125000, 'open' FROM payout_items i
             WHERE i.id NOT IN (SELECT item_id FROM payout_item_adjustments) LIMIT 1",
            uuid(&id(&entry))
        );
        let refused = exec(&app, &second_link).await.expect_err("a second open link is refused");
        assert!(refused.contains("payout_item_adjustments"), "{e}: {refused}");
        app.stop().await;
    }
}

/// The billing rows written so far, by reward and type.
async fn billing_rows(app: &TestApp) -> Vec<Value> {
    let rows = app.store.outbox_items(None).await.unwrap();
    rows.into_iter().filter(|i| i.kind == "billing").map(|i| i.payload).collect()
}

/// The tiered program paying invoice credits instead of cash. Billing hears of
/// a credit's adjustment entries: those made before the credit was handed over
/// travel in it (net), a clawback after it was applied goes as a
/// `credit_adjustment` row of its own, each once.
#[tokio::test]
async fn billing_hears_of_a_credits_adjustments_once_net_or_on_their_own() {
    for db in TestDatabase::all().await {
        let app = spawn(db).await;
        let e = app.engine;
        let slug = "tiered-credit";
        apply(&app, &TIERED.replace("tiered-cash", slug).replace(r#"kind = "cash""#, r#"kind = "credit""#)).await;
        let a = payee(&app, &[slug]).await;
        // 10 (1 Mar), 25 (1 May), then a late 30 (1 Apr): the 25 follow 40 and
        // are re-priced from $2,500 to $3,750 by an entry, before any hand-over.
        let (_, first) = tiered_won(&app, slug, &a, 10, "2026-03-01").await;
        let (second_referral, second) = tiered_won(&app, slug, &a, 25, "2026-05-01").await;
        let (_, late) = tiered_won(&app, slug, &a, 30, "2026-04-01").await;
        let entry = get_reward(&app, &id(&second)).await["adjustments"][0].clone();
        assert_eq!(entry["amount"]["amount_minor"], 1_250_00, "{e}: {entry}");

        let now = jiff::Timestamp::now();
        vouch_server::fulfilment::hand_over_all(&app.store, now).await.unwrap();
        vouch_server::fulfilment::hand_over_all(&app.store, now).await.unwrap();
        let rows = billing_rows(&app).await;
        let of = |reward: &Value| rows.iter().find(|r| r["reward_id"] == reward["id"]).expect("a row").clone();
        assert_eq!(rows.len(), 3, "{e}: {rows:?}");
        assert_eq!(of(&first)["amount"]["amount_minor"], 1_000_00, "{e}");
        assert_eq!(of(&late)["amount"]["amount_minor"], 3_000_00, "{e}");
        let net = of(&second);
        assert_eq!((net["type"].as_str(), &net["amount"]["amount_minor"]), (Some("credit"), &json!(3_750_00)), "{e}");
        assert_eq!(net["adjustment_ids"], json!([entry["id"]]), "{e}: {net}");

        // Applied, then refunded: the clawback is billing's to take back.
        let res = send(&app, Method::POST, &format!("/rewards/{}/applied", id(&second)), json!({})).await;
        assert_eq!(json_of(&app, res, StatusCode::OK).await["status"], "paid", "{e}");
        refund(&app, slug, &second_referral, "2026-09-01T00:00:00Z").await;
        let entries = get_reward(&app, &id(&second)).await["adjustments"].as_array().unwrap().clone();
        let clawback = entries.iter().find(|a| a["kind"] == "clawback").expect("a clawback").clone();
        vouch_server::fulfilment::hand_over_all(&app.store, now).await.unwrap();
        vouch_server::fulfilment::hand_over_all(&app.store, now).await.unwrap();
        let rows = billing_rows(&app).await;
        assert_eq!(rows.len(), 4, "{e}: one more row: {rows:?}");
        let row = rows.iter().find(|r| r["type"] == "credit_adjustment").expect("a credit_adjustment row");
        assert_eq!(row["reward_id"], second["id"], "{e}: {row}");
        assert_eq!(row["adjustment_id"], clawback["id"], "{e}: {row}");
        assert_eq!((row["adjustment_kind"].as_str(), &row["amount"]), (Some("clawback"), &clawback["amount"]), "{e}");
        assert!(clawback["amount"]["amount_minor"].as_i64().unwrap() < 0, "{e}: {clawback}");
        assert_eq!(row["recipient"]["participant_id"], a.id.as_str(), "{e}: {row}");
        app.stop().await;
    }
}

/// Finance voids a credit billing already has: billing is told to take it back,
/// once; a credit voided before any hand-over is never mentioned to billing.
#[tokio::test]
async fn a_credit_voided_after_its_hand_over_is_cancelled_with_billing_once() {
    for db in TestDatabase::all().await {
        let app = spawn(db).await;
        let e = app.engine;
        let a = payee(&app, &["customer-credit"]).await;
        let handed = id(&reward(&app, "customer-credit", &a).await);
        let never = id(&reward(&app, "customer-credit", &a).await);
        let void = |reward: String| {
            let app = &app;
            async move {
                let body = json!({"reason": "the referred customer cancelled within the trial"});
                let res = send(app, Method::POST, &format!("/rewards/{reward}/void"), body).await;
                assert_eq!(json_of(app, res, StatusCode::OK).await["status"], "voided", "{}", app.engine);
            }
        };
        void(never.clone()).await;
        let now = jiff::Timestamp::now();
        vouch_server::fulfilment::hand_over_all(&app.store, now).await.unwrap();
        assert_eq!(billing_rows(&app).await.len(), 1, "{e}: only the approved credit is handed over");

        void(handed.clone()).await;
        vouch_server::fulfilment::hand_over_all(&app.store, now).await.unwrap();
        vouch_server::fulfilment::hand_over_all(&app.store, now).await.unwrap();
        let rows = billing_rows(&app).await;
        assert_eq!(rows.len(), 2, "{e}: one cancellation: {rows:?}");
        let cancel = rows.iter().find(|r| r["type"] == "cancel").expect("a cancel row");
        assert_eq!((cancel["reward_id"].as_str(), cancel["cancels"].as_str()), (Some(handed.as_str()), Some("credit")));
        assert_eq!(cancel["reason"], "the referred customer cancelled within the trial", "{e}: {cancel}");
        assert_eq!(cancel["recipient"]["participant_id"], a.id.as_str(), "{e}: {cancel}");
        assert!(rows.iter().all(|r| r["reward_id"] != never.as_str()), "{e}: {rows:?}");
        app.stop().await;
    }
}
