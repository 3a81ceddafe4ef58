//! Several `vouch serve` processes on one Postgres: a change made through one
//! reaches the other's code cache within seconds.

use std::time::{Duration, Instant};

use vouch_store::testing::TestDatabase;

use crate::{Server, api_key, apply, client, enroll, example};

/// Polls `link` on `server` until `check` holds for its Location, at most 5 s.
async fn eventually(server: &Server, code: &str, what: &str, check: impl Fn(&str) -> bool) -> Duration {
    let started = Instant::now();
    loop {
        let res = client().get(server.url(&format!("/r/{code}"))).send().await.expect("redirect");
        let location = res.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        if check(&location) {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{what}: not seen within 5 s (Location: {location})");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_through_one_server_reach_another_within_seconds() {
    let Some(db) = TestDatabase::postgres().await else { return };
    let store = db.open().await;
    let source = example("per-technician");
    apply(&store, &source).await;
    let key = api_key(&store).await;
    let (a, b) = (Server::start(&db.cli_args()), Server::start(&db.cli_args()));
    let revoked = enroll(&a, &key, "per-technician", "revoked@example.com").await;
    let suspended = enroll(&a, &key, "per-technician", "suspended@example.com").await;
    let moving = enroll(&a, &key, "per-technician", "moving@example.com").await;

    // B caches every code as attributing, at the first landing URL.
    for code in [&revoked, &suspended, &moving] {
        eventually(&b, code, "B attributes", |l| l.contains("ref=")).await;
    }

    let res = client().post(a.url(&format!("/api/v1/codes/{revoked}/revoke"))).bearer_auth(&key).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let took = eventually(&b, &revoked, "revocation on B", |l| !l.contains("ref=") && !l.contains("vclid=")).await;
    eprintln!("revocation reached B after {took:?}");

    let participant: serde_json::Value = {
        let res =
            client().get(a.url(&format!("/api/v1/codes/{suspended}/clicks"))).bearer_auth(&key).send().await.unwrap();
        assert_eq!(res.status(), 200);
        // Find the participant through the enrollment call, which returns it again.
        let again = client()
            .post(a.url("/api/v1/programs/per-technician/participants"))
            .bearer_auth(&key)
            .json(&serde_json::json!({"email": "suspended@example.com", "name": "Test Referrer", "kind": "customer"}))
            .send()
            .await
            .unwrap();
        again.json().await.unwrap()
    };
    let id = participant["participant_id"].as_str().unwrap();
    let res =
        client().post(a.url(&format!("/api/v1/participants/{id}/suspend"))).bearer_auth(&key).send().await.unwrap();
    assert_eq!(res.status(), 200);
    eventually(&b, &suspended, "suspension on B", |l| !l.contains("ref=")).await;

    // A new program version with another landing URL, applied out of band.
    let moved = source.replace("https://example.com/", "https://moved.example.com/");
    assert_ne!(moved, source, "the example has an example.com landing URL to move");
    apply(&store, &moved).await;
    eventually(&b, &moving, "new landing URL on B", |l| l.starts_with("https://moved.example.com/")).await;
    store.close().await;
}
