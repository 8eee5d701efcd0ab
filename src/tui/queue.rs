//! The stream of candidates: objects in an ordering, through a filter,
//! pulled from the store a page at a time — never the whole catalogue.

use std::collections::VecDeque;

use crate::features::spectral::BptClass;
use crate::serve::{Catalog, Cursor, shared_candidate};
use crate::store::{LabelBook, ObjectKey, StoreError, Verdict};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Ordering {
    /// Most anomalous first (the current score version).
    Score,
    /// Store order (file, row).
    Id,
    /// A seeded shuffle (a permutation of the index, not a loaded list).
    Random,
    /// Most recently labelled first.
    Recent,
    /// Scores nearest the forest's decision boundary first (0.5, where
    /// scikit-learn's `decision_function` changes sign): the objects the
    /// model is least sure about, for uncertainty sampling.
    Uncertain,
}

impl Ordering {
    pub const ALL: [Ordering; 5] =
        [Ordering::Score, Ordering::Id, Ordering::Random, Ordering::Recent, Ordering::Uncertain];

    pub fn name(self) -> &'static str {
        match self {
            Ordering::Score => "score",
            Ordering::Id => "id",
            Ordering::Random => "random",
            Ordering::Recent => "recently labelled",
            Ordering::Uncertain => "most uncertain",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    All,
    Unlabelled,
    Labelled,
    Favourites,
    Unsure,
    Tag(String),
    Bpt(BptClass),
}

impl Filter {
    pub fn name(&self) -> String {
        match self {
            Filter::All => "all".into(),
            Filter::Unlabelled => "unlabelled".into(),
            Filter::Labelled => "labelled".into(),
            Filter::Favourites => "favourites".into(),
            Filter::Unsure => "unsure".into(),
            Filter::Tag(t) => format!("tag {t}"),
            Filter::Bpt(b) => format!("BPT {}", b.as_str()),
        }
    }
}

/// Keys asked from the store at a time.
const PAGE: usize = 64;

/// Candidates seen so far plus a cursor into the store for the rest.
/// A candidate's place in the stream it came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rank {
    /// 1 for the first key the ordering gave.
    pub n: u64,
    /// The key came from a retrain trial's blind interleaving of two
    /// rankings, so `n` is a place in that stream, not a rank in either.
    pub interleaved: bool,
}

pub struct Queue {
    pub ordering: Ordering,
    pub filter: Filter,
    cursor: Cursor,
    /// Keys of the current page not looked at yet, with their rank in the ordering.
    pending: VecDeque<(ObjectKey, Rank)>,
    /// Keys taken from the ordering so far.
    pulled: u64,
    /// Candidates that passed the filter (and were granted to this expert).
    pub items: Vec<ObjectKey>,
    /// Each item's rank in the ordering (None: reached by `/`).
    pub ranks: Vec<Option<Rank>>,
    pub exhausted: bool,
    /// Whose "unlabelled" this is, and the team's overlap sample.
    user: String,
    overlap: f64,
}

impl Queue {
    pub fn new(
        store: &dyn Catalog,
        book: &LabelBook,
        ordering: Ordering,
        filter: Filter,
        user: &str,
    ) -> Result<Queue, StoreError> {
        let mut pending = VecDeque::new();
        let cursor = if ordering == Ordering::Recent {
            // From the label book (labelled objects only).
            pending.extend(book.recent().enumerate().map(|(i, k)| (k, Rank { n: i as u64 + 1, interleaved: false })));
            Cursor::End
        } else {
            Cursor::Start
        };
        Ok(Queue {
            ordering,
            filter,
            cursor,
            pending,
            pulled: 0,
            items: Vec::new(),
            ranks: Vec::new(),
            exhausted: false,
            user: user.to_string(),
            overlap: store.overlap(),
        })
    }

    /// Pulls from the store until `n` candidates are known or the stream ends.
    pub fn fill(&mut self, n: usize, store: &dyn Catalog, book: &LabelBook) -> Result<(), StoreError> {
        while self.items.len() < n && !self.exhausted {
            if self.pending.is_empty() {
                if self.cursor == Cursor::End {
                    self.exhausted = true;
                    break;
                }
                let page = store.page(self.ordering, self.cursor.clone(), PAGE)?;
                self.cursor = page.next;
                for key in page.keys {
                    self.pulled += 1;
                    self.pending.push_back((key, Rank { n: self.pulled, interleaved: page.interleaved }));
                }
                continue;
            }
            // Ask for a few candidates at once: the team's claims are one call.
            let want = (n - self.items.len()).max(4);
            let mut batch = Vec::with_capacity(want);
            while batch.len() < want {
                let Some((key, rank)) = self.pending.pop_front() else { break };
                if self.accepts(key, store, book)? && !self.items.contains(&key) {
                    batch.push((key, rank));
                }
            }
            if batch.is_empty() {
                continue;
            }
            let granted = store.claim(batch.iter().map(|b| b.0).collect())?;
            for ((key, rank), ok) in batch.into_iter().zip(granted) {
                if ok {
                    self.items.push(key);
                    self.ranks.push(Some(rank));
                }
            }
        }
        Ok(())
    }

    /// Puts an object reached by `/` at `at`.
    pub fn insert(&mut self, at: usize, key: ObjectKey) {
        self.items.insert(at, key);
        self.ranks.insert(at, None);
    }

    fn accepts(&self, key: ObjectKey, store: &dyn Catalog, book: &LabelBook) -> Result<bool, StoreError> {
        let labels = book.get(key);
        Ok(match &self.filter {
            Filter::All => true,
            // In a team, the overlap sample is shown to every expert until
            // each has judged it (to measure agreement).
            Filter::Unlabelled => {
                !book.is_labelled(key)
                    || (shared_candidate(key, self.overlap)
                        && !labels.is_some_and(|l| {
                            l.by_user.iter().any(|(u, r, v)| *u == self.user && (r.is_some() || v.is_some()))
                        }))
            }
            Filter::Labelled => book.is_labelled(key),
            Filter::Favourites => labels.is_some_and(|l| l.favourite),
            Filter::Unsure => labels.is_some_and(|l| l.verdict == Some(Verdict::Unsure)),
            Filter::Tag(t) => labels.is_some_and(|l| l.tags.contains(t)),
            Filter::Bpt(class) => store.bpt(key)? == Some(*class),
        })
    }
}
