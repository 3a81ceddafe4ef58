//! A click id handed out always names a stored click: through SIGKILL mid-batch
//! and through a graceful shutdown, on both engines.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vouch_domain::click::ClickRef;
use vouch_store::testing::TestDatabase;

use crate::{Server, api_key, apply, client, enroll, example};

const CONNECTIONS: usize = 32;
const MIN_DURATION: Duration = Duration::from_secs(2);
const MIN_CLICK_IDS: usize = 1_000;

/// Keeps `CONNECTIONS` clients clicking the link until told to stop or the
/// server goes away; returns every click id a visitor was given.
fn start_load(
    link: String,
    stop: Arc<AtomicBool>,
    answered: Arc<Mutex<Vec<String>>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..CONNECTIONS)
        .map(|_| {
            let (link, stop, answered) = (link.clone(), stop.clone(), answered.clone());
            tokio::spawn(async move {
                let client = client();
                while !stop.load(Ordering::Relaxed) {
                    let Ok(res) = client.get(&link).send().await else { break };
                    let location = res.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default();
                    let url = url::Url::parse(location).expect("absolute Location");
                    if let Some((_, vclid)) = url.query_pairs().find(|(k, _)| k == "vclid") {
                        answered.lock().expect("lock").push(vclid.into_owned());
                    }
                }
            })
        })
        .collect()
}

/// Runs load for at least the minimum time and count, then sends `signal` while
/// requests are still in flight; returns the click ids answered.
async fn click_then_signal(
    server: &mut Server,
    code: &str,
    signal: &str,
) -> (Vec<String>, Option<std::process::ExitStatus>) {
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(Mutex::new(Vec::new()));
    let tasks = start_load(server.url(&format!("/r/{code}")), stop.clone(), answered.clone());
    let started = Instant::now();
    while started.elapsed() < MIN_DURATION || answered.lock().expect("lock").len() < MIN_CLICK_IDS {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "load too slow: {} ids in 60 s",
            answered.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.signal(signal);
    let status = server.wait(Duration::from_secs(15));
    stop.store(true, Ordering::Relaxed);
    // Every client stops within its request timeout; never wait on one forever.
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
    }
    let ids = answered.lock().expect("lock").clone();
    (ids, status)
}

async fn assert_all_stored(db: &TestDatabase, code: &str, answered: &[String]) {
    let store = db.open().await;
    let code = vouch_domain::ReferralCode::parse(code).expect("code");
    let stored: HashSet<_> = store.stored_click_ids(&code).await.expect("stored ids").into_iter().collect();
    let missing: Vec<&String> = answered
        .iter()
        .filter(|vclid| !stored.contains(&ClickRef::parse(vclid).expect("well-formed vclid").id))
        .collect();
    assert!(
        missing.is_empty(),
        "{}: {} of {} answered click ids are not stored, e.g. {:?}",
        db.engine,
        missing.len(),
        answered.len(),
        missing.first()
    );
    store.close().await;
}

async fn prepared(db: &TestDatabase) -> (Server, String) {
    let store = db.open().await;
    apply(&store, &example("customer-credit")).await;
    let key = api_key(&store).await;
    store.close().await;
    let server = Server::start(&db.cli_args());
    let code = enroll(&server, &key, "customer-credit", "durable@example.com").await;
    (server, code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answered_click_id_survives_sigkill_mid_batch() {
    for db in TestDatabase::all().await {
        let (mut server, code) = prepared(&db).await;
        let (answered, _) = click_then_signal(&mut server, &code, "KILL").await;
        assert!(answered.len() >= MIN_CLICK_IDS, "{}: only {} click ids answered", db.engine, answered.len());

        let restarted = Server::start(&db.cli_args());
        let ready = client().get(restarted.url("/readyz")).send().await.expect("readyz");
        assert_eq!(ready.status(), 200, "{}: restarted server is ready", db.engine);
        drop(restarted);
        assert_all_stored(&db, &code, &answered).await;
        eprintln!("{}: {} click ids answered before SIGKILL, all stored", db.engine, answered.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_drains_the_click_writer() {
    for db in TestDatabase::all().await {
        let (mut server, code) = prepared(&db).await;
        let (answered, status) = click_then_signal(&mut server, &code, "TERM").await;
        let status = status.unwrap_or_else(|| panic!("{}: server did not stop within 15 s of SIGTERM", db.engine));
        assert!(status.success(), "{}: graceful shutdown exits 0, got {status}", db.engine);
        assert_all_stored(&db, &code, &answered).await;
    }
}
