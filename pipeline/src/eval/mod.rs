//! `scened eval`: the study's table for a model on a labelled folder — one subfolder per class
//! (the Camera Scene Detection layout, or any ImageNet-style folder), folders matched to the
//! model's labels by name or through a mapping file, top-1/top-3 counted, inference-only and
//! end-to-end time ([`run`]), and the Mobile AI 2021 score; [`table`] prints the rows.

mod run;
mod table;

use std::fs;
use std::path::{Path, PathBuf};

pub use run::{evaluate, Progress, Row};
pub use table::table;

use crate::classify::ClassifyError;
use crate::infer::MetaError;
use crate::labels::classes_named;
pub use crate::labels::LabelMap;
use crate::pipeline::BuildError;
use crate::source::images::image_files;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("cannot read {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: no class folders with images in it", dir.display())]
    NoClasses { dir: PathBuf },
    #[error("mapping {0}")]
    Mapping(MetaError),
    #[error(
        "class folder {folder:?} is not a label of {model} and the mapping does not name it \
         (map it to labels, or to [] to leave it out)"
    )]
    Unmatched { folder: String, model: String },
    #[error("mapping: {folder:?} → {label:?} is not a label of {model}")]
    UnknownLabel {
        folder: String,
        label: String,
        model: String,
    },
    #[error(transparent)]
    Classify(#[from] ClassifyError),
    #[error("{}: no labels (its .toml sidecar names none)", model.display())]
    NoLabels { model: PathBuf },
    #[error("{}: no readable image in the folders scored", dir.display())]
    NothingReadable { dir: PathBuf },
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("cannot start the pipeline's threads: {0}")]
    Threads(std::io::Error),
    #[error("stage {stage} {stop}")]
    StageFailed { stage: &'static str, stop: String },
    #[error("no frame came through the pipeline")]
    NothingThrough,
}

/// One class folder and its image files, by name.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassFolder {
    pub name: String,
    pub files: Vec<PathBuf>,
}

/// A labelled set: its class folders, by name. Files at the top level are ignored.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub dir: PathBuf,
    pub classes: Vec<ClassFolder>,
}

impl Dataset {
    pub fn open(dir: &Path) -> Result<Self, EvalError> {
        let read = |path: &Path, error: std::io::Error| EvalError::Read {
            path: path.to_owned(),
            error,
        };
        let mut classes = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| read(dir, e))? {
            let path = entry.map_err(|e| read(dir, e))?.path();
            if !path.is_dir() {
                continue;
            }
            let files = image_files(&path, false).map_err(|e| read(&path, e))?;
            if !files.is_empty() {
                let name = path.file_name().unwrap_or_default();
                classes.push(ClassFolder {
                    name: name.to_string_lossy().into_owned(),
                    files,
                });
            }
        }
        if classes.is_empty() {
            return Err(EvalError::NoClasses {
                dir: dir.to_owned(),
            });
        }
        classes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Self {
            dir: dir.to_owned(),
            classes,
        })
    }

    pub fn images(&self) -> usize {
        self.classes.iter().map(|c| c.files.len()).sum()
    }
}

impl LabelMap {
    /// For each class folder, the class indices counting as correct; `None` for a folder the
    /// mapping leaves out. A folder the mapping does not name must itself name a label.
    pub fn truths(
        &self,
        dataset: &Dataset,
        labels: &[String],
        model: &str,
    ) -> Result<Vec<Option<Vec<usize>>>, EvalError> {
        dataset
            .classes
            .iter()
            .map(|class| {
                let Some(names) = self.get(&class.name) else {
                    return classes_named(labels, [&class.name]).map(Some).map_err(|_| {
                        EvalError::Unmatched {
                            folder: class.name.clone(),
                            model: model.to_owned(),
                        }
                    });
                };
                if names.is_empty() {
                    return Ok(None);
                }
                classes_named(labels, names)
                    .map(Some)
                    .map_err(|label| EvalError::UnknownLabel {
                        folder: class.name.clone(),
                        label: label.to_owned(),
                        model: model.to_owned(),
                    })
            })
            .collect()
    }
}

/// Top-1 and top-3 hits over the images scored so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub images: u64,
    pub top1: u64,
    pub top3: u64,
}

impl Tally {
    /// Counts one image: `top` is the model's classes, best first; `truth` the correct ones.
    pub fn add(&mut self, top: &[usize], truth: &[usize]) {
        self.images += 1;
        let hit = |k: usize| top.iter().take(k).any(|class| truth.contains(class));
        self.top1 += u64::from(hit(1));
        self.top3 += u64::from(hit(3));
    }

    /// Percentages; `None` before any image.
    pub fn top1_percent(&self) -> Option<f64> {
        self.percent(self.top1)
    }

    pub fn top3_percent(&self) -> Option<f64> {
        self.percent(self.top3)
    }

    fn percent(&self, hits: u64) -> Option<f64> {
        (self.images > 0).then(|| 100.0 * hits as f64 / self.images as f64)
    }
}

/// The Mobile AI 2021 Camera Scene Detection score, as the study computes it (C = 1):
/// `2^(2·(top1 − 96)) / (C · seconds)`, top-1 in percent, seconds per frame.
pub fn score(top1_percent: f64, seconds: f64) -> f64 {
    const C: f64 = 1.0;
    2f64.powf(2.0 * (top1_percent - 96.0)) / (C * seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The study's Table 2: (top-1 %, iPhone 12 Pro CPU seconds, score as printed).
    #[test]
    fn score_reproduces_table_2_of_the_study() {
        for (top1, seconds, printed) in [
            (92.5, 0.083, 0.0941),
            (91.3, 0.058, 0.0255),
            (96.0, 0.27, 3.7037),
            (95.3, 0.28, 1.3533),
        ] {
            let s = score(top1, seconds);
            assert_eq!(
                format!("{s:.4}"),
                format!("{printed:.4}"),
                "{top1} % {seconds} s"
            );
        }
    }

    fn labels() -> Vec<String> {
        [
            "tabby, tabby cat",
            "Egyptian cat",
            "missile",
            "projectile, missile",
            "palace",
        ]
        .map(String::from)
        .to_vec()
    }

    fn dataset(folders: &[&str]) -> Dataset {
        Dataset {
            dir: "set".into(),
            classes: folders
                .iter()
                .map(|name| ClassFolder {
                    name: (*name).into(),
                    files: vec![format!("set/{name}/a.jpg").into()],
                })
                .collect(),
        }
    }

    #[test]
    fn folders_name_labels_or_their_synonyms() {
        let truths = LabelMap::default()
            .truths(&dataset(&["tabby", "missile", "palace"]), &labels(), "m")
            .unwrap();
        assert_eq!(truths, [Some(vec![0]), Some(vec![2, 3]), Some(vec![4])]);
        let err = LabelMap::default()
            .truths(&dataset(&["tabby cat", "dog"]), &labels(), "m.tflite")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "class folder \"dog\" is not a label of m.tflite and the mapping does not name it \
             (map it to labels, or to [] to leave it out)"
        );
    }

    #[test]
    fn a_mapping_renames_folders_and_leaves_some_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("map.toml");
        fs::write(&path, "\"5_Cat\" = [\"tabby\", \"Egyptian cat\"]\nRocket = \"missile\"\n\"16_Blue_Sky\" = []\n").unwrap();
        let map = LabelMap::load(&path).unwrap();
        let truths = map
            .truths(
                &dataset(&["16_Blue_Sky", "5_Cat", "Rocket"]),
                &labels(),
                "m",
            )
            .unwrap();
        assert_eq!(truths, [None, Some(vec![0, 1]), Some(vec![2, 3])]);

        fs::write(&path, "Dog = \"husky\"\n").unwrap();
        let map = LabelMap::load(&path).unwrap();
        let err = map.truths(&dataset(&["Dog"]), &labels(), "m").unwrap_err();
        assert_eq!(
            err.to_string(),
            "mapping: \"Dog\" → \"husky\" is not a label of m"
        );
        fs::write(&path, "Dog = 3\n").unwrap();
        let err = EvalError::Mapping(LabelMap::load(&path).unwrap_err()).to_string();
        assert!(
            err.starts_with(&format!("mapping {}: line 1: ", path.display())),
            "{err}"
        );
    }

    #[test]
    fn tally_counts_top1_and_top3() {
        let mut tally = Tally::default();
        assert_eq!(tally.top1_percent(), None);
        tally.add(&[4, 0, 1], &[4]);
        tally.add(&[0, 4, 1], &[4]);
        tally.add(&[0, 1, 2, 4], &[4]);
        tally.add(&[2, 3, 1], &[2, 3]);
        assert_eq!((tally.images, tally.top1, tally.top3), (4, 2, 3));
        assert_eq!(tally.top1_percent(), Some(50.0));
        assert_eq!(tally.top3_percent(), Some(75.0));
    }

    #[test]
    fn a_dataset_lists_class_folders_with_images_by_name() {
        let dir = tempfile::tempdir().unwrap();
        for (folder, file) in [
            ("b", "1.jpg"),
            ("a", "2.png"),
            ("a", "1.jpg"),
            ("empty", "x.txt"),
        ] {
            fs::create_dir_all(dir.path().join(folder)).unwrap();
            fs::write(dir.path().join(folder).join(file), b"").unwrap();
        }
        fs::write(dir.path().join("top.jpg"), b"").unwrap();
        let set = Dataset::open(dir.path()).unwrap();
        let names: Vec<_> = set.classes.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(
            set.classes[0].files,
            [dir.path().join("a/1.jpg"), dir.path().join("a/2.png")]
        );
        assert_eq!(set.images(), 3);
        let err = Dataset::open(&dir.path().join("empty")).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("no class folders with images in it"),
            "{err}"
        );
    }
}
