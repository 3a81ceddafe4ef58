//! `vouch demo --scale N`: the demo at any size, up to millions of referrals,
//! written in bulk (`vouch_store::bulk`) instead of through the per-referral
//! paths, which take minutes per ten thousand.
//!
//! What is written is what those paths would have written: each referral's
//! decision comes from the domain's [`attribute`], its stage from its staff
//! moves and facts, and its rewards from the program rules
//! ([`vouch_store::plan_bulk_rewards`]). The spread: referrers of every kind
//! (one per 25 referrals), referrals over the last year, some already referred
//! (rejected, the first referrer holding the prospect), most moved along the
//! pipeline, and the won ones rewarded — per-technician cash on a two-month
//! hold (due for the older ones), gift cards awaiting approval, invoice
//! credits, plan upgrades and the referee's welcome credit. Referrers in the
//! per-technician program have payout details (most by bank transfer). The same
//! seed makes the same demo.

use std::collections::HashSet;

use jiff::Timestamp;
use uuid::Uuid;
use vouch_domain::participant::ParticipantStatus;
use vouch_domain::payout::{Iban, PayoutDetails};
use vouch_domain::program::parse_program;
use vouch_domain::referral::{AttributionInput, Holder, Prospect, Referrer, Rules, Source, Stage, Status, attribute};
use vouch_domain::{
    Email, Money, ParticipantId, ParticipantKind, ProgramId, ProgramVersionId, ReferralCode, ReferralId,
};
use vouch_store::{
    BulkEnrollment, BulkParticipant, BulkReferral, BulkWon, Consent, NewProspect, Store, StoredProgram,
    plan_bulk_rewards,
};

use super::{
    COMPANIES, DAY_MINUTES, DEMO_ACTOR, DemoError, Dice, EXAMPLE_PROGRAMS, FIRST, FREE_MAIL, KINDS, LAST, LEAD_NOTES,
    Outcome, PROSPECT_COMPANIES, ReferralCounts, SALES_REPS, ago, ascii, pipeline_path, registry,
};

/// Referrals per referrer, on average.
const REFERRALS_PER_REFERRER: u64 = 25;
/// Referrals written per transaction.
const BATCH: usize = 20_000;
/// How the referrals spread over the programs (in `EXAMPLE_PROGRAMS` order):
/// the per-technician program, with its held cash, takes the most.
const PROGRAM_WEIGHTS: [u64; 5] = [12, 12, 55, 9, 12];
const YEAR_MINUTES: u64 = 365 * DAY_MINUTES;
const SALES_CYCLE_MINUTES: u64 = 42 * DAY_MINUTES;

/// Fills an empty database with the example programs and `n` referrals in
/// bulk; adds nothing to a database that has a program.
pub async fn fill_scaled(store: &Store, now: Timestamp, n: u64, seed: u64) -> Result<Outcome, DemoError> {
    if store.has_programs().await? {
        return Ok(Outcome::AlreadyHasData);
    }
    let setup = |e: &dyn std::fmt::Display| DemoError::Setup(e.to_string());
    let mut programs: Vec<StoredProgram> = Vec::new();
    for (slug, source) in EXAMPLE_PROGRAMS {
        let definition = parse_program(source).map_err(|e| DemoError::Setup(format!("{slug}: {e}")))?;
        let ids = (ProgramId(Uuid::now_v7()), ProgramVersionId(Uuid::now_v7()));
        store.apply_program(&definition, source, ids, now).await?;
        programs.push(store.program(slug).await?);
    }
    let mut dice = Dice(seed);

    // Referrers: every kind, each in one eligible program, a third in a second.
    let referrers = (n / REFERRALS_PER_REFERRER).max(KINDS.len() as u64 * 2);
    let weight: usize = KINDS.iter().map(|(_, w)| w).sum();
    let mut participants = Vec::new();
    let mut enrollments: Vec<BulkEnrollment> = Vec::new();
    let mut holders: Vec<DemoHolder> = Vec::new();
    let mut codes = HashSet::new();
    for i in 0..referrers {
        let mut pick = dice.below(weight as u64) as usize;
        let kind = KINDS
            .iter()
            .find(|(_, w)| {
                pick < *w || {
                    pick -= w;
                    false
                }
            })
            .map_or(ParticipantKind::Customer, |k| k.0);
        let (first, last) = (*dice.pick(FIRST), *dice.pick(LAST));
        let (company, domain) = *dice.pick(COMPANIES);
        let email_domain = match kind {
            ParticipantKind::Employee => "vouch-demo.example",
            ParticipantKind::Influencer | ParticipantKind::Other => "mail.example",
            _ => domain,
        };
        let local = format!("{}.{}.r{i}", ascii(first), ascii(last)).to_lowercase();
        let email = Email::parse(&format!("{local}@{email_domain}")).map_err(|e| setup(&e))?;
        let team =
            matches!(kind, ParticipantKind::Customer | ParticipantKind::CustomerStaff).then(|| company.to_string());
        let eligible: Vec<usize> = (0..programs.len()).filter(|&p| programs[p].definition.is_eligible(kind)).collect();
        if eligible.is_empty() {
            continue;
        }
        let id = ParticipantId(Uuid::now_v7());
        let joined_at = ago(now, YEAR_MINUTES + 30 * DAY_MINUTES + dice.below(30 * DAY_MINUTES))?;
        let joins = if dice.below(3) == 0 { 2 } else { 1 };
        let mut joined = Vec::new();
        for _ in 0..joins.min(eligible.len()) {
            let program = *dice.pick(&eligible);
            if joined.contains(&program) {
                continue;
            }
            joined.push(program);
            let code = loop {
                let mut bytes = [0u8; vouch_domain::code::GENERATED_LEN];
                for b in &mut bytes {
                    *b = dice.next() as u8;
                }
                let code = ReferralCode::generate(bytes);
                if codes.insert(code.as_str().to_string()) {
                    break code;
                }
            };
            holders.push(DemoHolder {
                program,
                enrollment: Uuid::now_v7(),
                participant: id,
                code,
                referrer: Referrer {
                    participant: id,
                    email: email.clone(),
                    kind,
                    team: team.clone(),
                    company_domain: None,
                    status: ParticipantStatus::Active,
                    code_active: true,
                },
            });
            let h = holders.last().expect("just pushed");
            enrollments.push(BulkEnrollment {
                id: h.enrollment,
                program_id: programs[program].id,
                participant_id: id,
                code: h.code.clone(),
                created_at: joined_at,
            });
        }
        // Whoever can earn cash says where to pay it: mostly a bank, some PayPal.
        let cash = joined.iter().any(|&p| programs[p].definition.rewards().iter().any(|r| r.kind.as_str() == "cash"));
        let payout = if !cash {
            None
        } else if dice.below(20) < 17 {
            Some(PayoutDetails::BankTransfer {
                iban: Iban::parse(&iban(&mut dice)).map_err(|e| setup(&e))?,
                account_holder: format!("{first} {last}"),
            })
        } else {
            Some(PayoutDetails::Paypal { email: email.clone() })
        };
        participants.push(BulkParticipant {
            id,
            email,
            name: format!("{first} {last}"),
            kind,
            team,
            company: (!matches!(kind, ParticipantKind::Influencer | ParticipantKind::Other))
                .then(|| company.to_string()),
            created_at: joined_at,
            payout,
        });
    }
    store.bulk_insert_people(&participants, &enrollments).await?;
    drop(enrollments);
    let by_program: Vec<Vec<usize>> =
        (0..programs.len()).map(|p| (0..holders.len()).filter(|&h| holders[h].program == p).collect()).collect();
    let customers = registry(&mut dice)?;
    store.add_customers(&customers, now).await?;

    // When each referral arrived and in which program, then each in time order.
    let total_weight: u64 = PROGRAM_WEIGHTS.iter().sum();
    let mut plan: Vec<(Timestamp, usize)> = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let mut pick = dice.below(total_weight);
        let mut program = 0;
        while pick >= PROGRAM_WEIGHTS[program] || by_program[program].is_empty() {
            pick = pick.saturating_sub(PROGRAM_WEIGHTS[program]);
            program = (program + 1) % programs.len();
        }
        plan.push((ago(now, dice.below(YEAR_MINUTES))?, program));
    }
    plan.sort_by_key(|(at, _)| *at);

    let rules: Vec<Rules> = programs.iter().map(|p| Rules::from_program(&p.definition)).collect();
    // The prospects each program's active referrals hold: what a duplicate repeats.
    let mut held: Vec<Vec<(ReferralId, Email)>> = vec![Vec::new(); programs.len()];
    let mut counts = ReferralCounts::default();
    let mut stage_counts = [0usize; 6];
    let mut status_counts = [0usize; 3];
    let mut already_referred = 0;
    let mut earners = Vec::new();
    let mut batch = Vec::with_capacity(BATCH);
    for (serial, (at, program)) in plan.into_iter().enumerate() {
        let holder = &holders[*dice.pick(&by_program[program])];
        let duplicate = dice.below(100) < 6 && !held[program].is_empty();
        let (email, name, company, previous) = if duplicate {
            let (id, email) = held[program][dice.below(held[program].len() as u64) as usize].clone();
            (email, None, None, Some(id))
        } else {
            let (first, last) = (*dice.pick(FIRST), *dice.pick(LAST));
            let local = format!("{}.{}.p{serial}", ascii(first), ascii(last)).to_lowercase();
            let (domain, company) = if dice.below(5) < 3 {
                let (company, domain) = *dice.pick(PROSPECT_COMPANIES);
                (domain, Some(company.to_string()))
            } else {
                (*dice.pick(FREE_MAIL), None)
            };
            let email = Email::parse(&format!("{local}@{domain}")).map_err(|e| setup(&e))?;
            (email, Some(format!("{first} {last}")), company, None)
        };
        let source = match dice.below(100) {
            0..=54 => Source::Lead,
            55..=89 => Source::SignupWithCode,
            _ => Source::Staff,
        };
        let decision = attribute(&AttributionInput {
            rules: rules[program].clone(),
            referrer: holder.referrer.clone(),
            prospect: Prospect { email: Some(email.clone()), ..Prospect::default() },
            source: source.clone(),
            now: at,
            in_registry: false,
            holder: previous.map(|referral| Holder { referral, status: Status::Active }),
            referrer_ip_hashes: Vec::new(),
            recent_leads: 0,
        })
        .map_err(|e| setup(&e))?;
        let id = ReferralId(Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            at.as_second() as u64,
            at.subsec_nanosecond() as u32,
        )));
        let lead = source == Source::Lead;
        let mut referral = BulkReferral {
            id,
            program,
            enrollment_id: holder.enrollment,
            participant_id: holder.participant,
            code: holder.code.clone(),
            source,
            prospect: NewProspect {
                email: Some(email.clone()),
                name,
                company,
                phone: (dice.below(2) == 0)
                    .then(|| format!("+1 555 {:03} {:04}", dice.below(1000), dice.below(10_000))),
                external_id: None,
            },
            consent: lead.then(|| Consent {
                text: "The referrer confirmed that the prospect agreed to be contacted about this referral program."
                    .into(),
                at,
            }),
            note: (lead && dice.below(3) == 0).then(|| dice.pick(LEAD_NOTES).to_string()),
            decision,
            actor: DEMO_ACTOR.into(),
            created_at: at,
            moves: Vec::new(),
            won: None,
            churned_at: None,
            assignee: None,
        };
        if referral.decision.status == Status::Active {
            held[program].push((id, email));
            work(&mut referral, &programs[program], &mut dice, now)?;
        }
        if referral.decision.rejection_reason.is_some() {
            already_referred += 1;
        }
        stage_counts[Stage::ALL.iter().position(|s| *s == referral.stage()).unwrap_or(0)] += 1;
        status_counts[Status::ALL.iter().position(|s| *s == referral.decision.status).unwrap_or(0)] += 1;
        counts.assigned += usize::from(referral.assignee.is_some());
        earners.extend(referral.earner());
        batch.push(referral);
        if batch.len() == BATCH {
            store.bulk_insert_referrals(&programs, &batch).await?;
            batch.clear();
        }
    }
    store.bulk_insert_referrals(&programs, &batch).await?;
    drop(batch);
    drop(held);

    let rewards = plan_bulk_rewards(&programs, &earners)?;
    for chunk in rewards.chunks(BATCH) {
        store.bulk_insert_rewards(&programs, chunk, DEMO_ACTOR).await?;
    }

    store.analyze().await?;
    let (api_key, _) = crate::api_keys::create(store, "demo", vouch_domain::api_key::Scope::all(), now).await?;
    counts.total = n as usize;
    counts.by_stage = Stage::ALL.iter().zip(stage_counts).map(|(s, c)| (*s, c)).collect();
    counts.by_status = Status::ALL.iter().zip(status_counts).map(|(s, c)| (*s, c)).collect();
    counts.by_reason = vouch_domain::referral::RejectionReason::ALL
        .iter()
        .map(|&r| (r, if r == vouch_domain::referral::RejectionReason::AlreadyReferred { already_referred } else { 0 }))
        .collect();
    Ok(Outcome::Filled {
        programs: programs.len(),
        participants: participants.len(),
        clicks: 0,
        customers: customers.len(),
        referrals: counts,
        api_key,
        sample_code: holders.first().map(|h| h.code.to_string()).unwrap_or_default(),
    })
}

/// One enrollment, as referrals need it.
struct DemoHolder {
    program: usize,
    enrollment: Uuid,
    participant: ParticipantId,
    code: ReferralCode,
    referrer: Referrer,
}

/// Staff work an active referral along the pipeline (older ones got further);
/// a won one has its `won` fact, with the units, contract date and value the
/// company's backend would send, and some churn later.
fn work(r: &mut BulkReferral, program: &StoredProgram, dice: &mut Dice, now: Timestamp) -> Result<(), DemoError> {
    let age = now.duration_since(r.created_at).as_mins().max(0) as u64;
    let path = pipeline_path(dice, age, &[17, 31, 43, 67, 81, 86, 91]);
    if path.is_empty() {
        return Ok(());
    }
    // A sales cycle of at most six weeks (less for the recent ones).
    let cycle = age.clamp(2, SALES_CYCLE_MINUTES);
    let mut offsets: Vec<u64> = (0..path.len()).map(|_| 1 + dice.below(cycle - 1)).collect();
    offsets.sort_unstable();
    offsets.dedup();
    if offsets.len() < path.len() {
        // Two steps drawn at the same minute: space them out instead.
        offsets = (1..=path.len() as u64).collect();
    }
    r.assignee = (dice.below(2) == 0).then(|| dice.pick(SALES_REPS).to_string());
    let currency = program.definition.currency();
    for (stage, offset) in path.iter().zip(offsets) {
        let at = ago(now, age - offset)?;
        match stage {
            Stage::Won => {
                let tz = jiff::tz::TimeZone::get(program.definition.timezone())
                    .map_err(|e| DemoError::Setup(e.to_string()))?;
                // Signed a day or two before the deal was reported won.
                let signed = at
                    .to_zoned_datetime(tz)
                    .date()
                    .checked_sub(jiff::Span::new().days(dice.below(3) as i64))
                    .map_err(|e| DemoError::Setup(e.to_string()))?;
                r.won = Some(BulkWon {
                    at,
                    units: Some(1 + dice.below(3) as u32 * dice.below(12) as u32 + dice.below(6) as u32),
                    contract_date: Some(signed),
                    value: Some(Money::new((120 + dice.below(4_800) as i64) * 100, currency)),
                });
            }
            Stage::Churned => r.churned_at = Some(at),
            other => r.moves.push((*other, at)),
        }
    }
    Ok(())
}

/// A German IBAN with correct check digits (ISO 13616: mod 97 of the BBAN
/// followed by the country's letters as numbers and `00`).
fn iban(dice: &mut Dice) -> String {
    let bban: String = (0..18).map(|_| char::from(b'0' + dice.below(10) as u8)).collect();
    let digits = format!("{bban}131400");
    let rem = digits.bytes().fold(0u64, |acc, b| (acc * 10 + u64::from(b - b'0')) % 97);
    format!("DE{:02}{bban}", 98 - rem)
}
