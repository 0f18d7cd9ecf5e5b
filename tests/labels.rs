//! Labels that mean something: the Camera Scene Detection groups over the real model, on the
//! demo clip and through `/status`'s view of the run; a region of a composed real photo.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use image::imageops::{self, FilterType};
use image::RgbImage;
use scened_pipeline::config::Config;
use scened_pipeline::events::Subscriber;
use scened_pipeline::labels::{classes_named, LabelMap, UNKNOWN};
use scened_pipeline::pipeline::Pipeline;
use scened_pipeline::queue::WhenFull;
use scened_pipeline::resize::ResizeConfig;
use scened_pipeline::source::SourceConfig;
use scened_pipeline::stage::Shutdown;
use scened_pipeline::telemetry::LiveStatus;

use crate::run::{every_edge, json_lines, labels, photo_folder, run};
use crate::util::*;

const SCENES: &str = "config/scenes.toml";
const GROUPS: &str = "config/groups/csd-imagenet.toml";

fn groups() -> LabelMap {
    LabelMap::load(&repo().join(GROUPS)).unwrap()
}

/// Cat before Food: `changes` in order, each once at least.
#[track_caller]
fn assert_cat_before_food(changes: &[&str]) {
    let at = |scene| changes.iter().position(|&c| c == scene);
    let (cat, food) = (at("Cat"), at("Food"));
    assert!(cat.is_some() && cat < food, "{changes:?}");
}

/// The end-to-end check, as a user runs it: the demo clip played once through the
/// scene groups prints only the 30 scenes' names or `unknown`, the cat before the coffee.
#[test]
fn scenes_toml_labels_the_demo_clip_with_scene_names() {
    let out = scened(&["run", "--config", SCENES]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&out.stdout);
    let printed = labels(&lines);
    let map = groups();
    for label in &printed {
        assert!(
            *label == UNKNOWN || map.get(label).is_some(),
            "{label:?} is not a scene: {printed:?}"
        );
    }
    assert_cat_before_food(&printed);
    // The camera on its tripod is in no scene.
    assert_eq!(printed.last(), Some(&UNKNOWN), "{printed:?}");
}

/// Every frame of the clip through blocking queues, with `/status` read beside each label as
/// it leaves: the status's label is the event's, its class the group's member that led.
#[test]
fn status_gives_the_scene_as_label_and_its_leading_member_as_class() {
    let mut config = Config::load(&repo().join(SCENES)).unwrap();
    let SourceConfig::Clip(clip) = &mut config.source else {
        panic!("{SCENES} plays a clip")
    };
    clip.fps = 0.0;
    config.edges = every_edge(2, WhenFull::Block);
    config.output.every_frame = true;
    let map = groups();
    let status = LiveStatus::new(Duration::from_secs(60));
    let pipeline = Pipeline::build(&config).unwrap();
    status.started("", "", pipeline.names());
    // Each frame's result is published before its label reaches the sink.
    let results = pipeline.results().subscribe(Subscriber::blocking(1024));
    let model_labels = pipeline.engine().labels().unwrap().to_vec();
    let mut seen = 0;
    let report = pipeline
        .run(&Shutdown::new(), |event| {
            let result = results.try_recv().expect("the frame's result");
            assert_eq!(result.smoothed.stamp.seq, event.frame);
            status.labelled(&result.smoothed, result.latency, result.at);
            let snapshot = status.snapshot(Instant::now());
            assert_eq!(snapshot.label.as_deref(), Some(event.label.as_str()));
            let class = snapshot.class.expect("a class with every label");
            assert_eq!(class, model_labels[event.class]);
            if let Some(members) = map.get(&event.label) {
                let members = classes_named(&model_labels, members).unwrap();
                assert!(members.contains(&event.class), "{class} in {}", event.label);
                seen += 1;
            }
            // The top five are groups, best first, with the label's own score among them.
            let top = &snapshot.top;
            assert!(!top.is_empty() && top.len() <= 5, "{top:?}");
            assert!(top.windows(2).all(|w| w[0].score >= w[1].score), "{top:?}");
            assert!(top.iter().all(|r| map.get(&r.label).is_some()), "{top:?}");
            ControlFlow::Continue(())
        })
        .unwrap();
    assert!(report.is_clean(), "{report}");
    // The cat's and the coffee's frames, give or take the smoother's lag.
    assert!(seen >= 40, "{seen} frames labelled with a scene");
}

/// Chelsea the cat beside the cup of coffee in one picture: `[resize] region` on either half
/// gives that half's object.
#[test]
fn a_region_of_a_composed_photo_gives_the_label_of_what_is_in_it() {
    let dir = tmp_dir("region");
    let half = |photo: &str| {
        let image = image::open(data("photos/full").join(photo)).unwrap();
        imageops::resize(&image.to_rgb8(), 320, 240, FilterType::Triangle)
    };
    let mut composed = RgbImage::new(640, 240);
    imageops::replace(&mut composed, &half("chelsea.png"), 0, 0);
    imageops::replace(&mut composed, &half("coffee.jpg"), 320, 0);
    composed.save(dir.join("composed.png")).unwrap();
    let label_of = |region: [f64; 4]| {
        let config = Config {
            resize: ResizeConfig {
                region,
                ..ResizeConfig::default()
            },
            ..photo_folder(dir.clone())
        };
        let (events, _) = run(&config);
        assert_eq!(events.len(), 1);
        events[0].label.clone()
    };
    assert_eq!(label_of([0.0, 0.0, 0.5, 1.0]), "Egyptian cat");
    assert_eq!(label_of([0.5, 0.0, 0.5, 1.0]), "espresso");
}
