//! The neural path over a store: fractal pretraining, FixMatch retrain, the
//! gate that keeps a worse model from becoming the ranking, one retrain at a
//! time, staleness, several surveys, crash safety and the store hand-off with
//! a labelling session.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use oddity::retrain::last_report;
use oddity::store::{LabelEvent, LabelValue, ObjectKey, Store};

fn label(store: &Store, object: ObjectKey, value: LabelValue) {
    let event = LabelEvent { object, value, tags: vec![], user: "t".into(), time: "t".into(), session: "s".into() };
    store.append_label(&event).unwrap();
}

/// Copies a store directory (the ignored demo test works on a copy).
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Scores of one version by object id.
fn version_scores(store: &Store, version: u32) -> HashMap<String, f32> {
    store
        .scores_of_version(version)
        .unwrap()
        .map(|r| {
            let (k, s) = r.unwrap();
            (store.object(k).unwrap().unwrap().id, s)
        })
        .collect()
}

fn auroc_of(scores: &HashMap<String, f32>, truth: &HashMap<String, bool>) -> f64 {
    let (s, y): (Vec<f32>, Vec<bool>) = truth.iter().filter_map(|(id, &y)| scores.get(id).map(|&s| (s, y))).unzip();
    oddity::detect::auroc(&s, &y).unwrap()
}

/// A scored store with the expert's labels on half of the planted anomalies
/// and on some normal galaxies; returns the held-out truth (id → anomalous).
fn labelled_store(dir: &std::path::Path) -> (std::path::PathBuf, HashMap<String, bool>) {
    let survey = dir.join("survey");
    let store_path = common::pipeline::scored_store_with(
        dir,
        &["--galaxies", "400", "--size", "32", "--nside", "32", "--anomalies", "0.1", "--seed", "3"],
    );
    let truth: Vec<(String, bool)> =
        common::pipeline::truth_rows(&survey).into_iter().map(|(id, _, y)| (id, y)).collect();
    let store = Store::open(&store_path).unwrap();
    let mut held_out = HashMap::new();
    let (mut a, mut n) = (0, 0);
    for (id, interesting) in truth {
        let label = if interesting {
            a += 1;
            (a % 2 == 1).then_some(LabelValue::Anomaly)
        } else {
            n += 1;
            (n % 6 == 1).then_some(LabelValue::Normal)
        };
        match label {
            Some(value) => {
                let object = store.find_id("hsc", &id).unwrap().unwrap();
                let event =
                    LabelEvent { object, value, tags: vec![], user: "t".into(), time: "t".into(), session: "s".into() };
                store.append_label(&event).unwrap();
            }
            None => {
                held_out.insert(id, interesting);
            }
        }
    }
    (store_path, held_out)
}

fn auroc(store: &Store, held_out: &HashMap<String, bool>) -> f64 {
    let mut scores = Vec::new();
    let mut labels = Vec::new();
    for item in store.ranked().unwrap() {
        let (key, score) = item.unwrap();
        let id = store.object(key).unwrap().unwrap().id;
        if let Some(&y) = held_out.get(&id) {
            scores.push(score);
            labels.push(y);
        }
    }
    oddity::detect::auroc(&scores, &labels).unwrap()
}

#[test]
fn pretrain_then_retrain_writes_a_cnn_ranking() {
    let dir = tempfile::tempdir().unwrap();
    let (store_path, held_out) = labelled_store(dir.path());
    let s = store_path.to_str().unwrap();
    let out = run(&[
        "--store",
        s,
        "pretrain",
        "--classes",
        "4",
        "--images-per-class",
        "8",
        "--size",
        "32",
        "--epochs",
        "1",
        "--batch",
        "16",
        "--threads",
        "1",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("pretrained Tiny on 4 fractal classes"), "{}", text(&out));
    let if_auroc = auroc(&Store::open(&store_path).unwrap(), &held_out);

    let out = run(&[
        "--store",
        s,
        "retrain",
        "--steps",
        "150",
        "--batch-size",
        "8",
        "--mu",
        "2",
        "--pool",
        "128",
        "--threads",
        "1",
    ]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("backbone from the fractal-pretrained checkpoint"), "{t}");
    let store = Store::open(&store_path).unwrap();
    let report = last_report(&store).unwrap().expect("the retrain's report is kept in the store");
    let names: Vec<&str> = report.candidates.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["current", "cnn", "combined"]);
    let cnn = report.candidate("cnn").unwrap();
    let cnn_version = store.score_version(cnn.version.unwrap()).unwrap().expect("the CNN's ranking is readable");
    assert!(cnn_version.method.starts_with("fixmatch-cnn"), "{}", cnn_version.method);
    assert_eq!(cnn_version.n_scored, 400);
    let model = store.model(cnn_version.models[0]).unwrap().unwrap();
    let ckpt = model.blob_path().expect("checkpoint path");
    let sha256 = <sha2::Sha256 as sha2::Digest>::digest(std::fs::read(&ckpt).unwrap());
    assert_eq!(sha256.iter().map(|b| format!("{b:02x}")).collect::<String>(), model.hash);
    let cnn_auroc = auroc_of(&version_scores(&store, cnn_version.version), &held_out);
    eprintln!("held-out AUROC: isolation forest {if_auroc:.3}, fixmatch cnn {cnn_auroc:.3}; {}", report.verdict);
    // 150 CPU steps on 32-pixel cutouts, seeded. What must hold on any CPU is
    // that planted anomalies move up, clearly above chance.
    assert!(cnn_auroc > 0.65, "the CNN ranks unlabelled anomalies above normals: {cnn_auroc}");
    // Whichever won, the current ranking is the promoted candidate or the old one.
    let current = store.current_scores().unwrap().unwrap().version;
    assert_eq!(current, report.promoted.unwrap_or(report.candidates[0].version.unwrap()));
    drop(store);
    let status = text(&run(&["--store", s, "status"]));
    assert!(status.contains("retrain   done: "), "{status}");
    assert!(status.contains("last retrain ") && status.contains(&report.verdict), "{status}");
}

#[test]
fn a_crash_mid_retrain_keeps_the_previous_scores() {
    let dir = tempfile::tempdir().unwrap();
    let (store_path, _) = labelled_store(dir.path());
    let s = store_path.to_str().unwrap();
    let before = String::from_utf8(run(&["--store", s, "top", "400", "--tsv"]).stdout).unwrap();
    let out = run(&[
        "--store",
        s,
        "retrain",
        "--no-pretrain",
        "--steps",
        "5",
        "--batch-size",
        "4",
        "--mu",
        "1",
        "--pool",
        "16",
        "--threads",
        "1",
        "--crash-after-batches",
        "1",
    ]);
    assert!(!out.status.success());
    assert_eq!(String::from_utf8(run(&["--store", s, "top", "400", "--tsv"]).stdout).unwrap(), before);
    let store = Store::open(&store_path).unwrap();
    assert!(store.current_scores().unwrap().unwrap().method.starts_with("isolation-forest"));
}

#[test]
fn retrain_does_not_hold_the_store_while_it_trains() {
    let dir = tempfile::tempdir().unwrap();
    let (store_path, _) = labelled_store(dir.path());
    let s = store_path.to_str().unwrap();
    // The expert keeps the store open (as the TUI does) during the retrain.
    let held = Store::open(&store_path).unwrap();
    drop(held);
    let mut child = spawn(
        oddity()
            .args([
                "--store",
                s,
                "retrain",
                "--no-pretrain",
                "--steps",
                "20",
                "--batch-size",
                "4",
                "--mu",
                "1",
                "--pool",
                "32",
                "--threads",
                "1",
                "--wait",
                "120",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    );
    // Training happens without the lock: the store can be opened meanwhile.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut held = None;
    while Instant::now() < deadline {
        let state = oddity::store::read_retrain_status(&store_path).map(|s| s.0).unwrap_or_default();
        if state == "running"
            && let Ok(st) = Store::open(&store_path)
        {
            held = Some(st);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let held = held.expect("the store could be opened while the retrain ran");
    // The retrain finishes training, then waits for us to let go.
    while oddity::store::read_retrain_status(&store_path).map(|s| s.0).unwrap_or_default() != "waiting" {
        assert!(Instant::now() < deadline + Duration::from_secs(60), "retrain never reached the write step");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(held);
    assert!(child.wait().unwrap().success());
    let store = Store::open(&store_path).unwrap();
    let report = last_report(&store).unwrap().expect("a report");
    assert!(store.score_version(report.candidate("cnn").unwrap().version.unwrap()).unwrap().is_some());
}

#[test]
fn a_retrain_without_a_pretrained_backbone_pretrains_one_first() {
    let dir = tempfile::tempdir().unwrap();
    let (store_path, _) = labelled_store(dir.path());
    let s = store_path.to_str().unwrap();
    let small = [
        "--store",
        s,
        "retrain",
        "--steps",
        "5",
        "--batch-size",
        "4",
        "--mu",
        "1",
        "--pool",
        "16",
        "--threads",
        "1",
        "--pretrain-classes",
        "3",
        "--pretrain-images-per-class",
        "4",
        "--pretrain-epochs",
        "1",
    ];
    let out = run(&small);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("pretraining one first (once per store)"), "{said}");
    assert!(said.contains("backbone from the fractal-pretrained checkpoint"), "{said}");
    let pretrained = Store::open(&store_path).unwrap().models_of_kind("cnn-pretrain").unwrap();
    assert_eq!(pretrained.len(), 1);
    // The next retrain reuses it.
    let out = run(&small);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(!said.contains("pretraining one first") && said.contains("backbone from the fractal-pretrained"), "{said}");
    assert_eq!(Store::open(&store_path).unwrap().models_of_kind("cnn-pretrain").unwrap().len(), 1);
}

#[test]
fn a_second_retrain_says_who_holds_the_lock_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let store_path = common::pipeline::scored_store(dir.path(), 40);
    let s = store_path.to_str().unwrap();
    // This test process plays the retrain that holds the lock.
    let held = oddity::retrain::lock::RetrainLock::acquire(&store_path).unwrap();
    oddity::store::write_retrain_status(&store_path, "running", "the first retrain");
    let out = run(&["--store", s, "retrain", "--steps", "5", "--threads", "1"]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    let who = format!("a retrain is already running on this store (pid {} since ", std::process::id());
    assert!(t.contains(&who), "{t}");
    // The running retrain's progress is not overwritten.
    assert_eq!(oddity::store::read_retrain_status(&store_path).unwrap().1, "the first retrain");
    let status = text(&run(&["--store", s, "status"]));
    assert!(status.contains(&format!("a retrain is running (pid {} since", std::process::id())), "{status}");
    drop(held);
    let store = Store::open(&store_path).unwrap();
    assert!(store.models_of_kind("fixmatch-cnn").unwrap().is_empty());
    assert!(last_report(&store).unwrap().is_none());
}

#[test]
fn a_retrain_older_than_the_ranking_never_replaces_it() {
    let dir = tempfile::tempdir().unwrap();
    let (store_path, _) = labelled_store(dir.path());
    let s = store_path.to_str().unwrap();
    let mut child = spawn(
        oddity()
            .args([
                "--store",
                s,
                "retrain",
                "--no-pretrain",
                "--steps",
                "20",
                "--batch-size",
                "4",
                "--mu",
                "1",
                "--pool",
                "32",
                "--threads",
                "1",
                "--wait",
                "300",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    );
    // Once the retrain has its snapshot, the expert's side takes the store
    // and keeps it until the retrain has trained and waits to write...
    let deadline = Instant::now() + Duration::from_secs(240);
    let state = || oddity::store::read_retrain_status(&store_path).map(|s| s.0).unwrap_or_default();
    let held = loop {
        assert!(
            Instant::now() < deadline,
            "retrain never got going: {:?}",
            oddity::store::read_retrain_status(&store_path)
        );
        if state() == "running"
            && let Ok(st) = Store::open(&store_path)
        {
            break st;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    while state() != "waiting" {
        assert!(Instant::now() < deadline, "retrain never reached the write step");
        std::thread::sleep(Duration::from_millis(50));
    }
    // ...and meanwhile a newer ranking is made (as `oddity score` would).
    let old = held.current_scores().unwrap().unwrap();
    let scores: Vec<_> = held.scores_of_version(old.version).unwrap().map(|r| r.unwrap()).collect();
    let newer = held.begin_scores().unwrap();
    held.put_scores(newer, &scores).unwrap();
    held.commit_scores(&oddity::store::ScoreVersion {
        version: newer,
        method: "isolation-forest (newer)".into(),
        ..old
    })
    .unwrap();
    drop(held);
    assert!(child.wait().unwrap().success());
    let store = Store::open(&store_path).unwrap();
    assert_eq!(store.current_scores().unwrap().unwrap().version, newer, "the newer ranking stays");
    let report = last_report(&store).unwrap().unwrap();
    assert_eq!(report.promoted, None);
    assert!(
        report.verdict.contains(&format!(
            "a newer ranking, version {newer} (isolation-forest (newer)), was made while this retrain ran"
        )),
        "{}",
        report.verdict
    );
    // Its model and rankings are recorded all the same.
    let cnn = report.candidate("cnn").unwrap().version.unwrap();
    assert!(cnn > newer && !version_scores(&store, cnn).is_empty());
    assert_eq!(store.models_of_kind("fixmatch-cnn").unwrap().len(), 1);
}

#[test]
fn a_store_with_two_image_surveys_trains_on_the_group_holding_the_labels() {
    let dir = tempfile::tempdir().unwrap();
    let store_path = common::pipeline::scored_store(dir.path(), 60);
    let s = store_path.to_str().unwrap();
    // A second image survey with other bands and another cutout size.
    let other = mmu_path(&dir.path().join("more"), "legacy", 7);
    write_image_table(&other, &ImageTable { n: 12, bands: vec!["g", "r", "z"], size: 8, ..Default::default() });
    for args in [
        vec!["--store", s, "ingest", other.to_str().unwrap()],
        vec!["--store", s, "features"],
        vec!["--store", s, "score"],
    ] {
        let out = run(&args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
    }
    let truth = common::pipeline::truth_rows(&dir.path().join("survey"));
    let store = Store::open(&store_path).unwrap();
    let hsc = |id: &str| store.find_id("hsc", id).unwrap().unwrap();
    let anomalies: Vec<_> = truth.iter().filter(|t| t.2).take(3).map(|t| hsc(&t.0)).collect();
    let normals: Vec<_> = truth.iter().filter(|t| !t.2).take(4).map(|t| hsc(&t.0)).collect();
    assert_eq!((anomalies.len(), normals.len()), (3, 4));
    for k in anomalies {
        label(&store, k, LabelValue::Anomaly);
    }
    for k in normals {
        label(&store, k, LabelValue::Normal);
    }
    // Labels on the other survey's cutouts too: before, one of these reached
    // a slice of the wrong size.
    for (i, id) in ["1000", "1001", "1002", "1003"].iter().enumerate() {
        let k = store.find_id("legacy", id).unwrap().unwrap();
        label(&store, k, if i < 2 { LabelValue::Anomaly } else { LabelValue::Normal });
    }
    drop(store);
    let out = run(&[
        "--store",
        s,
        "retrain",
        "--no-pretrain",
        "--steps",
        "5",
        "--batch-size",
        "4",
        "--mu",
        "1",
        "--pool",
        "16",
        "--threads",
        "1",
    ]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("skipped legacy (3 bands, 8x8 px, 12 objects): "), "{t}");
    let store = Store::open(&store_path).unwrap();
    let report = last_report(&store).unwrap().unwrap();
    assert_eq!(report.n_scored, 60, "the CNN scored the hsc cutouts");
    assert_eq!(report.skipped.len(), 1);
    // Its ranking still holds every scored object: the other survey's keep their forest rank.
    let cnn = version_scores(&store, report.candidate("cnn").unwrap().version.unwrap());
    let current = store.current_scores().unwrap().unwrap();
    assert!(cnn.len() as u64 >= current.n_scored.min(72), "{} of {}", cnn.len(), current.n_scored);
    assert!(cnn.contains_key("1000"));
}

/// Part 4: the CNN learns. Ring galaxies against ordinary galaxies (picked
/// with the truth's `kind` column), the tiny net on one CPU thread for a few
/// hundred steps, judged on rings and normals it never trained on. Then the
/// gate both ways: the CNN's ranking replaces forest + re-rank only if it
/// ranks held-back labels better, and a worse later retrain leaves it.
#[test]
fn the_cnn_learns_rings_and_becomes_the_ranking_only_when_better() {
    let dir = tempfile::tempdir().unwrap();
    let store_path = common::pipeline::scored_store_with(
        dir.path(),
        &["--galaxies", "1200", "--size", "32", "--nside", "32", "--anomalies", "0.3", "--seed", "11"],
    );
    let s = store_path.to_str().unwrap();
    let truth = common::pipeline::truth_rows(&dir.path().join("survey"));
    let rings: Vec<&String> = truth.iter().filter(|t| t.1 == "ring").map(|t| &t.0).collect();
    let normals: Vec<&String> = truth.iter().filter(|t| t.1 == "normal").map(|t| &t.0).collect();
    let store = Store::open(&store_path).unwrap();
    let keys: HashMap<&str, ObjectKey> =
        rings.iter().chain(&normals).map(|id| (id.as_str(), store.find_id("hsc", id).unwrap().unwrap())).collect();
    let key = |id: &str| keys[id];
    let (n_rings, n_normals) = (rings.len() / 2, 90);
    for id in &rings[..n_rings] {
        label(&store, key(id), LabelValue::Relevance(5));
    }
    for id in &normals[..n_normals] {
        label(&store, key(id), LabelValue::Relevance(0));
    }
    drop(store);
    // Rings and normals nobody labelled: what the CNN is judged on.
    let mut unseen: HashMap<String, bool> = rings[n_rings..].iter().map(|id| (id.to_string(), true)).collect();
    unseen.extend(normals[n_normals..].iter().map(|id| (id.to_string(), false)));

    let started = Instant::now();
    let out = run(&[
        "--store",
        s,
        "retrain",
        "--no-pretrain",
        "--steps",
        "300",
        "--batch-size",
        "8",
        "--mu",
        "2",
        "--pool",
        "256",
        "--threads",
        "1",
        "--prior",
        "0.05",
    ]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let store = Store::open(&store_path).unwrap();
    let report = last_report(&store).unwrap().unwrap();
    let cnn = report.candidate("cnn").unwrap();
    let cnn_auroc = auroc_of(&version_scores(&store, cnn.version.unwrap()), &unseen);
    let forest_auroc = auroc_of(&version_scores(&store, report.candidates[0].version.unwrap()), &unseen);
    eprintln!(
        "{:.0}s; unseen rings vs normals AUROC: CNN {cnn_auroc:.3}, forest + re-rank {forest_auroc:.3}\n{t}",
        started.elapsed().as_secs_f64()
    );
    assert!(cnn_auroc > 0.9, "the CNN tells rings it never saw from normal galaxies: {cnn_auroc}");
    // The gate: the CNN (or its combination) ranked the held-back labels better.
    let promoted = report.promoted.expect("a better ranking is promoted");
    let winner = report.candidates.iter().find(|c| c.version == Some(promoted)).unwrap();
    assert!(winner.auroc > report.candidates[0].auroc, "{:?}", report.candidates);
    assert_eq!(store.current_scores().unwrap().unwrap().version, promoted);
    assert!(report.verdict.starts_with(&format!("version {promoted} ({}) is now the ranking", winner.name)));
    // The forest ranking it builds on stays readable; so does the loser.
    assert!(!version_scores(&store, report.candidates[0].version.unwrap()).is_empty());

    // New labels, then a retrain that barely trains: judged on the new labels
    // against the promoted ranking (which never saw them), it loses and the
    // ranking stays.
    for id in rings[n_rings..n_rings + 4].iter().chain(&normals[n_normals..n_normals + 12]) {
        let v = if rings.contains(id) { 5 } else { 0 };
        label(&store, key(id), LabelValue::Relevance(v));
    }
    drop(store);
    let out = run(&[
        "--store",
        s,
        "retrain",
        "--no-pretrain",
        "--steps",
        "1",
        "--batch-size",
        "4",
        "--mu",
        "1",
        "--pool",
        "16",
        "--threads",
        "1",
        "--seed",
        "3",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let store = Store::open(&store_path).unwrap();
    let second = last_report(&store).unwrap().unwrap();
    eprintln!("{}", second.verdict);
    assert_eq!(second.promoted, None, "{:?}", second.candidates);
    assert_eq!(second.candidates[0].version, Some(promoted));
    assert_eq!(second.held_back, (1, 3), "only labels the current ranking never saw judge it");
    assert_eq!(store.current_scores().unwrap().unwrap().version, promoted);
    assert!(second.verdict.starts_with(&format!("the ranking stayed (version {promoted})")), "{}", second.verdict);
    drop(store);
    let status = text(&run(&["--store", s, "status"]));
    assert!(status.contains("the ranking stayed") && status.contains("held-out AUROC"), "{status}");
}

/// The CNN on the demo survey with a fixed label set, for the README / report:
/// `ODDITY_DEMO=DIR cargo test --release --test learn demo_survey_cnn -- --ignored --nocapture`
/// with DIR holding `survey/truth.csv` and a scored `oddity.db` (scripts/demo).
/// Labels: 10 interesting anomalies at random plus the forest's top 90, each
/// labelled by the truth; AUROC over every object not labelled.
#[test]
#[ignore]
fn demo_survey_cnn() {
    let demo = std::path::PathBuf::from(std::env::var("ODDITY_DEMO").expect("ODDITY_DEMO=dir"));
    let env = |k: &str, d: usize| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let truth: HashMap<String, (bool, String)> =
        common::pipeline::truth_rows(&demo.join("survey")).into_iter().map(|(id, kind, y)| (id, (y, kind))).collect();
    let work = tempfile::tempdir().unwrap();
    let store_path = work.path().join("db");
    copy_dir(&demo.join("oddity.db"), &store_path);
    let (keys, interesting, kinds) = {
        let store = Store::open(&store_path).unwrap();
        let mut out = (Vec::new(), Vec::new(), Vec::new());
        for item in store.ranked().unwrap() {
            let (k, _) = item.unwrap();
            let (y, kind) = truth[&store.object(k).unwrap().unwrap().id].clone();
            out.0.push(k);
            out.1.push(y);
            out.2.push(kind);
        }
        out
    };
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    let mut pos: Vec<usize> = (0..keys.len()).filter(|&i| interesting[i]).collect();
    pos.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(0));
    // LABELS=random: 30 interesting + 70 others at random; otherwise 10
    // interesting at random + the forest's top 90 (an expert working down the ranking).
    let chosen: Vec<usize> = if std::env::var("LABELS").as_deref() == Ok("random") {
        let mut others: Vec<usize> = (0..keys.len()).filter(|&i| !interesting[i]).collect();
        others.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(2));
        pos[..30].iter().chain(&others[..70]).copied().collect()
    } else {
        let first: Vec<usize> = pos[..10].to_vec();
        let mut chosen = first.clone();
        chosen.extend((0..keys.len()).filter(|i| !first.contains(i)).take(90));
        chosen
    };
    {
        let store = Store::open(&store_path).unwrap();
        for &i in &chosen {
            let value = LabelValue::Relevance(if interesting[i] { 5 } else { 0 });
            let event = LabelEvent {
                object: keys[i],
                value,
                tags: vec![],
                user: "t".into(),
                time: "t".into(),
                session: "s".into(),
            };
            store.append_label(&event).unwrap();
        }
    }
    let n_pos = chosen.iter().filter(|&&i| interesting[i]).count();
    eprintln!("labels: {n_pos} interesting, {} others", chosen.len() - n_pos);
    let arg = |k: &str, d: usize| env(k, d).to_string();
    let (steps, batch, mu, pool, seed, threads) =
        (arg("STEPS", 300), arg("BATCH", 16), arg("MU", 2), arg("POOL", 2048), arg("SEED", 0), arg("THREADS", 2));
    let t = Instant::now();
    let sp = store_path.to_str().unwrap();
    let out = run(&[
        "--store",
        sp,
        "retrain",
        "--steps",
        &steps,
        "--batch-size",
        &batch,
        "--mu",
        &mu,
        "--pool",
        &pool,
        "--seed",
        &seed,
        "--threads",
        &threads,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    eprintln!("{} in {:.0}s", text(&out), t.elapsed().as_secs_f64());
    let report = last_report(&Store::open(&store_path).unwrap()).unwrap().expect("a retrain report");
    let store = Store::open(&store_path).unwrap();
    let index: HashMap<_, _> = keys.iter().enumerate().map(|(i, k)| (*k, i)).collect();
    let mut scores = vec![f32::NAN; keys.len()];
    for item in store.scores_of_version(report.candidate("cnn").unwrap().version.unwrap()).unwrap() {
        let (k, s) = item.unwrap();
        scores[index[&k]] = s;
    }
    let chosen_set: std::collections::HashSet<usize> = chosen.iter().copied().collect();
    let held: Vec<usize> = (0..keys.len()).filter(|i| !chosen_set.contains(i)).collect();
    let s: Vec<f32> = held.iter().map(|&i| scores[i]).collect();
    let y: Vec<bool> = held.iter().map(|&i| interesting[i]).collect();
    eprintln!(
        "held-out ({} objects): AUROC {:.3} AUPRC {:.3}",
        held.len(),
        oddity::detect::auroc(&s, &y).unwrap_or(f64::NAN),
        oddity::detect::auprc(&s, &y).unwrap_or(f64::NAN)
    );
    for kind in ["ring", "merger", "lens", "colour", "agn", "trail"] {
        let yk: Vec<bool> = held.iter().map(|&i| kinds[i] == kind).collect();
        let sk: Vec<f32> =
            held.iter().filter(|&&i| kinds[i] == kind || kinds[i] == "normal").map(|&i| scores[i]).collect();
        let lk: Vec<bool> =
            held.iter().filter(|&&i| kinds[i] == kind || kinds[i] == "normal").map(|&i| kinds[i] == kind).collect();
        eprintln!(
            "  {kind:<7} vs normal AUROC {:.3} ({} held out)",
            oddity::detect::auroc(&sk, &lk).unwrap_or(f64::NAN),
            yk.iter().filter(|&&b| b).count()
        );
    }
    let distinct: std::collections::BTreeSet<u32> = s.iter().map(|v| v.to_bits()).collect();
    eprintln!(
        "distinct scores {} of {}; min {:?} max {:?}",
        distinct.len(),
        s.len(),
        s.iter().cloned().fold(f32::INFINITY, f32::min),
        s.iter().cloned().fold(f32::NEG_INFINITY, f32::max)
    );
}
