//! Facts in the store, on every engine available here: the fact and its
//! timeline entry, the stage derived from all facts and staff moves, duplicates
//! by `event_id` and by "same kind, same instant, same referral", facts about
//! nobody, and the viral loop's enrollment.

use jiff::Timestamp;
use serde_json::json;
use uuid::Uuid;
use vouch_domain::program::parse_program;
use vouch_domain::referral::{
    AttributionInput, Decision, FactKind, NotAttributable, ReferralId, Rules, Source, Stage, attribute, person_key,
};
use vouch_domain::{Email, EnrollmentId, ParticipantId, ParticipantKind, ProgramId, ProgramVersionId, ReferralCode};
use vouch_store::testing::TestDatabase;
use vouch_store::{
    ApplyOutcome, AttributionFacts, ConvertedEnrollment, FactOutcome, FactProspect, NewEnrollment, NewFact,
    NewProspect, NewReferral, RecordFactError, ReferralEventKind, ReferralRecord, Store, StoredProgram,
};

async fn for_each_engine(test: impl AsyncFn(Store, &'static str)) {
    for db in TestDatabase::all().await {
        let store = db.open().await;
        test(store.clone(), db.engine).await;
        store.close().await;
    }
}

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).expect("a valid instant")
}

async fn program(store: &Store, slug: &str) -> StoredProgram {
    let path = format!("{}/../../examples/programs/{slug}.toml", env!("CARGO_MANIFEST_DIR"));
    let source = std::fs::read_to_string(path).expect("an example program");
    let definition = parse_program(&source).expect("a valid program");
    let ids = (ProgramId(Uuid::now_v7()), ProgramVersionId(Uuid::now_v7()));
    match store.apply_program(&definition, &source, ids, at(0)).await.expect("apply") {
        ApplyOutcome::Created(p) => p,
        other => panic!("{other:?}"),
    }
}

async fn referrer(store: &Store, program: &StoredProgram, email: &str, code: &str) -> ReferralCode {
    let new = NewEnrollment {
        program_id: program.id,
        participant_id: ParticipantId(Uuid::now_v7()),
        enrollment_id: EnrollmentId(Uuid::now_v7()),
        email: Email::parse(email).unwrap(),
        name: "Referrer".into(),
        kind: ParticipantKind::Customer,
        team: None,
        company: None,
        code: ReferralCode::parse(code).unwrap(),
        vanity: true,
        now: at(1),
    };
    store.enroll(&new, |_| true).await.expect("enroll").code
}

fn new_referral(program: &StoredProgram, code: &ReferralCode, prospect: &str, now: Timestamp) -> NewReferral {
    NewReferral {
        id: ReferralId(Uuid::now_v7()),
        program_id: program.id,
        program_version_id: program.version_id,
        code: code.clone(),
        source: Source::Lead,
        prospect: NewProspect { email: Some(Email::parse(prospect).unwrap()), ..NewProspect::default() },
        consent: None,
        note: Some("a note".into()),
        actor: "tester".into(),
        now,
        recent_since: at(0),
        registry_domain: None,
    }
}

/// The domain's decision with the program's rules, as the server takes it.
fn decide(program: &StoredProgram, now: Timestamp) -> impl Fn(&AttributionFacts) -> Result<Decision, NotAttributable> {
    let rules = Rules::from_program(&program.definition);
    move |facts| {
        attribute(&AttributionInput {
            rules: rules.clone(),
            referrer: facts.referrer.clone(),
            prospect: facts.prospect.clone(),
            source: Source::Lead,
            now,
            in_registry: facts.registry_match.is_some(),
            holder: facts.holder,
            referrer_ip_hashes: Vec::new(),
            recent_leads: facts.recent_leads,
        })
    }
}

async fn create(store: &Store, program: &StoredProgram, code: &ReferralCode, prospect: &str) -> ReferralRecord {
    let new = new_referral(program, code, prospect, at(10));
    store.create_referral(&new, decide(program, at(10))).await.expect("create referral")
}

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
