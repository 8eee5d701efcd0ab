//! The stream of candidates: objects in an ordering, through a filter,
//! pulled from the store a page at a time — never the whole catalogue.

use std::sync::Arc;

use rand::SeedableRng;
use rand::seq::SliceRandom;

use crate::features::spectral::BptClass;
use crate::store::{LabelBook, ObjectKey, Store, StoreError, Verdict};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ordering {
    /// Most anomalous first (the current score version).
    Score,
    /// Store order (file, row).
    Id,
    /// A seeded shuffle.
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

type KeyIter = Box<dyn Iterator<Item = Result<ObjectKey, StoreError>> + Send>;

/// Candidates seen so far plus a cursor into the store for the rest.
pub struct Queue {
    pub ordering: Ordering,
    pub filter: Filter,
    source: Option<KeyIter>,
    /// Candidates that passed the filter when they were pulled.
    pub items: Vec<ObjectKey>,
    pub exhausted: bool,
}

impl Queue {
    pub fn new(store: &Arc<Store>, book: &LabelBook, ordering: Ordering, filter: Filter) -> Result<Queue, StoreError> {
        let source: KeyIter = match ordering {
            Ordering::Score => {
                let ranked = store.ranked_owned()?;
                Box::new(ranked.map(|r| r.map(|(k, _)| k)))
            }
            Ordering::Id => store.image_keys_owned(),
            Ordering::Random => {
                let mut keys: Vec<ObjectKey> = store.image_keys_owned().collect::<Result<_, _>>()?;
                keys.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(0x0dd1));
                Box::new(keys.into_iter().map(Ok))
            }
            Ordering::Recent => {
                let keys: Vec<ObjectKey> = book.recent().collect();
                Box::new(keys.into_iter().map(Ok))
            }
            Ordering::Uncertain => {
                let mut scored: Vec<(ObjectKey, f32)> = store.ranked_owned()?.collect::<Result<_, _>>()?;
                scored.sort_by(|a, b| (a.1 - 0.5).abs().total_cmp(&(b.1 - 0.5).abs()).then(a.0.cmp(&b.0)));
                Box::new(scored.into_iter().map(|(k, _)| Ok(k)))
            }
        };
        Ok(Queue { ordering, filter, source: Some(source), items: Vec::new(), exhausted: false })
    }

    /// Pulls from the store until `n` candidates are known or the stream ends.
    pub fn fill(&mut self, n: usize, store: &Store, book: &LabelBook) -> Result<(), StoreError> {
        while self.items.len() < n && !self.exhausted {
            let Some(source) = self.source.as_mut() else {
                self.exhausted = true;
                break;
            };
            match source.next() {
                Some(key) => {
                    let key = key?;
                    if self.accepts(key, store, book)? {
                        self.items.push(key);
                    }
                }
                None => {
                    self.exhausted = true;
                    self.source = None;
                }
            }
        }
        Ok(())
    }

    fn accepts(&self, key: ObjectKey, store: &Store, book: &LabelBook) -> Result<bool, StoreError> {
        let labels = book.get(key);
        Ok(match &self.filter {
            Filter::All => true,
            Filter::Unlabelled => !book.is_labelled(key),
            Filter::Labelled => book.is_labelled(key),
            Filter::Favourites => labels.is_some_and(|l| l.favourite),
            Filter::Unsure => labels.is_some_and(|l| l.verdict == Some(Verdict::Unsure)),
            Filter::Tag(t) => labels.is_some_and(|l| l.tags.contains(t)),
            Filter::Bpt(class) => match store.spectrum_match(key)? {
                Some(m) => store.lines_of(m.other)?.is_some_and(|l| l.bpt == *class),
                // A spectrum-only candidate has lines of its own.
                None => store.lines_of(key)?.is_some_and(|l| l.bpt == *class),
            },
        })
    }
}
