//! `bench/ledger.sh`'s release step: ends every hold due now, as `vouch jobs
//! run` does first (`vouch_server::holds::release_all_due`), without the rest of
//! the job run (handing credits to billing, mail), and says how long it took.
//!
//!   release_holds --data DIR
//!   release_holds --database-url postgres://...

use std::path::PathBuf;
use std::time::Instant;

use vouch_store::{DatabaseConfig, ReleaseOutcome, Store};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (url, dir) = match args.as_slice() {
        [flag, v] if flag == "--database-url" => (Some(v.as_str()), PathBuf::new()),
        [flag, v] if flag == "--data" => (None, PathBuf::from(v)),
        _ => anyhow::bail!("usage: release_holds --data DIR | --database-url URL"),
    };
    let config = DatabaseConfig::from_parts(url, dir).map_err(anyhow::Error::msg)?;
    let store = Store::open(&config).await?;
    let started = Instant::now();
    let report = vouch_server::holds::release_all_due(&store, jiff::Timestamp::now()).await?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "released {} holds in {secs:.3} s: {} approved, {} awaiting approval, {} voided",
        report.entries.len(),
        report.count(ReleaseOutcome::Approved),
        report.count(ReleaseOutcome::AwaitingApproval),
        report.count(ReleaseOutcome::Voided)
    );
    store.close().await;
    Ok(())
}
