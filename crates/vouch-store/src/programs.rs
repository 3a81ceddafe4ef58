use jiff::Timestamp;
use vouch_domain::program::ProgramDefinition;
use vouch_domain::{ProgramId, ProgramVersionId};

use crate::{BUMP_EPOCH, Result, Store, StoreError, micros, on_read, on_write, timestamp};

/// A program with the version now in force.
#[derive(Debug, Clone)]
pub struct StoredProgram {
    pub id: ProgramId,
    pub version_id: ProgramVersionId,
    pub version: i64,
    pub definition: ProgramDefinition,
    pub source: String,
    /// When this version was applied.
    pub applied_at: Timestamp,
}

#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // built once per `program apply`
pub enum ApplyOutcome {
    Created(StoredProgram),
    Updated {
        previous: StoredProgram,
        current: StoredProgram,
    },
    /// The file defines exactly what is in force: no version was added.
    Unchanged(StoredProgram),
}

crate::sql::lite_row! {
    #[derive(sqlx::FromRow)]
    struct ProgramRow {
        id: uuid::Uuid,
        version_id: uuid::Uuid,
        version: i64,
        definition: String,
        source: String,
        created_at: i64,
    }
}

impl TryFrom<ProgramRow> for StoredProgram {
    type Error = StoreError;
    fn try_from(r: ProgramRow) -> Result<Self> {
        let definition = serde_json::from_str(&r.definition)
            .map_err(|e| StoreError::Corrupt(format!("program version {}: {e}", r.version_id)))?;
        Ok(StoredProgram {
            id: ProgramId(r.id),
            version_id: ProgramVersionId(r.version_id),
            version: r.version,
            definition,
            source: r.source,
            applied_at: timestamp(r.created_at)?,
        })
    }
}

const CURRENT_BY_SLUG: &str = "SELECT g.id, v.id AS version_id, v.version, v.definition, v.source, v.created_at
     FROM programs g JOIN program_versions v ON v.program_id = g.id AND v.version = g.current_version
     WHERE g.slug = $1";

const ALL_CURRENT: &str = "SELECT g.id, v.id AS version_id, v.version, v.definition, v.source, v.created_at
     FROM programs g JOIN program_versions v ON v.program_id = g.id AND v.version = g.current_version
     ORDER BY g.slug";

impl Store {
    /// Stores `definition` as the program's new current version, unless it is
    /// what is already in force. Versions are never edited.
    pub async fn apply_program(
        &self,
        definition: &ProgramDefinition,
        source: &str,
        new_ids: (ProgramId, ProgramVersionId),
        now: Timestamp,
    ) -> Result<ApplyOutcome> {
        let json = serde_json::to_string(definition).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let slug = definition.slug().as_str();
        let (program_id, version_id) = new_ids;
        on_write!(self, p => {
            let mut tx = p.begin().await?;
                        let previous: Option<ProgramRow> = sqlx::query_as(CURRENT_BY_SLUG).bind(slug).fetch_optional(&mut *tx).await?;
            let previous = previous.map(StoredProgram::try_from).transpose()?;
            let (id, version) = match &previous {
                Some(prev) if prev.definition == *definition => return Ok(ApplyOutcome::Unchanged(prev.clone())),
                Some(prev) => {
                    sqlx::query("UPDATE programs SET current_version = $1 WHERE id = $2")
                        .bind(prev.version + 1)
                        .bind(prev.id.0)
                        .execute(&mut *tx)
                        .await?;
                    (prev.id, prev.version + 1)
                }
                None => {
                    sqlx::query("INSERT INTO programs (id, slug, current_version, created_at) VALUES ($1, $2, 1, $3)")
                        .bind(program_id.0)
                        .bind(slug)
                        .bind(micros(now))
                        .execute(&mut *tx)
                        .await
                        .map_err(StoreError::classify)?;
                    (program_id, 1)
                }
            };
            sqlx::query(
                "INSERT INTO program_versions (id, program_id, version, source, definition, landing_url, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(version_id.0)
            .bind(id.0)
            .bind(version)
            .bind(source)
            .bind(&json)
            .bind(definition.landing_url().as_str())
            .bind(micros(now))
            .execute(&mut *tx)
            .await
            .map_err(StoreError::classify)?;
            sqlx::query(BUMP_EPOCH).execute(&mut *tx).await?;
            tx.commit().await?;
            let current = StoredProgram {
                id,
                version_id,
                version,
                definition: definition.clone(),
                source: source.to_string(),
                applied_at: now,
            };
            Ok(match previous {
                Some(previous) => ApplyOutcome::Updated { previous, current },
                None => ApplyOutcome::Created(current),
            })
        })
    }

    pub async fn program(&self, slug: &str) -> Result<StoredProgram> {
        let row: Option<ProgramRow> = crate::on_fast_read!(self, conn =>
            crate::sql::query_as(CURRENT_BY_SLUG).bind(slug).fetch_optional(&mut *conn).await?);
        row.ok_or(StoreError::NotFound)?.try_into()
    }

    pub async fn programs(&self) -> Result<Vec<StoredProgram>> {
        let rows: Vec<ProgramRow> = on_read!(self, p => sqlx::query_as(ALL_CURRENT).fetch_all(p).await?);
        rows.into_iter().map(StoredProgram::try_from).collect()
    }
}
