//! Setup shared by the store's test binaries: a fresh database per engine, an
//! example program, a referrer, and a referral decided by the domain's rules.
#![allow(dead_code)] // each test binary uses its own share of these

use jiff::Timestamp;
use uuid::Uuid;
use vouch_domain::program::parse_program;
use vouch_domain::referral::{AttributionInput, Decision, NotAttributable, ReferralId, Rules, Source, attribute};
use vouch_domain::{Email, EnrollmentId, ParticipantId, ParticipantKind, ProgramId, ProgramVersionId, ReferralCode};
use vouch_store::testing::TestDatabase;
use vouch_store::{
    ApplyOutcome, AttributionFacts, NewEnrollment, NewProspect, NewReferral, ReferralRecord, Store, StoredProgram,
};

pub async fn for_each_engine(test: impl AsyncFn(Store, &'static str)) {
    for db in TestDatabase::all().await {
        let store = db.open().await;
        test(store.clone(), db.engine).await;
        store.close().await;
    }
}

pub fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).expect("a valid instant")
}

pub async fn program(store: &Store, slug: &str) -> StoredProgram {
    let path = format!("{}/../../examples/programs/{slug}.toml", env!("CARGO_MANIFEST_DIR"));
    let source = std::fs::read_to_string(path).expect("an example program");
    let definition = parse_program(&source).expect("a valid program");
    let ids = (ProgramId(Uuid::now_v7()), ProgramVersionId(Uuid::now_v7()));
    match store.apply_program(&definition, &source, ids, at(0)).await.expect("apply") {
        ApplyOutcome::Created(p) => p,
        other => panic!("{other:?}"),
    }
}

pub async fn referrer(store: &Store, program: &StoredProgram, email: &str, code: &str) -> ReferralCode {
    enrolled(store, program, email, code).await.1
}

/// Enrolls `email` with `code`: the participant and their code.
pub async fn enrolled(
    store: &Store,
    program: &StoredProgram,
    email: &str,
    code: &str,
) -> (ParticipantId, ReferralCode) {
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
    let done = store.enroll(&new, |_| true).await.expect("enroll");
    (done.participant_id, done.code)
}

pub fn new_referral(program: &StoredProgram, code: &ReferralCode, prospect: &str, now: Timestamp) -> NewReferral {
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
pub fn decide(
    program: &StoredProgram,
    now: Timestamp,
) -> impl Fn(&AttributionFacts) -> Result<Decision, NotAttributable> {
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

pub async fn create(store: &Store, program: &StoredProgram, code: &ReferralCode, prospect: &str) -> ReferralRecord {
    let new = new_referral(program, code, prospect, at(10));
    store.create_referral(&new, decide(program, at(10))).await.expect("create referral")
}
