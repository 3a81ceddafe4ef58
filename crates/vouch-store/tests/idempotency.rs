//! Idempotency-Key records in the store, on every engine available here.

use jiff::{SignedDuration, Timestamp};
use uuid::Uuid;
use vouch_domain::ApiKeyId;
use vouch_store::IdempotencyClaim::{InFlight, Mismatch, New, Replay};
use vouch_store::testing::TestDatabase;

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + second).expect("a valid instant")
}

#[tokio::test]
async fn a_key_is_claimed_once_then_replayed_and_never_reused_for_another_request() {
    for db in TestDatabase::all().await {
        let store = db.open().await;
        let (api, other_api) = (ApiKeyId(Uuid::now_v7()), ApiKeyId(Uuid::now_v7()));
        let engine = db.engine;
        assert_eq!(store.claim_idempotency_key(api, "k1", "hash-a", at(0)).await.unwrap(), New, "{engine}");
        assert_eq!(store.claim_idempotency_key(api, "k1", "hash-a", at(1)).await.unwrap(), InFlight, "{engine}");
        assert_eq!(store.claim_idempotency_key(api, "k1", "hash-b", at(1)).await.unwrap(), Mismatch, "{engine}");
        assert_eq!(store.claim_idempotency_key(other_api, "k1", "hash-b", at(1)).await.unwrap(), New, "{engine}");
        store.complete_idempotency_key(api, "k1", 201, "{\"ok\":true}").await.unwrap();
        assert_eq!(
            store.claim_idempotency_key(api, "k1", "hash-a", at(2)).await.unwrap(),
            Replay { status: 201, body: "{\"ok\":true}".into() },
            "{engine}"
        );
        store.close().await;
    }
}

#[tokio::test]
async fn a_stale_or_released_claim_can_be_taken_again() {
    for db in TestDatabase::all().await {
        let store = db.open().await;
        let api = ApiKeyId(Uuid::now_v7());
        let engine = db.engine;
        assert_eq!(store.claim_idempotency_key(api, "stale", "h", at(0)).await.unwrap(), New);
        assert_eq!(store.claim_idempotency_key(api, "stale", "h", at(59)).await.unwrap(), InFlight, "{engine}");
        assert_eq!(store.claim_idempotency_key(api, "stale", "h", at(61)).await.unwrap(), New, "{engine}: taken over");
        assert_eq!(store.claim_idempotency_key(api, "stale", "h", at(62)).await.unwrap(), InFlight, "{engine}: once");

        assert_eq!(store.claim_idempotency_key(api, "failed", "h", at(0)).await.unwrap(), New);
        store.release_idempotency_key(api, "failed").await.unwrap();
        assert_eq!(store.claim_idempotency_key(api, "failed", "h", at(1)).await.unwrap(), New, "{engine}");
        store.close().await;
    }
}

#[tokio::test]
async fn purging_forgets_only_records_older_than_the_cutoff() {
    for db in TestDatabase::all().await {
        let store = db.open().await;
        let api = ApiKeyId(Uuid::now_v7());
        let day = SignedDuration::from_hours(24);
        store.claim_idempotency_key(api, "old", "h", at(0)).await.unwrap();
        store.claim_idempotency_key(api, "new", "h", at(0) + day * 2).await.unwrap();
        assert_eq!(store.purge_idempotency_keys(at(0) + day).await.unwrap(), 1, "{}", db.engine);
        assert_eq!(store.claim_idempotency_key(api, "old", "other", at(0) + day * 2).await.unwrap(), New);
        assert_eq!(store.claim_idempotency_key(api, "new", "other", at(0) + day * 2).await.unwrap(), Mismatch);
        store.close().await;
    }
}
