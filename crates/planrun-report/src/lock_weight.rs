//! `planrun plan`'s lock impact on the target: every stage's locks and findings,
//! weighed by what each locked table holds on the target now and how often the
//! application writes it. The engine measures the tables; the weight is decided here.

use planrun_plan::StageLockImpact;
use serde::Serialize;

/// A table this big is worth a second look whatever the rule.
const LARGE_BYTES: i64 = 1 << 30;

/// A table a stage locks, as it is on the target now.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct TableNow {
    pub relation: String,
    /// `false` when the table does not exist yet (an earlier stage creates it).
    pub exists: bool,
    pub bytes: i64,
    /// The planner's estimate (`reltuples`), or an exact count when the table has
    /// never been analysed and is small.
    pub rows: i64,
    /// Inserts, updates and deletes per second over the sample, all sessions.
    pub writes_per_second: f64,
}

/// How much a finding matters on this target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Weight {
    /// The table is new, empty or absent: nobody waits for it.
    Harmless,
    /// The table holds rows the application uses.
    Live,
    /// Over 1 GiB, or written more than 10 times a second.
    Heavy,
}

/// One stage's locks and findings, weighed on the target.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct StageLockWeight {
    pub impact: StageLockImpact,
    pub tables: Vec<TableNow>,
    /// Per finding, in `impact.findings` order.
    pub weights: Vec<Weight>,
}

impl TableNow {
    /// How much a finding on this table matters; `new` when the plan creates it.
    pub fn weight(&self, new: bool) -> Weight {
        if new || !self.exists || self.rows == 0 {
            Weight::Harmless
        } else if self.bytes > LARGE_BYTES || self.writes_per_second > 10.0 {
            Weight::Heavy
        } else {
            Weight::Live
        }
    }
}
