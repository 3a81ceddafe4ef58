//! `/api/v1`: keys and scopes, programs, enrollment and its bad input,
//! participants, codes.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use vouch_domain::api_key::{Area, Scope};
use vouch_store::testing::TestDatabase;

use crate::helpers::{PUBLIC_URL, TestApp, email, expect_problem, pointers, shipped_landing_url};

const SLUGS: [&str; 5] = ["customer-credit", "agent-gift-card", "per-technician", "double-sided", "qualified-lead"];

/// Posts an enrollment that must be refused with `status`/`code` naming
/// `pointer`, and checks the database did not change.
async fn assert_enroll_refused(app: &TestApp, slug: &str, body: &Value, status: StatusCode, code: &str, pointer: &str) {
    let before = app.counts().await;
    let res = app.enroll_raw(slug, body).await;
    let problem = expect_problem(app.engine, res, status, code).await;
    assert!(
        pointers(&problem).iter().any(|p| p == pointer),
        "{}: expected pointer {pointer} for {body}, got {problem}",
        app.engine
    );
    assert_eq!(app.counts().await, before, "{}: database changed after refusing {body}", app.engine);
}

fn person(email: &str, kind: &str) -> Value {
    json!({"email": email, "name": "Ada Okafor", "kind": kind})
}

// ---------------------------------------------------------------- keys and scopes

#[tokio::test]
async fn api_without_a_key_is_401_missing_api_key() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let before = app.counts().await;
        let res = app.client.get(app.url("/api/v1/programs")).send().await.unwrap();
        expect_problem(app.engine, res, StatusCode::UNAUTHORIZED, "missing_api_key").await;
        // Not a bearer token at all.
        let res = app
            .client
            .get(app.url("/api/v1/programs"))
            .header("authorization", "Basic dXNlcjpwdw==")
            .send()
            .await
            .unwrap();
        expect_problem(app.engine, res, StatusCode::UNAUTHORIZED, "missing_api_key").await;
        // A write without a key changes nothing.
        let res = app
            .client
            .post(app.url("/api/v1/programs/agent-gift-card/participants"))
            .json(&person(&email("nokey"), "customer"))
            .send()
            .await
            .unwrap();
        expect_problem(app.engine, res, StatusCode::UNAUTHORIZED, "missing_api_key").await;
        assert_eq!(app.counts().await, before, "{}: database changed", app.engine);
        app.stop().await;
    }
}

#[tokio::test]
async fn api_with_an_unknown_key_is_401_invalid_api_key() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let before = app.counts().await;
        let wrong = format!("{}x", app.api_key);
        for key in [wrong.as_str(), "vouch_0000", "not-a-key"] {
            let res = app.client.get(app.url("/api/v1/programs")).bearer_auth(key).send().await.unwrap();
            expect_problem(app.engine, res, StatusCode::UNAUTHORIZED, "invalid_api_key").await;
        }
        let res = app
            .client
            .post(app.url("/api/v1/programs/agent-gift-card/participants"))
            .bearer_auth(&wrong)
            .json(&person(&email("wrongkey"), "customer"))
            .send()
            .await
            .unwrap();
        expect_problem(app.engine, res, StatusCode::UNAUTHORIZED, "invalid_api_key").await;
        assert_eq!(app.counts().await, before, "{}: database changed", app.engine);
        app.stop().await;
    }
}

#[tokio::test]
async fn api_with_a_revoked_key_is_401() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let (key, record) =
            vouch_server::api_keys::create(&app.store, "soon revoked", Scope::all(), jiff::Timestamp::now())
                .await
                .unwrap();
        let res = app.client.get(app.url("/api/v1/programs")).bearer_auth(&key).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{}: the key works before revocation", app.engine);
        app.store.revoke_api_key(record.id, jiff::Timestamp::now()).await.unwrap();
        let before = app.counts().await;
        let res = app.client.get(app.url("/api/v1/programs")).bearer_auth(&key).send().await.unwrap();
        expect_problem(app.engine, res, StatusCode::UNAUTHORIZED, "invalid_api_key").await;
        let res = app
            .client
            .post(app.url("/api/v1/programs/agent-gift-card/participants"))
            .bearer_auth(&key)
            .json(&person(&email("revoked"), "customer"))
            .send()
            .await
            .unwrap();
        expect_problem(app.engine, res, StatusCode::UNAUTHORIZED, "invalid_api_key").await;
        assert_eq!(app.counts().await, before, "{}: database changed", app.engine);
        // The other key is unaffected.
        assert_eq!(app.api_get("/programs").await.status(), StatusCode::OK, "{}", app.engine);
        app.stop().await;
    }
}

#[tokio::test]
async fn key_lacking_the_scope_is_403_insufficient_scope() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let existing = app.enroll("agent-gift-card", &email("scoped"), "partner").await;
        let (key, _) = vouch_server::api_keys::create(
            &app.store,
            "read programs",
            vec![Scope::read(Area::Programs)],
            jiff::Timestamp::now(),
        )
        .await
        .unwrap();
        let call = |method: Method, path: &str| {
            app.client.request(method, app.url(&format!("/api/v1{path}"))).bearer_auth(&key)
        };
        // What the scope grants works...
        let res = call(Method::GET, "/programs").send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{}: programs:read lists programs", app.engine);
        // ...and nothing else does.
        let before = app.counts().await;
        let res = call(Method::POST, "/programs/agent-gift-card/participants")
            .json(&person(&email("scoped-new"), "partner"))
            .send()
            .await
            .unwrap();
        let problem = expect_problem(app.engine, res, StatusCode::FORBIDDEN, "insufficient_scope").await;
        assert!(
            problem["detail"].as_str().unwrap_or_default().contains("participants:write"),
            "{}: the detail names the missing scope: {problem}",
            app.engine
        );
        let pid = &existing.participant_id;
        let code = &existing.code;
        for (method, path) in [
            (Method::GET, format!("/participants/{pid}")),
            (Method::POST, format!("/participants/{pid}/suspend")),
            (Method::GET, format!("/codes/{code}/clicks")),
            (Method::POST, format!("/codes/{code}/revoke")),
        ] {
            let res = call(method.clone(), &path).send().await.unwrap();
            expect_problem(app.engine, res, StatusCode::FORBIDDEN, "insufficient_scope").await;
        }
        assert_eq!(app.counts().await, before, "{}: database changed", app.engine);
        // A read scope does not grant writing.
        let (reader, _) = vouch_server::api_keys::create(
            &app.store,
            "read participants",
            vec![Scope::read(Area::Participants)],
            jiff::Timestamp::now(),
        )
        .await
        .unwrap();
        let before_reader = app.counts().await;
        let res =
            app.client.get(app.url(&format!("/api/v1/participants/{pid}"))).bearer_auth(&reader).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{}: participants:read reads a participant", app.engine);
        let res = app
            .client
            .post(app.url(&format!("/api/v1/participants/{pid}/suspend")))
            .bearer_auth(&reader)
            .send()
            .await
            .unwrap();
        expect_problem(app.engine, res, StatusCode::FORBIDDEN, "insufficient_scope").await;
        assert_eq!(app.counts().await, before_reader, "{}: database changed", app.engine);
        let p: Value = app.api_get(&format!("/participants/{pid}")).await.json().await.unwrap();
        assert_eq!(p["status"], "active", "{}: the refused suspension did not happen", app.engine);
        app.stop().await;
    }
}

#[tokio::test]
async fn unknown_api_route_is_a_404_problem() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let res = app.api_get("/no-such-thing").await;
        expect_problem(app.engine, res, StatusCode::NOT_FOUND, "unknown_route").await;
        app.stop().await;
    }
}

// ---------------------------------------------------------------- programs

#[tokio::test]
async fn programs_list_holds_the_five_examples_with_version_and_landing_url() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let res = app.api_get("/programs").await;
        assert_eq!(res.status(), StatusCode::OK, "{}", app.engine);
        let body: Value = res.json().await.unwrap();
        let items = body["items"].as_array().unwrap_or_else(|| panic!("{}: items in {body}", app.engine));
        let mut slugs: Vec<&str> = items.iter().filter_map(|p| p["slug"].as_str()).collect();
        slugs.sort_unstable();
        let mut expected = SLUGS.to_vec();
        expected.sort_unstable();
        assert_eq!(slugs, expected, "{}: program slugs", app.engine);
        assert!(body.get("next_cursor").is_some(), "{}: list envelope has next_cursor: {body}", app.engine);
        for p in items {
            let slug = p["slug"].as_str().unwrap();
            assert_eq!(p["version"], 1, "{}: {slug} version", app.engine);
            assert_eq!(p["landing_url"], shipped_landing_url(slug), "{}: {slug} landing_url", app.engine);
            assert!(p["name"].as_str().is_some_and(|n| !n.is_empty()), "{}: {slug} name", app.engine);
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn program_by_slug_shows_the_version_in_force() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let res = app.api_get("/programs/customer-credit").await;
        assert_eq!(res.status(), StatusCode::OK, "{}", app.engine);
        let p: Value = res.json().await.unwrap();
        assert_eq!(p["slug"], "customer-credit", "{}", app.engine);
        assert_eq!(p["version"], 1, "{}", app.engine);
        assert_eq!(p["landing_url"], "https://example.com/welcome", "{}", app.engine);
        assert_eq!(p["currency"], "USD", "{}", app.engine);
        assert_eq!(p["timezone"], "America/New_York", "{}", app.engine);

        app.set_landing_url("customer-credit", "https://example.com/welcome-v2").await;
        let p: Value = app.api_get("/programs/customer-credit").await.json().await.unwrap();
        assert_eq!(p["version"], 2, "{}: a new version after an edit", app.engine);
        assert_eq!(p["landing_url"], "https://example.com/welcome-v2", "{}", app.engine);
        app.stop().await;
    }
}

#[tokio::test]
async fn unknown_program_is_404() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        for slug in ["no-such-program", "CUSTOMER-CREDIT", "a..b", "%00", "%FF", "customer-credit%00"] {
            let res = app.api_get(&format!("/programs/{slug}")).await;
            expect_problem(app.engine, res, StatusCode::NOT_FOUND, "not_found").await;
        }
        let before = app.counts().await;
        for slug in ["no-such-program", "%00", "%FF"] {
            let res = app.enroll_raw(slug, &person(&email("nowhere"), "customer")).await;
            expect_problem(app.engine, res, StatusCode::NOT_FOUND, "not_found").await;
        }
        assert_eq!(app.counts().await, before, "{}: database changed", app.engine);
        app.stop().await;
    }
}

// ---------------------------------------------------------------- enrollment

#[tokio::test]
async fn enrolling_a_new_email_answers_201_with_code_and_link() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let before = app.counts().await.participants;
        let e = app.enroll("customer-credit", &email("new"), "customer").await;
        assert_eq!(e.status, StatusCode::CREATED, "{}", app.engine);
        assert_eq!(e.link, format!("{PUBLIC_URL}/r/{}", e.code), "{}: link on the public URL", app.engine);
        assert_eq!(e.code.len(), 8, "{}: generated codes are 8 symbols: {}", app.engine, e.code);
        assert!(
            e.code.bytes().all(|b| b"23456789ABCDEFGHJKMNPQRSTVWXYZ".contains(&b)),
            "{}: generated code {} uses the unambiguous alphabet",
            app.engine,
            e.code
        );
        assert!(uuid::Uuid::parse_str(&e.participant_id).is_ok(), "{}: participant id", app.engine);
        assert!(uuid::Uuid::parse_str(&e.enrollment_id).is_ok(), "{}: enrollment id", app.engine);
        assert_eq!(app.counts().await.participants, before + 1, "{}", app.engine);

        // Another person gets another code.
        let other = app.enroll("customer-credit", &email("other"), "customer").await;
        assert_ne!(other.code, e.code, "{}", app.engine);
        assert_ne!(other.participant_id, e.participant_id, "{}", app.engine);
        app.stop().await;
    }
}

#[tokio::test]
async fn enrolling_the_same_email_differently_cased_returns_the_existing_enrollment() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let address = email("twice");
        let first = app.enroll("agent-gift-card", &address, "partner").await;
        assert_eq!(first.status, StatusCode::CREATED, "{}", app.engine);
        let before = app.counts().await;
        let shouted = address.to_uppercase();
        let again = app
            .enroll_with(
                "agent-gift-card",
                &json!({"email": format!("  {shouted} "), "name": "Other Name", "kind": "partner"}),
            )
            .await;
        assert_eq!(again.status, StatusCode::OK, "{}: the existing enrollment comes back with 200", app.engine);
        assert_eq!(
            (&again.participant_id, &again.enrollment_id, &again.code, &again.link),
            (&first.participant_id, &first.enrollment_id, &first.code, &first.link),
            "{}: same ids and code",
            app.engine
        );
        // Even with a vanity code asked for, no second code is minted.
        let third = app
            .enroll_with(
                "agent-gift-card",
                &json!({"email": address, "name": "X", "kind": "partner", "vanity_code": "another-one"}),
            )
            .await;
        assert_eq!(third.code, first.code, "{}", app.engine);
        assert_eq!(app.counts().await, before, "{}: nothing new stored", app.engine);

        // The same person in a second program: same participant, new enrollment and code.
        let elsewhere = app.enroll("per-technician", &address, "partner").await;
        assert_eq!(elsewhere.status, StatusCode::CREATED, "{}", app.engine);
        assert_eq!(elsewhere.participant_id, first.participant_id, "{}", app.engine);
        assert_ne!(elsewhere.enrollment_id, first.enrollment_id, "{}", app.engine);
        assert_ne!(elsewhere.code, first.code, "{}", app.engine);
        app.stop().await;
    }
}

#[tokio::test]
async fn concurrent_enrollments_of_one_email_yield_one_enrollment() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let address = email("race");
        let answers = futures::future::join_all((0..8).map(|_| app.enroll("double-sided", &address, "customer"))).await;
        let created = answers.iter().filter(|a| a.status == StatusCode::CREATED).count();
        assert_eq!(created, 1, "{}: exactly one 201 among {answers:?}", app.engine);
        assert!(
            answers.iter().all(|a| a.code == answers[0].code && a.enrollment_id == answers[0].enrollment_id),
            "{}: all answers name one enrollment: {answers:?}",
            app.engine
        );
        assert_eq!(app.counts().await.participants, 1, "{}", app.engine);
        app.stop().await;
    }
}

#[tokio::test]
async fn malformed_email_is_422_pointing_at_email() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        for bad in ["", "no-at-sign", "a@b", "two@@example.org", "x@exa mple.org", ".dot@example.org", "@example.org"] {
            let problem = assert_enroll_refused_returning(&app, &person(bad, "customer")).await;
            assert_eq!(pointers(&problem), vec!["/email"], "{}: only the email is at fault ({bad:?})", app.engine);
        }
        app.stop().await;
    }
}

async fn assert_enroll_refused_returning(app: &TestApp, body: &Value) -> Value {
    let before = app.counts().await;
    let res = app.enroll_raw("agent-gift-card", body).await;
    let problem = expect_problem(app.engine, res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    assert_eq!(app.counts().await, before, "{}: database changed after refusing {body}", app.engine);
    problem
}

#[tokio::test]
async fn unknown_kind_is_422_pointing_at_kind() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        for kind in ["robot", "Customer", ""] {
            assert_enroll_refused(
                &app,
                "agent-gift-card",
                &person(&email("kind"), kind),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                "/kind",
            )
            .await;
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn every_bad_field_is_reported_at_once() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let body =
            json!({"email": "nope", "name": " ", "kind": "robot", "vanity_code": "a/b", "team": "t".repeat(201)});
        let problem = assert_enroll_refused_returning(&app, &body).await;
        let mut got = pointers(&problem);
        got.sort();
        assert_eq!(got, vec!["/email", "/kind", "/name", "/team", "/vanity_code"], "{}: {problem}", app.engine);
        app.stop().await;
    }
}

#[tokio::test]
async fn ineligible_kind_is_422_ineligible_pointing_at_kind() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        // customer-credit: eligible = ["customer"]; double-sided: customer, customer_staff.
        for (slug, kind) in [("customer-credit", "other"), ("customer-credit", "employee"), ("double-sided", "partner")]
        {
            assert_enroll_refused(
                &app,
                slug,
                &person(&email("inel"), kind),
                StatusCode::UNPROCESSABLE_ENTITY,
                "ineligible",
                "/kind",
            )
            .await;
        }
        // A known participant is judged by their stored kind, whatever the request says.
        let address = email("known-partner");
        app.enroll("agent-gift-card", &address, "partner").await;
        assert_enroll_refused(
            &app,
            "customer-credit",
            &person(&address, "customer"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "ineligible",
            "/kind",
        )
        .await;
        app.stop().await;
    }
}

#[tokio::test]
async fn vanity_code_is_accepted_and_case_insensitive() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app
            .enroll_with(
                "agent-gift-card",
                &json!({"email": email("vanity"), "name": "Vanity", "kind": "influencer", "vanity_code": "Spring_Promo-26"}),
            )
            .await;
        assert_eq!(e.status, StatusCode::CREATED, "{}", app.engine);
        assert_eq!(e.code, "SPRING_PROMO-26", "{}: canonical upper case", app.engine);
        assert_eq!(e.link, format!("{PUBLIC_URL}/r/SPRING_PROMO-26"), "{}", app.engine);
        let p: Value = app.api_get(&format!("/participants/{}", e.participant_id)).await.json().await.unwrap();
        assert_eq!(p["enrollments"][0]["codes"][0]["vanity"], true, "{}: {p}", app.engine);
        app.stop().await;
    }
}

#[tokio::test]
async fn vanity_code_already_taken_is_409_code_taken() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let first = app
            .enroll_with(
                "agent-gift-card",
                &json!({"email": email("v1"), "name": "First", "kind": "partner", "vanity_code": "ACME"}),
            )
            .await;
        // Codes are unique across programs and compare case-insensitively.
        for (slug, code) in [("agent-gift-card", "ACME"), ("per-technician", "acme"), ("customer-credit", "Acme")] {
            assert_enroll_refused(
                &app,
                slug,
                &json!({"email": email("v2"), "name": "Second", "kind": "customer", "vanity_code": code}),
                StatusCode::CONFLICT,
                "code_taken",
                "/vanity_code",
            )
            .await;
        }
        // A generated code cannot be taken as a vanity code either.
        let generated = app.enroll("per-technician", &email("gen"), "employee").await;
        assert_enroll_refused(
            &app,
            "per-technician",
            &json!({"email": email("v3"), "name": "Third", "kind": "employee", "vanity_code": generated.code.to_lowercase()}),
            StatusCode::CONFLICT,
            "code_taken",
            "/vanity_code",
        )
        .await;
        assert_eq!(first.code, "ACME", "{}", app.engine);
        app.stop().await;
    }
}

#[tokio::test]
async fn invalid_vanity_codes_are_422_pointing_at_vanity_code() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let too_long = "A".repeat(33);
        for bad in [too_long.as_str(), "a/b", "ab", "../etc", "a..b", "café", "a b", "a\u{0}b", "-lead", "trail_", ""]
        {
            assert_enroll_refused(
                &app,
                "agent-gift-card",
                &json!({"email": email("badvanity"), "name": "N", "kind": "partner", "vanity_code": bad}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                "/vanity_code",
            )
            .await;
        }
        // 32 characters is the limit, and allowed.
        let longest = "B".repeat(32);
        let e = app
            .enroll_with(
                "agent-gift-card",
                &json!({"email": email("longest"), "name": "N", "kind": "partner", "vanity_code": longest}),
            )
            .await;
        assert_eq!(e.code, longest, "{}", app.engine);
        app.stop().await;
    }
}

#[tokio::test]
async fn wrong_json_shape_is_422_with_a_pointer() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let cases = [
            (json!({"email": 42, "name": "N", "kind": "partner"}), "/email"),
            (json!({"email": email("shape"), "name": ["N"], "kind": "partner"}), "/name"),
            (json!({"email": email("shape"), "name": "N", "kind": "partner", "team": {"x": 1}}), "/team"),
            (json!({"email": email("shape"), "kind": "partner"}), "/name"),
            (json!({"name": "N", "kind": "partner"}), "/email"),
            (json!({"email": email("shape"), "name": "N", "kind": "partner", "nickname": "Ned"}), "/nickname"),
        ];
        for (body, pointer) in cases {
            assert_enroll_refused(
                &app,
                "agent-gift-card",
                &body,
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                pointer,
            )
            .await;
        }
        // Not an object at all: the whole document is at fault.
        let positional = json!([email("shape"), "N", "partner", null, null, null]);
        for body in [json!("hello"), json!(null), json!(7), positional] {
            let before = app.counts().await;
            let res = app.enroll_raw("agent-gift-card", &body).await;
            let problem = expect_problem(app.engine, res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
            assert_eq!(pointers(&problem), vec![""], "{}: root pointer for {body}: {problem}", app.engine);
            assert_eq!(app.counts().await, before, "{}", app.engine);
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn malformed_json_is_refused_as_malformed_json() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        for raw in [
            r#"{"email": "a@example.org", "name": "#,
            "{email: 1}",
            "",
            "{\"email\": \"a@example.org\", \"name\": \"N\", \"kind\": \"partner\"} trailing",
            "{\"email\": \"a@example.org\", \"name\": \"N\", \"kind\": \"partner\"} {}",
        ] {
            let before = app.counts().await;
            let res = app
                .api(Method::POST, "/programs/agent-gift-card/participants")
                .header("content-type", "application/json")
                .body(raw.to_string())
                .send()
                .await
                .unwrap();
            let status = res.status();
            assert!(
                status == StatusCode::UNPROCESSABLE_ENTITY || status == StatusCode::BAD_REQUEST,
                "{}: malformed JSON {raw:?} answered {status}",
                app.engine
            );
            expect_problem(app.engine, res, status, "malformed_json").await;
            assert_eq!(app.counts().await, before, "{}", app.engine);
        }
        // JSON under another media type is refused as such.
        let before = app.counts().await;
        let res = app
            .api(Method::POST, "/programs/agent-gift-card/participants")
            .header("content-type", "text/plain")
            .body(person(&email("plain"), "partner").to_string())
            .send()
            .await
            .unwrap();
        expect_problem(app.engine, res, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await;
        assert_eq!(app.counts().await, before, "{}", app.engine);
        app.stop().await;
    }
}

#[tokio::test]
async fn body_larger_than_the_limit_is_413_body_too_large() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let before = app.counts().await;
        // Valid JSON, valid fields, just too big: 256 KiB of name.
        let body = json!({"email": email("big"), "name": "N".repeat(256 * 1024), "kind": "partner"});
        let res = app.enroll_raw("agent-gift-card", &body).await;
        expect_problem(app.engine, res, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large").await;
        // Without a Content-Length (chunked), the limit holds too.
        let chunk = format!("{{\"email\":\"{}", "a".repeat(300 * 1024));
        let mut request = format!(
            "POST /api/v1/programs/agent-gift-card/participants HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            app.addr, app.api_key
        );
        request.push_str(&format!("{:x}\r\n{chunk}\r\n0\r\n\r\n", chunk.len()));
        let (status, head, body) = app.raw_request(request.as_bytes()).await;
        assert_eq!(status, 413, "{}: chunked body over the limit: {head}", app.engine);
        assert!(head.contains("application/problem+json"), "{}: {head}", app.engine);
        assert!(body.contains("body_too_large"), "{}: {body}", app.engine);
        assert_eq!(app.counts().await, before, "{}: database changed", app.engine);
        // Just under the limit is read, and judged on its fields.
        let body = json!({"email": email("big"), "name": "N".repeat(200 * 1024), "kind": "partner"});
        let res = app.enroll_raw("agent-gift-card", &body).await;
        let problem = expect_problem(app.engine, res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
        assert_eq!(pointers(&problem), vec!["/name"], "{}", app.engine);
        assert_eq!(app.counts().await, before, "{}: database changed", app.engine);
        app.stop().await;
    }
}

// ---------------------------------------------------------------- participants

#[tokio::test]
async fn participant_shows_enrollments_codes_and_totals() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let address = email("shown");
        let a = app
            .enroll_with(
                "agent-gift-card",
                &json!({"email": address, "name": "Grace Nakamura", "kind": "customer_staff", "team": "Northwind", "company": "Northwind HVAC"}),
            )
            .await;
        let b = app.enroll("double-sided", &address, "customer_staff").await;
        for _ in 0..3 {
            assert!(app.visit(&a.code).await.vclid().is_some(), "{}", app.engine);
        }
        assert!(app.visit(&b.code).await.vclid().is_some(), "{}", app.engine);
        app.get_link(&b.code, Some("Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"), None, &[]).await;
        app.wait_for_bot_visits(&b.code, 1).await;

        let res = app.api_get(&format!("/participants/{}", a.participant_id)).await;
        assert_eq!(res.status(), StatusCode::OK, "{}", app.engine);
        let p: Value = res.json().await.unwrap();
        assert_eq!(p["id"], a.participant_id, "{}", app.engine);
        assert_eq!(p["email"], address, "{}", app.engine);
        assert_eq!(p["name"], "Grace Nakamura", "{}", app.engine);
        assert_eq!(p["kind"], "customer_staff", "{}", app.engine);
        assert_eq!(p["team"], "Northwind", "{}", app.engine);
        assert_eq!(p["company"], "Northwind HVAC", "{}", app.engine);
        assert_eq!(p["status"], "active", "{}", app.engine);
        let enrollments = p["enrollments"].as_array().unwrap_or_else(|| panic!("{}: enrollments in {p}", app.engine));
        assert_eq!(enrollments.len(), 2, "{}: {p}", app.engine);
        let find = |slug: &str| enrollments.iter().find(|e| e["program"] == slug).cloned().unwrap();
        let (ea, eb) = (find("agent-gift-card"), find("double-sided"));
        assert_eq!(ea["enrollment_id"], a.enrollment_id, "{}", app.engine);
        assert_eq!(eb["enrollment_id"], b.enrollment_id, "{}", app.engine);
        let code_a = &ea["codes"][0];
        assert_eq!(code_a["code"], a.code, "{}", app.engine);
        assert_eq!(code_a["link"], a.link, "{}", app.engine);
        assert_eq!(code_a["status"], "active", "{}", app.engine);
        assert_eq!(code_a["clicks"], 3, "{}", app.engine);
        assert_eq!(eb["codes"][0]["clicks"], 1, "{}", app.engine);
        assert_eq!(eb["codes"][0]["bot_visits"], 1, "{}", app.engine);
        assert_eq!(p["totals"]["clicks"], 4, "{}: totals over all codes: {p}", app.engine);
        assert_eq!(p["totals"]["bot_visits"], 1, "{}: {p}", app.engine);
        app.stop().await;
    }
}

#[tokio::test]
async fn suspending_a_participant_marks_them_suspended() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let address = email("suspend");
        let e = app.enroll("per-technician", &address, "employee").await;
        let res = app.api_post(&format!("/participants/{}/suspend", e.participant_id)).await;
        assert_eq!(res.status(), StatusCode::OK, "{}", app.engine);
        let p: Value = res.json().await.unwrap();
        assert_eq!(p["status"], "suspended", "{}: {p}", app.engine);
        assert!(p["suspended_at"].as_str().is_some(), "{}: suspended_at set: {p}", app.engine);
        let again: Value = app.api_get(&format!("/participants/{}", e.participant_id)).await.json().await.unwrap();
        assert_eq!(again["status"], "suspended", "{}: stored", app.engine);
        // A suspended participant cannot enroll elsewhere.
        let before = app.counts().await;
        let res = app.enroll_raw("agent-gift-card", &person(&address, "employee")).await;
        expect_problem(app.engine, res, StatusCode::FORBIDDEN, "participant_suspended").await;
        assert_eq!(app.counts().await, before, "{}", app.engine);
        app.stop().await;
    }
}

#[tokio::test]
async fn unknown_participant_is_404() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let before = app.counts().await;
        let unknown = uuid::Uuid::now_v7().to_string();
        for id in [unknown.as_str(), "not-a-uuid", "1", "%00", "%FF"] {
            let res = app.api_get(&format!("/participants/{id}")).await;
            expect_problem(app.engine, res, StatusCode::NOT_FOUND, "not_found").await;
            let res = app.api_post(&format!("/participants/{id}/suspend")).await;
            expect_problem(app.engine, res, StatusCode::NOT_FOUND, "not_found").await;
        }
        assert_eq!(app.counts().await, before, "{}", app.engine);
        app.stop().await;
    }
}

// ---------------------------------------------------------------- codes

#[tokio::test]
async fn clicks_are_listed_with_their_count_and_paged_by_cursor() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.enroll("agent-gift-card", &email("paged"), "partner").await;
        let mut handed_out = Vec::new();
        for i in 0..5 {
            let campaign = format!("c{i}");
            let v = app.get_link(&e.code, Some(crate::helpers::BROWSER_UA), None, &[("utm_campaign", &campaign)]).await;
            handed_out.push(v.vclid().unwrap_or_else(|| panic!("{}: click {i} got a vclid", app.engine)));
        }
        let all = app.clicks(&e.code, "").await;
        assert_eq!(all["code"], e.code, "{}", app.engine);
        assert_eq!(all["count"], 5, "{}: {all}", app.engine);
        assert_eq!(all["bot_visits"], 0, "{}", app.engine);
        assert!(all["last_click_at"].as_str().is_some(), "{}: {all}", app.engine);
        assert_eq!(all["items"].as_array().unwrap().len(), 5, "{}", app.engine);
        assert!(all["next_cursor"].is_null(), "{}: one page holds all: {all}", app.engine);

        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let query = match &cursor {
                Some(c) => format!("?limit=2&cursor={c}"),
                None => "?limit=2".to_string(),
            };
            let page = app.clicks(&e.code, &query).await;
            assert_eq!(page["count"], 5, "{}: count on every page", app.engine);
            let items = page["items"].as_array().unwrap();
            assert!(items.len() <= 2, "{}: limit honoured", app.engine);
            seen.extend(items.iter().map(|c| c["click_id"].as_str().unwrap().to_string()));
            pages += 1;
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
            assert!(pages < 10, "{}: pagination ends", app.engine);
        }
        assert_eq!(pages, 3, "{}: 5 clicks in pages of 2", app.engine);
        // Each click once, exactly the ids handed out, newest first. Ids are
        // time-ordered to the millisecond (v7); two clicks of one millisecond
        // may come in either order.
        let (mut listed, mut expected) = (seen.clone(), handed_out.clone());
        listed.sort();
        expected.sort();
        assert_eq!(listed, expected, "{}: pages cover every click once", app.engine);
        let millisecond = |id: &str| id.split('.').nth(1).expect("code.id")[..12].to_string();
        assert!(
            seen.windows(2).all(|w| millisecond(&w[0]) >= millisecond(&w[1])),
            "{}: newest first: {seen:?}",
            app.engine
        );

        // Bad paging input is a 422 naming the parameter.
        for (query, pointer) in [("?limit=0", "/limit"), ("?limit=1001", "/limit"), ("?cursor=garbage", "/cursor")] {
            let res = app.api_get(&format!("/codes/{}/clicks{query}", e.code)).await;
            let problem = expect_problem(app.engine, res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_query").await;
            assert_eq!(pointers(&problem), vec![pointer], "{}: {query}", app.engine);
        }
        let res = app.api_get(&format!("/codes/{}/clicks?limit=ten", e.code)).await;
        expect_problem(app.engine, res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_query").await;
        app.stop().await;
    }
}

#[tokio::test]
async fn clicks_listing_is_case_insensitive_and_can_include_bot_visits() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.enroll("agent-gift-card", &email("bots-listed"), "partner").await;
        app.visit(&e.code).await;
        app.get_link(&e.code, Some("Twitterbot/1.0"), None, &[]).await;
        assert_eq!(app.wait_for_bot_visits(&e.code, 1).await, 1, "{}", app.engine);
        let lower = app.clicks(&e.code.to_lowercase(), "").await;
        assert_eq!(lower["code"], e.code, "{}", app.engine);
        assert_eq!(lower["items"].as_array().unwrap().len(), 1, "{}: bots left out by default", app.engine);
        let with_bots = app.clicks(&e.code, "?include_bots=true").await;
        let items = with_bots["items"].as_array().unwrap();
        assert_eq!(items.len(), 2, "{}: {with_bots}", app.engine);
        assert_eq!(items.iter().filter(|c| c["is_bot"] == true).count(), 1, "{}", app.engine);
        app.stop().await;
    }
}

#[tokio::test]
async fn revoking_a_code_marks_it_revoked() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let e = app.enroll("qualified-lead", &email("revoke"), "customer").await;
        let res = app.api_post(&format!("/codes/{}/revoke", e.code.to_lowercase())).await;
        assert_eq!(res.status(), StatusCode::OK, "{}", app.engine);
        let c: Value = res.json().await.unwrap();
        assert_eq!(c["code"], e.code, "{}: {c}", app.engine);
        assert_eq!(c["status"], "revoked", "{}: {c}", app.engine);
        assert!(c["revoked_at"].as_str().is_some(), "{}: {c}", app.engine);
        let p: Value = app.api_get(&format!("/participants/{}", e.participant_id)).await.json().await.unwrap();
        assert_eq!(p["enrollments"][0]["codes"][0]["status"], "revoked", "{}: {p}", app.engine);
        assert_eq!(p["status"], "active", "{}: the participant stays active", app.engine);
        // Enrolling again hands back the enrollment, not a fresh code.
        let again = app.enroll("qualified-lead", p["email"].as_str().unwrap(), "customer").await;
        assert_eq!(again.status, StatusCode::OK, "{}", app.engine);
        app.stop().await;
    }
}

#[tokio::test]
async fn unknown_code_is_404_in_the_api() {
    for db in TestDatabase::all().await {
        let app = TestApp::spawn(db).await;
        let before = app.counts().await;
        let long = "Z".repeat(33);
        for code in ["ZZZZ2222", long.as_str(), "a..b", "caf%C3%A9", "a%2Fb", "%00", "%FF%FE"] {
            let res = app.api_get(&format!("/codes/{code}/clicks")).await;
            expect_problem(app.engine, res, StatusCode::NOT_FOUND, "not_found").await;
            let res = app.api_post(&format!("/codes/{code}/revoke")).await;
            expect_problem(app.engine, res, StatusCode::NOT_FOUND, "not_found").await;
        }
        assert_eq!(app.counts().await, before, "{}", app.engine);
        app.stop().await;
    }
}
