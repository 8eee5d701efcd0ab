//! Stages as Slurm array jobs: sbatch scripts (one array task per slice, the
//! merge with `--dependency=afterok`), submission, progress and retries, and
//! `--local N`, which runs the very same scripts as N local processes.
//!
//! Each task script leaves a marker `<shards>/status/<job>-<task>` holding its
//! exit code, so progress and retries work on clusters without Slurm
//! accounting (sacct) and without Slurm at all; squeue says what still waits
//! or runs.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Seconds a merge or fit job waits for the project store.
const WAIT: u64 = 3600;

/// Resources of every job, from a TOML profile, then flags.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    pub partition: Option<String>,
    pub cpus: Option<u32>,
    pub mem: Option<String>,
    pub time: Option<String>,
    pub account: Option<String>,
    /// More `#SBATCH` options, verbatim (e.g. "--qos=long").
    #[serde(default)]
    pub extra: Vec<String>,
}

impl Resources {
    /// Reads a profile; the error names the file and what is wrong.
    pub fn from_profile(path: &Path) -> Result<Resources, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.message()))
    }

    /// `other`'s settings where it has them, ours elsewhere.
    pub fn overridden_by(mut self, other: Resources) -> Resources {
        self.partition = other.partition.or(self.partition);
        self.cpus = other.cpus.or(self.cpus);
        self.mem = other.mem.or(self.mem);
        self.time = other.time.or(self.time);
        self.account = other.account.or(self.account);
        self.extra.extend(other.extra);
        self
    }

    fn directives(&self) -> Vec<String> {
        let mut d = Vec::new();
        if let Some(p) = &self.partition {
            d.push(format!("--partition={p}"));
        }
        if let Some(c) = self.cpus {
            d.push(format!("--cpus-per-task={c}"));
        }
        if let Some(m) = &self.mem {
            d.push(format!("--mem={m}"));
        }
        if let Some(t) = &self.time {
            d.push(format!("--time={t}"));
        }
        if let Some(a) = &self.account {
            d.push(format!("--account={a}"));
        }
        d.extend(self.extra.iter().cloned());
        d
    }
}

/// One job of a chain: an array (one task per slice) or a single job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub name: String,
    pub script: PathBuf,
    /// Array size (tasks 0..n), None for a single job.
    pub array: Option<usize>,
    /// Slurm's job id once submitted ("local" for --local runs).
    pub job_id: Option<String>,
    /// Tasks of this submission (a retry resubmits only some).
    pub tasks: Option<Vec<usize>>,
}

/// Jobs that run one after the other (each `afterok` the one before).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Submission {
    pub stage: String,
    pub engine: String,
    pub time: String,
    pub shards: PathBuf,
    pub jobs: Vec<Job>,
}

/// What `<store>/slurm.json` holds: every submission, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobBook {
    pub submissions: Vec<Submission>,
}

pub fn book_path(project: &Path) -> PathBuf {
    project.join("slurm.json")
}

impl JobBook {
    pub fn read(project: &Path) -> JobBook {
        std::fs::read_to_string(book_path(project)).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default()
    }

    pub fn write(&self, project: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(project)?;
        let tmp = book_path(project).with_extension("json.partial");
        std::fs::write(&tmp, serde_json::to_string_pretty(self).expect("json"))?;
        std::fs::rename(tmp, book_path(project))
    }
}

/// What the scripts need to know.
#[derive(Debug, Clone)]
pub struct Plan {
    pub oddity: PathBuf,
    pub project: PathBuf,
    pub shards: PathBuf,
    pub slices: usize,
    pub paths: Vec<PathBuf>,
    pub seed: u64,
    pub fit_sample: usize,
    /// Cutouts per survey the embedding's PCA is fitted on.
    pub embed_sample: usize,
    pub resources: Resources,
}

impl Plan {
    pub fn shard(&self, i: usize) -> PathBuf {
        self.shards.join(format!("shard-{i:04}"))
    }

    fn shard_list(&self) -> String {
        (0..self.slices).map(|i| quote(&self.shard(i))).collect::<Vec<_>>().join(" ")
    }

    /// The jobs of a stage, in order, with their scripts written under `<shards>/slurm/`.
    pub fn write_jobs(&self, stage: &str) -> std::io::Result<Vec<Job>> {
        let dir = self.shards.join("slurm");
        for sub in ["slurm", "logs", "status"] {
            std::fs::create_dir_all(self.shards.join(sub))?;
        }
        let o = quote(&self.oddity);
        let p = quote(&self.project);
        let n = self.slices;
        let shard = format!("{}/shard-$(printf %04d \"$I\")", quote(&self.shards));
        let paths = self.paths.iter().map(|p| quote(p)).collect::<Vec<_>>().join(" ");
        let ingest =
            format!("{o} --store \"$SHARD\" ingest --slice \"$I/{n}\" {paths}\n{o} --store \"$SHARD\" features\n");
        // The project store may be open in someone's `oddity status` or TUI: wait for it.
        let merge = format!("{o} --store {p} merge --wait {WAIT} {}\n", self.shard_list());
        let fit = format!(
            "{o} --store {p} score --fit-only --wait {WAIT} --seed {} --fit-sample {}\n",
            self.seed, self.fit_sample
        );
        let apply = format!("{o} --store \"$SHARD\" score --apply {}\n", quote(&super::forests_path(&self.project)));
        // libtorch's threads follow the allocation, as rayon's do.
        let threads = self.resources.cpus.map(|c| format!(" --threads {c}")).unwrap_or_default();
        let embed_fit = format!(
            "{o} --store {p} embed --fit-only --wait {WAIT} --seed {} --fit-sample {}{threads}\n",
            self.seed, self.embed_sample
        );
        let embed = format!(
            "{o} --store \"$SHARD\" embed --apply {}{threads}\n",
            quote(&super::projection_path(&self.project))
        );
        let mut jobs = Vec::new();
        let mut add = |name: &str, array: bool, body: String| -> std::io::Result<()> {
            let script = dir.join(format!("{name}.sbatch"));
            std::fs::write(&script, self.script(name, array, &shard, &body))?;
            jobs.push(Job { name: name.into(), script, array: array.then_some(n), job_id: None, tasks: None });
            Ok(())
        };
        if matches!(stage, "ingest" | "all") {
            add("ingest", true, ingest)?;
            add("merge-ingest", false, merge.clone())?;
        }
        if stage == "embed" {
            add("embed-fit", false, embed_fit)?;
            add("embed", true, embed)?;
            add("merge-embed", false, merge.clone())?;
        }
        if matches!(stage, "score" | "all") {
            add("fit", false, fit)?;
            add("apply", true, apply)?;
            add("merge-scores", false, merge)?;
        }
        Ok(jobs)
    }

    fn script(&self, name: &str, array: bool, shard: &str, body: &str) -> String {
        let mut s = String::from("#!/bin/bash\n");
        s.push_str(&format!("#SBATCH --job-name=oddity-{name}\n"));
        let logs = self.shards.join("logs");
        if array {
            s.push_str(&format!("#SBATCH --array=0-{}\n", self.slices - 1));
            s.push_str(&format!("#SBATCH --output={}/{name}-%a.log\n", logs.display()));
        } else {
            s.push_str(&format!("#SBATCH --output={}/{name}.log\n", logs.display()));
        }
        for d in self.resources.directives() {
            s.push_str(&format!("#SBATCH {d}\n"));
        }
        s.push_str("# Written by `oddity slurm`; `oddity slurm --local N` runs this same file.\nset -euo pipefail\n");
        if array {
            s.push_str("I=\"${SLURM_ARRAY_TASK_ID:?run as an array task}\"\n");
            s.push_str(&format!("SHARD={shard}\n"));
        } else {
            s.push_str("I=job\n");
        }
        let status = quote(&self.shards.join("status"));
        s.push_str(&format!("trap 'echo \"exit $?\" > {status}/{name}-\"$I\"' EXIT\nrm -f {status}/{name}-\"$I\"\n"));
        if let Some(c) = self.resources.cpus {
            s.push_str(&format!("export RAYON_NUM_THREADS={c}\n"));
        }
        s.push_str(body);
        s
    }
}

/// Single-quotes a path for bash.
fn quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

/// Runs a command with a deadline: (exit ok, stdout), or why not.
fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Result<(bool, String, String), String> {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null()).spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound { "not installed".to_string() } else { e.to_string() }
    })?;
    let started = Instant::now();
    loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(status) => {
                let (mut out, mut err) = (String::new(), String::new());
                child.stdout.take().map(|mut o| o.read_to_string(&mut out));
                child.stderr.take().map(|mut o| o.read_to_string(&mut err));
                return Ok((status.success(), out, err));
            }
            None if started.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no answer within {}s", timeout.as_secs()));
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Submits a job with sbatch (after `after`, if given) and returns its id.
pub fn sbatch(job: &Job, after: Option<&str>, tasks: Option<&[usize]>) -> Result<String, String> {
    let mut cmd = Command::new("sbatch");
    cmd.arg("--parsable");
    if let Some(a) = after {
        cmd.arg(format!("--dependency=afterok:{a}"));
    }
    if let Some(t) = tasks {
        cmd.arg(format!("--array={}", t.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(",")));
    }
    cmd.arg(&job.script);
    let (ok, out, err) = run_with_timeout(&mut cmd, Duration::from_secs(60)).map_err(|e| format!("sbatch: {e}"))?;
    if !ok {
        return Err(format!("sbatch {}: {}", job.script.display(), err.trim()));
    }
    // `--parsable` prints "ID" or "ID;cluster".
    let id = out.trim().split(';').next().unwrap_or_default().to_string();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("sbatch {}: unexpected answer `{}`", job.script.display(), out.trim()));
    }
    Ok(id)
}

/// Submits a chain of jobs, each after the one before; fills in the ids.
pub fn submit(jobs: &mut [Job], first_after: Option<&str>) -> Result<(), String> {
    let mut after = first_after.map(str::to_string);
    for job in jobs.iter_mut() {
        let id = sbatch(job, after.as_deref(), job.tasks.as_deref())?;
        after = Some(id.clone());
        job.job_id = Some(id);
    }
    Ok(())
}

/// Runs a chain locally, `parallel` tasks at a time, by the same scripts;
/// stops at the first job with a failed task (as `afterok` would). Returns
/// (job, failed tasks) for that job, if any.
pub fn run_local(jobs: &mut [Job], parallel: usize, shards: &Path) -> Result<Option<(String, Vec<usize>)>, String> {
    let logs = shards.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;
    for job in jobs.iter_mut() {
        job.job_id = Some("local".into());
        let tasks: Vec<Option<usize>> = match (&job.tasks, job.array) {
            (Some(t), _) => t.iter().map(|&t| Some(t)).collect(),
            (None, Some(n)) => (0..n).map(Some).collect(),
            (None, None) => vec![None],
        };
        let next = std::sync::Mutex::new(tasks.iter());
        let failed = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..parallel.max(1).min(tasks.len()) {
                s.spawn(|| {
                    loop {
                        let Some(&task) = next.lock().expect("queue").next() else { break };
                        let log = match task {
                            Some(t) => logs.join(format!("{}-{t}.log", job.name)),
                            None => logs.join(format!("{}.log", job.name)),
                        };
                        let ok = std::fs::File::create(&log).ok().and_then(|f| {
                            let mut cmd = Command::new("bash");
                            cmd.arg(&job.script).stdin(Stdio::null());
                            cmd.stdout(f.try_clone().ok()?).stderr(f);
                            if let Some(t) = task {
                                cmd.env("SLURM_ARRAY_TASK_ID", t.to_string()).env("SLURM_ARRAY_JOB_ID", "local");
                            }
                            cmd.status().ok()
                        });
                        if !ok.is_some_and(|s| s.success()) {
                            failed.lock().expect("failed").push(task.unwrap_or(0));
                        }
                    }
                });
            }
        });
        let mut failed = failed.into_inner().expect("failed");
        if !failed.is_empty() {
            failed.sort();
            return Ok(Some((job.name.clone(), failed)));
        }
    }
    Ok(None)
}

/// The state of one task.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum TaskState {
    Done,
    Failed(i32),
    Queued(String),
    /// No marker and not in the queue: never ran, or killed before its trap.
    Unknown,
}

/// Tasks in the queue: task → squeue state, or why squeue could not say.
pub fn queued(job_id: &str) -> Result<BTreeMap<String, String>, String> {
    let mut cmd = Command::new("squeue");
    cmd.args(["-h", "-r", "-j", job_id, "-o", "%i %T"]);
    let (ok, out, err) = run_with_timeout(&mut cmd, Duration::from_secs(5)).map_err(|e| format!("squeue: {e}"))?;
    if !ok {
        // A job Slurm no longer knows is not queued.
        if err.contains("Invalid job id") {
            return Ok(BTreeMap::new());
        }
        return Err(format!("squeue: {}", err.trim()));
    }
    Ok(out
        .lines()
        .filter_map(|l| {
            let (id, state) = l.trim().split_once(' ')?;
            let task = id.split_once('_').map(|(_, t)| t.to_string()).unwrap_or_else(|| "job".into());
            Some((task, state.to_string()))
        })
        .collect())
}

/// Each task's state: its marker, else the queue. `queue` is None when
/// squeue could not be asked (no Slurm): only markers then.
pub fn task_states(job: &Job, shards: &Path, queue: Option<&BTreeMap<String, String>>) -> Vec<(String, TaskState)> {
    let tasks: Vec<String> = match job.array {
        Some(n) => (0..n).map(|t| t.to_string()).collect(),
        None => vec!["job".into()],
    };
    tasks
        .into_iter()
        .map(|t| {
            let marker = std::fs::read_to_string(shards.join("status").join(format!("{}-{t}", job.name))).ok();
            let state = match marker.as_deref().map(str::trim).and_then(|m| m.strip_prefix("exit ")) {
                Some("0") => TaskState::Done,
                Some(code) => TaskState::Failed(code.parse().unwrap_or(-1)),
                None => match queue.and_then(|q| q.get(&t)) {
                    Some(s) => TaskState::Queued(s.clone()),
                    None => TaskState::Unknown,
                },
            };
            (t, state)
        })
        .collect()
}

/// One line per job of the last submission, for `oddity status`.
pub fn status_lines(project: &Path) -> Vec<String> {
    let book = JobBook::read(project);
    let Some(sub) = book.submissions.last() else { return Vec::new() };
    let mut out = vec![format!(
        "{} stage `{}` submitted {} (shards in {})",
        sub.engine,
        sub.stage,
        sub.time,
        sub.shards.display()
    )];
    let mut note = None;
    for job in &sub.jobs {
        let queue = match (&job.job_id, sub.engine.as_str()) {
            // squeue failed once: do not wait on it again for every job.
            (Some(_), "slurm") if note.is_some() => None,
            (Some(id), "slurm") => match queued(id) {
                Ok(q) => Some(q),
                Err(e) => {
                    note = Some(format!("  ({e}: states from the task markers only)"));
                    None
                }
            },
            _ => None,
        };
        let states = task_states(job, &sub.shards, queue.as_ref());
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        let mut failed = Vec::new();
        for (t, s) in &states {
            let k = match s {
                TaskState::Done => "done".to_string(),
                TaskState::Failed(_) => {
                    failed.push(t.clone());
                    "failed".to_string()
                }
                TaskState::Queued(q) => q.to_lowercase(),
                TaskState::Unknown => "not run".to_string(),
            };
            *counts.entry(k).or_default() += 1;
        }
        let summary: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
        let kind = match job.array {
            Some(n) => format!("array of {n}"),
            None => "job".into(),
        };
        let mut line = format!(
            "  {:<13} {:<10} {kind:<12} {}",
            job.name,
            job.job_id.as_deref().unwrap_or("-"),
            summary.join(", ")
        );
        if !failed.is_empty() {
            line.push_str(&format!("  (failed: {}; `oddity slurm retry`)", failed.join(",")));
        }
        out.push(line);
    }
    out.extend(note);
    out
}

/// The jobs to resubmit for a retry: from the first job with failed or lost
/// tasks on (only those tasks of it), with everything after it.
pub fn retry_jobs(sub: &Submission) -> Option<Vec<Job>> {
    let queue_of = |job: &Job| match (&job.job_id, sub.engine.as_str()) {
        (Some(id), "slurm") => queued(id).ok(),
        _ => None,
    };
    for (i, job) in sub.jobs.iter().enumerate() {
        let queue = queue_of(job);
        let states = task_states(job, &sub.shards, queue.as_ref());
        if states.iter().any(|(_, s)| matches!(s, TaskState::Queued(_))) {
            return None;
        }
        let bad: Vec<usize> = states
            .iter()
            .filter(|(_, s)| matches!(s, TaskState::Failed(_) | TaskState::Unknown))
            .filter_map(|(t, _)| t.parse().ok())
            .collect();
        let single_bad = job.array.is_none() && states.iter().any(|(_, s)| *s != TaskState::Done);
        if !bad.is_empty() || single_bad {
            let mut jobs: Vec<Job> = sub.jobs[i..].to_vec();
            for j in &mut jobs {
                j.job_id = None;
                j.tasks = None;
            }
            if job.array.is_some() {
                jobs[0].tasks = Some(bad);
            }
            return Some(jobs);
        }
    }
    Some(Vec::new())
}
