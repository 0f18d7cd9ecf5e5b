//! `scened bench --capacity`: the most cameras a machine holds, as a short search over runs of
//! `--cameras N`, each judged by the config's `[bench]` thresholds.

/// The search: the count doubles from 1 while runs pass, then the gap between the most that
/// passed and the fewest that failed is halved until they are neighbours: about 2 log2 N runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapacitySearch {
    /// The most cameras it tries.
    max: usize,
    /// The most cameras that passed, 0 before any did.
    passed: usize,
    /// The fewest cameras that failed, if any did.
    failed: Option<usize>,
}

impl CapacitySearch {
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            passed: 0,
            failed: None,
        }
    }

    /// How many cameras to run next; `None` once the answer is known.
    pub fn next(&self) -> Option<usize> {
        match self.failed {
            Some(failed) => (failed - self.passed > 1).then(|| (self.passed + failed) / 2),
            None if self.passed >= self.max => None,
            None => Some((self.passed * 2).clamp(1, self.max)),
        }
    }

    /// What the run of `cameras` cameras did.
    pub fn record(&mut self, cameras: usize, pass: bool) {
        if pass {
            self.passed = self.passed.max(cameras);
        } else {
            self.failed = Some(self.failed.map_or(cameras, |failed| failed.min(cameras)));
        }
    }

    /// The most cameras that passed: the capacity once [`next`](Self::next) is `None`.
    pub fn capacity(&self) -> usize {
        self.passed
    }

    /// The fewest cameras that failed, whose run says what the limit is.
    pub fn failed(&self) -> Option<usize> {
        self.failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the search against a machine that holds `holds` cameras; the counts it tried.
    fn search(holds: usize, max: usize) -> (usize, Vec<usize>) {
        let mut search = CapacitySearch::new(max);
        let mut tried = Vec::new();
        while let Some(cameras) = search.next() {
            tried.push(cameras);
            search.record(cameras, cameras <= holds);
        }
        (search.capacity(), tried)
    }

    #[test]
    fn it_doubles_then_halves_the_gap() {
        assert_eq!(search(5, 64), (5, vec![1, 2, 4, 8, 6, 5]));
        assert_eq!(search(8, 64), (8, vec![1, 2, 4, 8, 16, 12, 10, 9]));
        assert_eq!(search(1, 64), (1, vec![1, 2]));
        assert_eq!(search(0, 64), (0, vec![1]));
        // A machine that holds everything it may try stops at the most.
        assert_eq!(search(100, 6), (6, vec![1, 2, 4, 6]));
    }
}
