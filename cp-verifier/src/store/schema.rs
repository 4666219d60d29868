//! Schema versions. Both stores apply their schema as numbered migrations
//! (`migrations/sqlite`, `migrations/postgres`, embedded with `sqlx::migrate!`), and
//! sqlx records each applied one (version and checksum) in `_sqlx_migrations`.
//!
//! Before migrating, a store compares what the database records with what this
//! binary embeds, and refuses, changing nothing, a database that records a version
//! it does not know (a newer cp-verifier wrote it: running on it could misread or
//! drop what the newer schema holds), one whose applied migration differs from ours
//! (checksum mismatch), or one with a migration marked failed. A database without
//! `_sqlx_migrations` (new, or created by a release before versioned migrations) has
//! nothing to refuse.

use sqlx::migrate::{MigrateError, Migrator};

/// Why a database's schema is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// The database records a migration newer than any this binary embeds.
    #[error(
        "database schema version {found} is newer than this cp-verifier (knows up to {known}); upgrade cp-verifier"
    )]
    Newer {
        /// The newest version the database records.
        found: i64,
        /// The newest version this binary embeds.
        known: i64,
    },
    /// The database records a migration, older than the newest this binary knows,
    /// that this binary does not embed.
    #[error(
        "database schema records migration {version}, which this cp-verifier does not have (knows up to {known}); it was written by a different build"
    )]
    Unknown {
        /// The unknown version.
        version: i64,
        /// The newest version this binary embeds.
        known: i64,
    },
    /// An applied migration's checksum differs from this binary's.
    #[error(
        "database schema migration {version} was applied with a different checksum than this cp-verifier's (the migration was edited, or the database was written by a different build); refusing to run on it"
    )]
    Modified {
        /// The version whose checksum differs.
        version: i64,
    },
    /// A migration is recorded as failed part-way.
    #[error(
        "database schema migration {version} is recorded as failed part-way; repair the database (see _sqlx_migrations) before starting"
    )]
    Dirty {
        /// The failed version.
        version: i64,
    },
}

/// One row of `_sqlx_migrations`.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The migration's version.
    pub version: i64,
    /// Its SHA-384 checksum as recorded.
    pub checksum: Vec<u8>,
    /// Whether it completed.
    pub success: bool,
}

/// The newest schema version `m` embeds.
pub fn known_version(m: &Migrator) -> i64 {
    m.iter().map(|x| x.version).max().unwrap_or(0)
}

/// Whether a database recording `applied` may be used (and migrated) by a binary
/// embedding `m`.
pub fn check(m: &Migrator, applied: &[Applied]) -> Result<(), SchemaError> {
    let known = known_version(m);
    if let Some(found) = applied.iter().map(|a| a.version).max() {
        if found > known {
            return Err(SchemaError::Newer { found, known });
        }
    }
    for a in applied {
        let Some(ours) = m
            .iter()
            .find(|x| x.version == a.version && !x.migration_type.is_down_migration())
        else {
            return Err(SchemaError::Unknown {
                version: a.version,
                known,
            });
        };
        if !a.success {
            return Err(SchemaError::Dirty { version: a.version });
        }
        if *ours.checksum != *a.checksum {
            return Err(SchemaError::Modified { version: a.version });
        }
    }
    Ok(())
}

/// sqlx's own refusals (met when another process changed the schema between the
/// check and the migration) as [`SchemaError`]s; anything else is `Err(e)` back.
pub fn from_migrate(m: &Migrator, e: MigrateError) -> Result<SchemaError, MigrateError> {
    let known = known_version(m);
    match e {
        MigrateError::VersionMissing(v) if v > known => Ok(SchemaError::Newer { found: v, known }),
        MigrateError::VersionMissing(v) => Ok(SchemaError::Unknown { version: v, known }),
        MigrateError::VersionMismatch(v) => Ok(SchemaError::Modified { version: v }),
        MigrateError::Dirty(v) => Ok(SchemaError::Dirty { version: v }),
        other => Err(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static M: Migrator = sqlx::migrate!("migrations/sqlite");

    fn ours(v: i64) -> Applied {
        let m = M.iter().find(|x| x.version == v).unwrap();
        Applied {
            version: v,
            checksum: m.checksum.to_vec(),
            success: true,
        }
    }

    #[test]
    fn newer_unknown_modified_and_dirty_are_refused() {
        assert_eq!(known_version(&M), 3);
        assert_eq!(check(&M, &[]), Ok(()));
        assert_eq!(check(&M, &[ours(1)]), Ok(()));
        assert_eq!(check(&M, &[ours(1), ours(2), ours(3)]), Ok(()));
        let newer = Applied {
            version: 99,
            checksum: vec![0; 48],
            success: true,
        };
        let e = check(&M, &[ours(1), ours(2), ours(3), newer]).unwrap_err();
        assert_eq!(
            e,
            SchemaError::Newer {
                found: 99,
                known: 3
            }
        );
        assert_eq!(
            e.to_string(),
            "database schema version 99 is newer than this cp-verifier (knows up to 3); upgrade cp-verifier"
        );
        let zero = Applied {
            version: 0,
            checksum: vec![],
            success: true,
        };
        assert!(matches!(
            check(&M, &[zero, ours(1)]),
            Err(SchemaError::Unknown { version: 0, .. })
        ));
        let mut edited = ours(1);
        edited.checksum[0] ^= 1;
        assert_eq!(
            check(&M, &[edited]),
            Err(SchemaError::Modified { version: 1 })
        );
        let mut failed = ours(1);
        failed.success = false;
        assert_eq!(check(&M, &[failed]), Err(SchemaError::Dirty { version: 1 }));
        assert!(matches!(
            from_migrate(&M, MigrateError::VersionMissing(7)),
            Ok(SchemaError::Newer { found: 7, known: 3 })
        ));
    }
}
