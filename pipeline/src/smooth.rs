//! Turns per-frame class scores into a steady label, so one odd frame does not flip it.
//!
//! With groups ([`crate::labels`]) the smoother first sums each group's members, once per
//! frame, and ranks the groups; below `labels.min_score` the label is `unknown`.

use ringbuf::storage::Heap;
use ringbuf::traits::{Consumer, Observer, RingBuffer};
use ringbuf::LocalRb;
use serde::{Deserialize, Serialize};

use crate::error::Invalid;
use crate::frame::{Scores, Smoothed, Top};
use crate::labels::{Groups, Labels, DEFAULT_MIN_SCORE};
use crate::stage::{Stage, StageError};

pub const DEFAULT_EMA_ALPHA: f32 = 0.3;
pub const DEFAULT_WINDOW_FRAMES: usize = 5;
pub const DEFAULT_HYSTERESIS_MARGIN: f32 = 0.1;
pub const DEFAULT_MIN_DWELL_FRAMES: u32 = 3;
/// Ten minutes at 30 fps: a longer window is a configuration mistake.
pub const MAX_WINDOW_FRAMES: usize = 18_000;

/// How scores are smoothed over time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SmoothConfig {
    /// Exponential moving average of each class's probability; the label is its top-1.
    Ema(EmaConfig),
    /// Majority vote over the last `frames` top-1 labels; a tie goes to the most recent.
    Window(WindowConfig),
    /// The label stays until another one leads it by `margin` for `min_dwell_frames` frames
    /// in a row.
    Hysteresis(HysteresisConfig),
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmaConfig {
    /// Weight of the newest frame, in (0, 1]: 1 follows every frame, 0.1 changes slowly.
    pub alpha: f32,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WindowConfig {
    /// Frames that vote, 1 to 18000.
    pub frames: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HysteresisConfig {
    /// Probability lead a challenger needs over the current label, in [0, 1].
    pub margin: f32,
    /// Consecutive frames the challenger must lead, at least 1.
    pub min_dwell_frames: u32,
}

impl Default for EmaConfig {
    fn default() -> Self {
        Self {
            alpha: DEFAULT_EMA_ALPHA,
        }
    }
}

impl Default for WindowConfig {
    fn default() -> Self {
        Self {
            frames: DEFAULT_WINDOW_FRAMES,
        }
    }
}

impl Default for HysteresisConfig {
    fn default() -> Self {
        Self {
            margin: DEFAULT_HYSTERESIS_MARGIN,
            min_dwell_frames: DEFAULT_MIN_DWELL_FRAMES,
        }
    }
}

/// Hysteresis: the default model, int8 Lite0, sees the demo clip's cat as a near-tie between
/// tiger cat and Egyptian cat, and the top-1 alternates frame to frame; an average (EMA) of
/// two near-equal probabilities alternates with it, and so does a vote over a window (the
/// label changed 2 times with EMA 0.3 and 4 with a window of 5 on the cat's 30 frames, played
/// as `config/replay.toml` plays them), while a challenger that must lead by 0.1 for 3 frames
/// in a row never does — and a real scene change still shows after 3 frames (0.2 s at the
/// clip's 15 fps).
impl Default for SmoothConfig {
    fn default() -> Self {
        Self::Hysteresis(HysteresisConfig::default())
    }
}

impl SmoothConfig {
    pub fn check(&self) -> Result<(), Invalid> {
        match *self {
            // Written so NaN fails too.
            Self::Ema(EmaConfig { alpha }) => Invalid::check(
                alpha > 0.0 && alpha <= 1.0,
                "smooth.alpha",
                "in (0, 1]",
                alpha,
            ),
            Self::Window(WindowConfig { frames }) => Invalid::check(
                (1..=MAX_WINDOW_FRAMES).contains(&frames),
                "smooth.frames",
                "1 to 18000",
                frames,
            ),
            Self::Hysteresis(HysteresisConfig {
                margin,
                min_dwell_frames,
            }) => {
                let margin_ok = (0.0..=1.0).contains(&margin);
                Invalid::check(margin_ok, "smooth.margin", "in [0, 1]", margin)?;
                Invalid::check(
                    min_dwell_frames >= 1,
                    "smooth.min_dwell_frames",
                    "at least 1",
                    min_dwell_frames,
                )
            }
        }
    }

    pub fn build(&self) -> Result<Smoother, Invalid> {
        self.check()?;
        let mode = match *self {
            Self::Ema(EmaConfig { alpha }) => Mode::Ema {
                alpha,
                average: Vec::new(),
            },
            Self::Window(WindowConfig { frames }) => Mode::Window {
                votes: LocalRb::new(frames),
            },
            Self::Hysteresis(HysteresisConfig {
                margin,
                min_dwell_frames,
            }) => Mode::Hysteresis {
                margin,
                min_dwell_frames,
                challenger: None,
            },
        };
        Ok(Smoother {
            mode,
            leader: None,
            shown: None,
            classes: None,
            groups: None,
            min_score: DEFAULT_MIN_SCORE,
            ranked: Vec::new(),
        })
    }
}

/// Scores the smoother cannot use; the frame is skipped and the state left as it was.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum ScoresError {
    #[error("frame {seq}: no class scores")]
    Empty { seq: u64 },
    #[error("frame {seq}: score of class {class} is not a number between 0 and 1")]
    OutOfRange { seq: u64, class: usize },
    #[error("frame {seq}: {got} class scores, earlier frames had {expected}")]
    ClassCount {
        seq: u64,
        got: usize,
        expected: usize,
    },
}

pub struct Smoother {
    mode: Mode,
    /// The leading label after the last frame, shown or not.
    leader: Option<usize>,
    /// The label shown after the last frame (`Some(None)`: `unknown`); `None` before any.
    shown: Option<Option<usize>>,
    classes: Option<usize>,
    groups: Option<Groups>,
    min_score: f32,
    /// This frame's group scores, reused from frame to frame.
    ranked: Vec<f32>,
}

enum Mode {
    Ema {
        alpha: f32,
        average: Vec<f32>,
    },
    Window {
        /// The last top-1s; a local (single-thread) ring: the smoother runs on one thread.
        votes: LocalRb<Heap<usize>>,
    },
    Hysteresis {
        margin: f32,
        min_dwell_frames: u32,
        /// The class currently leading by the margin, and for how many frames in a row.
        challenger: Option<(usize, u32)>,
    },
}

impl Smoother {
    /// Ranks `labels` (their groups, if any) and shows `unknown` below their `min_score`;
    /// scores must then have one probability per model class.
    pub fn with_labels(mut self, labels: Labels) -> Self {
        self.classes = Some(labels.classes());
        self.groups = labels.groups;
        self.min_score = labels.min_score;
        self
    }

    pub fn update(&mut self, scores: &Scores) -> Result<Smoothed, ScoresError> {
        self.check(scores)?;
        let probs = &scores.probs;
        let ranked: &[f32] = match &self.groups {
            Some(groups) => {
                groups.score(probs, &mut self.ranked);
                &self.ranked
            }
            None => probs,
        };
        let top = Top::of(ranked);
        let (first, _) = top.best();
        let (leader, score) = match &mut self.mode {
            Mode::Ema { alpha, average } => {
                if average.is_empty() {
                    average.extend_from_slice(ranked);
                } else {
                    for (avg, p) in average.iter_mut().zip(ranked) {
                        *avg += *alpha * (p - *avg);
                    }
                }
                top1(average)
            }
            Mode::Window { votes } => {
                votes.push_overwrite(first);
                let (winner, count) = majority(votes.iter().copied()).unwrap_or((first, 1));
                (winner, count as f32 / votes.occupied_len() as f32)
            }
            Mode::Hysteresis {
                margin,
                min_dwell_frames,
                challenger,
            } => {
                let current = self.leader.unwrap_or(first);
                let leads = first != current && ranked[first] - ranked[current] >= *margin;
                *challenger = match *challenger {
                    _ if !leads => None,
                    Some((label, frames)) if label == first => Some((label, frames + 1)),
                    _ => Some((first, 1)),
                };
                match *challenger {
                    Some((label, frames)) if frames >= *min_dwell_frames => {
                        *challenger = None;
                        (label, ranked[label])
                    }
                    _ => (current, ranked[current]),
                }
            }
        };
        self.leader = Some(leader);
        let label = (score >= self.min_score).then_some(leader);
        let changed = self.shown != Some(label);
        self.shown = Some(label);
        let class = match &self.groups {
            Some(groups) => groups.leading_member(leader, probs),
            None => leader,
        };
        Ok(Smoothed {
            stamp: scores.stamp,
            label,
            score,
            class,
            changed,
            top,
        })
    }

    fn check(&mut self, scores: &Scores) -> Result<(), ScoresError> {
        let seq = scores.stamp.seq;
        if scores.probs.is_empty() {
            return Err(ScoresError::Empty { seq });
        }
        if let Some(class) = scores.probs.iter().position(|p| !(0.0..=1.0).contains(p)) {
            return Err(ScoresError::OutOfRange { seq, class });
        }
        let expected = *self.classes.get_or_insert(scores.probs.len());
        if scores.probs.len() != expected {
            return Err(ScoresError::ClassCount {
                seq,
                got: scores.probs.len(),
                expected,
            });
        }
        Ok(())
    }
}

impl Stage for Smoother {
    type In = Scores;
    type Out = Smoothed;

    fn process(&mut self, input: Scores) -> Result<Smoothed, StageError> {
        self.update(&input).map_err(StageError::item)
    }
}

/// Index and value of the highest score; the first one on a tie. `scores` is not empty.
fn top1(scores: &[f32]) -> (usize, f32) {
    scores
        .iter()
        .copied()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, s)| {
            if s > best.1 {
                (i, s)
            } else {
                best
            }
        })
}

/// The most frequent vote and its count, oldest first in `votes`; a tie goes to the one voted
/// last.
fn majority(votes: impl Iterator<Item = usize>) -> Option<(usize, usize)> {
    // (class, votes, position of its latest vote); windows are short, a scan is enough.
    let mut tally: Vec<(usize, usize, usize)> = Vec::new();
    for (position, class) in votes.enumerate() {
        match tally.iter_mut().find(|entry| entry.0 == class) {
            Some(entry) => {
                entry.1 += 1;
                entry.2 = position;
            }
            None => tally.push((class, 1, position)),
        }
    }
    tally
        .into_iter()
        .max_by_key(|&(_, count, latest)| (count, latest))
        .map(|(class, count, _)| (class, count))
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Instant;

    use super::*;
    use crate::frame::Stamp;
    use crate::labels::LabelMap;

    fn scores(seq: u64, probs: &[f32]) -> Scores {
        Scores {
            stamp: Stamp {
                seq,
                captured_at: Instant::now(),
            },
            probs: probs.to_vec(),
        }
    }

    /// Two classes: `p` is the probability of class 1.
    fn two_class(ps: &[f32]) -> Vec<Scores> {
        ps.iter()
            .enumerate()
            .map(|(i, &p)| scores(i as u64, &[1.0 - p, p]))
            .collect()
    }

    fn labels(config: SmoothConfig, frames: &[Scores]) -> Vec<usize> {
        let mut smoother = config.build().expect("valid config");
        frames
            .iter()
            .map(|s| {
                let out = smoother.update(s).expect("valid scores");
                out.label.expect("min_score 0 shows every label")
            })
            .collect()
    }

    fn changes(labels: &[usize]) -> usize {
        labels.windows(2).filter(|w| w[0] != w[1]).count()
    }

    /// Class 0 throughout, with a one-frame spike of class 1 every fourth frame.
    fn flickering() -> Vec<Scores> {
        two_class(&[0.2, 0.3, 0.2, 0.7, 0.2, 0.3, 0.2, 0.8, 0.2, 0.3, 0.2, 0.7])
    }

    #[test]
    fn raw_top1_flickers_on_the_crafted_sequence() {
        // alpha = 1 is no smoothing: the sequence really does flicker.
        let raw = labels(SmoothConfig::Ema(EmaConfig { alpha: 1.0 }), &flickering());
        assert_eq!(changes(&raw), 5);
    }

    #[test]
    fn every_mode_suppresses_one_frame_spikes() {
        for config in [
            SmoothConfig::Ema(EmaConfig { alpha: 0.3 }),
            SmoothConfig::Window(WindowConfig { frames: 3 }),
            SmoothConfig::Hysteresis(HysteresisConfig {
                margin: 0.1,
                min_dwell_frames: 2,
            }),
        ] {
            let smoothed = labels(config.clone(), &flickering());
            assert_eq!(smoothed, vec![0; 12], "{config:?}");
        }
    }

    #[test]
    fn every_mode_follows_a_lasting_change() {
        let lasting = two_class(&[0.1, 0.1, 0.1, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9]);
        for (config, switch_at) in [
            (SmoothConfig::Ema(EmaConfig { alpha: 0.4 }), 4),
            (SmoothConfig::Window(WindowConfig { frames: 3 }), 4),
            (
                SmoothConfig::Hysteresis(HysteresisConfig {
                    margin: 0.5,
                    min_dwell_frames: 3,
                }),
                5,
            ),
        ] {
            let smoothed = labels(config.clone(), &lasting);
            let expected: Vec<usize> = (0..9).map(|i| usize::from(i >= switch_at)).collect();
            assert_eq!(smoothed, expected, "{config:?}");
        }
    }

    #[test]
    fn window_ties_go_to_the_most_recent_vote() {
        let frames = two_class(&[0.1, 0.1, 0.9, 0.9]);
        assert_eq!(
            labels(SmoothConfig::Window(WindowConfig { frames: 4 }), &frames),
            [0, 0, 0, 1]
        );
        let frames = two_class(&[0.9, 0.9, 0.1, 0.1]);
        assert_eq!(
            labels(SmoothConfig::Window(WindowConfig { frames: 4 }), &frames),
            [1, 1, 1, 0]
        );
    }

    #[test]
    fn hysteresis_needs_the_margin_on_consecutive_frames() {
        let config = SmoothConfig::Hysteresis(HysteresisConfig {
            margin: 0.2,
            min_dwell_frames: 3,
        });
        // Class 1 leads, but by less than the margin (0.58 - 0.42 = 0.16).
        let narrow = two_class(&[0.1, 0.58, 0.58, 0.58, 0.58]);
        assert_eq!(labels(config.clone(), &narrow), [0; 5]);
        // Enough margin, but the streak breaks after two frames and restarts.
        let broken = two_class(&[0.1, 0.9, 0.9, 0.1, 0.9, 0.9, 0.9]);
        assert_eq!(labels(config, &broken), [0, 0, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn hysteresis_resets_the_streak_when_the_challenger_changes() {
        let config = SmoothConfig::Hysteresis(HysteresisConfig {
            margin: 0.3,
            min_dwell_frames: 2,
        });
        let frames = [
            scores(0, &[0.8, 0.1, 0.1]),
            scores(1, &[0.1, 0.8, 0.1]),
            scores(2, &[0.1, 0.1, 0.8]),
            scores(3, &[0.1, 0.1, 0.8]),
        ];
        assert_eq!(labels(config, &frames), [0, 0, 0, 2]);
    }

    #[test]
    fn the_first_label_and_every_switch_are_changes() {
        let mut smoother = SmoothConfig::Window(WindowConfig { frames: 1 })
            .build()
            .expect("valid");
        let changed: Vec<bool> = two_class(&[0.9, 0.9, 0.1])
            .iter()
            .map(|s| smoother.update(s).expect("valid").changed)
            .collect();
        assert_eq!(changed, [true, false, true]);
    }

    #[test]
    fn ema_score_is_the_averaged_probability() {
        let mut smoother = SmoothConfig::Ema(EmaConfig { alpha: 0.5 })
            .build()
            .expect("valid");
        smoother.update(&scores(0, &[0.8, 0.2])).expect("valid");
        let out = smoother.update(&scores(1, &[0.4, 0.6])).expect("valid");
        assert_eq!(out.label, Some(0));
        assert!((out.score - 0.6).abs() < 1e-6, "{}", out.score);
    }

    #[test]
    fn bad_scores_are_refused_and_leave_the_state_alone() {
        let mut smoother = SmoothConfig::default().build().expect("valid");
        smoother.update(&scores(0, &[0.9, 0.1])).expect("valid");
        assert_eq!(
            smoother.update(&scores(1, &[])),
            Err(ScoresError::Empty { seq: 1 })
        );
        assert_eq!(
            smoother.update(&scores(2, &[0.5, f32::NAN])),
            Err(ScoresError::OutOfRange { seq: 2, class: 1 })
        );
        assert_eq!(
            smoother.update(&scores(3, &[0.5, 0.3, 0.2])),
            Err(ScoresError::ClassCount {
                seq: 3,
                got: 3,
                expected: 2
            })
        );
        let out = smoother.update(&scores(4, &[0.9, 0.1])).expect("valid");
        assert_eq!((out.label, out.changed), (Some(0), false));
        let err = smoother.process(scores(5, &[])).expect_err("empty scores");
        assert!(matches!(err, StageError::Item(_)));
    }

    /// Classes `a1`, `a2` (group `A`) and `b` (group `B`).
    fn grouped(config: SmoothConfig, min_score: f32) -> Smoother {
        let classes: Vec<String> = ["a1", "a2", "b"].map(String::from).to_vec();
        let map: LabelMap = [("A", &["a1", "a2"][..]), ("B", &["b"])]
            .into_iter()
            .map(|(group, members)| {
                (
                    group.into(),
                    members.iter().map(|m| m.to_string()).collect(),
                )
            })
            .collect();
        let groups = Groups::resolve(&map, &classes, Path::new("groups.toml"), "m").unwrap();
        let labels = Labels::new(classes, Some(groups), min_score);
        config.build().expect("valid").with_labels(labels)
    }

    #[test]
    fn groups_are_ranked_by_their_members_sum() {
        // `b` is each frame's top class, but `a1` + `a2` outweigh it.
        let frames = [scores(0, &[0.2, 0.35, 0.45]), scores(1, &[0.4, 0.2, 0.4])];
        for config in [
            SmoothConfig::Ema(EmaConfig { alpha: 0.5 }),
            SmoothConfig::Window(WindowConfig { frames: 3 }),
            SmoothConfig::Hysteresis(HysteresisConfig::default()),
        ] {
            let mut smoother = grouped(config.clone(), 0.0);
            let first = smoother.update(&frames[0]).expect("valid");
            // Group `A`, led by its best member in this frame, `a2`.
            assert_eq!((first.label, first.class), (Some(0), 1), "{config:?}");
            let second = smoother.update(&frames[1]).expect("valid");
            assert_eq!((second.label, second.class), (Some(0), 0), "{config:?}");
            let top: Vec<(usize, f32)> = second.top.iter().collect();
            assert_eq!(top.len(), 2);
            assert_eq!(top[0].0, 0);
            assert!((top[0].1 - 0.6).abs() < 1e-6, "{top:?}");
        }
        // Scores are checked against the model's classes, not the groups.
        let mut smoother = grouped(SmoothConfig::default(), 0.0);
        assert_eq!(
            smoother.update(&scores(0, &[0.5, 0.5])),
            Err(ScoresError::ClassCount {
                seq: 0,
                got: 2,
                expected: 3
            })
        );
    }

    #[test]
    fn below_min_score_the_label_is_unknown_by_the_score_each_kind_ranks_by() {
        let labels = |config: SmoothConfig, min_score: f32, frames: &[Scores]| {
            let mut smoother = grouped(config, min_score);
            frames
                .iter()
                .map(|s| {
                    let out = smoother.update(s).expect("valid");
                    (out.label, out.changed)
                })
                .collect::<Vec<_>>()
        };
        let (a, b) = (Some(0), Some(1));
        // Group A at 0.9, then two frames where nothing stands out, then B clearly.
        let frames = [
            scores(0, &[0.5, 0.4, 0.1]),
            scores(1, &[0.25, 0.2, 0.55]),
            scores(2, &[0.25, 0.2, 0.55]),
            scores(3, &[0.05, 0.05, 0.9]),
            scores(4, &[0.05, 0.05, 0.9]),
        ];
        // EMA (alpha 0.5): A's average 0.9, 0.675, then 0.5625 (still leading, but below 0.6);
        // B's passes it at frame 3 with 0.66875.
        assert_eq!(
            labels(SmoothConfig::Ema(EmaConfig { alpha: 0.5 }), 0.6, &frames),
            [(a, true), (a, false), (None, true), (b, true), (b, false)]
        );
        // Window of 4: A 1/1, then a tie won by the latest vote, B 1/2; B 2/3, 3/4, 4/4.
        assert_eq!(
            labels(
                SmoothConfig::Window(WindowConfig { frames: 4 }),
                0.6,
                &frames
            ),
            [(a, true), (None, true), (b, true), (b, false), (b, false)]
        );
        // Hysteresis: A holds (B leads by 0.1 < margin 0.2) with this frame's 0.45 < 0.6, then
        // B takes over after two frames of a lead.
        let hysteresis = SmoothConfig::Hysteresis(HysteresisConfig {
            margin: 0.2,
            min_dwell_frames: 2,
        });
        assert_eq!(
            labels(hysteresis, 0.6, &frames),
            [
                (a, true),
                (None, true),
                (None, false),
                (None, false),
                (b, true)
            ]
        );
        // The default, 0, never says unknown.
        let never = labels(SmoothConfig::default(), DEFAULT_MIN_SCORE, &frames);
        assert!(never.iter().all(|(label, _)| label.is_some()), "{never:?}");
    }

    #[test]
    fn unknown_works_without_groups_too() {
        let mut smoother = SmoothConfig::Ema(EmaConfig { alpha: 1.0 })
            .build()
            .expect("valid")
            .with_labels(Labels::new(vec!["x".into(), "y".into()], None, 0.7));
        let shown: Vec<Option<usize>> = [[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]]
            .iter()
            .enumerate()
            .map(|(i, p)| smoother.update(&scores(i as u64, p)).expect("valid").label)
            .collect();
        assert_eq!(shown, [Some(0), None, Some(1)]);
    }

    #[test]
    fn window_score_is_the_vote_share() {
        let mut smoother = SmoothConfig::Window(WindowConfig { frames: 4 })
            .build()
            .expect("valid");
        let shares: Vec<f32> = two_class(&[0.1, 0.9, 0.1, 0.1, 0.1])
            .iter()
            .map(|s| smoother.update(s).expect("valid").score)
            .collect();
        assert_eq!(shares, [1.0, 0.5, 2.0 / 3.0, 0.75, 0.75]);
    }

    #[test]
    fn top_keeps_the_best_five_best_first_the_lower_index_on_a_tie() {
        let top: Vec<(usize, f32)> = Top::of(&[0.1, 0.3, 0.05, 0.3, 0.0, 0.2, 0.01, 0.04])
            .iter()
            .collect();
        assert_eq!(top, [(1, 0.3), (3, 0.3), (5, 0.2), (0, 0.1), (2, 0.05)]);
        let few: Vec<(usize, f32)> = Top::of(&[0.4, 0.6]).iter().collect();
        assert_eq!(few, [(1, 0.6), (0, 0.4)]);
    }

    #[test]
    fn build_names_the_bad_field() {
        let cases = [
            (
                SmoothConfig::Ema(EmaConfig { alpha: 0.0 }),
                "smooth.alpha must be in (0, 1], got 0",
            ),
            (
                SmoothConfig::Ema(EmaConfig { alpha: f32::NAN }),
                "smooth.alpha must be in (0, 1], got NaN",
            ),
            (
                SmoothConfig::Window(WindowConfig { frames: 0 }),
                "smooth.frames must be 1 to 18000, got 0",
            ),
            (
                SmoothConfig::Hysteresis(HysteresisConfig {
                    margin: 1.5,
                    min_dwell_frames: 1,
                }),
                "smooth.margin must be in [0, 1], got 1.5",
            ),
            (
                SmoothConfig::Hysteresis(HysteresisConfig {
                    margin: 0.1,
                    min_dwell_frames: 0,
                }),
                "smooth.min_dwell_frames must be at least 1, got 0",
            ),
        ];
        for (config, message) in cases {
            let err = config.build().err().expect("refused");
            assert_eq!(err.to_string(), message);
        }
    }

    #[test]
    fn config_parses_tagged_snake_case_with_defaults_and_refuses_unknown_fields() {
        let parsed: SmoothConfig =
            toml::from_str("kind = \"hysteresis\"\nmargin = 0.2").expect("parses");
        assert_eq!(
            parsed,
            SmoothConfig::Hysteresis(HysteresisConfig {
                margin: 0.2,
                min_dwell_frames: DEFAULT_MIN_DWELL_FRAMES
            })
        );
        let parsed: SmoothConfig = toml::from_str("kind = \"window\"").expect("parses");
        assert_eq!(
            parsed,
            SmoothConfig::Window(WindowConfig {
                frames: DEFAULT_WINDOW_FRAMES
            })
        );
        let err = toml::from_str::<SmoothConfig>("kind = \"ema\"\nalfa = 0.2").expect_err("typo");
        assert!(err.to_string().contains("alfa"), "{err}");
        assert!(toml::from_str::<SmoothConfig>("kind = \"median\"").is_err());
    }
}
