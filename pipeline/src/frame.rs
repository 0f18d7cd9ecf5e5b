//! The items that flow between stages, and the stamp each one carries from capture.

use std::time::{Duration, Instant, SystemTime};

use image::RgbImage;
use tract_tflite::prelude::Tensor;

/// Identifies a captured frame: every item derived from it carries the same stamp, so a
/// label can be traced back to the exact frame and moment it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// Position in the source's output, from 0, with no gaps.
    pub seq: u64,
    /// When the source got the frame, before decoding.
    pub captured_at: Instant,
}

impl Stamp {
    /// Time from capture to `now`; zero if `now` is earlier.
    pub fn age_at(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.captured_at)
    }
}

/// Any item the runner moves: it can tell which frame it came from.
pub trait Stamped {
    fn stamp(&self) -> Stamp;
}

/// A decoded frame, as a source produces it.
#[derive(Clone, Debug)]
pub struct Frame {
    pub seq: u64,
    pub captured_at: Instant,
    pub image: RgbImage,
}

impl Stamped for Frame {
    fn stamp(&self) -> Stamp {
        Stamp {
            seq: self.seq,
            captured_at: self.captured_at,
        }
    }
}

/// A frame as the model takes it, as the resize stage produces it.
#[derive(Clone, Debug)]
pub struct ModelInput {
    pub stamp: Stamp,
    /// `[1, height, width, 3]`, normalized and encoded per the model's input.
    pub tensor: Tensor,
}

impl Stamped for ModelInput {
    fn stamp(&self) -> Stamp {
        self.stamp
    }
}

/// Class probabilities for one frame, as the inference stage produces them.
#[derive(Clone, Debug, PartialEq)]
pub struct Scores {
    pub stamp: Stamp,
    /// Softmax probabilities, one per class, in the model's label order.
    pub probs: Vec<f32>,
}

impl Stamped for Scores {
    fn stamp(&self) -> Stamp {
        self.stamp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_never_goes_negative() {
        let stamp = Stamp {
            seq: 0,
            captured_at: Instant::now(),
        };
        let later = stamp.captured_at + Duration::from_millis(5);
        assert_eq!(stamp.age_at(later), Duration::from_millis(5));
        let earlier = stamp.captured_at - Duration::from_millis(5);
        assert_eq!(stamp.age_at(earlier), Duration::ZERO);
    }

    #[test]
    fn a_frame_stamp_is_its_seq_and_capture_time() {
        let frame = Frame {
            seq: 7,
            captured_at: Instant::now(),
            image: RgbImage::new(2, 2),
        };
        let stamp = frame.stamp();
        assert_eq!((stamp.seq, stamp.captured_at), (7, frame.captured_at));
    }
}

/// How many of a frame's best scores go with its label.
pub const TOP: usize = 5;

/// The smoothed label after one frame. Labels are indices among what the smoother ranks: the
/// groups when there are groups, else the model's classes ([`crate::labels::Names`] names them).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Smoothed {
    pub stamp: Stamp,
    /// The leading label; `None` when its score is below `labels.min_score` (`unknown`).
    pub label: Option<usize>,
    /// The leading label's score, what the smoother ranks by: the averaged probability
    /// (`ema`), its share of the window's votes (`window`), this frame's probability
    /// (`hysteresis`). With groups, probabilities are the groups' sums.
    pub score: f32,
    /// The model class behind the leading label: with groups, its member with the highest
    /// probability in this frame; else the label itself.
    pub class: usize,
    /// The shown label (`unknown` included) differs from the previous frame's, or is the first.
    pub changed: bool,
    /// This frame's best scores among what the smoother ranks, before smoothing.
    pub top: Top,
}

/// A frame's best [`TOP`] scores, best first (the lower index first on a tie).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Top {
    best: [(usize, f32); TOP],
    len: usize,
}

impl Top {
    /// The best of `scores`, in one pass with no allocation: this runs on every frame.
    pub fn of(scores: &[f32]) -> Self {
        let mut top = Self {
            best: [(0, 0.0); TOP],
            len: 0,
        };
        for (index, &score) in scores.iter().enumerate() {
            let at = top.best[..top.len]
                .iter()
                .position(|&(_, best)| score > best)
                .unwrap_or(top.len);
            if at < TOP {
                let len = (top.len + 1).min(TOP);
                top.best.copy_within(at..len - 1, at + 1);
                top.best[at] = (index, score);
                top.len = len;
            }
        }
        top
    }

    /// The best `(label, score)`; `(0, 0.0)` of no scores.
    pub fn best(&self) -> (usize, f32) {
        self.best[0]
    }

    /// `(label, score)`, best first.
    pub fn iter(&self) -> impl Iterator<Item = (usize, f32)> + '_ {
        self.best[..self.len].iter().copied()
    }
}

impl Stamped for Smoothed {
    fn stamp(&self) -> Stamp {
        self.stamp
    }
}

/// A smoothed label as it leaves the pipeline: what the sink and every output get.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelEvent {
    /// The frame's sequence number at the source.
    pub frame: u64,
    /// When the frame was captured, by the wall clock.
    pub captured: SystemTime,
    /// The model class behind the label, in the model's label order: with groups, the
    /// label's member that scored highest in this frame.
    pub class: usize,
    /// A group's name with groups, else a class's; `unknown` below `labels.min_score`.
    pub label: String,
    /// The smoother's score for `label`.
    pub score: f32,
    /// Capture to the sink.
    pub latency: Duration,
    /// The label differs from the previous frame's (or is the first).
    pub changed: bool,
}

/// A frame's smoothed result as it left the pipeline at `at`, `latency` after its capture:
/// what an output that follows every frame (`/status`) gets.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Labelled {
    pub smoothed: Smoothed,
    pub latency: Duration,
    pub at: Instant,
}
