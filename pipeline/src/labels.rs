//! What a label means to the user: the model's classes as they are, or groups of them (`Cat` =
//! the five ImageNet cats), and `unknown` when the leading label scores too low.
//!
//! One file format serves both `[labels] groups` and `scened eval --map`: a TOML table of
//! `"Name" = ["model label", …]` (or one label as a string), each model label named as in the
//! labels file or by one of its comma-separated synonyms (`tabby` names `tabby, tabby cat`).
//! [`LabelMap`] reads it; [`classes_named`] resolves names to class indices for both.
//!
//! With groups, a group's score in a frame is the sum of its members' probabilities, computed
//! once per frame by the smoother before it ranks ([`Groups::score`]): smoothing, label events,
//! `/status` and `scened_label_info` all see groups. Classes in no group form no label.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::error::{Invalid, TomlError};
use crate::infer::{Engine, MetaError};

/// The label shown when the leading label's smoothed score is below `labels.min_score`.
pub const UNKNOWN: &str = "unknown";
/// Every label is shown, however low its score: what scened did before `min_score` existed.
pub const DEFAULT_MIN_SCORE: f32 = 0.0;

/// What a label is: `[labels]` in the config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LabelsConfig {
    /// A groups file (`"Group" = ["model label", …]`); the label is then the group with the
    /// highest summed probability. Without one, each model class is a label.
    pub groups: Option<PathBuf>,
    /// The label is `unknown` while the leading label's smoothed score is below this, in [0, 1].
    pub min_score: f32,
}

impl Default for LabelsConfig {
    fn default() -> Self {
        Self {
            groups: None,
            min_score: DEFAULT_MIN_SCORE,
        }
    }
}

/// A groups file that cannot be used with the model, each naming the file.
#[derive(Debug, thiserror::Error)]
pub enum LabelsError {
    #[error("labels.groups {0}")]
    File(MetaError),
    #[error("labels.groups {}: {model} has no labels file to group (set infer.labels)", path.display())]
    NoModelLabels { path: PathBuf, model: String },
    #[error("labels.groups {}: {group:?} → {label:?} is not a label of {model}", path.display())]
    UnknownLabel {
        path: PathBuf,
        group: String,
        label: String,
        model: String,
    },
    #[error("labels.groups {}: every group is empty; a group needs at least one label", path.display())]
    NoGroup { path: PathBuf },
    #[error("labels.groups {}: {class:?} is in two groups, {first:?} and {second:?}", path.display())]
    TwoGroups {
        path: PathBuf,
        class: String,
        first: String,
        second: String,
    },
}

impl LabelsConfig {
    pub fn check(&self) -> Result<(), Invalid> {
        let min_score = self.min_score;
        let ok = (0.0..=1.0).contains(&min_score);
        Invalid::check(ok, "labels.min_score", "in [0, 1]", min_score)
    }

    /// The labels for `engine`'s classes: reads and resolves the groups file, if any.
    pub fn build(&self, engine: &Engine) -> Result<Labels, LabelsError> {
        let classes: Vec<String> = (0..engine.output().classes)
            .map(|i| engine.label(i))
            .collect();
        let groups = match &self.groups {
            None => None,
            Some(path) => {
                let model = engine
                    .path()
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                let Some(labels) = engine.labels() else {
                    return Err(LabelsError::NoModelLabels {
                        path: path.clone(),
                        model,
                    });
                };
                let map = LabelMap::load(path).map_err(LabelsError::File)?;
                Some(Groups::resolve(&map, labels, path, &model)?)
            }
        };
        Ok(Labels::new(classes, groups, self.min_score))
    }
}

/// Built labels: what the smoother ranks and when it says `unknown`, and every name.
#[derive(Debug)]
pub struct Labels {
    pub(crate) groups: Option<Groups>,
    pub(crate) min_score: f32,
    names: Arc<Names>,
}

impl Labels {
    /// The model's classes (their names), ranked as they are or as `groups`.
    pub(crate) fn new(classes: Vec<String>, groups: Option<Groups>, min_score: f32) -> Self {
        let names = Names {
            groups: groups.as_ref().map(|g| g.names.clone()),
            classes,
        };
        Self {
            groups,
            min_score,
            names: Arc::new(names),
        }
    }

    /// The names the smoother's indices stand for; shared with the sink and `/status`.
    pub fn names(&self) -> Arc<Names> {
        self.names.clone()
    }

    /// The number of model classes.
    pub(crate) fn classes(&self) -> usize {
        self.names.classes.len()
    }
}

/// The names of the labels the smoother ranks (the groups, or else the model's classes) and of
/// the model's classes.
#[derive(Debug, Clone, PartialEq)]
pub struct Names {
    groups: Option<Vec<String>>,
    classes: Vec<String>,
}

impl Names {
    /// Names for `classes`, ranked as they are or, with `groups`, as those groups.
    pub fn new(classes: Vec<String>, groups: Option<Vec<String>>) -> Self {
        Self { groups, classes }
    }

    /// The name of label `label` (an index among what the smoother ranks); `None` is `unknown`.
    pub fn label(&self, label: Option<usize>) -> &str {
        let labels = self.groups.as_ref().unwrap_or(&self.classes);
        label.map_or(UNKNOWN, |i| &labels[i])
    }

    /// The name of model class `class`.
    pub fn class(&self, class: usize) -> &str {
        &self.classes[class]
    }
}

/// The non-empty groups of a groups file, resolved to the model's class indices, by name.
#[derive(Debug, Clone, PartialEq)]
pub struct Groups {
    names: Vec<String>,
    members: Vec<Vec<usize>>,
}

impl Groups {
    /// Resolves every group of `map` against `labels`. Empty groups are left out: they could
    /// never score (the shipped file keeps the scenes ImageNet has no class for, for `eval`).
    pub(crate) fn resolve(
        map: &LabelMap,
        labels: &[String],
        path: &Path,
        model: &str,
    ) -> Result<Self, LabelsError> {
        let mut groups = Self {
            names: Vec::new(),
            members: Vec::new(),
        };
        // Which group each class is in so far, to refuse a second.
        let mut owner: Vec<Option<usize>> = vec![None; labels.len()];
        for (name, members) in map.iter() {
            let classes =
                classes_named(labels, members).map_err(|label| LabelsError::UnknownLabel {
                    path: path.to_owned(),
                    group: name.to_owned(),
                    label: label.to_owned(),
                    model: model.to_owned(),
                })?;
            if classes.is_empty() {
                continue;
            }
            let group = groups.names.len();
            for &class in &classes {
                if let Some(first) = owner[class].replace(group) {
                    return Err(LabelsError::TwoGroups {
                        path: path.to_owned(),
                        class: labels[class].clone(),
                        first: groups.names[first].clone(),
                        second: name.to_owned(),
                    });
                }
            }
            groups.names.push(name.to_owned());
            groups.members.push(classes);
        }
        if groups.names.is_empty() {
            return Err(LabelsError::NoGroup {
                path: path.to_owned(),
            });
        }
        Ok(groups)
    }

    /// Each group's score in a frame: the sum of its members' probabilities, into `out`.
    pub(crate) fn score(&self, probs: &[f32], out: &mut Vec<f32>) {
        out.clear();
        // Capped: rounding can take a sum of probabilities a hair over 1.
        out.extend(
            self.members
                .iter()
                .map(|members| members.iter().map(|&c| probs[c]).sum::<f32>().min(1.0)),
        );
    }

    /// The member of `group` with the highest probability in `probs`; the first on a tie.
    pub(crate) fn leading_member(&self, group: usize, probs: &[f32]) -> usize {
        let members = &self.members[group];
        members.iter().copied().fold(members[0], |best, class| {
            if probs[class] > probs[best] {
                class
            } else {
                best
            }
        })
    }
}

/// A file of `"name" = ["model label", …]`, by name: the groups of `[labels] groups`, or
/// `scened eval --map`'s folders → the labels counting as a correct answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelMap(BTreeMap<String, Vec<String>>);

impl FromIterator<(String, Vec<String>)> for LabelMap {
    fn from_iter<I: IntoIterator<Item = (String, Vec<String>)>>(entries: I) -> Self {
        Self(entries.into_iter().collect())
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl LabelMap {
    pub fn load(path: &Path) -> Result<Self, MetaError> {
        let text = fs::read_to_string(path).map_err(|error| MetaError::Read {
            path: path.to_owned(),
            error,
        })?;
        let raw: BTreeMap<String, OneOrMany> =
            toml::from_str(&text).map_err(|e| MetaError::Parse {
                path: path.to_owned(),
                error: TomlError::new(&e, &text),
            })?;
        Ok(Self(
            raw.into_iter()
                .map(|(name, labels)| {
                    let labels = match labels {
                        OneOrMany::One(label) => vec![label],
                        OneOrMany::Many(labels) => labels,
                    };
                    (name, labels)
                })
                .collect(),
        ))
    }

    /// The labels `name` maps to, if the file names it.
    pub fn get(&self, name: &str) -> Option<&[String]> {
        self.0.get(name).map(Vec::as_slice)
    }

    /// Every name and its labels, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.0
            .iter()
            .map(|(name, labels)| (name.as_str(), labels.as_slice()))
    }
}

/// The model classes `names` name, sorted, each once: a label equal to a name, or one listing
/// it among its comma-separated synonyms (ImageNet's `tabby, tabby cat`). A name can fit
/// several (`missile`). `Err` holds the first name that fits none.
pub fn classes_named<'a>(
    labels: &[String],
    names: impl IntoIterator<Item = &'a String>,
) -> Result<Vec<usize>, &'a str> {
    let mut found = Vec::new();
    for name in names {
        let name = name.as_str();
        let trimmed = name.trim();
        let before = found.len();
        found.extend(labels.iter().enumerate().filter_map(|(index, label)| {
            let fits = label == trimmed || label.split(',').any(|s| s.trim() == trimmed);
            fits.then_some(index)
        }));
        if found.len() == before {
            return Err(name);
        }
    }
    found.sort_unstable();
    found.dedup();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<String> {
        [
            "tabby, tabby cat",
            "Egyptian cat",
            "espresso",
            "missile",
            "projectile, missile",
            "tripod",
        ]
        .map(String::from)
        .to_vec()
    }

    fn map(text: &str) -> (tempfile::TempDir, PathBuf, LabelMap) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("groups.toml");
        fs::write(&path, text).unwrap();
        let map = LabelMap::load(&path).unwrap();
        (dir, path, map)
    }

    fn groups(text: &str) -> Result<Groups, String> {
        let (_dir, path, map) = map(text);
        Groups::resolve(&map, &labels(), &path, "m.tflite").map_err(|e| {
            let path = path.display().to_string();
            e.to_string().replace(&path, "FILE")
        })
    }

    #[test]
    fn names_resolve_to_labels_or_their_synonyms() {
        let names = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let labels = labels();
        assert_eq!(classes_named(&labels, &names(&["tabby"])), Ok(vec![0]));
        assert_eq!(
            classes_named(&labels, &names(&["missile", " Egyptian cat", "tabby cat"])),
            Ok(vec![0, 1, 3, 4])
        );
        assert_eq!(
            classes_named(&labels, &names(&["espresso", "husky"])),
            Err("husky")
        );
        assert_eq!(classes_named(&labels, &names(&[])), Ok(vec![]));
    }

    #[test]
    fn a_group_scores_the_sum_of_its_members_and_leads_with_its_best_member() {
        let groups =
            groups("Cat = [\"tabby\", \"Egyptian cat\"]\nDrink = \"espresso\"\nPortrait = []\n")
                .unwrap();
        // Empty groups are left out; the others are by name.
        assert_eq!(groups.names, ["Cat", "Drink"]);
        // Sums exact in binary, so they compare exactly.
        let probs = [0.25, 0.375, 0.25, 0.0, 0.0, 0.125];
        let mut scores = Vec::new();
        groups.score(&probs, &mut scores);
        assert_eq!(scores, [0.625, 0.25]);
        assert_eq!(groups.leading_member(0, &probs), 1);
        assert_eq!(groups.leading_member(1, &probs), 2);
        // A sum a rounding over 1 stays a probability.
        groups.score(&[0.6, 0.400_001, 0.0, 0.0, 0.0, 0.0], &mut scores);
        assert_eq!(scores[0], 1.0);
    }

    #[test]
    fn bad_groups_are_one_line_naming_the_file_the_group_and_the_label() {
        for (text, message) in [
            (
                "Cat = [\"tabby\", \"labradoodle\"]",
                "labels.groups FILE: \"Cat\" → \"labradoodle\" is not a label of m.tflite",
            ),
            (
                "Portrait = []\nKids = []",
                "labels.groups FILE: every group is empty; a group needs at least one label",
            ),
            (
                "Cat = [\"Egyptian cat\"]\nPets = [\"tabby\", \"Egyptian cat\"]",
                "labels.groups FILE: \"Egyptian cat\" is in two groups, \"Cat\" and \"Pets\"",
            ),
        ] {
            assert_eq!(groups(text).unwrap_err(), message, "{text}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("groups.toml");
        fs::write(&path, "Cat = 3").unwrap();
        let err = LabelsError::File(LabelMap::load(&path).unwrap_err()).to_string();
        assert!(
            err.starts_with(&format!("labels.groups {}: line 1: ", path.display())),
            "{err}"
        );
    }

    #[test]
    fn min_score_is_a_probability() {
        for (min_score, ok) in [(0.0, true), (1.0, true), (-0.1, false), (1.5, false)] {
            let config = LabelsConfig {
                min_score,
                ..LabelsConfig::default()
            };
            assert_eq!(config.check().is_ok(), ok, "{min_score}");
        }
        let nan = LabelsConfig {
            min_score: f32::NAN,
            ..LabelsConfig::default()
        };
        assert_eq!(
            nan.check().unwrap_err().to_string(),
            "labels.min_score must be in [0, 1], got NaN"
        );
    }

    #[test]
    fn names_say_unknown_for_no_label() {
        let classes = labels();
        let plain = Names::new(classes.clone(), None);
        assert_eq!(plain.label(Some(2)), "espresso");
        assert_eq!(plain.label(None), UNKNOWN);
        let grouped = Names::new(classes, Some(vec!["Cat".into(), "Drink".into()]));
        assert_eq!(grouped.label(Some(1)), "Drink");
        assert_eq!(grouped.class(1), "Egyptian cat");
    }
}
