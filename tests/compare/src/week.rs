//! A simulated week: ProxLB (executing, hourly) and ours (plan + execute, hourly) on two
//! identical simulator copies under the same time-varying load.

/// What a week produced for one tool.
#[derive(Clone, Debug, Default)]
pub struct WeekSide {
    pub node_hours_above_85: usize,
    pub migrations: usize,
    pub gib_moved: f64,
    pub reversals_24h: usize,
    pub ct_restarts: usize,
    pub mean_spread: f64,
    pub worst_spread: f64,
    pub failed_runs: usize,
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, Default)]
pub struct WeekResult {
    pub hours: usize,
    pub scenario: String,
    pub ours: WeekSide,
    pub proxlb: WeekSide,
    pub none: WeekSide,
}

pub async fn run(_opts: &crate::Options) -> anyhow::Result<WeekResult> {
    anyhow::bail!("not implemented yet")
}
