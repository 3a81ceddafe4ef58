//! `vouch program simulate FILE --since DATE [--until DATE]`: a draft program
//! version replayed over a period, printed beside the version in force.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use vouch_domain::Money;
use vouch_domain::program::ProgramDefinition;
use vouch_domain::reward::format_amount;
use vouch_domain::reward::simulate::{CompareLine, Payee};
use vouch_store::{SimulateError, SimulationPeriod, Store};

use crate::commands::Failure;

pub async fn simulate(
    store: &Store,
    draft: &ProgramDefinition,
    since: Date,
    until: Option<Date>,
) -> Result<(), Failure> {
    let until = match until {
        Some(u) => u,
        // Today where the program lives: the draft's zone was validated.
        None => TimeZone::get(draft.timezone())
            .map_err(|e| Failure::Other(e.into()))?
            .to_datetime(jiff::Timestamp::now())
            .date(),
    };
    let sim = match store.simulate(draft, SimulationPeriod { since, until }).await {
        Ok(sim) => sim,
        Err(SimulateError::Store(e)) => return Err(Failure::Other(e.into())),
        Err(e) => return Err(Failure::Invalid(format!("{e}\nNothing was simulated."))),
    };
    println!(
        "Program `{}`: version {} in force beside the draft, {} to {} ({} rewards now, {} under the draft).",
        sim.slug,
        sim.current_version,
        since,
        until,
        sim.current.len(),
        sim.draft.len()
    );
    println!();
    let mut months: Vec<Vec<String>> = sim.comparison.by_month.iter().map(|l| row(l, &l.key)).collect();
    months.push(row(&sim.comparison.total, "total"));
    print_table(&["month", "current", "draft", "difference"], &months);
    println!();
    let mut people: Vec<Vec<String>> = sim
        .comparison
        .by_referrer
        .iter()
        .map(|l| {
            let name = match l.key {
                Payee::Referrer(p) => sim.referrers.get(&p).cloned().unwrap_or_else(|| p.to_string()),
                Payee::Referees => "(referees)".to_string(),
            };
            row(l, &name)
        })
        .collect();
    people.push(row(&sim.comparison.total, "total"));
    print_table(&["referrer", "current", "draft", "difference"], &people);
    println!();
    println!("Nothing was stored.");
    Ok(())
}

fn row<K>(l: &CompareLine<K>, name: &str) -> Vec<String> {
    vec![name.to_string(), amount(l.current), amount(l.draft), signed(l.difference)]
}

fn amount(m: Money) -> String {
    format_amount(m)
}

/// A difference shows its sign: `+$1,250`, `-$300`, `$0`.
fn signed(m: Money) -> String {
    if m.amount_minor > 0 { format!("+{}", format_amount(m)) } else { format_amount(m) }
}

/// The first column left-aligned, the amounts right-aligned.
fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            let pad = " ".repeat(w - cell.chars().count());
            if i == 0 {
                out.push_str(&format!("{cell}{pad}"));
            } else {
                out.push_str(&format!("  {pad}{cell}"));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}
