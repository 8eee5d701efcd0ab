//! The split between the two binaries: `oddity` starts without libtorch and
//! hands the learning commands to `oddity-learn`, which lies next to it.

mod common;

use object::read::elf::{Dyn, ElfFile64};

/// The shared libraries a binary asks the dynamic loader for (DT_NEEDED).
fn needed(path: &str) -> Vec<String> {
    let data = std::fs::read(path).unwrap();
    let elf = ElfFile64::<object::Endianness>::parse(&*data).unwrap();
    let endian = elf.endian();
    let sections = elf.elf_section_table();
    let (dynamic, link) = sections.dynamic(endian, &*data).unwrap().expect("a dynamic section");
    let strings = sections.strings(endian, &*data, link).unwrap();
    dynamic
        .iter()
        .filter(|d| d.tag32(endian) == Some(object::elf::DT_NEEDED))
        .map(|d| String::from_utf8_lossy(d.string(endian, strings).unwrap()).into_owned())
        .collect()
}

fn is_libtorch(lib: &str) -> bool {
    lib.starts_with("libtorch") || lib.starts_with("libc10")
}

#[test]
fn oddity_does_not_link_libtorch_and_oddity_learn_does() {
    let oddity = needed(env!("CARGO_BIN_EXE_oddity"));
    assert!(!oddity.iter().any(|l| is_libtorch(l)), "oddity links libtorch: {oddity:?}");
    assert!(oddity.iter().any(|l| l.starts_with("libc.so")), "{oddity:?}");
    let learner = needed(env!("CARGO_BIN_EXE_oddity-learn"));
    assert!(learner.iter().any(|l| l.starts_with("libtorch_cpu")), "{learner:?}");
}

#[test]
fn a_learning_command_runs_in_oddity_learn_and_a_missing_learner_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (survey, store) = (dir.path().join("survey"), dir.path().join("store"));
    let (survey, store) = (survey.to_str().unwrap(), store.to_str().unwrap());
    assert!(common::run(&["synth", survey, "--galaxies", "4", "--size", "16"]).status.success());
    assert!(common::run(&["--store", store, "ingest", survey]).status.success());
    // Through oddity: the learner runs it (an empty store has no labels to learn from).
    let out = common::run(&["--store", store, "retrain", "--steps", "1", "--wait", "0"]);
    let text = common::text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("a retrain needs at least"), "{text}");
    // A copy of oddity alone: a one-line error that names the missing binary.
    let lone = dir.path().join("oddity");
    std::fs::copy(env!("CARGO_BIN_EXE_oddity"), &lone).unwrap();
    let out = common::spawn(
        std::process::Command::new(&lone)
            .args(["--store", store, "pretrain"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped()),
    )
    .wait_with_output()
    .unwrap();
    let text = common::text(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains(&format!("{} not found", dir.path().join("oddity-learn").display())), "{text}");
    assert_eq!(text.lines().count(), 1, "{text}");
    // Everything else still works from the lone copy: no libtorch needed.
    let out = common::spawn(
        std::process::Command::new(&lone)
            .args(["--store", store, "status"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped()),
    )
    .wait_with_output()
    .unwrap();
    assert!(out.status.success(), "{}", common::text(&out));
}
