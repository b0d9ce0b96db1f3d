//! A bounded answer cache keyed by a caller-supplied key (e.g. a failure signature).

use std::collections::{HashMap, VecDeque};

use crate::Completion;

/// Keeps up to `capacity` answers; the oldest inserted is evicted first.
#[derive(Debug)]
pub struct ResponseCache {
    capacity: usize,
    entries: HashMap<String, Completion>,
    order: VecDeque<String>,
}

impl ResponseCache {
    /// A cache of `capacity` entries (0 caches nothing).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// The cached answer for `key`, marked as cached, with zero usage.
    pub fn get(&self, key: &str) -> Option<Completion> {
        self.entries.get(key).map(|c| Completion {
            cached: true,
            usage: crate::Usage::default(),
            ..c.clone()
        })
    }

    /// Stores `completion` under `key`.
    pub fn insert(&mut self, key: &str, completion: Completion) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.insert(key.to_owned(), completion).is_none() {
            self.order.push_back(key.to_owned());
        }
        while self.entries.len() > self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.entries.remove(&old);
                }
                None => break,
            }
        }
    }

    /// Number of cached answers.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Usage;

    fn c(text: &str) -> Completion {
        Completion {
            text: text.into(),
            model: "m".into(),
            usage: Usage {
                prompt_tokens: 3,
                completion_tokens: 4,
            },
            cached: false,
        }
    }

    #[test]
    fn evicts_oldest_and_marks_hits_cached() {
        let mut cache = ResponseCache::new(2);
        cache.insert("a", c("1"));
        cache.insert("b", c("2"));
        cache.insert("a", c("1b"));
        cache.insert("c", c("3"));
        assert_eq!(cache.len(), 2);
        assert!(cache.get("a").is_none());
        let hit = cache.get("b").expect("b cached");
        assert!(hit.cached);
        assert_eq!(hit.usage, Usage::default());
        assert_eq!(cache.get("c").map(|c| c.text), Some("3".into()));
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let mut cache = ResponseCache::new(0);
        cache.insert("a", c("1"));
        assert!(cache.is_empty());
    }
}
