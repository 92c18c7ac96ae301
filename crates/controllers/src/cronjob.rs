//! The CronJob controller: creates a Job from `jobTemplate` at each time the 5-field cron
//! `schedule` names (in `timeZone`, else the controller's local zone), named
//! `<cronjob>-<scheduled time in minutes since the epoch>` so that one scheduled time can
//! never run twice; applies `startingDeadlineSeconds`, `concurrencyPolicy` and `suspend`;
//! tracks `active`, `lastScheduleTime` and `lastSuccessfulTime`; prunes finished Jobs beyond
//! the history limits; and requeues itself for the next scheduled time.
//!
//! Jobs made by hand (`kubectl create job --from=cronjob/…`) name the CronJob as their
//! controller too, but as upstream they are only reported (`UnexpectedJob`) while they run,
//! never added to `active`; once finished they count towards the history limits.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use crate::events::Recorder;

/// Annotation with the time a Job was scheduled for.
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// More missed start times than this earn a warning event.
const TOO_MANY_MISSED: usize = 100;
/// Scheduled times examined at most when catching up (a minutely schedule, ~2 years).
const MAX_STEPS: usize = 1_000_000;

// ---------------------------------------------------------------------------------------
// Cron schedules.
// ---------------------------------------------------------------------------------------

/// One cron field: its bounds and the names its values may be written as.
struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: Field = Field {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Field = Field {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY_OF_MONTH: Field = Field {
    name: "day of month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DAY_OF_WEEK: Field = Field {
    name: "day of week",
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

/// A parsed standard cron schedule: one bit per allowed value of each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// Day of month was `*` (or `?`): then both day fields must match, else either may.
    any_day: bool,
    /// Day of week was `*` (or `?`).
    any_weekday: bool,
}

impl Schedule {
    /// Parses five fields (minute hour day-of-month month day-of-week) or a descriptor such
    /// as `@daily`. Errors are worded for events, never panics.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let text = text.trim();
        let expanded = match text.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            _ if text.starts_with('@') => {
                return Err(format!("unrecognized descriptor: {text}"));
            }
            _ => text,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "expected exactly 5 fields, found {}: {text}",
                fields.len()
            ));
        }
        let (days, any_day) = parse_field(fields[2], &DAY_OF_MONTH)?;
        let (weekdays, any_weekday) = parse_field(fields[4], &DAY_OF_WEEK)?;
        Ok(Schedule {
            minutes: parse_field(fields[0], &MINUTE)?.0,
            hours: parse_field(fields[1], &HOUR)?.0,
            days,
            months: parse_field(fields[3], &MONTH)?.0,
            weekdays,
            any_day,
            any_weekday,
        })
    }

    fn day_matches(&self, d: jiff::civil::Date) -> bool {
        let dom = bit(self.days, d.day() as u32);
        let dow = bit(self.weekdays, d.weekday().to_sunday_zero_offset() as u32);
        // Standard cron: restricting both day fields means "either"; a `*` in one means the
        // other alone decides.
        if self.any_day || self.any_weekday {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first scheduled time strictly after `after`, in zone `tz`; None if the schedule
    /// never fires within five years (e.g. `0 0 30 2 *`).
    pub fn next(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let local = after.to_zoned(tz.clone()).datetime();
        let mut t = local
            .with()
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .ok()?
            .checked_add(1.minute())
            .ok()?;
        let last_year = t.year().saturating_add(5);
        while t.year() <= last_year {
            t = match self.skip(t) {
                Some(skipped) => skipped?,
                None => {
                    // A wall time in a DST gap resolves forward, so it may not be after `after`.
                    let ts = t.to_zoned(tz.clone()).ok()?.timestamp();
                    if ts > after {
                        return Some(ts);
                    }
                    t.checked_add(1.minute()).ok()?
                }
            };
        }
        None
    }

    /// The next candidate wall time when `t` does not match (coarsest field first), or None
    /// when it does. The inner Option is None on arithmetic overflow.
    fn skip(&self, t: DateTime) -> Option<Option<DateTime>> {
        let date = t.date();
        if !bit(self.months, date.month() as u32) {
            let next = date.first_of_month().checked_add(1.month()).ok();
            return Some(next.map(|d| d.to_datetime(jiff::civil::Time::midnight())));
        }
        if !self.day_matches(date) {
            let next = date.tomorrow().ok();
            return Some(next.map(|d| d.to_datetime(jiff::civil::Time::midnight())));
        }
        if !bit(self.hours, t.hour() as u32) {
            let top = t.with().minute(0).build().ok();
            return Some(top.and_then(|t| t.checked_add(1.hour()).ok()));
        }
        if !bit(self.minutes, t.minute() as u32) {
            return Some(t.checked_add(1.minute()).ok());
        }
        None
    }
}

fn bit(set: u64, i: u32) -> bool {
    i < 64 && set & (1 << i) != 0
}

/// Parses one comma-separated field; also returns whether it was a bare `*`/`?` (with no
/// step other than 1), which changes how the two day fields combine.
fn parse_field(text: &str, f: &Field) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    let mut any = false;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, Some(parse_number(s, f, "step")?)),
            None => (part, None),
        };
        let star = range == "*" || range == "?";
        let (lo, hi) = if star {
            (f.min, f.max)
        } else if let Some((a, b)) = range.split_once('-') {
            (parse_value(a, f)?, parse_value(b, f)?)
        } else {
            let v = parse_value(range, f)?;
            // `N/step` means N through the maximum.
            (v, if step.is_some() { f.max } else { v })
        };
        if lo > hi {
            return Err(format!(
                "beginning of range ({lo}) beyond end of range ({hi}): {part}"
            ));
        }
        let step = step.unwrap_or(1);
        if step == 0 {
            return Err(format!("step of range should be a positive number: {part}"));
        }
        any |= star && step == 1;
        bits |= (lo..=hi)
            .step_by(step as usize)
            .fold(0, |b, v| b | (1 << v));
    }
    Ok((bits, any))
}

fn parse_value(text: &str, f: &Field) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    if let Some(i) = f.names.iter().position(|n| *n == lower) {
        return Ok(f.min + i as u32);
    }
    let v = parse_number(text, f, "value")?;
    if v < f.min || v > f.max {
        return Err(format!(
            "{} {v} out of range [{}, {}]",
            f.name, f.min, f.max
        ));
    }
    Ok(v)
}

fn parse_number(text: &str, f: &Field, what: &str) -> Result<u32, String> {
    text.parse::<u32>()
        .map_err(|_| format!("failed to parse {} {what}: {text:?}", f.name))
}

/// The zone a CronJob's schedule is read in: `timeZone`, else the controller's own.
pub fn time_zone(name: Option<&str>) -> Result<TimeZone, String> {
    match name {
        None => Ok(TimeZone::system()),
        Some(n) => TimeZone::get(n).map_err(|e| e.to_string()),
    }
}

/// What is due at `now`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// The latest scheduled time in (earliest, now], if any.
    pub latest: Option<Timestamp>,
    /// How many scheduled times passed in (earliest, now].
    pub missed: usize,
    /// The next scheduled time after `now`.
    pub next: Option<Timestamp>,
}

/// The scheduled times between the last one handled (or creation) and `now`, limited to the
/// last `starting_deadline` seconds, as upstream looks back.
pub fn due(
    schedule: &Schedule,
    tz: &TimeZone,
    since: Timestamp,
    starting_deadline: Option<i64>,
    now: Timestamp,
) -> Due {
    let mut earliest = since;
    if let Some(d) = starting_deadline
        && let Ok(window) = now.checked_sub(jiff::SignedDuration::from_secs(d.max(0)))
        && window > earliest
    {
        earliest = window;
    }
    let mut out = Due {
        latest: None,
        missed: 0,
        next: None,
    };
    let mut t = schedule.next(earliest, tz);
    for _ in 0..MAX_STEPS {
        match t {
            Some(at) if at <= now => {
                out.latest = Some(at);
                out.missed += 1;
                t = schedule.next(at, tz);
            }
            _ => break,
        }
    }
    out.next = match t {
        Some(at) if at > now => Some(at),
        _ => schedule.next(now, tz),
    };
    out
}

/// Whether a scheduled time is now too late to start under `startingDeadlineSeconds`.
pub fn too_late(scheduled: Timestamp, starting_deadline: Option<i64>, now: Timestamp) -> bool {
    starting_deadline.is_some_and(|d| now.duration_since(scheduled).as_secs() > d)
}

/// The name of the Job for a scheduled time: minutes since the epoch, as upstream.
pub fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

/// Go's RFC 3339 rendering of a time in a zone (`Z` for a zero offset).
pub fn rfc3339_in(t: Timestamp, tz: &TimeZone) -> String {
    let z = t.to_zoned(tz.clone());
    if z.offset().seconds() == 0 {
        z.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}

// ---------------------------------------------------------------------------------------
// The controller.
// ---------------------------------------------------------------------------------------

/// Errors of one reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("{0}")]
    Api(#[from] kube::Error),
}

struct Ctx {
    client: Client,
    recorder: Recorder,
}

/// Runs the controller until the process ends.
pub async fn run(client: Client) {
    let cronjobs: Api<CronJob> = Api::all(client.clone());
    let jobs: Api<Job> = Api::all(client.clone());
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), "cronjob-controller"),
        client,
    });
    Controller::new(cronjobs, watcher::Config::default())
        .owns(jobs, watcher::Config::default())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

fn error_policy(_cj: Arc<CronJob>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::debug!("cronjob controller: {err}");
    Action::requeue(Duration::from_secs(2))
}

fn job_ref(job: &Job) -> Value {
    json!({"apiVersion": "batch/v1", "kind": "Job", "name": job.name_any(),
           "namespace": job.namespace(), "uid": job.uid(),
           "resourceVersion": job.resource_version()})
}

/// `Complete` or `Failed` if the Job finished.
pub fn finished(job: &Job) -> Option<&str> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| c.type_.as_str())
}

fn time_of(v: &Value) -> Option<Timestamp> {
    v.as_str()?.parse().ok()
}

fn rfc3339(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// One reconcile of one CronJob: the status being built and what to do next.
struct Sync<'a> {
    cj: &'a CronJob,
    ctx: &'a Ctx,
    jobs: Api<Job>,
    active: Vec<Value>,
    last_schedule: Option<Timestamp>,
    last_successful: Option<Timestamp>,
}

async fn reconcile(cached: Arc<CronJob>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = cached.namespace().unwrap_or_default();
    // The cached copy may predate our own last status write (its `active` list); acting on
    // it would forget a Job just created, so read the CronJob afresh.
    let api: Api<CronJob> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(cj) = api.get_opt(&cached.name_any()).await? else {
        return Ok(Action::await_change());
    };
    if cj.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let status = cj
        .status
        .as_ref()
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or(json!({}));
    let mut sync = Sync {
        cj: &cj,
        ctx: &ctx,
        jobs,
        active: status["active"].as_array().cloned().unwrap_or_default(),
        last_schedule: time_of(&status["lastScheduleTime"]),
        last_successful: time_of(&status["lastSuccessfulTime"]),
    };
    let owned = sync.owned_jobs().await?;
    sync.track_active(&owned).await;
    sync.prune_history(&owned).await?;
    let action = sync.schedule().await?;
    sync.write_status(&status).await?;
    Ok(action)
}

impl Sync<'_> {
    async fn event(&self, type_: &str, reason: &str, message: &str) {
        self.ctx
            .recorder
            .record(&crate::events::reference(self.cj), type_, reason, message)
            .await;
    }

    /// The Jobs this CronJob controls (the same namespace, controller owner reference).
    async fn owned_jobs(&self) -> Result<Vec<Job>, Error> {
        let uid = self.cj.uid().unwrap_or_default();
        let list = self.jobs.list(&ListParams::default()).await?;
        Ok(list
            .items
            .into_iter()
            .filter(|j| {
                j.owner_references()
                    .iter()
                    .any(|r| r.controller == Some(true) && r.uid == uid)
            })
            .collect())
    }

    /// Brings `active` up to date: drops vanished and finished Jobs (noting the last
    /// success). Running owned Jobs missing from it are reported, not adopted, as upstream
    /// does: they are manual runs (`kubectl create job --from=cronjob/…`) or leftovers.
    async fn track_active(&mut self, owned: &[Job]) {
        let mut kept = Vec::new();
        for r in std::mem::take(&mut self.active) {
            let found = owned
                .iter()
                .find(|j| j.uid().as_deref() == r["uid"].as_str());
            match found {
                None => {
                    let name = r["name"].as_str().unwrap_or("");
                    let msg = format!("Active job went missing: {name}");
                    self.event("Warning", "MissingJob", &msg).await;
                }
                Some(j) => match finished(j) {
                    Some(how) => self.saw_finished(j, how).await,
                    None => kept.push(job_ref(j)),
                },
            }
        }
        for j in owned {
            let listed = kept.iter().any(|r| r["uid"].as_str() == j.uid().as_deref());
            if !listed && finished(j).is_none() && j.metadata.deletion_timestamp.is_none() {
                let msg = format!(
                    "Saw a job that the controller did not create or forgot: {}",
                    j.name_any()
                );
                self.event("Warning", "UnexpectedJob", &msg).await;
            }
        }
        self.active = kept;
    }

    async fn saw_finished(&mut self, job: &Job, how: &str) {
        let msg = format!("Saw completed job: {}, condition: {how}", job.name_any());
        self.event("Normal", "SawCompletedJob", &msg).await;
        if how == "Complete" {
            let done = job
                .status
                .as_ref()
                .and_then(|s| s.completion_time.as_ref())
                .map(|t| t.0);
            if done > self.last_successful {
                self.last_successful = done;
            }
        }
    }

    /// Deletes the oldest finished Jobs beyond the history limits.
    async fn prune_history(&self, owned: &[Job]) -> Result<(), Error> {
        let spec = self.cj.spec.as_ref();
        let limits = [
            (
                "Complete",
                spec.and_then(|s| s.successful_jobs_history_limit),
            ),
            ("Failed", spec.and_then(|s| s.failed_jobs_history_limit)),
        ];
        for (how, limit) in limits {
            let Some(limit) = limit else { continue };
            let mut done: Vec<&Job> = owned.iter().filter(|j| finished(j) == Some(how)).collect();
            done.sort_by_key(|j| start_of(j));
            let surplus = done.len().saturating_sub(limit.max(0) as usize);
            for j in done.into_iter().take(surplus) {
                self.delete_job(j).await?;
            }
        }
        Ok(())
    }

    async fn delete_job(&self, job: &Job) -> Result<(), Error> {
        match self
            .jobs
            .delete(&job.name_any(), &DeleteParams::background())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let msg = format!("Deleted job {}", job.name_any());
        self.event("Normal", "SuccessfulDelete", &msg).await;
        Ok(())
    }

    /// Starts the Job that is due, if any; returns when to look again.
    async fn schedule(&mut self) -> Result<Action, Error> {
        let Some(spec) = self.cj.spec.as_ref() else {
            return Ok(Action::await_change());
        };
        let tz = match time_zone(spec.time_zone.as_deref()) {
            Ok(tz) => tz,
            Err(e) => {
                let tz_name = spec.time_zone.as_deref().unwrap_or("");
                let msg = format!("invalid timeZone: {tz_name:?}: {e}");
                self.event("Warning", "UnknownTimeZone", &msg).await;
                return Ok(Action::await_change());
            }
        };
        let schedule = match Schedule::parse(&spec.schedule) {
            Ok(s) => s,
            Err(e) => {
                let msg = format!("unparseable schedule: {:?} : {e}", spec.schedule);
                self.event("Warning", "UnparseableSchedule", &msg).await;
                return Ok(Action::await_change());
            }
        };
        if spec.suspend == Some(true) {
            return Ok(Action::await_change());
        }
        let now = Timestamp::now();
        let since = self
            .last_schedule
            .or_else(|| self.cj.metadata.creation_timestamp.as_ref().map(|t| t.0))
            .unwrap_or(now);
        let deadline = spec.starting_deadline_seconds;
        let due = due(&schedule, &tz, since, deadline, now);
        if due.missed > TOO_MANY_MISSED {
            let msg = "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew";
            self.event("Warning", "TooManyMissedTimes", msg).await;
        }
        if let Some(scheduled) = due.latest {
            self.start(scheduled, &tz, deadline, now).await?;
        }
        Ok(requeue_for(due.next, now))
    }

    /// Handles one due scheduled time under the concurrency policy.
    async fn start(
        &mut self,
        scheduled: Timestamp,
        tz: &TimeZone,
        deadline: Option<i64>,
        now: Timestamp,
    ) -> Result<(), Error> {
        let name = job_name(&self.cj.name_any(), scheduled);
        if too_late(scheduled, deadline, now) {
            let when = scheduled.to_zoned(tz.clone());
            let msg = format!(
                "Missed scheduled time to start a job: {}",
                when.strftime("%a, %d %b %Y %H:%M:%S %z")
            );
            self.event("Warning", "MissSchedule", &msg).await;
            return Ok(());
        }
        if self.active.iter().any(|r| r["name"] == name.as_str()) {
            return Ok(());
        }
        let policy = self
            .cj
            .spec
            .as_ref()
            .and_then(|s| s.concurrency_policy.as_deref())
            .unwrap_or("Allow");
        if policy == "Forbid" && !self.active.is_empty() {
            let msg = "Not starting job because prior execution is running and concurrency policy is Forbid";
            self.event("Normal", "JobAlreadyActive", msg).await;
            return Ok(());
        }
        if policy == "Replace" {
            self.replace_active().await?;
        }
        self.create_job(&name, scheduled, tz).await
    }

    async fn replace_active(&mut self) -> Result<(), Error> {
        for r in std::mem::take(&mut self.active) {
            let name = r["name"].as_str().unwrap_or_default().to_string();
            match self.jobs.delete(&name, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => continue,
                Err(e) => return Err(e.into()),
            }
            self.event("Normal", "SuccessfulDelete", &format!("Deleted job {name}"))
                .await;
        }
        Ok(())
    }

    async fn create_job(
        &mut self,
        name: &str,
        scheduled: Timestamp,
        tz: &TimeZone,
    ) -> Result<(), Error> {
        let body = job_from_template(self.cj, name, &rfc3339_in(scheduled, tz));
        let job: Job = serde_json::from_value(body).map_err(kube::Error::SerdeError)?;
        match self.jobs.create(&PostParams::default(), &job).await {
            Ok(created) => {
                self.active.push(job_ref(&created));
                let msg = format!("Created job {name}");
                self.event("Normal", "SuccessfulCreate", &msg).await;
            }
            // Created before, by a reconcile whose status write was lost: track it again.
            Err(kube::Error::Api(e)) if e.code == 409 => self.readopt(name).await?,
            Err(e) => {
                let msg = format!("Error creating job: {e}");
                self.event("Warning", "FailedCreate", &msg).await;
                return Err(e.into());
            }
        }
        self.last_schedule = Some(scheduled);
        Ok(())
    }

    /// Puts an existing Job of ours for this scheduled time back into `active`.
    async fn readopt(&mut self, name: &str) -> Result<(), Error> {
        let uid = self.cj.uid();
        if let Some(j) = self.jobs.get_opt(name).await?
            && j.owner_references()
                .iter()
                .any(|r| Some(&r.uid) == uid.as_ref())
            && finished(&j).is_none()
            && !self.active.iter().any(|r| r["name"] == name)
        {
            self.active.push(job_ref(&j));
        }
        Ok(())
    }

    async fn write_status(&self, before: &Value) -> Result<(), Error> {
        let mut next = before.clone();
        let opt_time = |t: Option<Timestamp>| t.map_or(Value::Null, |t| json!(rfc3339(t)));
        next["active"] = if self.active.is_empty() {
            Value::Null
        } else {
            json!(self.active)
        };
        next["lastScheduleTime"] = opt_time(self.last_schedule);
        next["lastSuccessfulTime"] = opt_time(self.last_successful);
        let normalized = |v: &Value| -> Value {
            v.as_object()
                .map(|m| {
                    m.iter()
                        .filter(|(_, v)| !v.is_null())
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                })
                .unwrap_or(json!({}))
        };
        if normalized(&next) == normalized(before) {
            return Ok(());
        }
        let api: Api<CronJob> = Api::namespaced(
            self.ctx.client.clone(),
            &self.cj.namespace().unwrap_or_default(),
        );
        // The resourceVersion makes this a compare-and-swap: a conflict means another
        // writer got in between, and the reconcile runs again on the fresh object.
        let patch = json!({"metadata": {"resourceVersion": self.cj.resource_version()},
                           "status": next});
        api.patch_status(
            &self.cj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
        Ok(())
    }
}

fn start_of(job: &Job) -> Option<Timestamp> {
    job.status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .or(job.metadata.creation_timestamp.as_ref())
        .map(|t| t.0)
}

/// Requeue shortly after the next scheduled time (upstream adds 100 ms too, so the clock
/// has surely passed it), or not at all if the schedule never fires again.
fn requeue_for(next: Option<Timestamp>, now: Timestamp) -> Action {
    match next {
        Some(at) => {
            let wait = Duration::try_from(at.duration_since(now)).unwrap_or_default();
            Action::requeue(wait + Duration::from_millis(100))
        }
        None => Action::await_change(),
    }
}

/// A Job for one scheduled time: the template's metadata and spec, the scheduled-time
/// annotation, and this CronJob as controller.
pub fn job_from_template(cj: &CronJob, name: &str, scheduled: &str) -> Value {
    let template = cj
        .spec
        .as_ref()
        .and_then(|s| serde_json::to_value(&s.job_template).ok())
        .unwrap_or(json!({}));
    let mut annotations = template
        .pointer("/metadata/annotations")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or(json!({}));
    annotations[SCHEDULED_TIMESTAMP] = json!(scheduled);
    let mut metadata = json!({
        "name": name,
        "namespace": cj.namespace(),
        "annotations": annotations,
        "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": cj.name_any(),
            "uid": cj.uid(), "controller": true, "blockOwnerDeletion": true}],
    });
    if let Some(labels) = template.pointer("/metadata/labels") {
        metadata["labels"] = labels.clone();
    }
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata,
           "spec": template.get("spec").cloned().unwrap_or(json!({}))})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn utc() -> TimeZone {
        TimeZone::UTC
    }

    #[test]
    fn next_times() {
        // (schedule, zone, after, expected next)
        let cases = [
            (
                "* * * * *",
                "UTC",
                "2024-01-01T10:00:30Z",
                "2024-01-01T10:01:00Z",
            ),
            (
                "* * * * *",
                "UTC",
                "2024-01-01T10:00:00Z",
                "2024-01-01T10:01:00Z",
            ),
            (
                "*/5 * * * *",
                "UTC",
                "2024-01-01T10:03:00Z",
                "2024-01-01T10:05:00Z",
            ),
            (
                "*/15 * * * *",
                "UTC",
                "2024-01-01T10:45:00Z",
                "2024-01-01T11:00:00Z",
            ),
            (
                "0 * * * *",
                "UTC",
                "2024-01-01T10:00:00Z",
                "2024-01-01T11:00:00Z",
            ),
            (
                "@hourly",
                "UTC",
                "2024-01-01T10:59:59Z",
                "2024-01-01T11:00:00Z",
            ),
            (
                "@daily",
                "UTC",
                "2024-01-01T10:00:00Z",
                "2024-01-02T00:00:00Z",
            ),
            (
                "@midnight",
                "UTC",
                "2024-12-31T23:59:00Z",
                "2025-01-01T00:00:00Z",
            ),
            (
                "@weekly",
                "UTC",
                "2024-01-01T00:00:00Z",
                "2024-01-07T00:00:00Z",
            ),
            (
                "@monthly",
                "UTC",
                "2024-01-15T00:00:00Z",
                "2024-02-01T00:00:00Z",
            ),
            (
                "@yearly",
                "UTC",
                "2024-01-15T00:00:00Z",
                "2025-01-01T00:00:00Z",
            ),
            (
                "@annually",
                "UTC",
                "2024-01-15T00:00:00Z",
                "2025-01-01T00:00:00Z",
            ),
            (
                "30 9 * * 1-5",
                "UTC",
                "2024-01-05T10:00:00Z",
                "2024-01-08T09:30:00Z",
            ),
            (
                "30 9 * * MON-FRI",
                "UTC",
                "2024-01-06T00:00:00Z",
                "2024-01-08T09:30:00Z",
            ),
            (
                "0 0 1,15 * *",
                "UTC",
                "2024-01-02T00:00:00Z",
                "2024-01-15T00:00:00Z",
            ),
            (
                "0 12 * JAN,jul *",
                "UTC",
                "2024-02-01T00:00:00Z",
                "2024-07-01T12:00:00Z",
            ),
            (
                "0 0 29 2 *",
                "UTC",
                "2024-03-01T00:00:00Z",
                "2028-02-29T00:00:00Z",
            ),
            (
                "5-10/2 * * * *",
                "UTC",
                "2024-01-01T10:07:00Z",
                "2024-01-01T10:09:00Z",
            ),
            (
                "50/5 * * * *",
                "UTC",
                "2024-01-01T10:56:00Z",
                "2024-01-01T11:50:00Z",
            ),
            // Both day fields restricted: either matches (the 13th, or a Friday).
            (
                "0 0 13 * 5",
                "UTC",
                "2024-01-01T00:00:00Z",
                "2024-01-05T00:00:00Z",
            ),
            // Day of week `*`: day of month alone decides.
            (
                "0 0 13 * *",
                "UTC",
                "2024-01-01T00:00:00Z",
                "2024-01-13T00:00:00Z",
            ),
            // Day of week as a step is not `*`: either day field may match.
            (
                "0 0 13 * */2",
                "UTC",
                "2024-01-01T00:00:00Z",
                "2024-01-02T00:00:00Z",
            ),
            (
                "0 9 * * *",
                "Europe/Berlin",
                "2024-01-01T00:00:00Z",
                "2024-01-01T08:00:00Z",
            ),
            (
                "0 9 * * *",
                "Europe/Berlin",
                "2024-07-01T00:00:00Z",
                "2024-07-01T07:00:00Z",
            ),
            (
                "0 9 * * *",
                "America/New_York",
                "2024-01-01T15:00:00Z",
                "2024-01-02T14:00:00Z",
            ),
            // 02:30 does not exist on the spring-forward day; it resolves to 03:30 local.
            (
                "30 2 * * *",
                "America/New_York",
                "2024-03-10T05:00:00Z",
                "2024-03-10T07:30:00Z",
            ),
        ];
        for (schedule, zone, after, want) in cases {
            let s = Schedule::parse(schedule).unwrap_or_else(|e| panic!("{schedule}: {e}"));
            let tz = time_zone(Some(zone)).unwrap();
            assert_eq!(
                s.next(ts(after), &tz),
                Some(ts(want)),
                "{schedule} in {zone} after {after}"
            );
        }
    }

    #[test]
    fn never_firing_schedule_has_no_next() {
        let s = Schedule::parse("0 0 30 2 *").unwrap();
        assert_eq!(s.next(ts("2024-01-01T00:00:00Z"), &utc()), None);
    }

    #[test]
    fn bad_schedules_are_errors() {
        for bad in [
            "",
            "* * * *",
            "* * * * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 7",
            "*/0 * * * *",
            "5-1 * * * *",
            "a * * * *",
            "* * * FOO *",
            "@every 5m",
            "@reboot",
            "1,,2 * * * *",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn unknown_time_zone_is_an_error() {
        assert!(time_zone(Some("Mars/Olympus_Mons")).is_err());
        assert!(time_zone(Some("Asia/Tokyo")).is_ok());
        assert!(time_zone(None).is_ok());
    }

    #[test]
    fn due_times_and_deadlines() {
        let s = Schedule::parse("* * * * *").unwrap();
        let now = ts("2024-01-01T10:05:30Z");
        // Created at 10:00:10: 10:01 … 10:05 passed; the latest is due.
        let d = due(&s, &utc(), ts("2024-01-01T10:00:10Z"), None, now);
        assert_eq!(d.latest, Some(ts("2024-01-01T10:05:00Z")));
        assert_eq!(d.missed, 5);
        assert_eq!(d.next, Some(ts("2024-01-01T10:06:00Z")));
        // A starting deadline narrows the look-back window.
        let d = due(&s, &utc(), ts("2024-01-01T09:00:00Z"), Some(90), now);
        assert_eq!(d.missed, 1);
        // Nothing due since the last scheduled time.
        let d = due(&s, &utc(), ts("2024-01-01T10:05:00Z"), None, now);
        assert_eq!((d.latest, d.missed), (None, 0));
        // Hourly schedule, last run an hour ago, missed by 5 min with a 60 s deadline.
        let h = Schedule::parse("@hourly").unwrap();
        let now = ts("2024-01-01T11:05:00Z");
        let d = due(&h, &utc(), ts("2024-01-01T10:00:00Z"), Some(600), now);
        assert_eq!(d.latest, Some(ts("2024-01-01T11:00:00Z")));
        assert!(!too_late(ts("2024-01-01T11:00:00Z"), Some(600), now));
        assert!(too_late(ts("2024-01-01T11:00:00Z"), Some(60), now));
        assert!(!too_late(ts("2024-01-01T11:00:00Z"), None, now));
    }

    #[test]
    fn job_names_and_timestamps() {
        let t = ts("2024-01-01T10:05:00Z");
        assert_eq!(job_name("hello", t), "hello-28401725");
        assert_eq!(rfc3339_in(t, &utc()), "2024-01-01T10:05:00Z");
        let berlin = time_zone(Some("Europe/Berlin")).unwrap();
        assert_eq!(rfc3339_in(t, &berlin), "2024-01-01T11:05:00+01:00");
    }

    #[test]
    fn job_from_cronjob_template() {
        let cj: CronJob = serde_json::from_value(json!({
            "metadata": {"name": "hello", "namespace": "ns", "uid": "u1"},
            "spec": {"schedule": "* * * * *", "jobTemplate": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"template": {"spec": {"containers": [{"name": "c"}]}}}}}
        }))
        .unwrap();
        let job = job_from_template(&cj, "hello-1", "2024-01-01T00:00:00Z");
        assert_eq!(job["metadata"]["name"], "hello-1");
        assert_eq!(job["metadata"]["labels"]["a"], "b");
        assert_eq!(
            job["metadata"]["annotations"][SCHEDULED_TIMESTAMP],
            "2024-01-01T00:00:00Z"
        );
        let owner = &job["metadata"]["ownerReferences"][0];
        assert_eq!(
            (owner["kind"].as_str(), owner["controller"].as_bool()),
            (Some("CronJob"), Some(true))
        );
        assert_eq!(
            job["spec"]["template"]["spec"]["containers"][0]["name"],
            "c"
        );
    }
}
