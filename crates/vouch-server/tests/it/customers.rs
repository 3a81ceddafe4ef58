//! `POST /api/v1/customers`: bulk loads of the customer registry, their
//! idempotence, bad items (pointed at, nothing stored), scopes and size limits.

use reqwest::StatusCode;
use serde_json::{Value, json};
use vouch_domain::api_key::{Area, Scope};
use vouch_domain::customer::KnownBy;
use vouch_store::testing::TestDatabase;

use crate::helpers::{TestApp, expect_problem, pointers};

async fn post_customers(app: &TestApp, body: &Value) -> reqwest::Response {
    app.api(reqwest::Method::POST, "/customers").json(body).send().await.expect("send POST /customers")
}

/// Posts a load that must succeed and returns `(added, already_known)`.
async fn load(app: &TestApp, items: Value) -> (u64, u64) {
    let res = post_customers(app, &json!({ "items": items })).await;
    let status = res.status();
    let text = res.text().await.unwrap_or_default();
    assert_eq!(status, StatusCode::OK, "{}: loading customers: {text}", app.engine);
    let v: Value = serde_json::from_str(&text).expect("answer is JSON");
    let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{}: `{k}` in {v}", app.engine));
    (n("added"), n("already_known"))
}

async fn count(app: &TestApp) -> i64 {
    app.store.count_customers().await.expect("count customers")
}

async fn known(app: &TestApp, email: Option<&str>, domain: Option<&str>, external_id: Option<&str>) -> Option<KnownBy> {
    app.store.is_known_customer(email, domain, external_id).await.expect("is_known_customer")
}

#[tokio::test]
async fn loading_customers_answers_what_was_added_and_makes_them_known() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let items = json!([
            {"email": "Jane.Doe@Acme.com", "domain": "acme.com", "external_id": "cus_001"},
            {"domain": "Globex.example"},
            {"external_id": "crm-42", "email": null, "domain": ""},
            {"email": "bob@initech.example"},
        ]);
        assert_eq!(load(&app, items).await, (4, 0), "{}", app.engine);
        assert_eq!(count(&app).await, 4, "{}", app.engine);
        let e = app.engine;
        assert_eq!(known(&app, Some("jane.doe@acme.com"), None, None).await, Some(KnownBy::Email), "{e}");
        assert_eq!(known(&app, None, Some("globex.example"), None).await, Some(KnownBy::Domain), "{e}");
        assert_eq!(known(&app, None, None, Some("crm-42")).await, Some(KnownBy::ExternalId), "{e}");
        assert_eq!(known(&app, Some("bob@initech.example"), None, None).await, Some(KnownBy::Email), "{e}");
        // An empty list is a load of nothing.
        assert_eq!(load(&app, json!([])).await, (0, 0), "{e}");
        app.stop().await;
    }
}

#[tokio::test]
async fn loading_the_same_customers_again_adds_nothing() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let items = json!([
            {"email": "jane@acme.com", "domain": "acme.com"},
            {"external_id": "cus_2"},
            {"email": "jane@ACME.com"},
        ]);
        assert_eq!(load(&app, items.clone()).await, (2, 1), "{}: a repeat inside the load", app.engine);
        assert_eq!(load(&app, items).await, (0, 3), "{}: the same load again", app.engine);
        // A colleague at a known company still brings a new email.
        let more = json!([{"email": "bob@acme.com", "domain": "www.acme.com"}, {"external_id": "cus_2"}]);
        assert_eq!(load(&app, more).await, (1, 1), "{}", app.engine);
        assert_eq!(count(&app).await, 3, "{}", app.engine);
        app.stop().await;
    }
}

#[tokio::test]
async fn bad_items_are_422_with_a_pointer_each_and_nothing_is_stored() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let body = json!({"items": [
            {"email": "good@example.org"},
            {"domain": "https://acme.com"},
            {"external_id": "ok-1"},
            {"email": "not-an-email", "domain": "acme"},
            {"email": "fine@example.org"},
            {},
            {"email": " ", "domain": "", "external_id": null},
        ]});
        let res = post_customers(&app, &body).await;
        let problem = expect_problem(app.engine, res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
        assert_eq!(
            pointers(&problem),
            ["/items/1/domain", "/items/3/email", "/items/3/domain", "/items/5", "/items/6"],
            "{}: {problem}",
            app.engine
        );
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("/items/3/email") && detail.contains("nothing was stored"), "{}: {detail}", app.engine);
        assert_eq!(count(&app).await, 0, "{}: the good items were not stored either", app.engine);
        app.stop().await;
    }
}

#[tokio::test]
async fn items_of_the_wrong_shape_are_422_with_a_pointer() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        for (body, pointer) in [
            (
                json!({"items": [{"email": "a@example.org"}, {"email": "b@example.org"}, {"email": 42}]}),
                "/items/2/email",
            ),
            (json!({"items": [{"email": "a@example.org", "name": "Ann"}]}), "/items/0/name"),
            (json!({"items": {"email": "a@example.org"}}), "/items"),
            (json!({}), "/items"),
        ] {
            let res = post_customers(&app, &body).await;
            let problem = expect_problem(app.engine, res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
            assert!(
                pointers(&problem).iter().any(|p| p == pointer),
                "{}: {body} should point at {pointer}: {problem}",
                app.engine
            );
        }
        assert_eq!(count(&app).await, 0, "{}", app.engine);
        app.stop().await;
    }
}

#[tokio::test]
async fn loading_customers_needs_the_customers_write_scope() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let body = json!({"items": [{"email": "jane@acme.com"}]});
        let res = app.client.post(app.url("/api/v1/customers")).json(&body).send().await.unwrap();
        expect_problem(app.engine, res, StatusCode::UNAUTHORIZED, "missing_api_key").await;
        for scopes in
            [vec![Scope::read(Area::Customers)], vec![Scope::write(Area::Participants), Scope::write(Area::Events)]]
        {
            let (key, _) =
                vouch_server::api_keys::create(&app.store, "limited", scopes, jiff::Timestamp::now()).await.unwrap();
            let res = app.client.post(app.url("/api/v1/customers")).bearer_auth(&key).json(&body).send().await.unwrap();
            let problem = expect_problem(app.engine, res, StatusCode::FORBIDDEN, "insufficient_scope").await;
            assert!(
                problem["detail"].as_str().unwrap_or_default().contains("customers:write"),
                "{}: names the scope: {problem}",
                app.engine
            );
        }
        assert_eq!(count(&app).await, 0, "{}: refused loads store nothing", app.engine);
        let (key, _) = vouch_server::api_keys::create(
            &app.store,
            "registry loader",
            vec![Scope::write(Area::Customers)],
            jiff::Timestamp::now(),
        )
        .await
        .unwrap();
        let res = app.client.post(app.url("/api/v1/customers")).bearer_auth(&key).json(&body).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{}: customers:write loads", app.engine);
        assert_eq!(count(&app).await, 1, "{}", app.engine);
        app.stop().await;
    }
}

#[tokio::test]
async fn more_than_a_thousand_items_is_422_pointing_at_items_and_a_thousand_is_fine() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let items =
            |n: usize| -> Vec<Value> { (0..n).map(|i| json!({"email": format!("p{i}@example.org")})).collect() };
        let res = post_customers(&app, &json!({ "items": items(1_001) })).await;
        let problem = expect_problem(app.engine, res, StatusCode::UNPROCESSABLE_ENTITY, "too_many_items").await;
        assert_eq!(pointers(&problem), ["/items"], "{}: {problem}", app.engine);
        assert!(problem["detail"].as_str().unwrap_or_default().contains("1000"), "{}: {problem}", app.engine);
        assert_eq!(count(&app).await, 0, "{}", app.engine);
        assert_eq!(load(&app, Value::Array(items(1_000))).await, (1_000, 0), "{}", app.engine);
        assert_eq!(load(&app, Value::Array(items(1_000))).await, (0, 1_000), "{}", app.engine);
        assert_eq!(count(&app).await, 1_000, "{}", app.engine);
        app.stop().await;
    }
}
