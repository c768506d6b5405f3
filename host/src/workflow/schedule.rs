//! Cron schedules: each firing starts one workflow whose id is the
//! schedule's name and the firing's time (`<name>-20261207T0930`), so a
//! firing is started at most once, also across head restarts.

use super::record::{MissedRuns, ScheduleRecord};
use super::{StartRequest, WorkflowError, Workflows, now_ms};
use prism_abi::workflow::StepNode;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// Most schedules one tenant may have (100).
pub const MAX_SCHEDULES_PER_TENANT: usize = 100;
/// Most missed firings `run-all` starts after downtime (100).
pub const MAX_CATCH_UP: usize = 100;
/// Longest schedule name (112 bytes: a firing's id adds 16).
pub const MAX_SCHEDULE_NAME: usize = super::MAX_ID_LEN - 16;
/// How late a firing may start and still count as on time: `skip` skips
/// firings later than this (60 s).
pub const GRACE_MS: u64 = 60_000;

/// A parsed cron expression: five fields (minute hour day-of-month month
/// day-of-week) or six with seconds first, in UTC.
pub struct Cron(cron::Schedule);

impl Cron {
    /// Parses an expression.
    pub fn parse(text: &str) -> Result<Cron, WorkflowError> {
        let fields = text.split_whitespace().count();
        let full = match fields {
            5 => format!("0 {text}"),
            6 => text.to_string(),
            _ => {
                return Err(WorkflowError::InvalidArgument(format!(
                    "cron {text:?}: 5 fields (minute hour day month weekday) or 6 with seconds first"
                )));
            }
        };
        cron::Schedule::from_str(&full)
            .map(Cron)
            .map_err(|e| WorkflowError::InvalidArgument(format!("cron {text:?}: {e}")))
    }

    /// The first firing strictly after `after_ms` (Unix ms), if any.
    pub fn next_after(&self, after_ms: u64) -> Option<u64> {
        let after = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(after_ms as i64)?;
        self.0
            .after(&after)
            .next()
            .map(|t| t.timestamp_millis().max(0) as u64)
    }

    /// The firings in `(after_ms, now_ms]`, oldest first, at most `limit`
    /// (the newest ones when there are more).
    pub fn between(&self, after_ms: u64, now_ms: u64, limit: usize) -> Vec<u64> {
        let mut out = std::collections::VecDeque::new();
        let mut at = after_ms;
        while let Some(next) = self.next_after(at) {
            if next > now_ms {
                break;
            }
            out.push_back(next);
            if out.len() > limit {
                out.pop_front();
            }
            at = next;
        }
        out.into()
    }
}

/// The firings a schedule should start now: those due since its last
/// firing (or its creation), as its missed-run policy says.
pub fn due(record: &ScheduleRecord, cron: &Cron, now_ms: u64) -> Vec<u64> {
    let since = record.last_fired_ms.unwrap_or(record.created_ms);
    let all = cron.between(since, now_ms, MAX_CATCH_UP);
    match record.missed {
        MissedRuns::RunAll => all,
        MissedRuns::RunLatest => all.last().copied().into_iter().collect(),
        MissedRuns::Skip => all
            .last()
            .copied()
            .filter(|t| now_ms.saturating_sub(*t) <= GRACE_MS)
            .into_iter()
            .collect(),
    }
}

/// The id of the workflow a firing starts.
pub fn firing_id(schedule: &str, at_ms: u64) -> String {
    let time = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(at_ms as i64)
        .map(|t| t.format("%Y%m%dT%H%M%S").to_string())
        .unwrap_or_else(|| at_ms.to_string());
    format!("{schedule}-{time}")
}

/// Parses a missed-run policy name.
pub fn parse_missed(name: &str) -> Result<MissedRuns, WorkflowError> {
    match name {
        "" | "run-latest" => Ok(MissedRuns::RunLatest),
        "run-all" => Ok(MissedRuns::RunAll),
        "skip" => Ok(MissedRuns::Skip),
        other => Err(WorkflowError::InvalidArgument(format!(
            "missed-run policy {other:?}: run-latest, run-all or skip"
        ))),
    }
}

/// Its name.
pub fn missed_name(missed: MissedRuns) -> &'static str {
    match missed {
        MissedRuns::RunLatest => "run-latest",
        MissedRuns::RunAll => "run-all",
        MissedRuns::Skip => "skip",
    }
}

impl Workflows {
    /// Records a schedule (replacing one of the same name).
    pub async fn create_schedule(
        &self,
        mut record: ScheduleRecord,
    ) -> Result<ScheduleRecord, WorkflowError> {
        super::check_id(&record.name)?;
        if record.name.len() > MAX_SCHEDULE_NAME {
            return Err(WorkflowError::InvalidArgument(format!(
                "schedule name {:?} is longer than {MAX_SCHEDULE_NAME} bytes",
                record.name
            )));
        }
        Cron::parse(&record.cron)?;
        let existing = self.store().schedules(Some(&record.tenant))?;
        let replaces = existing.iter().any(|s| s.name == record.name);
        if !replaces && existing.len() >= MAX_SCHEDULES_PER_TENANT {
            return Err(WorkflowError::ResourceExhausted(format!(
                "tenant {} has {MAX_SCHEDULES_PER_TENANT} schedules, the most it may",
                record.tenant
            )));
        }
        record.last_fired_ms = None;
        self.store()
            .write(vec![super::store::Op::PutSchedule(record.clone())])
            .await?;
        Ok(record)
    }

    /// Deletes a schedule (its workflows stay).
    pub async fn delete_schedule(&self, tenant: &str, name: &str) -> Result<(), WorkflowError> {
        if !self
            .store()
            .schedules(Some(tenant))?
            .iter()
            .any(|s| s.name == name)
        {
            return Err(WorkflowError::NotFound(format!("no schedule {name}")));
        }
        self.store()
            .write(vec![super::store::Op::DeleteSchedule {
                tenant: tenant.to_string(),
                name: name.to_string(),
            }])
            .await?;
        Ok(())
    }

    /// Starts the workflows of every firing due at `now_ms`; returns the
    /// ids it started.
    pub async fn fire_due(&self, now_ms: u64) -> Vec<String> {
        let Ok(schedules) = self.store().schedules(None) else {
            return Vec::new();
        };
        let mut started = Vec::new();
        for schedule in schedules {
            let Ok(cron) = Cron::parse(&schedule.cron) else {
                continue;
            };
            let firings = due(&schedule, &cron, now_ms);
            let Some(&latest) = firings.last() else {
                continue;
            };
            for at in firings {
                match self.fire(&schedule, at).await {
                    Ok(id) => started.push(id),
                    // Started before (by this head before a restart).
                    Err(WorkflowError::AlreadyExists(_)) => {}
                    Err(e) => {
                        tracing::warn!(schedule = %schedule.name, tenant = %schedule.tenant, "a firing did not start: {e}")
                    }
                }
            }
            // Only the firing is recorded: a schedule deleted or replaced
            // while it fired stays so.
            if let Err(e) = self
                .store()
                .write(vec![super::store::Op::MarkFired {
                    tenant: schedule.tenant.clone(),
                    name: schedule.name.clone(),
                    at_ms: latest,
                }])
                .await
            {
                tracing::error!("could not record a schedule's firing: {e}");
            }
        }
        started
    }

    async fn fire(&self, schedule: &ScheduleRecord, at_ms: u64) -> Result<String, WorkflowError> {
        let module = crate::ids::ModuleHash::parse(&schedule.module)
            .ok_or_else(|| WorkflowError::InvalidArgument("malformed module digest".into()))?;
        let grant = self
            .grants()
            .grant(&schedule.tenant, &schedule.namespace, &schedule.starter)
            .map_err(WorkflowError::FailedPrecondition)?;
        let id = firing_id(&schedule.name, at_ms);
        let args = schedule.args.iter().map(|a| a.0.clone()).collect();
        self.start(StartRequest {
            tenant: schedule.tenant.clone(),
            id: Some(id.clone()),
            namespace: schedule.namespace.clone(),
            module,
            entry: schedule.entry.clone(),
            root: StepNode::task(&schedule.entry, args),
            starter: schedule.starter.clone(),
            grant,
            schedule: Some(schedule.name.clone()),
        })
        .await?;
        Ok(id)
    }

    /// Fires schedules as their times come, until the process ends.
    pub fn start_scheduler(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(workflows) = me.upgrade() else {
                    return;
                };
                workflows.fire_due(now_ms()).await;
                drop(workflows);
                // Sleep to the next second: six-field crons fire on seconds.
                let into = now_ms() % 1000;
                tokio::time::sleep(Duration::from_millis(1000 - into + 5)).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::Role;

    const HOUR: u64 = 3_600_000;
    /// 2026-12-07T00:00:00Z.
    const DAY: u64 = 1_796_601_600_000;

    fn schedule(cron: &str, missed: MissedRuns, created_ms: u64) -> ScheduleRecord {
        ScheduleRecord {
            tenant: "acme".into(),
            name: "hourly".into(),
            cron: cron.into(),
            namespace: "default".into(),
            module: String::new(),
            entry: "collect".into(),
            args: Vec::new(),
            missed,
            last_fired_ms: None,
            starter: super::super::Starter {
                subject: "ana".into(),
                role: Role::Developer,
            },
            created_ms,
        }
    }

    #[test]
    fn on_a_virtual_clock_an_hourly_schedule_fires_once_per_hour() {
        let cron = Cron::parse("30 * * * *").unwrap();
        let mut record = schedule("30 * * * *", MissedRuns::RunLatest, DAY);
        let mut fired = Vec::new();
        // Ticks every 7 minutes for 5 hours, as the scheduler loop would
        // (at any rate: the clock is virtual).
        let mut now = DAY;
        while now <= DAY + 5 * HOUR {
            for at in due(&record, &cron, now) {
                fired.push(firing_id(&record.name, at));
                record.last_fired_ms = Some(at);
            }
            now += 7 * 60_000;
        }
        assert_eq!(
            fired,
            (0..5)
                .map(|h| firing_id("hourly", DAY + h * HOUR + HOUR / 2))
                .collect::<Vec<_>>()
        );
        assert_eq!(fired[0], "hourly-20261207T003000");
        let unique: std::collections::HashSet<_> = fired.iter().collect();
        assert_eq!(unique.len(), 5, "no firing doubled");
    }

    #[test]
    fn missed_firings_follow_the_policy() {
        let cron = Cron::parse("0 * * * *").unwrap();
        // Down for 10 hours after creation.
        let now = DAY + 10 * HOUR + 60_000;
        let latest = schedule("0 * * * *", MissedRuns::RunLatest, DAY);
        assert_eq!(due(&latest, &cron, now), vec![DAY + 10 * HOUR]);
        let all = schedule("0 * * * *", MissedRuns::RunAll, DAY);
        assert_eq!(due(&all, &cron, now).len(), 10);
        let skip = schedule("0 * * * *", MissedRuns::Skip, DAY);
        assert_eq!(
            due(&skip, &cron, now),
            vec![DAY + 10 * HOUR],
            "on time: within grace"
        );
        assert!(
            due(&skip, &cron, now + 2 * GRACE_MS).is_empty(),
            "late: skipped"
        );
        // A long downtime starts at most MAX_CATCH_UP, the newest.
        let years = cron.between(DAY, DAY + 1000 * HOUR, MAX_CATCH_UP);
        assert_eq!(years.len(), MAX_CATCH_UP);
        assert_eq!(years.last(), Some(&(DAY + 1000 * HOUR)));
    }

    #[test]
    fn bad_expressions_and_policies_are_refused() {
        for bad in [
            "",
            "* * *",
            "61 * * * *",
            "* * * * * * * *",
            "nonsense x y z w",
        ] {
            assert!(
                matches!(Cron::parse(bad), Err(WorkflowError::InvalidArgument(_))),
                "{bad}"
            );
        }
        assert!(Cron::parse("*/2 * * * * *").is_ok());
        assert!(parse_missed("sometimes").is_err());
        assert_eq!(parse_missed("").unwrap(), MissedRuns::RunLatest);
    }
}
