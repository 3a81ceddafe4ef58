//! The customer registry: who already is a customer or has signed up.
//!
//! Each identifier (normalised email, company domain, external id) is stored at
//! most once, under a unique index of its own. Loading an entry stores the
//! identifiers the registry does not know yet, in one row; an entry all of whose
//! identifiers are known adds nothing and counts as already known. Loading the
//! same entries again is therefore harmless, and many people of one company can
//! be loaded with their domain (the domain is stored with the first of them).

use std::collections::HashSet;

use jiff::Timestamp;
use uuid::Uuid;
use vouch_domain::customer::{CustomerEntry, CustomerId, CustomerSource, KnownBy};

use crate::{Result, Store, StoreError, micros, on_read, on_write};

/// An entry to load. The id is minted by the caller; the entry is used only if
/// some identifier of it is new.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCustomer {
    pub id: CustomerId,
    pub entry: CustomerEntry,
    pub source: CustomerSource,
}

/// What a load did: `added + already_known` is the number of entries given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddedCustomers {
    /// Entries that brought at least one identifier the registry did not know.
    pub added: u64,
    /// Entries whose every identifier was known already (earlier, or from an
    /// earlier entry of the same load).
    pub already_known: u64,
}

/// Rows per INSERT: 7 parameters a row stays far below both engines' limits on
/// bound parameters (32,766 on SQLite, 65,535 on Postgres).
const ROWS_PER_STATEMENT: usize = 1000;
/// Values per `IN (...)` lookup of known identifiers.
const VALUES_PER_LOOKUP: usize = 1000;

const INSERT_CUSTOMERS: &str =
    "INSERT INTO customers (id, email, email_norm, domain, external_id, source, created_at) ";

/// Which identifier matched, most specific first; a `NULL` parameter matches nothing.
const KNOWN_BY: &str = "SELECT matched FROM (
       SELECT 1 AS rank, 'email' AS matched FROM customers WHERE email_norm = $1
       UNION ALL SELECT 2, 'external_id' FROM customers WHERE external_id = $3
       UNION ALL SELECT 3, 'domain' FROM customers WHERE domain = $2
     ) AS m ORDER BY rank LIMIT 1";

/// The identifiers of an entry not yet known, as they will be stored.
struct Pending {
    id: Uuid,
    source: &'static str,
    /// (as given, normalised)
    email: Option<(String, String)>,
    domain: Option<String>,
    external_id: Option<String>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.email.is_none() && self.domain.is_none() && self.external_id.is_none()
    }
}

/// Identifiers seen so far: in the registry or earlier in this load.
#[derive(Default)]
struct Known {
    emails: HashSet<String>,
    domains: HashSet<String>,
    external_ids: HashSet<String>,
}

impl Known {
    /// Drops from `p` what is known, then marks what is left as known.
    fn claim(&mut self, p: &mut Pending) {
        if p.email.as_ref().is_some_and(|(_, norm)| !self.emails.insert(norm.clone())) {
            p.email = None;
        }
        if p.domain.as_ref().is_some_and(|d| !self.domains.insert(d.clone())) {
            p.domain = None;
        }
        if p.external_id.as_ref().is_some_and(|x| !self.external_ids.insert(x.clone())) {
            p.external_id = None;
        }
    }
}

/// `SELECT column FROM customers WHERE column IN (...)`, for one column.
fn lookup<'a, DB: sqlx::Database>(column: &str, values: &[&'a str]) -> sqlx::QueryBuilder<DB>
where
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut q = sqlx::QueryBuilder::new(format!("SELECT {column} FROM customers WHERE {column} IN ("));
    let mut list = q.separated(", ");
    for v in values {
        list.push_bind(*v);
    }
    list.push_unseparated(")");
    q
}

impl Store {
    /// Loads entries into the registry, in one transaction: all or nothing.
    /// Idempotent: identifiers already known are skipped (`ON CONFLICT DO
    /// NOTHING` under each column's unique index), so a repeated or concurrent
    /// load of the same entries stores each identifier once.
    pub async fn add_customers(&self, customers: &[NewCustomer], now: Timestamp) -> Result<AddedCustomers> {
        let mut pending: Vec<Pending> = customers
            .iter()
            .map(|c| Pending {
                id: c.id.0,
                source: c.source.as_str(),
                email: c.entry.email().map(|e| (e.as_str().to_string(), e.normalized())),
                domain: c.entry.domain().map(|d| d.as_str().to_string()),
                external_id: c.entry.external_id().map(|x| x.as_str().to_string()),
            })
            .collect();
        // Within the load, an identifier belongs to its first entry.
        let mut seen = Known::default();
        for p in &mut pending {
            seen.claim(p);
        }
        let mut added: u64 = 0;
        on_write!(self, pool => {
            let mut tx = pool.begin().await?;
            loop {
                // What the registry knows of the identifiers left.
                let mut known = Known::default();
                for (column, values, into) in [
                    (
                        "email_norm",
                        pending.iter().filter_map(|p| p.email.as_ref().map(|(_, n)| n.as_str())).collect::<Vec<_>>(),
                        &mut known.emails,
                    ),
                    ("domain", pending.iter().filter_map(|p| p.domain.as_deref()).collect(), &mut known.domains),
                    (
                        "external_id",
                        pending.iter().filter_map(|p| p.external_id.as_deref()).collect(),
                        &mut known.external_ids,
                    ),
                ] {
                    for chunk in values.chunks(VALUES_PER_LOOKUP) {
                        let found: Vec<String> =
                            lookup(column, chunk).build_query_scalar().fetch_all(&mut *tx).await?;
                        into.extend(found);
                    }
                }
                for p in &mut pending {
                    known.claim(p);
                }
                pending.retain(|p| !p.is_empty());
                if pending.is_empty() {
                    break;
                }
                // A row whose identifier another transaction stored meanwhile is
                // skipped whole by ON CONFLICT: it goes round again, and its
                // identifiers still unknown are stored then.
                let mut skipped = Vec::new();
                let mut rows = std::mem::take(&mut pending).into_iter().peekable();
                while rows.peek().is_some() {
                    let chunk: Vec<Pending> = rows.by_ref().take(ROWS_PER_STATEMENT).collect();
                    let mut q = sqlx::QueryBuilder::new(INSERT_CUSTOMERS);
                    q.push_values(&chunk, |mut row, p| {
                        row.push_bind(p.id)
                            .push_bind(p.email.as_ref().map(|(given, _)| given.as_str()))
                            .push_bind(p.email.as_ref().map(|(_, norm)| norm.as_str()))
                            .push_bind(p.domain.as_deref())
                            .push_bind(p.external_id.as_deref())
                            .push_bind(p.source)
                            .push_bind(micros(now));
                    });
                    q.push(" ON CONFLICT DO NOTHING RETURNING id");
                    let inserted: HashSet<Uuid> =
                        q.build_query_scalar().fetch_all(&mut *tx).await?.into_iter().collect();
                    added += inserted.len() as u64;
                    skipped.extend(chunk.into_iter().filter(|p| !inserted.contains(&p.id)));
                }
                if skipped.is_empty() {
                    break;
                }
                pending = skipped;
            }
            tx.commit().await?;
        });
        Ok(AddedCustomers { added, already_known: customers.len() as u64 - added })
    }

    /// Whether the registry knows a prospect, and by which identifier: the email
    /// (give it normalised, see `Email::normalized`) first, then the external id,
    /// then the company domain. The domain is compared only when given: pass it
    /// for business programs, where a known company is a known customer.
    pub async fn is_known_customer(
        &self,
        email_norm: Option<&str>,
        domain: Option<&str>,
        external_id: Option<&str>,
    ) -> Result<Option<KnownBy>> {
        if email_norm.is_none() && domain.is_none() && external_id.is_none() {
            return Ok(None);
        }
        let matched: Option<(String,)> = crate::on_fast_read!(self, conn => crate::sql::query_as(KNOWN_BY)
            .bind(email_norm)
            .bind(domain)
            .bind(external_id)
            .fetch_optional(&mut *conn)
            .await?);
        matched
            .map(|(m,)| KnownBy::parse(&m).ok_or_else(|| StoreError::Corrupt(format!("customer match `{m}`"))))
            .transpose()
    }

    /// Rows in the registry (an entry whose identifiers were all known adds none).
    pub async fn count_customers(&self) -> Result<i64> {
        let (n,): (i64,) = on_read!(self, p => sqlx::query_as("SELECT COUNT(*) FROM customers").fetch_one(p).await?);
        Ok(n)
    }
}
