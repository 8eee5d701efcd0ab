//! Label writes off the keypress path. A label is durable only once its
//! commit (one fsync) returns, and a disk can stall that for 50–100 ms now
//! and then; so the screen hands each labelling action to this thread and
//! moves on at once, saying "saving ⋯" until the store answers and "saved ✓"
//! only then. Actions are written in the order they were given; those queued
//! behind a slow commit go to disk together in the next one (one fsync).

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::serve::Catalog;
use crate::store::LabelEvent;

/// One labelling action's events, numbered by the screen.
struct Job {
    seq: u64,
    events: Vec<LabelEvent>,
}

/// What became of an action: its event ids once on disk, or why not.
#[derive(Debug)]
pub struct Saved {
    pub seq: u64,
    pub result: Result<Vec<u64>, String>,
}

/// Called after each commit, so the event loop collects what was saved.
type Wake = Arc<Mutex<Box<dyn Fn() + Send>>>;

/// The writing thread and the two ends that talk to it.
pub struct Saver {
    jobs: Option<Sender<Job>>,
    saved: Receiver<Saved>,
    wake: Wake,
    thread: Option<JoinHandle<()>>,
}

impl Saver {
    pub fn start(store: Arc<dyn Catalog>) -> Saver {
        let (jobs, job_rx) = mpsc::channel::<Job>();
        let (saved_tx, saved) = mpsc::channel::<Saved>();
        let wake: Wake = Arc::new(Mutex::new(Box::new(|| {})));
        let thread_wake = wake.clone();
        let thread = std::thread::Builder::new()
            .name("oddity-labels".into())
            .spawn(move || write_jobs(&*store, job_rx, saved_tx, thread_wake))
            .expect("spawn the label writer");
        Saver { jobs: Some(jobs), saved, wake, thread: Some(thread) }
    }

    /// What to call after each commit (the event loop's wake-up).
    pub fn on_saved(&self, wake: Box<dyn Fn() + Send>) {
        *self.wake.lock().unwrap_or_else(|e| e.into_inner()) = wake;
    }

    /// Queues an action's events for writing; false if the writer is gone
    /// (it stopped on a panic), so the action cannot be saved.
    pub fn submit(&self, seq: u64, events: Vec<LabelEvent>) -> bool {
        self.jobs.as_ref().is_some_and(|jobs| jobs.send(Job { seq, events }).is_ok())
    }

    /// Results ready now, without waiting.
    pub fn ready(&self) -> Vec<Saved> {
        self.saved.try_iter().collect()
    }

    /// The next result, waiting for it.
    pub fn next(&self) -> Option<Saved> {
        self.saved.recv().ok()
    }
}

/// Dropping the saver lets the writer finish every queued action first.
impl Drop for Saver {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn write_jobs(store: &dyn Catalog, jobs: Receiver<Job>, saved: Sender<Saved>, wake: Wake) {
    while let Ok(first) = jobs.recv() {
        // Whatever queued up behind the last commit goes in this one.
        let batch: Vec<Job> = std::iter::once(first).chain(jobs.try_iter()).collect();
        let sizes: Vec<(u64, usize)> = batch.iter().map(|j| (j.seq, j.events.len())).collect();
        let events: Vec<LabelEvent> = batch.into_iter().flat_map(|j| j.events).collect();
        match store.append_labels(events) {
            Ok(ids) => {
                let mut ids = ids.into_iter();
                for (seq, n) in sizes {
                    let _ = saved.send(Saved { seq, result: Ok(ids.by_ref().take(n).collect()) });
                }
            }
            Err(e) => {
                let why = e.to_string();
                for (seq, _) in sizes {
                    let _ = saved.send(Saved { seq, result: Err(why.clone()) });
                }
            }
        }
        (wake.lock().unwrap_or_else(|e| e.into_inner()))();
    }
}
