//! Notification preferences and referrers' IP hashes in the store, on every
//! engine available here: the stage-update outbox row written with the stage
//! change a fact causes, as the referrer wants it and once per transition, and
//! the recorded IP hashes reaching attribution.

use std::sync::Mutex;

use serde_json::json;
use uuid::Uuid;
use vouch_domain::notify::StageUpdates;
use vouch_domain::referral::{FactKind, Status, person_key};
use vouch_domain::{Email, ParticipantId};
use vouch_store::{FactProspect, NewFact, Store, StoreError, StoredProgram};

mod common;

use common::*;

fn fact(program: &StoredProgram, kind: FactKind, email: &str, when: i64) -> NewFact {
    let e = Email::parse(email).unwrap();
    NewFact {
        id: Uuid::now_v7(),
        program_id: program.id,
        kind,
        occurred_at: at(when),
        event_id: Some(format!("{}-{email}-{when}", kind.as_str())),
        referral_id: None,
        prospect: FactProspect {
            email_norm: Some(e.normalized()),
            person_key: Some(person_key(&e)),
            external_id: None,
        },
        units: Some(1),
        value: None,
        contract_date: Some("2027-01-15".into()),
        raw: json!({}),
        actor: "tester".into(),
        now: at(10_000),
    }
}

/// Stage updates queued to `to`: (row id, stage).
async fn stage_updates_to(store: &Store, to: &str) -> Vec<(Uuid, String)> {
    let items = store.outbox_items(None).await.unwrap();
    items
        .iter()
        .filter(|i| i.payload["template"] == "stage_update" && i.payload["to"] == to)
        .map(|i| (i.id, i.payload["stage"].as_str().unwrap_or_default().to_string()))
        .collect()
}

#[tokio::test]
async fn a_preference_defaults_to_all_is_kept_and_needs_a_participant() {
    for_each_engine(async |store, e| {
        let p = program(&store, "agent-gift-card").await;
        let (jane, _) = enrolled(&store, &p, "jane@jane.example", "JANE-1").await;
        assert_eq!(store.stage_updates(jane).await.unwrap(), StageUpdates::All, "{e}");
        for wanted in [StageUpdates::None, StageUpdates::WonOnly, StageUpdates::All] {
            store.set_stage_updates(jane, wanted, at(5)).await.unwrap();
            assert_eq!(store.stage_updates(jane).await.unwrap(), wanted, "{e}");
        }
        let nobody = ParticipantId(Uuid::now_v7());
        assert!(matches!(store.set_stage_updates(nobody, StageUpdates::None, at(5)).await, Err(StoreError::NotFound)));
        assert!(matches!(store.stage_updates(nobody).await, Err(StoreError::NotFound)), "{e}");
    })
    .await;
}

#[tokio::test]
async fn a_fact_that_changes_the_stage_queues_one_stage_update_named_after_the_fact() {
    for_each_engine(async |store, e| {
        let p = program(&store, "agent-gift-card").await;
        let (_, code) = enrolled(&store, &p, "jane@jane.example", "JANE-1").await;
        create(&store, &p, &code, "bob@bob.example").await;
        let won = fact(&p, FactKind::Won, "bob@bob.example", 100);
        store.record_fact(&won, None).await.expect("record");
        // Again (a duplicate), and a later `won` that changes nothing.
        store.record_fact(&NewFact { id: Uuid::now_v7(), ..won.clone() }, None).await.expect("again");
        store.record_fact(&fact(&p, FactKind::Won, "bob@bob.example", 200), None).await.expect("later");
        assert_eq!(stage_updates_to(&store, "jane@jane.example").await, [(won.id, "won".to_string())], "{e}");
    })
    .await;
}

#[tokio::test]
async fn a_referrer_who_wants_won_only_hears_of_the_won_and_one_who_wants_none_of_nothing() {
    for_each_engine(async |store, e| {
        let p = program(&store, "agent-gift-card").await;
        let (jane, jane_code) = enrolled(&store, &p, "jane@jane.example", "JANE-1").await;
        let (john, john_code) = enrolled(&store, &p, "john@john.example", "JOHN-1").await;
        store.set_stage_updates(jane, StageUpdates::WonOnly, at(2)).await.unwrap();
        store.set_stage_updates(john, StageUpdates::None, at(2)).await.unwrap();
        create(&store, &p, &jane_code, "bob@bob.example").await;
        create(&store, &p, &john_code, "ann@ann.example").await;
        for prospect in ["bob@bob.example", "ann@ann.example"] {
            store.record_fact(&fact(&p, FactKind::Qualified, prospect, 100), None).await.expect("qualified");
            store.record_fact(&fact(&p, FactKind::Won, prospect, 200), None).await.expect("won");
        }
        let jane_heard: Vec<String> =
            stage_updates_to(&store, "jane@jane.example").await.into_iter().map(|(_, s)| s).collect();
        assert_eq!(jane_heard, ["won"], "{e}");
        assert!(stage_updates_to(&store, "john@john.example").await.is_empty(), "{e}");
    })
    .await;
}

#[tokio::test]
async fn the_ip_hashes_recorded_for_a_referrer_reach_attribution() {
    for_each_engine(async |store, e| {
        let p = program(&store, "agent-gift-card").await;
        let (jane, code) = enrolled(&store, &p, "jane@jane.example", "JANE-1").await;
        store.record_participant_ip(jane, "hash-b", at(2)).await.unwrap();
        store.record_participant_ip(jane, "hash-a", at(3)).await.unwrap();
        store.record_participant_ip(jane, "hash-b", at(4)).await.unwrap();
        // Nobody: nothing recorded, no error.
        store.record_participant_ip(ParticipantId(Uuid::now_v7()), "hash-c", at(4)).await.unwrap();
        assert_eq!(store.participant_ip_hashes(jane).await.unwrap(), ["hash-a", "hash-b"], "{e}");

        let seen = Mutex::new(Vec::new());
        let base = decide(&p, at(10));
        let new = new_referral(&p, &code, "bob@bob.example", at(10));
        let r = store
            .create_referral(&new, |facts| {
                seen.lock().unwrap().clone_from(&facts.referrer_ip_hashes);
                base(facts)
            })
            .await
            .expect("create");
        assert_eq!(r.status, Status::Active, "{e}");
        assert_eq!(*seen.lock().unwrap(), ["hash-a", "hash-b"], "{e}: the referrer's hashes");
    })
    .await;
}
