//! `vouch import customers FILE.csv`: load the customer registry from a file.
//!
//! The whole file is read and checked before the database is touched; one bad
//! row refuses the file, naming every bad row (`FILE:LINE: column: reason`).

use std::path::Path;

use jiff::Timestamp;
use vouch_domain::customer::{CustomerEntry, CustomerId, CustomerSource};
use vouch_store::{NewCustomer, Store};

use crate::commands::Failure;

/// The header a file must have, exactly.
pub const HEADER: [&str; 3] = ["email", "domain", "external_id"];

/// Bad rows listed at most; the rest are counted.
const MAX_LISTED: usize = 50;

/// A checked file: its entries, and how many rows were empty.
#[derive(Debug)]
pub struct CustomerFile {
    pub entries: Vec<CustomerEntry>,
    pub empty_rows: u64,
}

/// Reads and checks a customers CSV file. Rows whose every field is empty (as
/// spreadsheets export after the data) are skipped; anything else that is not a
/// valid entry refuses the whole file.
pub fn read_customer_file(path: &Path) -> Result<CustomerFile, String> {
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|e| format!("{shown}: cannot read: {e}"))?;
    let mut reader = csv::ReaderBuilder::new().has_headers(true).trim(csv::Trim::All).from_reader(bytes.as_slice());
    let header = reader.headers().map_err(|e| format!("{shown}:1: the header cannot be read: {e}"))?.clone();
    let names: Vec<&str> = header.iter().map(|h| h.trim_start_matches('\u{feff}')).collect();
    if names != HEADER {
        let missing: Vec<&str> = HEADER.iter().copied().filter(|h| !names.contains(h)).collect();
        let extra: Vec<&str> = names.iter().copied().filter(|h| !HEADER.contains(h)).collect();
        let mut why = Vec::new();
        if !missing.is_empty() {
            why.push(format!("missing {}", missing.join(", ")));
        }
        if !extra.is_empty() {
            why.push(format!("unknown {}", extra.iter().map(|h| format!("`{h}`")).collect::<Vec<_>>().join(", ")));
        }
        if why.is_empty() {
            why.push("columns in another order or repeated".into());
        }
        return Err(format!(
            "{shown}:1: the header is `{}` but must be exactly `{}` ({}).\nNothing was imported.",
            names.join(","),
            HEADER.join(","),
            why.join("; ")
        ));
    }
    let mut entries = Vec::new();
    let mut empty_rows = 0;
    let mut problems: Vec<String> = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                let line = e.position().map_or_else(String::new, |p| format!(":{}", p.line()));
                problems.push(match e.kind() {
                    csv::ErrorKind::UnequalLengths { len, .. } => {
                        format!("{shown}{line}: the row has {len} fields; the header has {}", HEADER.len())
                    }
                    csv::ErrorKind::Utf8 { .. } => format!("{shown}{line}: the row is not valid UTF-8 text"),
                    _ => format!("{shown}{line}: {e}"),
                });
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        if record.iter().all(str::is_empty) {
            empty_rows += 1;
            continue;
        }
        match CustomerEntry::parse(record.get(0), record.get(1), record.get(2)) {
            Ok(entry) => entries.push(entry),
            Err(errs) => problems.extend(errs.into_iter().map(|p| match p.field {
                Some(field) => format!("{shown}:{line}: {}: {}", field.as_str(), p.detail),
                None => format!("{shown}:{line}: {}", p.detail),
            })),
        }
    }
    if !problems.is_empty() {
        let more = problems.len().saturating_sub(MAX_LISTED);
        problems.truncate(MAX_LISTED);
        if more > 0 {
            problems.push(format!("… and {more} more."));
        }
        problems.push("Nothing was imported.".into());
        return Err(problems.join("\n"));
    }
    Ok(CustomerFile { entries, empty_rows })
}

/// Checks the file, then loads it in one transaction and says what it did.
pub async fn import_customers(path: &Path, open: impl AsyncFnOnce() -> anyhow::Result<Store>) -> Result<(), Failure> {
    let file = read_customer_file(path).map_err(Failure::Invalid)?;
    let store = open().await?;
    let customers: Vec<NewCustomer> = file
        .entries
        .into_iter()
        .map(|entry| NewCustomer { id: CustomerId(uuid::Uuid::now_v7()), entry, source: CustomerSource::Import })
        .collect();
    let done = store.add_customers(&customers, Timestamp::now()).await;
    store.close().await;
    let done = done?;
    println!("Imported {} customers ({} already known)", done.added, done.already_known);
    if file.empty_rows > 0 {
        println!("Skipped {} empty rows.", file.empty_rows);
    }
    Ok(())
}
