use std::path::Path;

use color_eyre::Result;

use crate::cli::TriageArgs;
use crate::store::Store;
use crate::tui::{Filter, Ordering, TriageOptions};

/// Opens the labelling screen; prints the session summary afterwards.
pub fn run(store_path: &Path, args: &TriageArgs) -> Result<i32> {
    let store = Store::open(store_path)?;
    let _log = super::log_to(&store.log_dir());
    let user = args.user.clone().or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "unknown".into());
    let opts = TriageOptions {
        graphics: args.graphics,
        keymap: args.keymap.clone(),
        ordering: match args.order.as_str() {
            "id" => Ordering::Id,
            "random" => Ordering::Random,
            "recent" => Ordering::Recent,
            "uncertain" => Ordering::Uncertain,
            _ => Ordering::Score,
        },
        filter: if args.all { Filter::All } else { Filter::Unlabelled },
        user,
        no_color: std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
    };
    let summary = crate::tui::run(store, &opts)?;
    let values: Vec<String> = summary.by_value.iter().map(|(k, v)| format!("{v} {k}")).collect();
    super::print(&format!(
        "session: {} labels in {:.1} min ({:.1}/min){}\n{} objects labelled in this store; every label is saved.\nthe next retrain will learn from {} interesting and {} normal objects.\n",
        summary.labels,
        summary.minutes,
        summary.per_minute,
        if values.is_empty() { String::new() } else { format!(": {}", values.join(", ")) },
        summary.labelled_total,
        summary.training.0,
        summary.training.1
    ))
}
