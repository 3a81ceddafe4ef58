use std::collections::BTreeMap;

use jiff::Timestamp;
use uuid::Uuid;
use vouch_domain::click::{Channel, Utm};
use vouch_domain::{ClickId, ReferralCode};

use crate::{Result, Store, StoreError, micros, on_read, on_write, timestamp};

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
        if clicks.is_empty() {
            return Ok(());
        }
        // Per-code totals, in code order so that two writers on one Postgres
        // take row locks in the same order and cannot deadlock.
        let mut stats: BTreeMap<&str, (i64, i64, Option<i64>)> = BTreeMap::new();
        for c in clicks {
            let s = stats.entry(c.code.as_str()).or_default();
            if c.is_bot {
                s.1 += 1;
            } else {
                s.0 += 1;
                s.2 = s.2.max(Some(micros(c.occurred_at)));
            }
        }
        on_write!(self, p => {
            let mut tx = p.begin().await?;
            for chunk in clicks.chunks(ROWS_PER_STATEMENT) {
                let mut q = sqlx::QueryBuilder::new(
                    "INSERT INTO clicks (code, id, occurred_at, ip_hash, user_agent, referer, utm_source, utm_medium, \
                     utm_campaign, utm_term, utm_content, channel, is_bot) ",
                );
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
            let rows: Vec<_> = stats.into_iter().collect();
            for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                let mut q = sqlx::QueryBuilder::new("INSERT INTO code_click_stats (code, clicks, bot_visits, last_click_at) ");
                q.push_values(chunk, |mut row, (code, (clicks, bots, last))| {
                    row.push_bind(*code).push_bind(*clicks).push_bind(*bots).push_bind(*last);
                });
                q.push(
                    " ON CONFLICT (code) DO UPDATE SET clicks = code_click_stats.clicks + excluded.clicks, \
                     bot_visits = code_click_stats.bot_visits + excluded.bot_visits, \
                     last_click_at = CASE WHEN code_click_stats.last_click_at IS NULL \
                       OR excluded.last_click_at > code_click_stats.last_click_at \
                       THEN COALESCE(excluded.last_click_at, code_click_stats.last_click_at) \
                       ELSE code_click_stats.last_click_at END",
                );
                q.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    pub async fn click_stats(&self, code: &ReferralCode) -> Result<ClickStats> {
        let row: Option<(i64, i64, Option<i64>)> = on_read!(self, p => sqlx::query_as(
            "SELECT clicks, bot_visits, last_click_at FROM code_click_stats WHERE code = $1",
        ).bind(code.as_str()).fetch_optional(p).await?);
        let Some((clicks, bot_visits, last)) = row else { return Ok(ClickStats::default()) };
        Ok(ClickStats { clicks, bot_visits, last_click_at: last.map(timestamp).transpose()? })
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
