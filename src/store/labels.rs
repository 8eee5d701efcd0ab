//! What the label log says now: replaying the append-only events (with their
//! retractions) into each object's current labels.

use std::collections::{BTreeSet, HashMap};

use super::{LabelEvent, LabelValue, ObjectKey};

/// The expert's verdict on an object's class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    Anomaly,
    Normal,
    Unsure,
}

/// What an object's labels mean for learning and for every export: the one
/// rule that turns labels into a target (re-rank, retrain, the on-quit
/// trigger, the info panel and the exports all call [`ObjectLabels::target`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    /// Astronomaly-style relevance, 0 (boring) to 5 (what I am looking for).
    pub relevance: u8,
    /// The class a classifier learns: relevance >= [`INTERESTING_FROM`].
    pub interesting: bool,
}

/// Relevance from which an object counts as interesting (an anomaly to a classifier).
pub const INTERESTING_FROM: u8 = 3;

impl Target {
    fn from_relevance(relevance: u8) -> Target {
        Target { relevance, interesting: relevance >= INTERESTING_FROM }
    }
}

/// The latest judgement of an object's class, relevance score or verdict.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Judgement {
    Relevance(u8),
    Verdict(Verdict),
}

/// An object's labels after replaying every event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObjectLabels {
    pub relevance: Option<u8>,
    pub verdict: Option<Verdict>,
    /// Whichever of `relevance` and `verdict` was given last.
    pub latest: Option<Judgement>,
    pub tags: BTreeSet<String>,
    pub favourite: bool,
    /// Users who labelled it, with their latest relevance/verdict.
    pub by_user: Vec<(String, Option<u8>, Option<Verdict>)>,
    /// Time of the latest event that still counts.
    pub last_time: String,
}

impl ObjectLabels {
    pub fn is_labelled(&self) -> bool {
        self.relevance.is_some() || self.verdict.is_some()
    }

    /// The training target, by one rule: an "artefact" tag makes the object
    /// boring (relevance 0) whatever else was said; otherwise the latest
    /// judgement decides: a relevance score as given, anomaly = 5, normal = 0;
    /// unsure (or no judgement) gives no target.
    pub fn target(&self) -> Option<Target> {
        if self.tags.contains(ARTEFACT_TAG) {
            return Some(Target::from_relevance(0));
        }
        match self.latest? {
            Judgement::Relevance(r) => Some(Target::from_relevance(r.min(5))),
            Judgement::Verdict(Verdict::Anomaly) => Some(Target::from_relevance(5)),
            Judgement::Verdict(Verdict::Normal) => Some(Target::from_relevance(0)),
            Judgement::Verdict(Verdict::Unsure) => None,
        }
    }

    /// Whether users disagree (different relevance or verdict).
    pub fn disagreement(&self) -> bool {
        let rel: BTreeSet<u8> = self.by_user.iter().filter_map(|u| u.1).collect();
        let ver: std::collections::HashSet<Verdict> = self.by_user.iter().filter_map(|u| u.2).collect();
        rel.len() > 1 || ver.len() > 1
    }
}

/// The tag that marks an artefact (a satellite trail, a ghost): boring.
pub const ARTEFACT_TAG: &str = "artefact";

/// Current labels of every labelled object, rebuilt from the event log.
///
/// Indexed by object and by session so that adding an event costs the
/// events of its one object, not the whole log: replaying a log of n events
/// is O(n x events per object), not O(n^2).
#[derive(Debug, Default)]
pub struct LabelBook {
    events: Vec<(u64, LabelEvent)>,
    retracted: std::collections::HashSet<u64>,
    /// Positions in `events` of each object's events (retractions included).
    by_object: HashMap<ObjectKey, Vec<usize>>,
    /// Positions in `events` of each session's events.
    by_session: HashMap<String, Vec<usize>>,
    objects: HashMap<ObjectKey, ObjectLabels>,
    /// Objects by the sequence number of their latest label (most recent
    /// last), and each object's current sequence number.
    recent: std::collections::BTreeMap<u64, ObjectKey>,
    recent_seq: HashMap<ObjectKey, u64>,
    seq: u64,
    /// Position in `events` of each event id.
    by_id: HashMap<u64, usize>,
    /// Objects with a relevance or verdict now.
    labelled: usize,
}

impl LabelBook {
    pub fn from_events(events: Vec<(u64, LabelEvent)>) -> LabelBook {
        let mut book = LabelBook::default();
        for (id, e) in events {
            book.push(id, e);
        }
        book
    }

    /// Adds an event that was just appended to the store.
    pub fn push(&mut self, id: u64, event: LabelEvent) {
        let object = event.object;
        if let LabelValue::Retract(target) = event.value {
            self.retracted.insert(target);
        }
        let at = self.events.len();
        self.by_id.insert(id, at);
        self.by_object.entry(object).or_default().push(at);
        match self.by_session.get_mut(&event.session) {
            Some(list) => list.push(at),
            None => {
                self.by_session.insert(event.session.clone(), vec![at]);
            }
        }
        self.events.push((id, event));
        self.rebuild(object);
    }

    fn counts(&self, id: u64, e: &LabelEvent) -> bool {
        !matches!(e.value, LabelValue::Retract(_)) && !self.retracted.contains(&id)
    }

    /// The id of the latest event on `object` that still counts (for undo).
    pub fn last_effective(&self, object: ObjectKey) -> Option<u64> {
        let list = self.by_object.get(&object)?;
        list.iter().rev().map(|&i| &self.events[i]).find(|(id, e)| self.counts(*id, e)).map(|(id, _)| *id)
    }

    /// The latest event of any object that still counts, with its object.
    pub fn last_effective_any(&self, session: &str) -> Option<(u64, ObjectKey)> {
        let list = self.by_session.get(session)?;
        list.iter().rev().map(|&i| &self.events[i]).find(|(id, e)| self.counts(*id, e)).map(|(id, e)| (*id, e.object))
    }

    fn rebuild(&mut self, object: ObjectKey) {
        let mut labels = ObjectLabels::default();
        let mut users: Vec<(String, Option<u8>, Option<Verdict>)> = Vec::new();
        for &i in self.by_object.get(&object).map(|v| v.as_slice()).unwrap_or_default() {
            let (id, e) = &self.events[i];
            if !self.counts(*id, e) {
                continue;
            }
            let user = match users.iter_mut().position(|u| u.0 == e.user) {
                Some(i) => i,
                None => {
                    users.push((e.user.clone(), None, None));
                    users.len() - 1
                }
            };
            match &e.value {
                LabelValue::Relevance(r) => {
                    labels.relevance = Some(*r);
                    labels.latest = Some(Judgement::Relevance(*r));
                    users[user].1 = Some(*r);
                }
                LabelValue::Anomaly => {
                    labels.verdict = Some(Verdict::Anomaly);
                    labels.latest = Some(Judgement::Verdict(Verdict::Anomaly));
                    users[user].2 = Some(Verdict::Anomaly);
                }
                LabelValue::Normal => {
                    labels.verdict = Some(Verdict::Normal);
                    labels.latest = Some(Judgement::Verdict(Verdict::Normal));
                    users[user].2 = Some(Verdict::Normal);
                }
                LabelValue::Unsure => {
                    labels.verdict = Some(Verdict::Unsure);
                    labels.latest = Some(Judgement::Verdict(Verdict::Unsure));
                    users[user].2 = Some(Verdict::Unsure);
                }
                LabelValue::Favourite(on) => labels.favourite = *on,
                LabelValue::Tag | LabelValue::Retract(_) => {}
            }
            labels.tags.extend(e.tags.iter().cloned());
            labels.last_time = e.time.clone();
        }
        labels.by_user = users;
        if let Some(old) = self.recent_seq.remove(&object) {
            self.recent.remove(&old);
        }
        let was = self.objects.get(&object).is_some_and(|l| l.is_labelled());
        self.labelled = self.labelled + usize::from(labels.is_labelled()) - usize::from(was);
        if labels.is_labelled() || !labels.tags.is_empty() || labels.favourite {
            self.seq += 1;
            self.recent.insert(self.seq, object);
            self.recent_seq.insert(object, self.seq);
            self.objects.insert(object, labels);
        } else {
            self.objects.remove(&object);
        }
    }

    pub fn get(&self, object: ObjectKey) -> Option<&ObjectLabels> {
        self.objects.get(&object)
    }

    pub fn is_labelled(&self, object: ObjectKey) -> bool {
        self.objects.get(&object).is_some_and(|l| l.is_labelled())
    }

    /// Every object with labels, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&ObjectKey, &ObjectLabels)> {
        self.objects.iter()
    }

    /// Objects most recently labelled first.
    pub fn recent(&self) -> impl Iterator<Item = ObjectKey> + '_ {
        self.recent.values().rev().copied()
    }

    /// Events of one session that still count (not retracted, not retractions).
    pub fn effective_in_session<'a>(&'a self, session: &'a str) -> impl Iterator<Item = &'a LabelEvent> + 'a {
        self.by_session
            .get(session)
            .map(|v| v.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|&i| &self.events[i])
            .filter(|(id, e)| self.counts(*id, e))
            .map(|(_, e)| e)
    }

    /// The event with this id.
    pub fn event(&self, id: u64) -> Option<&LabelEvent> {
        self.by_id.get(&id).map(|&i| &self.events[i].1)
    }

    /// Objects with a relevance or verdict (kept up to date: no walk).
    pub fn labelled_count(&self) -> usize {
        self.labelled
    }

    pub fn n_events(&self) -> usize {
        self.events.len()
    }

    pub fn events(&self) -> &[(u64, LabelEvent)] {
        &self.events
    }

    /// Every object with a training target, in no particular order.
    pub fn targets(&self) -> impl Iterator<Item = (ObjectKey, Target)> + '_ {
        self.objects.iter().filter_map(|(k, l)| l.target().map(|t| (*k, t)))
    }

    /// (interesting, boring) objects a retrain would learn from.
    pub fn training_counts(&self) -> (usize, usize) {
        self.targets().fold((0, 0), |(a, b), (_, t)| if t.interesting { (a + 1, b) } else { (a, b + 1) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(row: u32, value: LabelValue, user: &str) -> LabelEvent {
        LabelEvent {
            object: ObjectKey { file: 1, row },
            value,
            tags: vec![],
            user: user.into(),
            time: "t".into(),
            session: "s".into(),
        }
    }

    #[test]
    fn replay_with_retractions() {
        let mut book = LabelBook::default();
        book.push(1, ev(1, LabelValue::Relevance(4), "ann"));
        book.push(2, ev(1, LabelValue::Anomaly, "ann"));
        let k = ObjectKey { file: 1, row: 1 };
        assert_eq!(book.get(k).unwrap().relevance, Some(4));
        assert_eq!(book.get(k).unwrap().verdict, Some(Verdict::Anomaly));
        assert_eq!(book.last_effective(k), Some(2));
        book.push(3, ev(1, LabelValue::Retract(2), "ann"));
        assert_eq!(book.get(k).unwrap().verdict, None);
        assert_eq!(book.last_effective(k), Some(1));
        book.push(4, ev(1, LabelValue::Retract(1), "ann"));
        assert!(book.get(k).is_none(), "all retracted: unlabelled again");
        assert!(!book.is_labelled(k));
    }

    #[test]
    fn one_rule_turns_labels_into_targets() {
        let k = ObjectKey { file: 1, row: 7 };
        let target = |events: Vec<LabelValue>, tags: &[&str]| {
            let mut book = LabelBook::default();
            for (i, v) in events.into_iter().enumerate() {
                let mut e = ev(7, v, "ann");
                e.tags = tags.iter().map(|t| t.to_string()).collect();
                book.push(i as u64 + 1, e);
            }
            book.get(k).and_then(|l| l.target())
        };
        let t = |r: u8| Some(Target { relevance: r, interesting: r >= 3 });
        assert_eq!(target(vec![LabelValue::Anomaly], &[]), t(5));
        assert_eq!(target(vec![LabelValue::Normal], &[]), t(0));
        assert_eq!(target(vec![LabelValue::Unsure], &[]), None);
        assert_eq!(target(vec![LabelValue::Relevance(3)], &[]), t(3));
        assert_eq!(target(vec![LabelValue::Relevance(2)], &[]), t(2));
        // The latest judgement wins: relevance 4 then "normal" is normal...
        assert_eq!(target(vec![LabelValue::Relevance(4), LabelValue::Normal], &[]), t(0));
        // ...and "normal" then relevance 4 is interesting.
        assert_eq!(target(vec![LabelValue::Normal, LabelValue::Relevance(4)], &[]), t(4));
        // An artefact is boring whatever else was said.
        assert_eq!(target(vec![LabelValue::Anomaly], &["artefact"]), t(0));
        assert_eq!(target(vec![LabelValue::Tag], &["artefact"]), t(0));
        assert_eq!(target(vec![LabelValue::Tag], &["ring"]), None);
        // Undoing the later judgement brings the earlier one back.
        let mut book = LabelBook::default();
        book.push(1, ev(7, LabelValue::Relevance(4), "ann"));
        book.push(2, ev(7, LabelValue::Normal, "ann"));
        book.push(3, ev(7, LabelValue::Retract(2), "ann"));
        assert_eq!(book.get(k).unwrap().target(), t(4));
        assert_eq!(book.training_counts(), (1, 0));
    }

    #[test]
    fn replay_is_linear_in_events() {
        // 200,000 events on 100,000 objects: the old replay rescanned the
        // whole log per event (minutes); indexed it takes well under a second.
        let events: Vec<(u64, LabelEvent)> = (0..200_000u64)
            .map(|i| {
                let mut e = ev((i % 100_000) as u32, LabelValue::Relevance((i % 6) as u8), "ann");
                e.session = format!("s{}", i % 7);
                (i + 1, e)
            })
            .collect();
        let t = std::time::Instant::now();
        let book = LabelBook::from_events(events);
        assert!(t.elapsed().as_secs_f64() < 5.0, "replay took {:?}", t.elapsed());
        assert_eq!(book.iter().count(), 100_000);
        assert_eq!(book.labelled_count(), 100_000);
        assert_eq!(book.event(7).map(|e| e.object.row), Some(6));
        assert_eq!(book.recent().next(), Some(ObjectKey { file: 1, row: 99_999 }));
        assert_eq!(book.effective_in_session("s0").count(), 200_000usize.div_ceil(7));
        let last_s1 = (0..200_000u64).rev().find(|i| i % 7 == 1).unwrap() + 1;
        assert_eq!(book.last_effective_any("s1").map(|(id, _)| id), Some(last_s1));
    }

    #[test]
    fn users_disagree() {
        let mut book = LabelBook::default();
        book.push(1, ev(2, LabelValue::Anomaly, "ann"));
        book.push(2, ev(2, LabelValue::Normal, "bob"));
        let l = book.get(ObjectKey { file: 1, row: 2 }).unwrap();
        assert!(l.disagreement());
        assert_eq!(l.verdict, Some(Verdict::Normal), "the latest event wins overall");
    }

    #[test]
    fn tags_and_favourites() {
        let mut book = LabelBook::default();
        let mut e = ev(3, LabelValue::Tag, "ann");
        e.tags = vec!["ring".into()];
        book.push(1, e);
        book.push(2, ev(3, LabelValue::Favourite(true), "ann"));
        let l = book.get(ObjectKey { file: 1, row: 3 }).unwrap();
        assert!(l.tags.contains("ring") && l.favourite && !l.is_labelled());
        assert_eq!(book.recent().next(), Some(ObjectKey { file: 1, row: 3 }));
    }
}
