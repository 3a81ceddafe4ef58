//! Facts in the store, on every engine available here: the fact and its
//! timeline entry, the stage derived from all facts and staff moves, duplicates
//! by `event_id` and by "same kind, same instant, same referral", facts about
//! nobody, and the viral loop's enrollment.

use serde_json::json;
use uuid::Uuid;
use vouch_domain::referral::{FactKind, ReferralId, Stage, person_key};
use vouch_domain::{Email, EnrollmentId, ParticipantId, ParticipantKind, ReferralCode};
use vouch_store::{
    ConvertedEnrollment, FactOutcome, FactProspect, NewFact, RecordFactError, ReferralEventKind, Store, StoredProgram,
};

mod common;

use common::*;

fn prospect_of(email: &str) -> FactProspect {
    let e = Email::parse(email).unwrap();
    FactProspect { email_norm: Some(e.normalized()), person_key: Some(person_key(&e)), external_id: None }
}

fn new_fact(program: &StoredProgram, kind: FactKind, email: &str, when: i64, event_id: Option<&str>) -> NewFact {
    NewFact {
        id: Uuid::now_v7(),
        program_id: program.id,
        kind,
        occurred_at: at(when),
        event_id: event_id.map(str::to_string),
        referral_id: None,
        prospect: prospect_of(email),
        units: None,
        value: None,
        contract_date: None,
        raw: json!({}),
        actor: "tester".into(),
        now: at(10_000),
    }
}

fn convert(program: &StoredProgram, code: &str) -> ConvertedEnrollment {
    ConvertedEnrollment {
        participant_id: ParticipantId(Uuid::now_v7()),
        enrollment_id: EnrollmentId(Uuid::now_v7()),
        code: ReferralCode::parse(code).unwrap(),
        program_slug: program.definition.slug().as_str().to_string(),
    }
}

async fn record(store: &Store, fact: &NewFact, conv: Option<&ConvertedEnrollment>) -> FactOutcome {
    store.record_fact(fact, conv).await.expect("record the fact")
}

#[tokio::test]
async fn facts_derive_the_stage_in_time_order_and_repeats_are_duplicates() {
    for_each_engine(async |store, e| {
        let p = program(&store, "agent-gift-card").await;
        let code = referrer(&store, &p, "jane@jane.example", "JANE-1").await;
        let r = create(&store, &p, &code, "bob@bob.example").await;
        let bob = "Bob@bob.example";

        // A late `won`, then the earlier `qualified`: won either way.
        let won = new_fact(&p, FactKind::Won, bob, 200, Some("deal-1"));
        let FactOutcome::Recorded { referral_id, stage_before, stage_after, .. } = record(&store, &won, None).await
        else {
            panic!("{e}: recorded")
        };
        assert_eq!((referral_id, stage_before, stage_after), (Some(r.id), Some(Stage::New), Some(Stage::Won)), "{e}");
        let qualified = new_fact(&p, FactKind::Qualified, bob, 100, None);
        let FactOutcome::Recorded { stage_after, .. } = record(&store, &qualified, None).await else { panic!("{e}") };
        assert_eq!(stage_after, Some(Stage::Won), "{e}");

        // The same sender id, or the same fact without one: duplicates.
        let again = NewFact { id: Uuid::now_v7(), ..won.clone() };
        assert_eq!(
            record(&store, &again, None).await,
            FactOutcome::Duplicate { original: won.id, referral_id: Some(r.id), stage: Some(Stage::Won) },
            "{e}"
        );
        let again = NewFact { id: Uuid::now_v7(), ..qualified.clone() };
        assert!(matches!(record(&store, &again, None).await, FactOutcome::Duplicate { original, .. } if original == qualified.id), "{e}");
        assert_eq!(store.count_facts().await.unwrap(), 2, "{e}");

        // A derived change is no staff move: staff may churn the won referral.
        let timeline = store.referral(r.id).await.unwrap().timeline;
        let stages: Vec<_> = timeline.iter().filter(|t| t.kind == ReferralEventKind::Stage).map(|t| t.stage_to).collect();
        assert_eq!(stages, vec![Some(Stage::Won)], "{e}");
        let moved = store.move_stage(r.id, Stage::Churned, "staff", None, at(20_000)).await.expect("churn");
        assert_eq!(moved.stage, Stage::Churned, "{e}");
    })
    .await;
}

#[tokio::test]
async fn a_fact_about_nobody_is_stored_without_a_referral_and_an_unknown_referral_stores_nothing() {
    for_each_engine(async |store, e| {
        let p = program(&store, "agent-gift-card").await;
        let fact = new_fact(&p, FactKind::Signup, "nobody@nowhere.example", 5, None);
        let FactOutcome::Recorded { referral_id, stage_after, .. } = record(&store, &fact, None).await else {
            panic!("{e}")
        };
        assert_eq!((referral_id, stage_after), (None, None), "{e}");
        let named = NewFact {
            referral_id: Some(ReferralId(Uuid::now_v7())),
            ..new_fact(&p, FactKind::Won, "x@y.example", 5, None)
        };
        assert!(matches!(store.record_fact(&named, None).await, Err(RecordFactError::UnknownReferral)), "{e}");
        assert_eq!(store.count_facts().await.unwrap(), 1, "{e}");
    })
    .await;
}

#[tokio::test]
async fn winning_a_referral_of_a_program_that_enrolls_converted_customers_enrolls_them_once() {
    for_each_engine(async |store, e| {
        let p = program(&store, "double-sided").await;
        let code = referrer(&store, &p, "jane@jane.example", "JANE-2").await;
        let r = create(&store, &p, &code, "bob@bob.example").await;
        let won = new_fact(&p, FactKind::Won, "bob@bob.example", 100, None);
        let FactOutcome::Recorded { converted, .. } = record(&store, &won, Some(&convert(&p, "BOB-1"))).await else {
            panic!("{e}")
        };
        let converted = converted.expect("enrolled");
        assert_eq!(converted.code.as_str(), "BOB-1", "{e}");
        let participant = store.participant(converted.participant_id).await.unwrap();
        assert_eq!(participant.kind, ParticipantKind::Customer, "{e}");
        let welcome: Vec<_> = store
            .outbox_items(None)
            .await
            .unwrap()
            .into_iter()
            .filter(|i| i.payload["template"] == "welcome" && i.payload["to"] == "bob@bob.example")
            .collect();
        assert_eq!(welcome.len(), 1, "{e}");
        assert_eq!(welcome[0].payload["code"], "BOB-1", "{e}");
        // Won again later (after a churn): already enrolled, nothing more.
        let churn = new_fact(&p, FactKind::Churned, "bob@bob.example", 200, None);
        record(&store, &churn, None).await;
        let again = new_fact(&p, FactKind::Won, "bob@bob.example", 300, None);
        let FactOutcome::Recorded { converted, stage_after, .. } =
            record(&store, &again, Some(&convert(&p, "BOB-2"))).await
        else {
            panic!("{e}")
        };
        assert_eq!((converted, stage_after), (None, Some(Stage::Won)), "{e}");
        assert_eq!(store.referral(r.id).await.unwrap().stage, Stage::Won, "{e}");
    })
    .await;
}
