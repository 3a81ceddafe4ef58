use std::collections::BTreeMap;

use jiff::Timestamp;
use uuid::Uuid;
use vouch_domain::click::{Channel, Utm};
use vouch_domain::{ClickId, ReferralCode};

use crate::{Backend, Result, Store, StoreError, micros, on_read, timestamp};

/// A visit through a link, as the redirect saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewClick {
    pub id: ClickId,
    pub code: ReferralCode,
    pub occurred_at: Timestamp,
    pub ip_hash: Option<String>,
    pub user_agent: Option<String>,
    pub referer: Option<String>,
    pub utm: Utm,
    pub channel: Channel,
    pub is_bot: bool,
}

pub type ClickRecord = NewClick;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClickStats {
    pub clicks: i64,
    pub bot_visits: i64,
    pub last_click_at: Option<Timestamp>,
}

const INSERT_CLICKS: &str = "INSERT INTO clicks (code, id, occurred_at, ip_hash, user_agent, referer, utm_source, \
     utm_medium, utm_campaign, utm_term, utm_content, channel, is_bot) ";
const INSERT_STATS: &str = "INSERT INTO code_click_stats (code, shard, clicks, bot_visits, last_click_at) ";
/// Adds a batch's counts to a shard's row; shared by both engines' statements.
macro_rules! upsert_stats {
    () => {
        " ON CONFLICT (code, shard) DO UPDATE SET clicks = code_click_stats.clicks + excluded.clicks,
          bot_visits = code_click_stats.bot_visits + excluded.bot_visits,
          last_click_at = CASE WHEN code_click_stats.last_click_at IS NULL
            OR excluded.last_click_at > code_click_stats.last_click_at
            THEN COALESCE(excluded.last_click_at, code_click_stats.last_click_at)
            ELSE code_click_stats.last_click_at END"
    };
}
const UPSERT_STATS: &str = upsert_stats!();
const PG_INSERT_BATCH: &str = concat!(
    "WITH new_clicks AS (
       INSERT INTO clicks (code, id, occurred_at, ip_hash, user_agent, referer, utm_source, utm_medium,
                           utm_campaign, utm_term, utm_content, channel, is_bot)
       SELECT * FROM UNNEST($1::text[], $2::uuid[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[],
                            $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::bool[]))
     INSERT INTO code_click_stats (code, shard, clicks, bot_visits, last_click_at)
     SELECT code, $14, clicks, bot_visits, last_click_at
     FROM UNNEST($15::text[], $16::bigint[], $17::bigint[], $18::bigint[]) AS s (code, clicks, bot_visits, last_click_at)",
    upsert_stats!()
);

/// A batch's count for one code: (clicks, bot visits, latest human click).
type CodeTotals = (i64, i64, Option<i64>);

/// Rows per INSERT statement: 13 parameters each stays far below both engines'
/// limits on bound parameters, while one statement still carries a whole batch.
const ROWS_PER_STATEMENT: usize = 1000;

#[derive(sqlx::FromRow)]
struct ClickRow {
    code: String,
    id: Uuid,
    occurred_at: i64,
    ip_hash: Option<String>,
    user_agent: Option<String>,
    referer: Option<String>,
    utm_source: Option<String>,
    utm_medium: Option<String>,
    utm_campaign: Option<String>,
    utm_term: Option<String>,
    utm_content: Option<String>,
    channel: String,
    is_bot: bool,
}

impl TryFrom<ClickRow> for NewClick {
    type Error = StoreError;
    fn try_from(r: ClickRow) -> Result<Self> {
        Ok(NewClick {
            code: ReferralCode::parse(&r.code).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            id: ClickId(r.id),
            occurred_at: timestamp(r.occurred_at)?,
            ip_hash: r.ip_hash,
            user_agent: r.user_agent,
            referer: r.referer,
            utm: Utm {
                source: r.utm_source,
                medium: r.utm_medium,
                campaign: r.utm_campaign,
                term: r.utm_term,
                content: r.utm_content,
            },
            channel: Channel::parse(&r.channel).ok_or_else(|| StoreError::Corrupt(format!("channel {}", r.channel)))?,
            is_bot: r.is_bot,
        })
    }
}

impl Store {
    /// Stores a batch of clicks and their per-code counters in one transaction,
    /// with multi-row statements: the group commit behind the redirect.
    pub async fn insert_clicks(&self, clicks: &[NewClick]) -> Result<()> {
        self.insert_clicks_on_shard(clicks, 0).await
    }

    /// As [`insert_clicks`](Self::insert_clicks), adding to the counters of
    /// `shard`: give each concurrent writer its own.
    pub async fn insert_clicks_on_shard(&self, clicks: &[NewClick], shard: i64) -> Result<()> {
        if clicks.is_empty() {
            return Ok(());
        }
        // Per-code totals, in code order so that two writers on one Postgres
        // take row locks in the same order and cannot deadlock.
        let mut stats: BTreeMap<&str, CodeTotals> = BTreeMap::new();
        for c in clicks {
            let s = stats.entry(c.code.as_str()).or_default();
            if c.is_bot {
                s.1 += 1;
            } else {
                s.0 += 1;
                s.2 = s.2.max(Some(micros(c.occurred_at)));
            }
        }
        let stats: Vec<(&str, CodeTotals)> = stats.into_iter().collect();
        match &self.backend {
            // SQLite runs in-process: statements are cheap, so plain multi-row
            // INSERTs in one transaction.
            Backend::Sqlite { write, writer, .. } => {
                let _writer = writer.exclusive().await;
                let mut tx = write.begin().await?;
                for chunk in clicks.chunks(ROWS_PER_STATEMENT) {
                    let mut q = sqlx::QueryBuilder::new(INSERT_CLICKS);
                    q.push_values(chunk, |mut row, c| {
                        row.push_bind(c.code.as_str())
                            .push_bind(c.id.0)
                            .push_bind(micros(c.occurred_at))
                            .push_bind(c.ip_hash.as_deref())
                            .push_bind(c.user_agent.as_deref())
                            .push_bind(c.referer.as_deref())
                            .push_bind(c.utm.source.as_deref())
                            .push_bind(c.utm.medium.as_deref())
                            .push_bind(c.utm.campaign.as_deref())
                            .push_bind(c.utm.term.as_deref())
                            .push_bind(c.utm.content.as_deref())
                            .push_bind(c.channel.as_str())
                            .push_bind(c.is_bot);
                    });
                    q.build().execute(&mut *tx).await?;
                }
                for chunk in stats.chunks(ROWS_PER_STATEMENT) {
                    let mut q = sqlx::QueryBuilder::new(INSERT_STATS);
                    q.push_values(chunk, |mut row, (code, (clicks, bots, last))| {
                        row.push_bind(*code).push_bind(shard).push_bind(*clicks).push_bind(*bots).push_bind(*last);
                    });
                    q.push(UPSERT_STATS);
                    q.build().execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }
            // Postgres is a round trip away: the whole batch is one statement of
            // fixed text (arrays unnested), so it is prepared once per connection,
            // sent in one round trip and atomic without BEGIN/COMMIT.
            Backend::Postgres(pool) => {
                let col = |f: fn(&NewClick) -> Option<&str>| {
                    clicks.iter().map(|c| f(c).map(str::to_owned)).collect::<Vec<_>>()
                };
                sqlx::query(PG_INSERT_BATCH)
                    .bind(clicks.iter().map(|c| c.code.as_str().to_owned()).collect::<Vec<_>>())
                    .bind(clicks.iter().map(|c| c.id.0).collect::<Vec<_>>())
                    .bind(clicks.iter().map(|c| micros(c.occurred_at)).collect::<Vec<_>>())
                    .bind(col(|c| c.ip_hash.as_deref()))
                    .bind(col(|c| c.user_agent.as_deref()))
                    .bind(col(|c| c.referer.as_deref()))
                    .bind(col(|c| c.utm.source.as_deref()))
                    .bind(col(|c| c.utm.medium.as_deref()))
                    .bind(col(|c| c.utm.campaign.as_deref()))
                    .bind(col(|c| c.utm.term.as_deref()))
                    .bind(col(|c| c.utm.content.as_deref()))
                    .bind(clicks.iter().map(|c| c.channel.as_str().to_owned()).collect::<Vec<_>>())
                    .bind(clicks.iter().map(|c| c.is_bot).collect::<Vec<_>>())
                    .bind(shard)
                    .bind(stats.iter().map(|(code, _)| code.to_string()).collect::<Vec<_>>())
                    .bind(stats.iter().map(|(_, s)| s.0).collect::<Vec<_>>())
                    .bind(stats.iter().map(|(_, s)| s.1).collect::<Vec<_>>())
                    .bind(stats.iter().map(|(_, s)| s.2).collect::<Vec<_>>())
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }

    pub async fn click_stats(&self, code: &ReferralCode) -> Result<ClickStats> {
        let (clicks, bot_visits, last): (Option<i64>, Option<i64>, Option<i64>) = on_read!(self, p => sqlx::query_as(
            "SELECT CAST(SUM(clicks) AS BIGINT), CAST(SUM(bot_visits) AS BIGINT), MAX(last_click_at)
             FROM code_click_stats WHERE code = $1",
        ).bind(code.as_str()).fetch_one(p).await?);
        Ok(ClickStats {
            clicks: clicks.unwrap_or(0),
            bot_visits: bot_visits.unwrap_or(0),
            last_click_at: last.map(timestamp).transpose()?,
        })
    }

    /// A code's visits, newest first, `limit` at a time; `before` is the last id of
    /// the previous page. Bot visits are included only when asked for.
    pub async fn clicks(
        &self,
        code: &ReferralCode,
        before: Option<ClickId>,
        limit: u32,
        include_bots: bool,
    ) -> Result<Vec<ClickRecord>> {
        // The all-ones UUID sorts after every real id, so one query serves page one too.
        let before = before.map_or(Uuid::max(), |c| c.0);
        let rows: Vec<ClickRow> = on_read!(self, p => sqlx::query_as(
            "SELECT code, id, occurred_at, ip_hash, user_agent, referer, utm_source, utm_medium, utm_campaign,
                    utm_term, utm_content, channel, is_bot
             FROM clicks WHERE code = $1 AND id < $2 AND (is_bot = $3 OR is_bot = FALSE)
             ORDER BY id DESC LIMIT $4",
        )
        .bind(code.as_str())
        .bind(before)
        .bind(include_bots)
        .bind(i64::from(limit))
        .fetch_all(p)
        .await?);
        rows.into_iter().map(NewClick::try_from).collect()
    }

    /// Which of `ids` are stored for `code` (to check that every click id handed
    /// out names a stored click).
    pub async fn stored_click_ids(&self, code: &ReferralCode) -> Result<Vec<ClickId>> {
        let rows: Vec<(Uuid,)> = on_read!(self, p => sqlx::query_as("SELECT id FROM clicks WHERE code = $1")
            .bind(code.as_str())
            .fetch_all(p)
            .await?);
        Ok(rows.into_iter().map(|(id,)| ClickId(id)).collect())
    }
}
