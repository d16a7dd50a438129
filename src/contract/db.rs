//! How `db_pool_exhaustion` takes a fleet's database pool away.

/// How the pool is exhausted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbPoolMethod {
    /// Sessions in open transactions hold the locks the fleet's writes need.
    HoldLocks {
        /// PostgreSQL sessions holding locks (tables are dealt out among them; at most one
        /// per table). SQLite has one write lock: one session holds it, whatever this says.
        holders: u32,
    },
    /// PostgreSQL only: connections held until the server refuses more.
    TakeSlots {
        /// Connection slots left free.
        leave: u32,
        /// Most connections opened, whatever the limits say.
        max: u32,
    },
}

impl DbPoolMethod {
    /// `holders` when the scenario does not say.
    pub const DEFAULT_HOLDERS: u32 = 3;
    /// `max` when the scenario does not say.
    pub const DEFAULT_MAX_SLOTS: u32 = 500;

    /// `hold_locks` with [`Self::DEFAULT_HOLDERS`].
    pub fn hold_locks() -> Self {
        DbPoolMethod::HoldLocks {
            holders: Self::DEFAULT_HOLDERS,
        }
    }

    /// `take_slots` leaving none free, at most [`Self::DEFAULT_MAX_SLOTS`].
    pub fn take_slots() -> Self {
        DbPoolMethod::TakeSlots {
            leave: 0,
            max: Self::DEFAULT_MAX_SLOTS,
        }
    }

    /// The method as scenarios name it.
    pub fn name(&self) -> &'static str {
        match self {
            DbPoolMethod::HoldLocks { .. } => "hold_locks",
            DbPoolMethod::TakeSlots { .. } => "take_slots",
        }
    }
}
