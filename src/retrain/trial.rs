//! An online trial of a retrained ranking the held-out gate did not promote.
//!
//! The held-back labels that judge a retrain were shown because the current
//! ranking put them at its top, so they favour it (in the demo eval the gate
//! kept the re-rank every cycle while CNN + re-rank ranked the unlabelled
//! survey better). So a challenger that the gate does not promote outright
//! goes on trial: while it is open, the default triage ordering is a
//! team-draft interleaving (Radlinski, Kurup & Joachims 2008) of the current
//! ranking and the challenger. Each round a fair coin (fixed by the trial
//! and round, so every process draws the same) says which ranking picks
//! first; each picks its highest-ranked object not labelled and not picked
//! yet. Every pick is stored with the ranking that made it
//! ([`crate::store::Pick`]), and a labelled pick that is interesting credits
//! its ranking. Once there are at least `min_decisive` such credits and a
//! one-sided sign test says the challenger's share is above one half at
//! `level`, the challenger wins and becomes the ranking; after `cap`
//! labelled picks without that, it is rejected. Decided when a triage
//! session that holds the store ends, and when the next retrain starts.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::NOTE_LAST;
use crate::serve::{Cursor, Page};
use crate::store::{LabelBook, ObjectKey, Pick, ScoreVersion, Store, StoreError};

/// The open (or last) trial, as JSON.
pub const NOTE_TRIAL: &str = "retrain-trial";

/// Held-out AUROC below which a challenger is not worth the expert's time on trial.
pub const FLOOR: f64 = 0.6;

/// Score-index entries read at a time while drafting.
const CHUNK: usize = 64;

/// One extension or decision at a time: drafting reads the trial, picks
/// and writes (screens of a team page from several threads).
static DRAFTING: Mutex<()> = Mutex::new(());

/// The ranking that picked an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Team {
    Current = 0,
    Challenger = 1,
}

impl Team {
    pub fn other(self) -> Team {
        match self {
            Team::Current => Team::Challenger,
            Team::Challenger => Team::Current,
        }
    }
}

/// When a trial is decided.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrialRules {
    /// Interesting picks (credits) needed before the challenger can win.
    pub min_decisive: usize,
    /// Labelled picks after which a challenger that has not won is rejected.
    pub cap: usize,
    /// One-sided significance level of the sign test.
    pub level: f64,
}

impl Default for TrialRules {
    fn default() -> Self {
        TrialRules { min_decisive: 20, cap: 200, level: 0.05 }
    }
}

/// A trial, open or decided (kept as the note [`NOTE_TRIAL`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    /// Counts up over the store's trials (the picks' `trial`).
    pub id: u32,
    /// The ranking on trial against (its version was current when it opened).
    pub current: u32,
    /// The challenger's (kept) score version and candidate name.
    pub challenger: u32,
    pub name: String,
    pub opened: String,
    pub rules: TrialRules,
    /// What the challenger builds on, for its ranking note once promoted.
    pub base: Option<u32>,
    pub labels_seen: Vec<u64>,
    /// Rounds drafted, picks made.
    pub rounds: u64,
    pub picks: u32,
    /// Per team (current, challenger): the last score-index entry consumed,
    /// and whether its ranking has run out.
    pub after: [Option<Vec<u8>>; 2],
    pub done: [bool; 2],
    /// The outcome, once decided.
    pub closed: Option<String>,
    #[serde(default)]
    pub won: bool,
}

/// What a trial's picks have earned so far, per team (current, challenger).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub picked: [u64; 2],
    pub labelled: [u64; 2],
    pub interesting: [u64; 2],
}

impl Tally {
    pub fn of(picks: &[(ObjectKey, Pick)], book: &LabelBook) -> Tally {
        let mut t = Tally::default();
        for (key, pick) in picks {
            let team = usize::from(pick.challenger);
            t.picked[team] += 1;
            if let Some(target) = book.get(*key).and_then(|l| l.target()) {
                t.labelled[team] += 1;
                t.interesting[team] += u64::from(target.interesting);
            }
        }
        t
    }

    /// "14-5": the challenger's credits first.
    pub fn score(&self) -> String {
        format!("{}-{}", self.interesting[1], self.interesting[0])
    }
}

/// The one-sided sign test: the probability of at least `wins` successes in
/// `n` fair coin flips (hand-written: a dozen lines, in log space so that
/// large `n` does not underflow).
pub fn sign_test(wins: u64, n: u64) -> f64 {
    if wins == 0 {
        return 1.0;
    }
    let ln_half_n = n as f64 * 0.5f64.ln();
    let mut ln_choose = 0.0; // ln C(n, i)
    let mut p = 0.0;
    for i in 0..=n {
        if i >= wins {
            p += (ln_choose + ln_half_n).exp();
        }
        if i < n {
            ln_choose += ((n - i) as f64).ln() - ((i + 1) as f64).ln();
        }
    }
    p.min(1.0)
}

/// A p-value for people: "= 0.032", "< 0.001".
pub fn p_value(p: f64) -> String {
    if p < 0.001 { "< 0.001".into() } else { format!("= {p:.3}") }
}

/// What the picks so far decide.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    Won { p: f64 },
    Lost { p: f64 },
    Open { p: f64 },
}

pub fn judge(rules: &TrialRules, tally: &Tally) -> Outcome {
    let n = tally.interesting[0] + tally.interesting[1];
    let p = sign_test(tally.interesting[1], n);
    if n >= rules.min_decisive as u64 && p <= rules.level {
        Outcome::Won { p }
    } else if tally.labelled[0] + tally.labelled[1] >= rules.cap as u64 {
        Outcome::Lost { p }
    } else {
        Outcome::Open { p }
    }
}

/// Which ranking picks first in a round: a fair coin fixed by the trial and
/// round (splitmix64 of both), so every process drafts the same stream.
pub fn first_picker(trial: u32, round: u64) -> Team {
    let mut z = ((u64::from(trial) << 40) ^ round).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    if z & 1 == 1 { Team::Challenger } else { Team::Current }
}

/// One round of team-draft interleaving: `first`, then the other team, each
/// takes its next object (`next`, in its ranking's order) that is not
/// `taken` and not picked earlier in the round; a team whose ranking has run
/// out passes.
pub fn draft_round<E>(
    first: Team,
    next: &mut dyn FnMut(Team) -> Result<Option<ObjectKey>, E>,
    taken: &dyn Fn(ObjectKey) -> bool,
) -> Result<Vec<(ObjectKey, Team)>, E> {
    let mut round: Vec<(ObjectKey, Team)> = Vec::with_capacity(2);
    for team in [first, first.other()] {
        while let Some(key) = next(team)? {
            if !taken(key) && !round.iter().any(|r| r.0 == key) {
                round.push((key, team));
                break;
            }
        }
    }
    Ok(round)
}

/// The trial note, open or decided.
pub fn read(store: &Store) -> Result<Option<Trial>, StoreError> {
    Ok(store.note(NOTE_TRIAL)?.and_then(|t| serde_json::from_str(&t).ok()))
}

fn write(store: &Store, trial: &Trial) -> Result<(), StoreError> {
    store.put_note(NOTE_TRIAL, &serde_json::to_string(trial).unwrap_or_default())
}

/// The trial the default ordering interleaves now: open, its current
/// ranking still the store's, its challenger still kept.
pub fn running(store: &Store) -> Result<Option<Trial>, StoreError> {
    let Some(t) = read(store)?.filter(|t| t.closed.is_none()) else { return Ok(None) };
    let current = store.current_scores()?.map(|c| c.version);
    if current != Some(t.current) || store.score_version(t.challenger)?.is_none() {
        return Ok(None);
    }
    Ok(Some(t))
}

/// Puts `challenger` on trial against the current ranking (`current`),
/// closing any open trial first. Returns the trial.
pub fn open(
    store: &Store,
    current: u32,
    challenger: &ScoreVersion,
    name: &str,
    rules: TrialRules,
    base: Option<u32>,
    labels_seen: Vec<u64>,
) -> Result<Trial, StoreError> {
    let _guard = DRAFTING.lock().unwrap_or_else(|e| e.into_inner());
    let previous = read(store)?;
    let trial = Trial {
        id: previous.map_or(1, |p| p.id + 1),
        current,
        challenger: challenger.version,
        name: name.to_string(),
        opened: chrono::Utc::now().to_rfc3339(),
        rules,
        base,
        labels_seen,
        rounds: 0,
        picks: 0,
        after: [None, None],
        done: [false, false],
        closed: None,
        won: false,
    };
    write(store, &trial)?;
    Ok(trial)
}

/// Drafts rounds until the open trial has at least `want` picks (or both
/// rankings run out); returns its picks in stream order, or None when no
/// trial is running.
fn extend(store: &Store, want: usize) -> Result<Option<Vec<(ObjectKey, Pick)>>, StoreError> {
    let _guard = DRAFTING.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut t) = running(store)? else { return Ok(None) };
    let mut picks = store.picks_of_trial(t.id)?;
    if picks.len() >= want || t.done == [true, true] {
        return Ok(Some(picks));
    }
    let book = LabelBook::from_events(store.label_events()?);
    let mut picked: HashSet<ObjectKey> = picks.iter().map(|p| p.0).collect();
    let versions = [t.current, t.challenger];
    let mut buffers: [VecDeque<(ObjectKey, Vec<u8>)>; 2] = Default::default();
    let mut new: Vec<(ObjectKey, Pick)> = Vec::new();
    while picks.len() + new.len() < want && t.done != [true, true] {
        let (after, done) = (&mut t.after, &mut t.done);
        let mut next = |team: Team| -> Result<Option<ObjectKey>, StoreError> {
            let i = team as usize;
            if buffers[i].is_empty() && !done[i] {
                buffers[i].extend(store.score_entries(versions[i], after[i].clone(), CHUNK)?);
                done[i] = buffers[i].is_empty();
            }
            Ok(buffers[i].pop_front().map(|(key, entry)| {
                after[i] = Some(entry);
                key
            }))
        };
        let taken = |key: ObjectKey| picked.contains(&key) || book.is_labelled(key);
        let round = draft_round(first_picker(t.id, t.rounds), &mut next, &taken)?;
        t.rounds += 1;
        for (key, team) in round {
            picked.insert(key);
            new.push((key, Pick { trial: t.id, seq: t.picks, challenger: team == Team::Challenger }));
            t.picks += 1;
        }
    }
    store.put_picks(&new)?;
    write(store, &t)?;
    picks.extend(new);
    Ok(Some(picks))
}

/// A page of the default ordering while a trial runs: the interleaved
/// stream (drafted further as screens reach its end); None when no trial runs.
pub fn page(store: &Store, cursor: &Cursor, n: usize) -> Result<Option<Page>, StoreError> {
    let at = match cursor {
        Cursor::Trial(i) => *i as usize,
        _ => 0,
    };
    let Some(picks) = extend(store, at + n)? else { return Ok(None) };
    let keys: Vec<ObjectKey> = picks.iter().skip(at).take(n).map(|p| p.0).collect();
    let next = if keys.len() == n { Cursor::Trial((at + n) as u64) } else { Cursor::End };
    Ok(Some(Page { keys, next, interleaved: true }))
}

/// The open trial's standing, for `oddity status`.
pub fn standing(store: &Store) -> Result<Option<(Trial, Tally, Outcome)>, StoreError> {
    let Some(t) = read(store)? else { return Ok(None) };
    let tally = Tally::of(&store.picks_of_trial(t.id)?, &LabelBook::from_events(store.label_events()?));
    let outcome = judge(&t.rules, &tally);
    Ok(Some((t, tally, outcome)))
}

/// Decides the open trial, if there is one: the challenger wins (and
/// becomes the ranking) or is rejected, or the trial stays open. Returns
/// what happened, for people; None without an open trial.
pub fn decide(store: &Store) -> Result<Option<String>, StoreError> {
    let _guard = DRAFTING.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut t) = read(store)?.filter(|t| t.closed.is_none()) else { return Ok(None) };
    let who = format!("version {} ({})", t.challenger, t.name);
    let current = store.current_scores()?;
    let Some(challenger) = store.score_version(t.challenger)? else {
        return close(store, &mut t, format!("the trial of {who} ended undecided: its scores are gone"), false);
    };
    if current.as_ref().map(|c| c.version) != Some(t.current) {
        let now = current.map(|c| format!("version {} ({})", c.version, c.method)).unwrap_or("none".into());
        let why = format!("the trial of {who} ended undecided: the ranking changed to {now} while it ran");
        return close(store, &mut t, why, false);
    }
    let tally = Tally::of(&store.picks_of_trial(t.id)?, &LabelBook::from_events(store.label_events()?));
    let r = &t.rules;
    let (score, labelled) = (tally.score(), tally.labelled[0] + tally.labelled[1]);
    match judge(r, &tally) {
        Outcome::Won { p } => {
            super::promote(store, &challenger, t.base, t.labels_seen.clone())?;
            let why = format!(
                "{who} won its trial {score} (interesting picks, challenger first; one-sided sign test p {} <= {}) \
                 and is now the ranking",
                p_value(p),
                r.level
            );
            close(store, &mut t, why, true)
        }
        Outcome::Lost { p } => {
            let why = format!(
                "{who} lost its trial: {score} after {labelled} labelled picks (p = {p:.3}; it needed at least {} \
                 interesting picks and p <= {}); the ranking stays version {}",
                r.min_decisive, r.level, t.current
            );
            close(store, &mut t, why, false)
        }
        Outcome::Open { p } => Ok(Some(format!(
            "{who} stays on trial: {score} in {labelled} labelled picks (p = {p:.3}; it wins with at least {} \
             interesting picks and p <= {}, and is rejected after {} labelled picks)",
            r.min_decisive, r.level, r.cap
        ))),
    }
}

/// Ends the open trial undecided because a newer retrain replaces it.
pub fn supersede(store: &Store, by: &str) -> Result<Option<String>, StoreError> {
    let _guard = DRAFTING.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut t) = read(store)?.filter(|t| t.closed.is_none()) else { return Ok(None) };
    let tally = Tally::of(&store.picks_of_trial(t.id)?, &LabelBook::from_events(store.label_events()?));
    let why = format!(
        "the trial of version {} ({}) ended undecided at {} in {} labelled picks: {by}",
        t.challenger,
        t.name,
        tally.score(),
        tally.labelled[0] + tally.labelled[1]
    );
    close(store, &mut t, why, false)
}

/// Records the outcome in the trial and in the last retrain's verdict.
fn close(store: &Store, t: &mut Trial, why: String, won: bool) -> Result<Option<String>, StoreError> {
    t.closed = Some(why.clone());
    t.won = won;
    write(store, t)?;
    // The last retrain's verdict: the one that opened the trial, or a later
    // one that left it running.
    if let Some(mut r) = super::last_report(store)? {
        if won && r.candidates.iter().any(|c| c.version == Some(t.challenger)) {
            r.promoted = Some(t.challenger);
        }
        r.verdict = format!("{}; then {why}", r.verdict);
        store.put_note(NOTE_LAST, &serde_json::to_string(&r).unwrap_or_default())?;
    }
    Ok(Some(why))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(row: u32) -> ObjectKey {
        ObjectKey { file: 1, row }
    }

    /// Team-draft interleaving of two fixed rankings, `n` picks.
    fn interleave(trial: u32, a: &[u32], b: &[u32], taken: &[u32], n: usize) -> Vec<(u32, Team)> {
        let (mut ia, mut ib) = (a.iter(), b.iter());
        let mut out: Vec<(ObjectKey, Team)> = Vec::new();
        let mut round = 0;
        while out.len() < n {
            let mut next = |team: Team| -> Result<Option<ObjectKey>, ()> {
                Ok(match team {
                    Team::Current => ia.next(),
                    Team::Challenger => ib.next(),
                }
                .map(|&r| k(r)))
            };
            let picked: Vec<ObjectKey> = out.iter().map(|o| o.0).collect();
            let taken = |key: ObjectKey| taken.contains(&key.row) || picked.contains(&key);
            let r = draft_round(first_picker(trial, round), &mut next, &taken).unwrap();
            round += 1;
            if r.is_empty() {
                break;
            }
            out.extend(r);
        }
        out.into_iter().map(|(key, t)| (key.row, t)).collect()
    }

    #[test]
    fn team_draft_takes_turns_by_coin_and_skips_what_is_taken() {
        use Team::{Challenger as B, Current as A};
        // The coins of trial 1's first rounds, fixed by the hash.
        let coins: Vec<Team> = (0..4).map(|r| first_picker(1, r)).collect();
        assert_eq!(coins, [B, B, A, B]);
        // Rankings that agree on 1 and 2, then differ; 3 is labelled.
        let a = [1, 2, 3, 4, 5, 6];
        let b = [2, 1, 7, 3, 8, 9];
        let got = interleave(1, &a, &b, &[3], 8);
        // Round 0 (B first): B takes 2, A takes 1. Round 1 (B first): B skips 1
        // (picked) and takes 7, A skips 2 and 3 (labelled) and takes 4. Round 2
        // (A first): A takes 5, B skips 3 and takes 8. Round 3 (B first): 9, 6.
        assert_eq!(got, [(2, B), (1, A), (7, B), (4, A), (5, A), (8, B), (9, B), (6, A)]);
        // Every round gives each team one pick while both have objects left.
        for pair in got.chunks(2) {
            assert_ne!(pair[0].1, pair[1].1, "{got:?}");
        }
        // When one ranking runs out the other goes on alone.
        let got = interleave(1, &[1], &[2, 3, 4], &[], 10);
        assert_eq!(got, [(2, B), (1, A), (3, B), (4, B)]);
        // Another trial draws other coins.
        assert_ne!(
            (0..16).map(|r| first_picker(2, r)).collect::<Vec<_>>(),
            (0..16).map(|r| first_picker(1, r)).collect::<Vec<_>>()
        );
        // Fair over many rounds.
        let b_first = (0..10_000).filter(|&r| first_picker(3, r) == B).count();
        assert!((4_800..5_200).contains(&b_first), "{b_first}");
    }

    #[test]
    fn sign_test_matches_the_binomial_tail() {
        assert_eq!(sign_test(0, 10), 1.0);
        assert!((sign_test(10, 10) - 1.0 / 1024.0).abs() < 1e-12);
        // P(X >= 14 | 19, 1/2) = 0.0318 (scipy.stats.binomtest(14, 19, alternative="greater")).
        assert!((sign_test(14, 19) - 0.031_784).abs() < 1e-5, "{}", sign_test(14, 19));
        assert!((sign_test(15, 20) - 0.020_695).abs() < 1e-5, "{}", sign_test(15, 20));
        // Large n does not underflow: P(X >= 550 | 1000) ~ 0.00088.
        assert!((sign_test(550, 1000) - 0.000_865).abs() < 5e-5, "{}", sign_test(550, 1000));
    }

    #[test]
    fn credits_decide_the_trial() {
        let rules = TrialRules { min_decisive: 20, cap: 60, level: 0.05 };
        let tally = |cur: u64, ch: u64, labelled: u64| Tally {
            picked: [labelled; 2],
            labelled: [labelled / 2, labelled - labelled / 2],
            interesting: [cur, ch],
        };
        // 14-5: 19 credits, one short of the minimum however clear.
        assert!(matches!(judge(&rules, &tally(5, 14, 40)), Outcome::Open { .. }));
        // 15-5: 20 credits, p = 0.021.
        assert!(matches!(judge(&rules, &tally(5, 15, 40)), Outcome::Won { p } if p < 0.05));
        // 13-7 is not enough (p = 0.13); at the cap it is rejected.
        assert!(matches!(judge(&rules, &tally(7, 13, 40)), Outcome::Open { .. }));
        assert!(matches!(judge(&rules, &tally(7, 13, 60)), Outcome::Lost { .. }));
        // The current ranking winning never promotes the challenger.
        assert!(matches!(judge(&rules, &tally(30, 2, 60)), Outcome::Lost { .. }));

        // Credit: labelled interesting picks, per team; unsure gives none.
        use crate::store::{LabelEvent, LabelValue};
        let ev = |row, value| LabelEvent {
            object: k(row),
            value,
            tags: vec![],
            user: "u".into(),
            time: String::new(),
            session: "s".into(),
        };
        let book = LabelBook::from_events(vec![
            (1, ev(1, LabelValue::Relevance(5))),
            (2, ev(2, LabelValue::Relevance(1))),
            (3, ev(3, LabelValue::Unsure)),
            (4, ev(4, LabelValue::Anomaly)),
        ]);
        let pick = |row, seq, challenger| (k(row), Pick { trial: 1, seq, challenger });
        let picks = [pick(1, 0, true), pick(2, 1, false), pick(3, 2, true), pick(4, 3, false), pick(5, 4, true)];
        let t = Tally::of(&picks, &book);
        assert_eq!(t, Tally { picked: [2, 3], labelled: [2, 1], interesting: [1, 1] });
        assert_eq!(t.score(), "1-1");
    }

    /// A store with objects 1..=n scored by two versions: the current one
    /// ranks row r at r, the challenger in `challenger`'s order.
    fn two_rankings(n: u32, challenger: &dyn Fn(u32) -> f32) -> (tempfile::TempDir, Store, ScoreVersion, ScoreVersion) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_or_create(&dir.path().join("store")).unwrap();
        let info = |version, method: &str| ScoreVersion {
            version,
            models: vec![],
            method: method.into(),
            time: String::new(),
            n_scored: u64::from(n),
        };
        let v1 = store.begin_scores().unwrap();
        store.put_scores(v1, &(1..=n).map(|r| (k(r), 1.0 - r as f32 / 100.0)).collect::<Vec<_>>()).unwrap();
        let current = info(v1, "forest");
        store.commit_scores(&current).unwrap();
        let v2 = store.begin_scores().unwrap();
        store.put_scores(v2, &(1..=n).map(|r| (k(r), challenger(r))).collect::<Vec<_>>()).unwrap();
        let cand = info(v2, "cnn");
        store.keep_scores(&cand, "a retrain's candidate").unwrap();
        (dir, store, current, cand)
    }

    fn label(store: &Store, row: u32, relevance: u8) {
        let e = crate::store::LabelEvent {
            object: k(row),
            value: crate::store::LabelValue::Relevance(relevance),
            tags: vec![],
            user: "u".into(),
            time: String::new(),
            session: "s".into(),
        };
        store.append_label(&e).unwrap();
    }

    fn rows(page: &Page) -> Vec<u32> {
        page.keys.iter().map(|k| k.row).collect()
    }

    #[test]
    fn a_trial_interleaves_the_default_ordering_records_the_picks_and_promotes_a_winner() {
        use crate::serve::Catalog;
        use crate::tui::Ordering;
        // The challenger ranks in reverse.
        let (_dir, store, current, cand) = two_rankings(20, &|r| r as f32 / 100.0);
        label(&store, 1, 0);
        assert_eq!(rows(&store.page(Ordering::Score, Cursor::Start, 3).unwrap()), [1, 2, 3], "no trial: the ranking");
        let rules = TrialRules { min_decisive: 3, cap: 8, level: 0.2 };
        let t = open(&store, current.version, &cand, "cnn", rules, Some(current.version), vec![]).unwrap();
        assert_eq!(t.id, 1);
        let page = store.page(Ordering::Score, Cursor::Start, 6).unwrap();
        // Coins B, B, A: the current ranking's 1 is labelled, so it takes 2.
        assert_eq!(rows(&page), [20, 2, 19, 3, 4, 18]);
        assert_eq!(page.next, Cursor::Trial(6));
        let picks = store.picks_of_trial(t.id).unwrap();
        let teams: Vec<(u32, u32, bool)> = picks.iter().map(|(k, p)| (k.row, p.seq, p.challenger)).collect();
        assert_eq!(teams, [(20, 0, true), (2, 1, false), (19, 2, true), (3, 3, false), (4, 4, false), (18, 5, true)]);
        // The stream goes on from the cursor, and replays from the start.
        let more = store.page(Ordering::Score, page.next.clone(), 4).unwrap();
        assert!(rows(&more).iter().all(|r| !rows(&page).contains(r)), "{:?}", rows(&more));
        assert_eq!(store.picks_of_trial(t.id).unwrap().len(), 10);
        assert_eq!(store.page(Ordering::Score, Cursor::Start, 6).unwrap(), page);
        // Other orderings are untouched.
        assert_eq!(rows(&store.page(Ordering::Id, Cursor::Start, 0).unwrap()), Vec::<u32>::new());

        // The expert finds the challenger's picks interesting: 3-0.
        for (row, interesting) in [(2, false), (20, true), (19, true), (3, false), (18, true)] {
            label(&store, row, if interesting { 5 } else { 1 });
        }
        let (_, tally, outcome) = standing(&store).unwrap().unwrap();
        assert_eq!(tally.interesting, [0, 3]);
        assert!(matches!(outcome, Outcome::Won { .. }), "{outcome:?}");
        let status = crate::cmd::status::text(&store, false).unwrap();
        assert!(status.contains("trial     version 2 (cnn) against version 1"), "{status}");
        assert!(status.contains("challenger 2    5 picked, 3 labelled, 3 interesting"), "{status}");
        assert!(status.contains("current 1       5 picked, 2 labelled, 0 interesting"), "{status}");
        let why = decide(&store).unwrap().unwrap();
        assert!(why.starts_with("version 2 (cnn) won its trial 3-0"), "{why}");
        assert_eq!(store.current_scores().unwrap().unwrap().version, cand.version);
        // The forest it builds on is kept; the default ordering is the winner's own.
        assert!(store.score_version(current.version).unwrap().is_some());
        assert_eq!(rows(&store.page(Ordering::Score, Cursor::Start, 2).unwrap()), [20, 19]);
        assert_eq!(decide(&store).unwrap(), None, "decided once");
        let status = crate::cmd::status::text(&store, false).unwrap();
        assert!(
            status.contains("last trial version 2 (cnn) against version 1") && status.contains("won its trial 3-0")
        );
    }

    #[test]
    fn a_worse_challenger_is_rejected_at_the_cap_and_a_changed_ranking_ends_a_trial() {
        use crate::serve::Catalog;
        use crate::tui::Ordering;
        let (_dir, store, current, cand) = two_rankings(30, &|r| r as f32 / 100.0);
        let rules = TrialRules { min_decisive: 3, cap: 6, level: 0.2 };
        let t = open(&store, current.version, &cand, "combined", rules, None, vec![]).unwrap();
        let picks: Vec<(ObjectKey, Pick)> = {
            store.page(Ordering::Score, Cursor::Start, 6).unwrap();
            store.picks_of_trial(t.id).unwrap()
        };
        // The current ranking's picks are the interesting ones.
        for (key, pick) in &picks[..5] {
            label(&store, key.row, if pick.challenger { 0 } else { 4 });
        }
        assert!(decide(&store).unwrap().unwrap().contains("stays on trial"), "5 labelled picks, the cap is 6");
        label(&store, picks[5].0.row, if picks[5].1.challenger { 0 } else { 4 });
        let why = decide(&store).unwrap().unwrap();
        assert!(why.contains("lost its trial: 0-3 after 6 labelled picks"), "{why}");
        assert_eq!(store.current_scores().unwrap().unwrap().version, current.version);
        assert_eq!(rows(&store.page(Ordering::Score, Cursor::Start, 2).unwrap()), [1, 2], "back to the ranking");

        // A new ranking made meanwhile (say `oddity score`) ends the next trial undecided.
        let t2 = open(&store, current.version, &cand, "cnn", rules, None, vec![]).unwrap();
        assert_eq!(t2.id, 2);
        let v3 = store.begin_scores().unwrap();
        store.put_scores(v3, &[(k(5), 1.0)]).unwrap();
        store
            .commit_scores(&ScoreVersion {
                version: v3,
                models: vec![],
                method: "forest".into(),
                time: String::new(),
                n_scored: 1,
            })
            .unwrap();
        assert!(running(&store).unwrap().is_none());
        assert_eq!(rows(&store.page(Ordering::Score, Cursor::Start, 2).unwrap()), [5]);
        let why = decide(&store).unwrap().unwrap();
        assert!(why.contains("ended undecided: the ranking changed to version 3 (forest)"), "{why}");
    }

    #[test]
    fn served_clients_get_the_interleaved_candidates() {
        use crate::serve::Catalog;
        use crate::serve::client::Remote;
        use crate::serve::hub::Hub;
        use crate::serve::server::Server;
        use crate::tui::Ordering;
        let (dir, store, current, cand) = two_rankings(20, &|r| r as f32 / 100.0);
        open(&store, current.version, &cand, "cnn", TrialRules::default(), None, vec![]).unwrap();
        let store = std::sync::Arc::new(store);
        let hub = Hub::new(store.clone(), 0.0, None);
        let _server = Server::start(hub.clone()).unwrap();
        let remote = Remote::connect(&dir.path().join("store"), "client-1", Vec::new()).unwrap();
        let page = remote.page(Ordering::Score, Cursor::Start, 4).unwrap();
        assert_eq!(rows(&page), [20, 1, 19, 2]);
        // The picks were recorded by the serving process, and the next page goes on.
        assert_eq!(store.picks_of_trial(1).unwrap().len(), 4);
        let next = remote.page(Ordering::Score, page.next, 2).unwrap();
        assert_eq!(rows(&next), [3, 18]);
        // A team member's own screen (the hub's session) sees the same stream.
        let ann = hub.join("ann", "ann", &[]);
        assert_eq!(rows(&ann.page(Ordering::Score, Cursor::Start, 6).unwrap()), [20, 1, 19, 2, 3, 18]);
    }
}
