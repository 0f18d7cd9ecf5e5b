//! `scened bench --capacity`: the most cameras a machine holds, as a short search over runs of
//! `--cameras N`, each judged by the config's `[bench]` thresholds: the search
//! ([`CapacitySearch`]), each run summed up ([`Step`]) and the answer ([`Capacity`]).

use std::fmt;

use serde::Serialize;
use serde_json::Value;

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

/// One run of `--capacity`'s search.
#[derive(Debug, Serialize)]
pub struct Step {
    pub cameras: usize,
    pub pass: bool,
    /// The thresholds it missed.
    pub failed: Vec<String>,
    /// The slowest camera's labels per second.
    pub slowest_fps: f64,
    pub e2e_p99_ms: f64,
    pub rss_peak_mb: f64,
    pub limited_by: Option<String>,
}

impl Step {
    /// The run of `cameras` cameras, summed up from the summary its `scened bench --json`
    /// printed (a failed verdict prints one too).
    pub fn from_summary(cameras: usize, summary: &Value) -> Self {
        let number = |value: &Value| value.as_f64().unwrap_or(0.0);
        let checks = summary["checks"].as_array().cloned().unwrap_or_default();
        let failed = checks
            .iter()
            .filter(|check| check["pass"] == false)
            .filter_map(|check| check["name"].as_str().map(str::to_owned))
            .collect();
        let fps = summary["cameras"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| number(&c["fps"]));
        Self {
            cameras,
            pass: summary["pass"] == true,
            failed,
            slowest_fps: fps.reduce(f64::min).unwrap_or(0.0),
            e2e_p99_ms: number(&summary["e2e_p99_ms"]),
            rss_peak_mb: number(&summary["rss_peak_mb"]),
            limited_by: summary["limited_by"].as_str().map(str::to_owned),
        }
    }
}

/// The verdict and figures of a step, as its progress line ends.
impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.pass { "pass" } else { "FAIL" };
        write!(
            f,
            "{verdict}: slowest camera {:.1} fps, p99 {:.1} ms, RSS peak {:.1} MB{}{}",
            self.slowest_fps,
            self.e2e_p99_ms,
            self.rss_peak_mb,
            if self.failed.is_empty() {
                String::new()
            } else {
                format!("; missed {}", self.failed.join(", "))
            },
            self.limited_by
                .as_ref()
                .map_or_else(String::new, |limit| format!("; limited by {limit}")),
        )
    }
}

/// `--capacity`'s answer.
#[derive(Debug, Serialize)]
pub struct Capacity {
    /// The most cameras whose run passed; 0 if one camera did not.
    pub cameras: usize,
    /// What held back the run of one camera more, when one failed.
    pub limited_by: Option<String>,
    pub steps: Vec<Step>,
    /// The fewest cameras that failed.
    #[serde(skip)]
    over: Option<usize>,
}

impl Capacity {
    /// The answer of a finished `search`, whose runs were `steps`.
    pub fn new(search: &CapacitySearch, steps: Vec<Step>) -> Self {
        let over = search.failed();
        let limited_by = steps
            .iter()
            .find(|step| Some(step.cameras) == over)
            .and_then(|step| step.limited_by.clone());
        Self {
            cameras: search.capacity(),
            limited_by,
            steps,
            over,
        }
    }
}

/// The answer in one line.
impl fmt::Display for Capacity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let limit = self.limited_by.as_deref().unwrap_or("nothing measured");
        match self.over {
            Some(over) => write!(
                f,
                "capacity: {} camera(s); {over} did not pass, limited by {limit}",
                self.cameras
            ),
            None => write!(
                f,
                "capacity: {} camera(s), the most tried, all passing",
                self.cameras
            ),
        }
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

    #[test]
    fn a_step_is_summed_up_from_its_summary_and_the_answer_names_the_limit() {
        let summary = serde_json::json!({
            "pass": false,
            "checks": [{"name": "fps", "pass": true}, {"name": "e2e_p99_ms", "pass": false}],
            "cameras": [{"fps": 14.5}, {"fps": 9.3}],
            "e2e_p99_ms": 120.0,
            "rss_peak_mb": 80.5,
            "limited_by": "inference",
        });
        let failed = Step::from_summary(2, &summary);
        assert_eq!(
            failed.to_string(),
            "FAIL: slowest camera 9.3 fps, p99 120.0 ms, RSS peak 80.5 MB; missed e2e_p99_ms; \
             limited by inference"
        );
        let passed = Step::from_summary(1, &serde_json::json!({"pass": true}));
        assert_eq!(
            passed.to_string(),
            "pass: slowest camera 0.0 fps, p99 0.0 ms, RSS peak 0.0 MB"
        );
        let mut search = CapacitySearch::new(64);
        search.record(1, true);
        search.record(2, false);
        let answer = Capacity::new(&search, vec![passed, failed]);
        assert_eq!(
            answer.to_string(),
            "capacity: 1 camera(s); 2 did not pass, limited by inference"
        );
        let json = serde_json::to_value(&answer).unwrap();
        assert_eq!(json["cameras"], 1);
        assert_eq!(json["steps"].as_array().map(Vec::len), Some(2));
        assert!(json.get("over").is_none(), "{json}");
    }
}
