//! The pipeline on a synthetic survey: ingest → crossmatch → features,
//! checked against the survey's ground truth.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::*;
use oddity::store::{SourceKind, Store};

struct Truth {
    spec_id: String,
    bpt: String,
}

fn truth(dir: &Path) -> HashMap<String, Truth> {
    let text = std::fs::read_to_string(dir.join("truth.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap_or_else(|| panic!("truth.csv has no {name}"));
    let (id, spec, bpt) = (col("object_id"), col("spec_id"), col("bpt_class"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[id].to_string(), Truth { spec_id: f[spec].to_string(), bpt: f[bpt].to_string() })
        })
        .collect()
}

#[test]
fn synth_ingest_crossmatch_features_agree_with_truth() {
    let dir = tempfile::tempdir().unwrap();
    let survey = dir.path().join("survey");
    let store = dir.path().join("store");
    let s = store.to_str().unwrap();
    let out = run(&[
        "synth",
        survey.to_str().unwrap(),
        "--galaxies",
        "800",
        "--size",
        "48",
        "--spectra",
        "0.3",
        "--nside",
        "128",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let out = run(&["--store", s, "ingest", survey.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let out = run(&["--store", s, "crossmatch", "--radius", "1arcsec"]);
    assert!(out.status.success(), "{}", text(&out));
    let first = text(&out);
    // Re-running replaces, never duplicates.
    let out = run(&["--store", s, "crossmatch"]);
    assert!(out.status.success(), "{}", text(&out));
    let strip_time = |t: &str| t.split(" in ").next().unwrap().to_string();
    assert_eq!(strip_time(&first), strip_time(&text(&out)));
    let out = run(&["--store", s, "features"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("features for 800 images"), "{}", text(&out));

    let truth = truth(&survey);
    let st = Store::open(&store).unwrap();
    let info = st.crossmatch_info().unwrap().expect("cross-match recorded");
    let n_spectra = truth.values().filter(|t| !t.spec_id.is_empty()).count() as u64;
    assert_eq!(info.n_spectra, n_spectra);
    assert_eq!(info.n_matches, n_spectra, "every spectrum lies within 0.5\" of its image");
    assert!(info.n_across_partitions > 0, "some pairs straddle partitions and are still matched");

    let mut checked = 0;
    let mut bpt_agree = 0;
    let mut bpt_total = 0;
    for item in st.iter_objects() {
        let (key, obj) = item.unwrap();
        if obj.kind != SourceKind::Images {
            continue;
        }
        let t = &truth[&obj.id];
        let feats = st.features_of(key).unwrap().expect("features for every image");
        let schema = st.feature_schema(&obj.survey).unwrap().unwrap();
        assert_eq!(feats.values.len(), schema.names.len());
        match st.spectrum_match(key).unwrap() {
            Some(m) => {
                let spec = st.object(m.other).unwrap().unwrap();
                assert_eq!(spec.id, t.spec_id, "image {} matched to the right spectrum", obj.id);
                assert!(m.sep_arcsec < 0.75);
                let lines = st.lines_of(m.other).unwrap().expect("lines measured");
                bpt_total += 1;
                bpt_agree += usize::from(lines.bpt.as_str() == t.bpt);
                // Half the spectrum files are padded to a common length
                // (MultimodalUniverse style): every spectrum is still measured.
                assert_eq!(lines.problem, None, "spectrum {}", spec.id);
                assert!(lines.lines.ha.is_some() || lines.lines.hb.is_some(), "spectrum {}", spec.id);
                checked += 1;
            }
            None => assert!(t.spec_id.is_empty(), "image {} lost its spectrum {}", obj.id, t.spec_id),
        }
    }
    assert_eq!(checked as u64, n_spectra);
    assert!(bpt_agree as f64 >= 0.95 * bpt_total as f64, "BPT agrees with truth for {bpt_agree}/{bpt_total}");
    drop(st);

    // Features are resumable per file: a second run has nothing to do.
    let out = run(&["--store", s, "features"]);
    assert!(text(&out).contains("features for 0 images and 0 spectra from 0 files"), "{}", text(&out));
    let status = text(&run(&["--store", s, "status"]));
    assert!(status.contains(&format!("matches   {n_spectra} image-spectrum pairs")), "{status}");
    assert!(status.contains("features  800 objects"), "{status}");
}
