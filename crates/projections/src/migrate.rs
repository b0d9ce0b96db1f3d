//! The schema migrations, embedded from the workspace's `migrations/<backend>/` folders.
//!
//! They are applied with sqlx's own migrator and recorded in `_sqlx_migrations`, exactly
//! as `sqlx migrate run --source migrations/<backend>` would, so either tool can bring a
//! database up to date and each recognises what the other applied (same versions, same
//! SHA-384 checksums of the same files).

use std::borrow::Cow;

use futures::future::BoxFuture;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

use crate::store::Backend;

/// One embedded migration file: (file name, contents).
type File = (&'static str, &'static str);

const SQLITE: &[File] = &[
    (
        "0001_projections.sql",
        include_str!("../../../migrations/sqlite/0001_projections.sql"),
    ),
    (
        "0002_agent_health_index.sql",
        include_str!("../../../migrations/sqlite/0002_agent_health_index.sql"),
    ),
    (
        "0003_assignments_predictions_rollbacks.sql",
        include_str!("../../../migrations/sqlite/0003_assignments_predictions_rollbacks.sql"),
    ),
];

const POSTGRES: &[File] = &[
    (
        "0001_projections.sql",
        include_str!("../../../migrations/postgres/0001_projections.sql"),
    ),
    (
        "0002_agent_health_index.sql",
        include_str!("../../../migrations/postgres/0002_agent_health_index.sql"),
    ),
    (
        "0003_assignments_predictions_rollbacks.sql",
        include_str!("../../../migrations/postgres/0003_assignments_predictions_rollbacks.sql"),
    ),
];

/// The embedded migration files of a backend, in order: (file name, SQL).
pub fn migrations(backend: Backend) -> &'static [(&'static str, &'static str)] {
    match backend {
        Backend::Sqlite => SQLITE,
        Backend::Postgres => POSTGRES,
    }
}

/// A [`MigrationSource`] over the embedded files, parsed the way sqlx parses a folder
/// (`<VERSION>_<DESCRIPTION>.sql`).
#[derive(Debug, Clone, Copy)]
struct Embedded(Backend);

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> BoxFuture<'static, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async move {
            let mut out = Vec::new();
            for (name, sql) in migrations(self.0) {
                let (version, rest) = name
                    .split_once('_')
                    .ok_or_else(|| format!("migration {name:?} is not VERSION_DESCRIPTION.sql"))?;
                let version: i64 = version
                    .parse()
                    .map_err(|_| format!("migration {name:?} has no integer version"))?;
                let description = rest.trim_end_matches(".sql").replace('_', " ");
                out.push(Migration::new(
                    version,
                    Cow::Owned(description),
                    MigrationType::Simple,
                    Cow::Borrowed(*sql),
                    sql.starts_with("-- no-transaction"),
                ));
            }
            out.sort_by_key(|m| m.version);
            Ok(out)
        })
    }
}

/// The migrator for a backend. Applied migrations unknown to this build are tolerated
/// (`ignore_missing`): migrations are additive, so an older binary keeps working against a
/// schema a newer one has extended.
pub(crate) async fn migrator(backend: Backend) -> Result<Migrator, sqlx::migrate::MigrateError> {
    let mut migrator = Migrator::new(Embedded(backend)).await?;
    migrator.set_ignore_missing(true);
    Ok(migrator)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on_disk(dir: &str) -> Vec<(String, String)> {
        let path = format!("{}/../../migrations/{dir}", env!("CARGO_MANIFEST_DIR"));
        let mut files: Vec<(String, String)> = std::fs::read_dir(&path)
            .expect("migrations folder")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "sql"))
            .map(|p| {
                let name = p.file_name().expect("name").to_string_lossy().into_owned();
                (name, std::fs::read_to_string(&p).expect("read"))
            })
            .collect();
        files.sort();
        files
    }

    #[test]
    fn every_migration_file_is_embedded_in_order() {
        for (backend, dir) in [(Backend::Sqlite, "sqlite"), (Backend::Postgres, "postgres")] {
            let embedded: Vec<(String, String)> = migrations(backend)
                .iter()
                .map(|(n, s)| ((*n).to_owned(), (*s).to_owned()))
                .collect();
            assert_eq!(
                embedded,
                on_disk(dir),
                "{dir}: embed every file of migrations/{dir}"
            );
        }
    }

    #[tokio::test]
    async fn embedded_source_parses_like_sqlx_folders() {
        for backend in [Backend::Sqlite, Backend::Postgres] {
            let m = migrator(backend).await.expect("migrator");
            let folder = Migrator::new(std::path::PathBuf::from(format!(
                "{}/../../migrations/{}",
                env!("CARGO_MANIFEST_DIR"),
                backend.as_str()
            )))
            .await
            .expect("folder migrator");
            let a: Vec<_> = m
                .iter()
                .map(|m| (m.version, m.description.clone(), m.checksum.clone()))
                .collect();
            let b: Vec<_> = folder
                .iter()
                .map(|m| (m.version, m.description.clone(), m.checksum.clone()))
                .collect();
            assert_eq!(a, b);
        }
    }
}
