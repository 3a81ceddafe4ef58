//! The liability report: what the ledger still owes — pending and approved,
//! unpaid rewards, each with its adjustments — by the month its hold ends and
//! by fulfilment method, per currency.
//!
//! A reward without a hold, or whose hold has already ended, is owed `now`;
//! the others fall in the month of `release_at` in their program's time zone.
//! Adjustments of paid rewards (a re-price after payment, a clawback) are owed
//! or to be recovered now, and show in their own column.

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use jiff::tz::TimeZone;
use uuid::Uuid;
use vouch_domain::program::ProgramDefinition;
use vouch_domain::{Currency, Money};

use crate::{Result, Store, StoreError, on_read, timestamp};

/// The bucket of rewards owed already (no hold, or a hold that has ended).
pub const DUE_NOW: &str = "now";

/// One row of the report: what is owed in one bucket, in one currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiabilityLine {
    /// `YYYY-MM`, [`DUE_NOW`], a reward kind, or empty for the totals.
    pub key: String,
    pub currency: Currency,
    /// Pending rewards (on hold or awaiting approval), with their adjustments.
    pub pending: Money,
    /// Approved, unpaid rewards, with their adjustments.
    pub approved: Money,
    /// Adjustments of paid rewards: owed when positive, to recover when negative.
    pub adjustments: Money,
    pub total: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LiabilityReport {
    /// [`DUE_NOW`] first, then months in order; per currency.
    pub by_month: Vec<LiabilityLine>,
    /// By reward kind (`cash`, `credit`, `gift_card`, …); per currency.
    pub by_method: Vec<LiabilityLine>,
    /// One line per currency.
    pub totals: Vec<LiabilityLine>,
}

/// program_id, kind, status, amount_minor, currency, release_at, sum of the
/// adjustments not yet settled by a paid payout item.
type OwedRow = (Uuid, String, String, i64, String, Option<i64>, i64);

const SELECT_OWED: &str = "SELECT r.program_id, r.kind, r.status, r.amount_minor, r.currency, r.release_at,
        CAST(COALESCE((SELECT SUM(a.amount_minor) FROM reward_adjustments a WHERE a.reward_id = r.id
            AND NOT EXISTS (SELECT 1 FROM payout_item_adjustments l
                            WHERE l.adjustment_id = a.id AND l.state <> 'failed' AND l.state = 'paid')), 0) AS BIGINT)
     FROM rewards r
     WHERE r.status IN ('pending', 'approved', 'paid')";

#[derive(Clone, Copy)]
enum Column {
    Pending,
    Approved,
    Adjustments,
}

type Sums = BTreeMap<(String, &'static str), [i64; 3]>;

fn add(sums: &mut Sums, key: &str, currency: Currency, column: Column, minor: i64) -> Result<()> {
    let slot = &mut sums.entry((key.to_string(), currency.code())).or_insert([0; 3])[column as usize];
    *slot = slot.checked_add(minor).ok_or_else(|| StoreError::Corrupt("the liability overflows".into()))?;
    Ok(())
}

fn lines(sums: Sums, currencies: &HashMap<&'static str, Currency>) -> Result<Vec<LiabilityLine>> {
    sums.into_iter()
        .map(|((key, code), [pending, approved, adjustments])| {
            let currency = currencies[code];
            let total = pending
                .checked_add(approved)
                .and_then(|t| t.checked_add(adjustments))
                .ok_or_else(|| StoreError::Corrupt("the liability overflows".into()))?;
            Ok(LiabilityLine {
                key,
                currency,
                pending: Money::new(pending, currency),
                approved: Money::new(approved, currency),
                adjustments: Money::new(adjustments, currency),
                total: Money::new(total, currency),
            })
        })
        .collect()
}

impl Store {
    /// What the ledger owes, of one program (by slug) or of all; `now` decides
    /// which holds have ended. An unknown slug is [`StoreError::NotFound`].
    pub async fn liability(&self, program: Option<&str>, now: Timestamp) -> Result<LiabilityReport> {
        let programs = match program {
            Some(slug) => vec![self.program(slug).await?],
            None => self.programs().await?,
        };
        // Holds end in their program's time zone; a reward keeps the zone of
        // the version in force, which may only differ after a time-zone change.
        let zones: HashMap<Uuid, TimeZone> =
            programs.iter().map(|p| Ok((p.id.0, zone(&p.definition)?))).collect::<Result<_>>()?;
        let only = program.map(|_| programs[0].id.0);
        let rows: Vec<OwedRow> = on_read!(self, p => {
            let mut q = sqlx::QueryBuilder::new(SELECT_OWED);
            if let Some(id) = only {
                q.push(" AND r.program_id = ").push_bind(id);
            }
            q.build_query_as().fetch_all(p).await?
        });
        let mut by_month = Sums::new();
        let mut by_method = Sums::new();
        let mut totals = Sums::new();
        let mut currencies: HashMap<&'static str, Currency> = HashMap::new();
        for (program_id, kind, status, amount, code, release_at, adjusted) in rows {
            let currency = Currency::parse(&code).map_err(|_| StoreError::Corrupt(format!("currency {code}")))?;
            currencies.insert(currency.code(), currency);
            let (column, minor) = match status.as_str() {
                "paid" if adjusted == 0 => continue,
                "paid" => (Column::Adjustments, adjusted),
                owed => {
                    let column = if owed == "pending" { Column::Pending } else { Column::Approved };
                    let minor = amount
                        .checked_add(adjusted)
                        .ok_or_else(|| StoreError::Corrupt("the liability overflows".into()))?;
                    (column, minor)
                }
            };
            let month = match (release_at.map(timestamp).transpose()?, zones.get(&program_id)) {
                (Some(at), Some(tz)) if at > now && !matches!(column, Column::Adjustments) => {
                    let d = tz.to_datetime(at).date();
                    format!("{:04}-{:02}", d.year(), d.month())
                }
                _ => DUE_NOW.to_string(),
            };
            add(&mut by_month, &month, currency, column, minor)?;
            add(&mut by_method, &kind, currency, column, minor)?;
            add(&mut totals, "", currency, column, minor)?;
        }
        // "now" sorts after the digits of a month: put it first.
        let mut by_month = lines(by_month, &currencies)?;
        by_month.sort_by_key(|l| (l.key != DUE_NOW, l.key.clone(), l.currency.code()));
        Ok(LiabilityReport { by_month, by_method: lines(by_method, &currencies)?, totals: lines(totals, &currencies)? })
    }
}

fn zone(definition: &ProgramDefinition) -> Result<TimeZone> {
    TimeZone::get(definition.timezone()).map_err(|e| StoreError::Corrupt(format!("time zone: {e}")))
}
