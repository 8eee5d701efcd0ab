//! `oddity export`: labels leave in the formats other tools read.

mod common;

use common::*;
use oddity::store::{LabelEvent, LabelValue, Store};

fn event(store: &Store, id: &str, value: LabelValue, tags: &[&str], user: &str) -> u64 {
    let object = store.find_id("hsc", id).unwrap().unwrap();
    store
        .append_label(&LabelEvent {
            object,
            value,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            user: user.into(),
            time: "2026-11-25T10:00:00+00:00".into(),
            session: "s1".into(),
        })
        .unwrap()
}

#[test]
fn csv_astronomaly_and_anomalymatch_formats() {
    let dir = tempfile::tempdir().unwrap();
    let path = mmu_path(dir.path(), "hsc", 3);
    write_image_table(&path, &ImageTable { n: 6, ..Default::default() });
    let store_path = dir.path().join("store");
    {
        let store = Store::open_or_create(&store_path).unwrap();
        let report = oddity::ingest::ingest(
            &store,
            &[dir.path().join("hsc")],
            &Default::default(),
            &oddity::progress::NoProgress,
        )
        .unwrap();
        assert_eq!(report.objects_added, 6);
        event(&store, "1000", LabelValue::Relevance(5), &[], "ann");
        event(&store, "1000", LabelValue::Tag, &["ring"], "ann");
        event(&store, "1001", LabelValue::Normal, &[], "ann");
        event(&store, "1001", LabelValue::Anomaly, &[], "bob");
        let wrong = event(&store, "1002", LabelValue::Anomaly, &[], "ann");
        event(&store, "1002", LabelValue::Retract(wrong), &[], "ann");
        event(&store, "1003", LabelValue::Unsure, &[], "ann");
        event(&store, "1004", LabelValue::Favourite(true), &[], "ann");
        event(&store, "1004", LabelValue::Relevance(1), &["artefact"], "ann");
        // One rule everywhere: the latest judgement wins (relevance 4, then "normal").
        event(&store, "1005", LabelValue::Relevance(4), &[], "ann");
        event(&store, "1005", LabelValue::Normal, &[], "ann");
    }
    let s = store_path.to_str().unwrap();
    let csv = String::from_utf8(run(&["--store", s, "export"]).stdout).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "object_id,survey,ra,dec,relevance,verdict,tags,favourite,users,disagreement,last_labelled,score,target_relevance,interesting"
    );
    assert_eq!(lines.len(), 1 + 5, "retracted object 1002 is not exported: {csv}");
    assert!(lines[1].starts_with("1000,hsc,150.0000000,2.0000000,5,,ring,0,ann:5:,0,"), "{}", lines[1]);
    assert!(
        lines[2].starts_with("1001,hsc,") && lines[2].contains(",anomaly,,0,ann::normal;bob::anomaly,1,"),
        "{}",
        lines[2]
    );
    assert!(lines[3].contains(",unsure,"), "{}", lines[3]);
    assert!(lines[4].contains(",1,,artefact,1,ann:1:,0,"), "favourite + tag: {}", lines[4]);
    assert!(lines[1].ends_with(",5,1"), "target of relevance 5: {}", lines[1]);
    assert!(lines[4].ends_with(",0,0"), "an artefact is boring: {}", lines[4]);
    assert!(lines[5].starts_with("1005,") && lines[5].ends_with(",0,0"), "normal after 4: {}", lines[5]);

    let astro = String::from_utf8(run(&["--store", s, "export", "--format", "astronomaly"]).stdout).unwrap();
    // The artefact tag makes 1004 boring (0) though its relevance said 1.
    assert_eq!(astro, "id,human_label\n1000,5\n1001,5\n1004,0\n1005,0\n");

    let out = dir.path().join("labeled_data.csv");
    let r = run(&["--store", s, "export", "--format", "anomalymatch", "--out", out.to_str().unwrap()]);
    assert!(r.status.success(), "{}", text(&r));
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "filename,label\n1000.png,anomaly\n1001.png,anomaly\n1004.png,normal\n1005.png,normal\n"
    );
}

#[test]
fn ids_tags_and_users_with_commas_quotes_and_newlines_are_quoted() {
    const IDS: &[&str] = &["a,b", "say \"hi\"", "two\nlines"];
    let dir = tempfile::tempdir().unwrap();
    let path = mmu_path(dir.path(), "hsc", 3);
    write_image_table(&path, &ImageTable { n: 3, ids: Ids::Given(IDS), ..Default::default() });
    let store_path = dir.path().join("store");
    {
        let store = Store::open_or_create(&store_path).unwrap();
        let report = oddity::ingest::ingest(
            &store,
            &[dir.path().join("hsc")],
            &Default::default(),
            &oddity::progress::NoProgress,
        )
        .unwrap();
        assert_eq!(report.objects_added, 3);
        event(&store, IDS[0], LabelValue::Anomaly, &["merger, faint"], "ann");
        event(&store, IDS[1], LabelValue::Normal, &["\"odd\" one"], "o'brien, j");
        event(&store, IDS[2], LabelValue::Relevance(3), &["x\ny"], "ann");
    }
    let s = store_path.to_str().unwrap();
    let read = |args: &[&str]| -> Vec<Vec<String>> {
        let out = run(&[&["--store", s, "export"], args].concat());
        assert!(out.status.success(), "{}", text(&out));
        let mut r = csv::Reader::from_reader(out.stdout.as_slice());
        r.records().map(|rec| rec.unwrap().iter().map(str::to_string).collect()).collect()
    };
    // Every field comes back as it went in, however many commas, quotes or newlines.
    let rows = read(&[]);
    assert_eq!(rows.len(), 3, "{rows:?}");
    let ids: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    let tags: Vec<&str> = rows.iter().map(|r| r[6].as_str()).collect();
    assert_eq!(ids, IDS);
    assert_eq!(tags, ["merger, faint", "\"odd\" one", "x\ny"]);
    assert_eq!(rows[1][8], "o'brien, j::normal");
    let astro = read(&["--format", "astronomaly"]);
    assert_eq!(astro, [["a,b", "5"], ["say \"hi\"", "0"], ["two\nlines", "3"]]);
    let am = read(&["--format", "anomalymatch"]);
    assert_eq!(am[0], ["a,b.png", "anomaly"]);
    assert_eq!(am[1], ["say \"hi\".png", "normal"]);
    // And the raw text is RFC 4180: quoted fields, doubled quotes.
    let raw = String::from_utf8(run(&["--store", s, "export", "--format", "astronomaly"]).stdout).unwrap();
    assert_eq!(raw, "id,human_label\n\"a,b\",5\n\"say \"\"hi\"\"\",0\n\"two\nlines\",3\n");
}
