//! The per-connection set of nodes already tried, so retries move on to other nodes.

/// Node indexes (into [`crate::Balancer::nodes`]) already tried by one connection.
///
/// The first 64 indexes live in an inline bitmask, so `Tried::default()` and retries over
/// typical upstreams never allocate; larger indexes spill into a heap bitmap.
#[derive(Clone, Debug, Default)]
pub struct Tried {
    low: u64,
    high: Vec<u64>,
    len: usize,
}

impl Tried {
    /// Marks `index` as tried; inserting it again changes nothing.
    pub fn insert(&mut self, index: usize) {
        if self.contains(index) {
            return;
        }
        if index < 64 {
            self.low |= 1 << index;
        } else {
            let (word, bit) = ((index - 64) / 64, index % 64);
            if word >= self.high.len() {
                self.high.resize(word + 1, 0);
            }
            self.high[word] |= 1 << bit;
        }
        self.len += 1;
    }

    pub fn contains(&self, index: usize) -> bool {
        if index < 64 {
            return self.low & (1 << index) != 0;
        }
        let (word, bit) = ((index - 64) / 64, index % 64);
        self.high.get(word).is_some_and(|w| w & (1 << bit) != 0)
    }

    /// How many distinct indexes were inserted.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::Tried;

    #[test]
    fn default_is_empty_and_unallocated() {
        let tried = Tried::default();
        assert!(tried.is_empty());
        assert_eq!(tried.high.capacity(), 0);
        assert!(!tried.contains(0));
        assert!(!tried.contains(1000));
    }

    #[test]
    fn low_indexes_stay_inline() {
        let mut tried = Tried::default();
        for i in [0, 5, 63, 5] {
            tried.insert(i);
        }
        assert_eq!(tried.len(), 3);
        assert!(tried.contains(0) && tried.contains(5) && tried.contains(63));
        assert!(!tried.contains(1) && !tried.contains(64));
        assert_eq!(tried.high.capacity(), 0);
    }

    #[test]
    fn high_indexes_spill_and_count_once() {
        let mut tried = Tried::default();
        for i in [64, 127, 128, 1000, 1000, 3] {
            tried.insert(i);
        }
        assert_eq!(tried.len(), 5);
        for i in [64, 127, 128, 1000, 3] {
            assert!(tried.contains(i), "{i}");
        }
        for i in [65, 129, 999, 1001, 4] {
            assert!(!tried.contains(i), "{i}");
        }
    }
}
