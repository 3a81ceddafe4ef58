//! `Idempotency-Key`: a repeat gets the first answer and has no second effect;
//! the same key with another body is refused.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use vouch_store::testing::TestDatabase;

use crate::helpers::{TestApp, email, expect_problem};

async fn enroll_with_key(app: &TestApp, key: &str, body: &Value) -> (StatusCode, Option<String>, Value) {
    let res = app
        .api(Method::POST, "/programs/agent-gift-card/participants")
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .expect("send");
    let replayed = res.headers().get("idempotent-replayed").map(|v| v.to_str().unwrap().to_string());
    (res.status(), replayed, res.json().await.expect("json body"))
}

fn person(email: &str) -> Value {
    json!({"email": email, "name": "Ida Empotent", "kind": "partner"})
}

#[tokio::test]
async fn a_repeat_with_the_same_key_gets_the_first_answer() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let body = person(&email("repeat"));
        let (first_status, first_replayed, first) = enroll_with_key(&app, "enroll-1", &body).await;
        assert_eq!(first_status, StatusCode::CREATED, "{}", app.engine);
        assert_eq!(first_replayed, None, "{}", app.engine);
        // Without the key, a second enrollment would answer 200; with it, the first 201 again.
        let (status, replayed, again) = enroll_with_key(&app, "enroll-1", &body).await;
        assert_eq!(status, StatusCode::CREATED, "{}: the first status", app.engine);
        assert_eq!(replayed.as_deref(), Some("true"), "{}", app.engine);
        assert_eq!(again, first, "{}: the first body", app.engine);
        app.stop().await;
    }
}

#[tokio::test]
async fn the_same_key_with_another_body_is_refused_and_changes_nothing() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let (status, _, _) = enroll_with_key(&app, "enroll-2", &person(&email("first"))).await;
        assert_eq!(status, StatusCode::CREATED);
        let before = app.counts().await;
        let res = app
            .api(Method::POST, "/programs/agent-gift-card/participants")
            .header("idempotency-key", "enroll-2")
            .json(&person(&email("second")))
            .send()
            .await
            .unwrap();
        expect_problem(app.engine, res, StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused").await;
        assert_eq!(app.store.count_participants().await.unwrap(), before.participants, "{}", app.engine);
        app.stop().await;
    }
}

#[tokio::test]
async fn concurrent_repeats_with_one_key_have_one_effect_and_one_answer() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let before = app.store.count_participants().await.unwrap();
        let body = person(&email("burst"));
        let answers = futures::future::join_all((0..20).map(|_| enroll_with_key(&app, "burst-key", &body))).await;
        let first = &answers[0].2;
        for (status, _, answer) in &answers {
            assert_eq!(*status, StatusCode::CREATED, "{}: every repeat gets the first status", app.engine);
            assert_eq!(answer, first, "{}: and the first body", app.engine);
        }
        let fresh = answers.iter().filter(|(_, replayed, _)| replayed.is_none()).count();
        assert_eq!(fresh, 1, "{}: exactly one request did the work", app.engine);
        assert_eq!(app.store.count_participants().await.unwrap(), before + 1, "{}", app.engine);
        app.stop().await;
    }
}

#[tokio::test]
async fn keys_are_scoped_to_the_api_key_and_must_be_well_formed() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let other_key = vouch_server::api_keys::create(
            &app.store,
            "other",
            vouch_domain::api_key::Scope::all(),
            jiff::Timestamp::now(),
        )
        .await
        .unwrap()
        .0;
        let (status, _, _) = enroll_with_key(&app, "shared", &person(&email("scoped-a"))).await;
        assert_eq!(status, StatusCode::CREATED);
        let res = app
            .client
            .post(app.url("/api/v1/programs/agent-gift-card/participants"))
            .bearer_auth(&other_key)
            .header("idempotency-key", "shared")
            .json(&person(&email("scoped-b")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED, "{}: another API key's namespace", app.engine);

        for bad in ["x".repeat(256), "has space".to_string()] {
            let before = app.store.count_participants().await.unwrap();
            let res = app
                .api(Method::POST, "/programs/agent-gift-card/participants")
                .header("idempotency-key", bad.as_str())
                .json(&person(&email("badkey")))
                .send()
                .await
                .unwrap();
            expect_problem(app.engine, res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_idempotency_key").await;
            assert_eq!(app.store.count_participants().await.unwrap(), before, "{}", app.engine);
        }
        app.stop().await;
    }
}
