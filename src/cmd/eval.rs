use std::path::Path;

use color_eyre::Result;
use color_eyre::eyre::eyre;

use crate::cli::EvalArgs;
use crate::eval::{EvalOptions, copy_store, csv, read_truth, run, table};

/// A simulated expert labels what the tool shows, cycle after cycle, on a
/// copy of the store; ranking quality per cycle and method against the truth.
pub fn run_cmd(store_path: &Path, args: &EvalArgs) -> Result<i32> {
    let truth = read_truth(&args.truth).map_err(|e| eyre!(e))?;
    std::fs::create_dir_all(&args.out)?;
    // Work on a copy: the simulated labels never reach the real store.
    {
        let _check = crate::store::Store::open(store_path)?;
    }
    let work = copy_store(store_path, &args.out.join("eval.db"))?;
    if let Some(t) = args.threads {
        tch::set_num_threads(t);
    }
    let opts = EvalOptions {
        cycles: args.cycles,
        per_cycle: args.per_cycle,
        start: args.start,
        recall_k: args.recall_k,
        cnn_steps: args.cnn_steps,
        seed: args.seed,
        ..Default::default()
    };
    let rows = run(&work, &truth, &opts, &|line| eprintln!("{line}")).map_err(|e| eyre!(e))?;
    let csv_path = args.out.join("eval.csv");
    std::fs::write(&csv_path, csv(&rows))?;
    let png_path = args.out.join("eval.png");
    let png = match crate::eval::plot(&rows, &png_path) {
        Ok(()) => format!(" and {}", png_path.display()),
        Err(e) => {
            eprintln!("warning: no plot: {e}");
            String::new()
        }
    };
    super::print(&format!("{}\nwritten to {}{png}\n", table(&rows), csv_path.display()))
}
