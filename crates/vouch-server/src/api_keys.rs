//! Minting and checking API keys. A key is shown once; only its SHA-256 is stored
//! (keys are 256 random bits, so a fast hash is enough — nothing to brute-force).

use sha2::{Digest, Sha256};
use vouch_domain::ApiKeyId;
use vouch_domain::api_key::Scope;
use vouch_store::{ApiKeyRecord, Store, StoreError};

/// Prefix that makes a leaked key recognisable to secret scanners.
const PREFIX: &str = "vouch_";

pub fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Creates a key and returns it with its record; the key is not kept anywhere.
pub async fn create(
    store: &Store,
    name: &str,
    scopes: Vec<Scope>,
    now: jiff::Timestamp,
) -> Result<(String, ApiKeyRecord), StoreError> {
    let key = format!("{PREFIX}{}", hex::encode(rand::random::<[u8; 32]>()));
    let record = ApiKeyRecord {
        id: ApiKeyId(uuid::Uuid::now_v7()),
        name: name.to_string(),
        prefix: key[..PREFIX.len() + 6].to_string(),
        scopes,
        created_at: now,
        revoked_at: None,
    };
    store.create_api_key(&record, &hash(&key)).await?;
    Ok((key, record))
}
