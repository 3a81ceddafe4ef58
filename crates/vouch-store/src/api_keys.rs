use jiff::Timestamp;
use uuid::Uuid;
use vouch_domain::ApiKeyId;
use vouch_domain::api_key::Scope;

use crate::{Result, Store, StoreError, micros, on_read, on_write, timestamp};

/// An API key as stored: never the key itself, only its SHA-256.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKeyRecord {
    pub id: ApiKeyId,
    pub name: String,
    /// The first characters of the key, to recognise it in a list.
    pub prefix: String,
    pub scopes: Vec<Scope>,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

crate::sql::lite_row! {
    #[derive(sqlx::FromRow)]
    struct ApiKeyRow {
        id: Uuid,
        name: String,
        prefix: String,
        scopes: String,
        created_at: i64,
        revoked_at: Option<i64>,
    }
}

impl TryFrom<ApiKeyRow> for ApiKeyRecord {
    type Error = StoreError;
    fn try_from(r: ApiKeyRow) -> Result<Self> {
        let scopes = r
            .scopes
            .split_whitespace()
            .map(Scope::parse)
            .collect::<std::result::Result<_, _>>()
            .map_err(StoreError::Corrupt)?;
        Ok(ApiKeyRecord {
            id: ApiKeyId(r.id),
            name: r.name,
            prefix: r.prefix,
            scopes,
            created_at: timestamp(r.created_at)?,
            revoked_at: r.revoked_at.map(timestamp).transpose()?,
        })
    }
}

impl Store {
    pub async fn create_api_key(&self, key: &ApiKeyRecord, key_hash: &str) -> Result<()> {
        let scopes = key.scopes.iter().map(Scope::to_string).collect::<Vec<_>>().join(" ");
        on_write!(self, p => sqlx::query(
            "INSERT INTO api_keys (id, name, prefix, key_hash, scopes, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(key.id.0)
        .bind(&key.name)
        .bind(&key.prefix)
        .bind(key_hash)
        .bind(scopes)
        .bind(micros(key.created_at))
        .execute(p)
        .await
        .map_err(StoreError::classify)
        .map(|_| ()))?;
        Ok(())
    }

    pub async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        let rows: Vec<ApiKeyRow> = on_read!(self, p => sqlx::query_as(
            "SELECT id, name, prefix, scopes, created_at, revoked_at FROM api_keys ORDER BY created_at, id",
        ).fetch_all(p).await?);
        rows.into_iter().map(ApiKeyRecord::try_from).collect()
    }

    /// The live (not revoked) key with this hash.
    pub async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>> {
        // Every API request asks: an inline read on SQLite.
        let row: Option<ApiKeyRow> = crate::on_fast_read!(self, conn => crate::sql::query_as(
            "SELECT id, name, prefix, scopes, created_at, revoked_at FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
        ).bind(key_hash).fetch_optional(&mut *conn).await?);
        row.map(ApiKeyRecord::try_from).transpose()
    }

    pub async fn revoke_api_key(&self, id: ApiKeyId, now: Timestamp) -> Result<()> {
        let done = on_write!(self, p => sqlx::query(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1",
        ).bind(id.0).bind(micros(now)).execute(p).await?.rows_affected());
        if done == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}
