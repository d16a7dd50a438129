//! `db_pool_exhaustion`: the fleet's database pool exhausted from outside, by holding
//! locks its writes need or by taking the server's connection slots (the incident: long
//! transactions during batch work held the pool at 95% at hour 16). The fault object that
//! runs it lives in the chaos plane (its `db` module), above this model.

use toml::Spanned;

use super::super::Target;
use super::super::raw::RawFault;
use super::super::validate::Validator;
use super::{ActsOn, DbPoolMethod, DefaultDetection, FaultSpec, KindEntry, KindSpec, RecoverFrom};

const MAX_HOLDERS: i64 = 1000;
const MAX_SLOTS: i64 = 10_000;
const DEFAULT_HOLDERS: u32 = DbPoolMethod::DEFAULT_HOLDERS;
const DEFAULT_MAX_SLOTS: u32 = DbPoolMethod::DEFAULT_MAX_SLOTS;

pub const DB_POOL_EXHAUSTION: KindSpec = KindSpec {
    name: "db_pool_exhaustion",
    parameters: &[
        "method",
        "holders",
        "leave",
        "max_connections",
        "database_url_env",
    ],
    required: &[],
    acts_on: ActsOn::Database,
    detection: DefaultDetection::Alert("DbPoolSaturated"),
    recover_from: RecoverFrom::Clear,
    heals_itself: false,
    validate,
    chaos_help: "  db_pool_exhaustion
      --database-url-env NAME: the variable holding the fleet's database URL (never
      printed). --set method=hold_locks|take_slots, holders=N, leave=N, max_connections=N
",
    example: "method = \"hold_locks\"\nholders = 3",
};

/// `db_pool_exhaustion`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbPoolExhaustion {
    pub method: DbPoolMethod,
    /// For a fleet the harness did not start: the environment variable with the fleet's
    /// database URL.
    pub database_url_env: Option<String>,
}

fn validate(validator: &mut Validator<'_>, entry: &KindEntry<'_>) -> Option<FaultSpec> {
    let db = validator.db_pool(entry.raw, entry.span, entry.context.target)?;
    Some(FaultSpec::DbPoolExhaustion(db))
}

impl Validator<'_> {
    fn db_pool(
        &mut self,
        raw: &RawFault,
        span: &std::ops::Range<usize>,
        target: &Target,
    ) -> Option<DbPoolExhaustion> {
        let method_name = raw
            .method
            .as_ref()
            .map_or("hold_locks", |method| method.get_ref().as_str());
        let method = match method_name {
            "hold_locks" => self.hold_locks_method(raw)?,
            "take_slots" => self.take_slots_method(raw, span, target)?,
            other => {
                let at = raw.method.as_ref().map(Spanned::span).unwrap_or_default();
                self.error(
                    at,
                    format!(r#"unknown method {other:?}; expected "hold_locks" or "take_slots""#),
                );
                return None;
            }
        };
        let database_url_env = self.db_pool_database(raw, span, target);
        Some(DbPoolExhaustion {
            method,
            database_url_env,
        })
    }

    /// `method = "hold_locks"`: how many holders, and none of `take_slots`' keys.
    fn hold_locks_method(&mut self, raw: &RawFault) -> Option<DbPoolMethod> {
        for (key, value) in [
            ("leave", raw.leave.as_ref().map(Spanned::span)),
            (
                "max_connections",
                raw.max_connections.as_ref().map(Spanned::span),
            ),
        ] {
            if let Some(value) = value {
                self.error(
                    value,
                    format!("{key} only applies to method = \"take_slots\""),
                );
            }
        }
        Some(DbPoolMethod::HoldLocks {
            holders: self.db_pool_count(
                raw.holders.as_ref(),
                "holders",
                1..=MAX_HOLDERS,
                DEFAULT_HOLDERS,
            )?,
        })
    }

    /// `method = "take_slots"`: how many slots to leave and to take at most, no `holders`,
    /// and a PostgreSQL database (SQLite has no connection slots).
    fn take_slots_method(
        &mut self,
        raw: &RawFault,
        span: &std::ops::Range<usize>,
        target: &Target,
    ) -> Option<DbPoolMethod> {
        if let Some(holders) = &raw.holders {
            self.error(
                holders.span(),
                "holders only applies to method = \"hold_locks\"",
            );
        }
        let sqlite = match target {
            Target::Embedded(fleet) => fleet.database_url_env.is_none(),
            _ => false,
        };
        if sqlite {
            let at = raw
                .method
                .as_ref()
                .map(Spanned::span)
                .unwrap_or(span.clone());
            self.error(
                at,
                "method = \"take_slots\" needs PostgreSQL (SQLite has no connection slots); set [target] database_url_env, or use method = \"hold_locks\"",
            );
            return None;
        }
        Some(DbPoolMethod::TakeSlots {
            leave: self.db_pool_count(raw.leave.as_ref(), "leave", 0..=MAX_SLOTS, 0)?,
            max: self.db_pool_count(
                raw.max_connections.as_ref(),
                "max_connections",
                1..=MAX_SLOTS,
                DEFAULT_MAX_SLOTS,
            )?,
        })
    }

    /// A count in `range`, or `default` when not given.
    fn db_pool_count(
        &mut self,
        value: Option<&Spanned<i64>>,
        key: &str,
        range: std::ops::RangeInclusive<i64>,
        default: u32,
    ) -> Option<u32> {
        match value {
            Some(value) => self
                .ranged(value, key, range)
                .and_then(|number| u32::try_from(number).ok()),
            None => Some(default),
        }
    }

    /// `database_url_env`: needed against an external fleet, refused for the embedded one
    /// (its database is known).
    fn db_pool_database(
        &mut self,
        raw: &RawFault,
        span: &std::ops::Range<usize>,
        target: &Target,
    ) -> Option<String> {
        let database_url_env = raw.database_url_env.as_ref().map(|name| {
            self.env_var_name(name, "database_url_env is the NAME of an environment variable holding the database URL, not the URL");
            name.get_ref().clone()
        });
        if matches!(target, Target::External(_)) && database_url_env.is_none() {
            self.error(
                span.clone(),
                "db_pool_exhaustion against an external fleet needs database_url_env = \"NAME\" (the variable holding the fleet's database URL)",
            );
        }
        if let (Target::Embedded(_), Some(name)) = (target, &raw.database_url_env) {
            self.error(
                name.span(),
                "the embedded fleet's database is known; database_url_env is for external fleets",
            );
        }
        database_url_env
    }
}

/// `voxsoak plan`'s line; `embedded`: the database is the embedded fleet's.
pub(super) fn describe(db: &DbPoolExhaustion, embedded: bool) -> String {
    let database = if embedded {
        "the fleet's database".to_owned()
    } else {
        format!(
            "the database in ${}",
            db.database_url_env.as_deref().unwrap_or("?")
        )
    };
    match db.method {
        DbPoolMethod::HoldLocks { holders } => {
            format!("{holders} transactions hold the locks the fleet's queries need in {database}")
        }
        DbPoolMethod::TakeSlots { leave, max } => {
            format!("takes the connection slots of {database} (leaves {leave} free, at most {max})")
        }
    }
}
