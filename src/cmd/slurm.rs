use std::path::{Path, PathBuf};

use color_eyre::Result;
use color_eyre::eyre::eyre;

use crate::cli::{SlurmAction, SlurmArgs, SlurmRunArgs, SlurmStageArgs};
use crate::shard::slurm::{JobBook, Plan, Resources, Submission, retry_jobs, run_local, submit};

/// `oddity slurm STAGE`: writes the scripts, submits them (or runs them with
/// --local N) and records the jobs in `<store>/slurm.json` for `oddity status`.
pub fn run(store_path: &Path, args: &SlurmArgs) -> Result<i32> {
    let project = std::path::absolute(store_path)?;
    match &args.action {
        SlurmAction::Ingest(a) => stage(&project, "ingest", a),
        SlurmAction::Score(a) => stage(&project, "score", a),
        SlurmAction::All(a) => stage(&project, "all", a),
        SlurmAction::Embed(a) => stage(&project, "embed", a),
        SlurmAction::Retry(r) => retry(&project, r),
    }
}

fn resources(run: &SlurmRunArgs) -> Result<Resources> {
    let base = match &run.profile {
        Some(p) => Resources::from_profile(p).map_err(|e| eyre!("profile {e}"))?,
        None => Resources::default(),
    };
    Ok(base.overridden_by(Resources {
        partition: run.partition.clone(),
        cpus: run.cpus,
        mem: run.mem.clone(),
        time: run.time.clone(),
        account: run.account.clone(),
        extra: Vec::new(),
    }))
}

fn oddity_binary(run: &SlurmRunArgs) -> Result<PathBuf> {
    Ok(match &run.oddity {
        Some(p) => std::path::absolute(p)?,
        None => std::env::current_exe()?,
    })
}

fn default_shards(project: &Path) -> PathBuf {
    let name = project.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "oddity".into());
    project.with_file_name(format!("{name}.shards"))
}

fn stage(project: &Path, stage: &str, a: &SlurmStageArgs) -> Result<i32> {
    if a.slices == 0 {
        eprintln!("error: --slices must be at least 1");
        return Ok(2);
    }
    if matches!(stage, "ingest" | "all") && a.paths.is_empty() {
        eprintln!("error: `oddity slurm {stage}` needs the survey files or folders to ingest");
        return Ok(2);
    }
    let shards = std::path::absolute(a.shards.clone().unwrap_or_else(|| default_shards(project)))?;
    let paths = a.paths.iter().map(std::path::absolute).collect::<std::io::Result<Vec<_>>>()?;
    let plan = Plan {
        oddity: oddity_binary(&a.run)?,
        project: project.to_owned(),
        shards: shards.clone(),
        slices: a.slices,
        paths,
        seed: a.seed,
        fit_sample: a.fit_sample,
        embed_sample: a.embed_sample,
        resources: resources(&a.run)?,
    };
    // The project store exists before anything is recorded beside it.
    drop(crate::store::Store::open_or_create(project)?);
    let mut jobs = plan.write_jobs(stage)?;
    // A new submission starts with no task markers of these jobs.
    for job in &jobs {
        let n = job.array.unwrap_or(0);
        let names = (0..n).map(|t| t.to_string()).chain(std::iter::once("job".to_string()));
        for t in names {
            let _ = std::fs::remove_file(shards.join("status").join(format!("{}-{t}", job.name)));
        }
    }
    if a.dry_run {
        let mut out = String::new();
        for (i, job) in jobs.iter().enumerate() {
            let after = if i == 0 { String::new() } else { format!("--dependency=afterok:<{}> ", jobs[i - 1].name) };
            out.push_str(&format!("sbatch --parsable {after}{}\n", job.script.display()));
        }
        return super::print(&out);
    }
    execute(project, stage, &shards, &mut jobs, &a.run)
}

fn execute(
    project: &Path,
    stage: &str,
    shards: &Path,
    jobs: &mut [crate::shard::slurm::Job],
    run: &SlurmRunArgs,
) -> Result<i32> {
    let engine = if run.local.is_some() { "local" } else { "slurm" };
    let mut sub = Submission {
        stage: stage.to_string(),
        engine: engine.into(),
        time: chrono::Utc::now().to_rfc3339(),
        shards: shards.to_owned(),
        jobs: jobs.to_vec(),
    };
    let mut book = JobBook::read(project);
    match run.local {
        Some(n) => {
            // Recorded first, so that `oddity status` shows progress meanwhile.
            book.submissions.push(sub.clone());
            book.write(project)?;
            let started = std::time::Instant::now();
            let failed = run_local(jobs, n, shards).map_err(|e| eyre!(e))?;
            sub.jobs = jobs.to_vec();
            *book.submissions.last_mut().expect("pushed") = sub;
            book.write(project)?;
            match failed {
                None => {
                    super::print(&format!(
                        "ran `{stage}` as {} local jobs ({n} processes) in {:.1}s; logs in {}\n",
                        jobs.len(),
                        started.elapsed().as_secs_f64(),
                        shards.join("logs").display()
                    ))?;
                    Ok(0)
                }
                Some((job, tasks)) => {
                    let list: Vec<String> = tasks.iter().map(|t| t.to_string()).collect();
                    eprintln!(
                        "error: job {job}: task(s) {} failed (logs in {}); the jobs after it did not run. \
                         Fix and run `oddity slurm retry --local {n}`",
                        list.join(","),
                        shards.join("logs").display()
                    );
                    Ok(1)
                }
            }
        }
        None => {
            let result = submit(jobs, None);
            sub.jobs = jobs.to_vec();
            if sub.jobs.iter().any(|j| j.job_id.is_some()) {
                book.submissions.push(sub);
                book.write(project)?;
            }
            if let Err(e) = result {
                eprintln!("error: {e}");
                return Ok(1);
            }
            let mut out = String::new();
            for job in jobs.iter() {
                let kind = job.array.map(|n| format!("array of {n}")).unwrap_or_else(|| "job".into());
                out.push_str(&format!(
                    "submitted {:<13} {kind:<12} job {}\n",
                    job.name,
                    job.job_id.as_deref().unwrap_or("?")
                ));
            }
            out.push_str("follow it with `oddity status`; resubmit failed tasks with `oddity slurm retry`\n");
            super::print(&out)
        }
    }
}

fn retry(project: &Path, run: &SlurmRunArgs) -> Result<i32> {
    let book = JobBook::read(project);
    let Some(last) = book.submissions.last() else {
        eprintln!("error: nothing submitted from {} yet (`oddity slurm ingest|score|all`)", project.display());
        return Ok(1);
    };
    let Some(mut jobs) = retry_jobs(last) else {
        eprintln!("tasks of the last submission are still queued or running: wait for them (`oddity status`)");
        return Ok(1);
    };
    if jobs.is_empty() {
        return super::print("every task of the last submission succeeded: nothing to retry\n");
    }
    let what: Vec<String> = jobs
        .iter()
        .map(|j| match &j.tasks {
            Some(t) => format!("{} tasks {}", j.name, t.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(",")),
            None => j.name.clone(),
        })
        .collect();
    eprintln!("retrying {}", what.join(", then "));
    let shards = last.shards.clone();
    let stage = format!("{} (retry)", last.stage.trim_end_matches(" (retry)"));
    execute(project, &stage, &shards, &mut jobs, run)
}
