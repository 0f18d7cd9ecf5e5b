//! Every metric scened emits, named once, through the `metrics` facade.
//!
//! Names are broad and labels tell apart; units are base units in the name. Install the
//! recorder *before* building edges and spawning stages: they register their handles once,
//! up front, and a handle taken with no recorder installed stays a no-op.
//!
//! Labels: `stage` is a stage's name (`capture`, `resize`, `infer`, `smooth`); `queue` is an
//! edge's name, which is the name of the stage it feeds (`sink` for the last one); a drop's
//! `stage` is the edge's name too, since frames dropped there never reached that stage. A stage
//! run as several workers (inference, `[infer] workers`) adds `worker` (`0`, `1`, …) to its
//! `{stage}` series, so `sum by (stage)` still reads the stage as a whole.

use std::time::Duration;

use ::metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

/// Histogram, `{stage}`: time spent in one `process()` call; for a source, one read,
/// including the wait for the frame (pacing, or the camera's next exposure).
pub const STAGE_DURATION_SECONDS: &str = "scened_stage_duration_seconds";
/// Histogram: capture to smoothed label, per frame that reaches the end.
pub const FRAME_LATENCY_SECONDS: &str = "scened_frame_latency_seconds";
/// Histogram: capture to the start of inference, per frame that reaches inference.
pub const FRAME_AGE_SECONDS: &str = "scened_frame_age_seconds";
/// Counter, `{stage}`: items a stage processed successfully.
pub const FRAMES_TOTAL: &str = "scened_frames_total";
/// Counter, `{stage, reason}`: items dropped on the edge feeding `stage`.
pub const FRAMES_DROPPED_TOTAL: &str = "scened_frames_dropped_total";
/// Counter, `{stage}`: items a stage failed on (skipped) or panicked on.
pub const FRAME_ERRORS_TOTAL: &str = "scened_frame_errors_total";
/// Counter, `{stage, reason}`: a stage stopped by a fault, `reason` being `failed` (a fatal
/// error), `panicked` or `stalled` (one item outlasted `stop.stall_seconds`).
pub const STAGE_FAILURES_TOTAL: &str = "scened_stage_failures_total";
/// Counter: times the source was lost and reopened (a camera unplugged and back).
pub const SOURCE_RECONNECTS_TOTAL: &str = "scened_source_reconnects_total";
/// Gauge, `{queue}`: items waiting on an edge.
pub const QUEUE_DEPTH: &str = "scened_queue_depth";
/// Gauge, `{queue}`: an edge's capacity.
pub const QUEUE_CAPACITY: &str = "scened_queue_capacity";
/// Gauge, `{queue}`: the most items an edge has held at once.
pub const QUEUE_HIGH_WATER: &str = "scened_queue_high_water";
/// Gauge: the deadline a frame's end-to-end latency is held to, the source's frame period;
/// absent when the source runs as fast as it can. `1 / this` is the target fps.
pub const FRAME_DEADLINE_SECONDS: &str = "scened_frame_deadline_seconds";
/// Counter: frames whose end-to-end latency exceeded the deadline.
pub const DEADLINE_MISSES_TOTAL: &str = "scened_deadline_misses_total";
/// Counter: changes of the smoothed label, the first label included.
pub const LABEL_CHANGES_TOTAL: &str = "scened_label_changes_total";
/// Gauge, `{label}`: 1 for the current smoothed label, 0 for labels shown before.
pub const LABEL_INFO: &str = "scened_label_info";
/// Gauge, `{model, dtype}`: 1 for the model being run (its file name; its weights' type).
pub const MODEL_INFO: &str = "scened_model_info";
/// Gauge, `{version}`: 1, carrying scened's version.
pub const BUILD_INFO: &str = "scened_build_info";
/// Gauge: 1 while connected to the MQTT broker, else 0. Every `scened_mqtt_` series exists
/// only with `[output.mqtt]`.
pub const MQTT_CONNECTED: &str = "scened_mqtt_connected";
/// Counter: connections to the broker made, the first and each reconnection.
pub const MQTT_CONNECTIONS_TOTAL: &str = "scened_mqtt_connections_total";
/// Counter: connection attempts failed and connections lost.
pub const MQTT_CONNECTION_ERRORS_TOTAL: &str = "scened_mqtt_connection_errors_total";
/// Counter: events written to the broker (QoS 0) or acknowledged by it (QoS 1).
pub const MQTT_EVENTS_PUBLISHED_TOTAL: &str = "scened_mqtt_events_published_total";
/// Counter, `{reason}`: events that never reached the broker: `evicted` from the full outbox
/// while it was away, `disconnected` when lost with a connection or unpublished at the stop.
pub const MQTT_EVENTS_DROPPED_TOTAL: &str = "scened_mqtt_events_dropped_total";

/// Counter, `{result}`: config reloads (SIGHUP, `scened reload`), `ok` or `failed`; a failed
/// one changed nothing.
pub const CONFIG_RELOADS_TOTAL: &str = "scened_config_reloads_total";

/// Gauge: open HTTP connections to the telemetry server.
pub const HTTP_CONNECTIONS: &str = "scened_http_connections";
/// Counter: connections refused because `telemetry.max_connections` were open (answered 503).
pub const HTTP_CONNECTIONS_REFUSED_TOTAL: &str = "scened_http_connections_refused_total";
/// Counter, `{reason}`: connections the server cut off: `header_timeout` (no whole request
/// head in `telemetry.client_timeout_seconds`, idle ones included), `too_large` (a head over
/// 16 KiB, answered 431), `stalled` (a response not taken in that time), `bad_request`.
pub const HTTP_CONNECTIONS_CUT_TOTAL: &str = "scened_http_connections_cut_total";
/// Counter: failed accepts (such as the process out of file descriptors), each retried.
pub const HTTP_ACCEPT_ERRORS_TOTAL: &str = "scened_http_accept_errors_total";
/// Counter, `{code}`: requests answered, by status code.
pub const HTTP_REQUESTS_TOTAL: &str = "scened_http_requests_total";
/// Gauge, `{stream}`: open live-view streams, `mjpeg` (`/stream.mjpeg`) or `events` (`/events`).
pub const HTTP_VIEWERS: &str = "scened_http_viewers";
/// Counter: events an `/events` viewer did not take in time, dropped oldest first.
pub const HTTP_EVENTS_DROPPED_TOTAL: &str = "scened_http_events_dropped_total";
/// Counter, `{output}`: items an output fell too far behind to take, evicted from its queue:
/// `stdout` (events: a reader of stdout that stopped reading) or `status` (frames `/status`
/// and the label metric did not follow). MQTT and `/events` have counters of their own.
pub const OUTPUT_DROPPED_TOTAL: &str = "scened_output_dropped_total";
/// Histogram: time to encode one frame of the live view as JPEG (only while someone watches).
pub const PREVIEW_ENCODE_SECONDS: &str = "scened_preview_encode_seconds";

/// Process metrics, from `metrics-process` (spelled there; named here for the dashboards).
/// Gauge: resident set size.
pub const PROCESS_RESIDENT_MEMORY_BYTES: &str = "process_resident_memory_bytes";
/// Gauge: user and system CPU time, with fractions of a second.
pub const PROCESS_CPU_SECONDS_TOTAL: &str = "process_cpu_seconds_total";
/// Gauge: OS threads.
pub const PROCESS_THREADS: &str = "process_threads";

/// Every metric name above: dashboards and alert rules may use these and no others, and a
/// scrape of the daemon shows them all (tests/telemetry.rs checks both).
pub const ALL: &[&str] = &[
    STAGE_DURATION_SECONDS,
    FRAME_LATENCY_SECONDS,
    FRAME_AGE_SECONDS,
    FRAMES_TOTAL,
    FRAMES_DROPPED_TOTAL,
    FRAME_ERRORS_TOTAL,
    STAGE_FAILURES_TOTAL,
    SOURCE_RECONNECTS_TOTAL,
    QUEUE_DEPTH,
    QUEUE_CAPACITY,
    QUEUE_HIGH_WATER,
    FRAME_DEADLINE_SECONDS,
    DEADLINE_MISSES_TOTAL,
    LABEL_CHANGES_TOTAL,
    LABEL_INFO,
    MODEL_INFO,
    BUILD_INFO,
    HTTP_CONNECTIONS,
    HTTP_CONNECTIONS_REFUSED_TOTAL,
    HTTP_CONNECTIONS_CUT_TOTAL,
    HTTP_ACCEPT_ERRORS_TOTAL,
    HTTP_REQUESTS_TOTAL,
    HTTP_VIEWERS,
    HTTP_EVENTS_DROPPED_TOTAL,
    OUTPUT_DROPPED_TOTAL,
    PREVIEW_ENCODE_SECONDS,
    MQTT_CONNECTED,
    MQTT_CONNECTIONS_TOTAL,
    MQTT_CONNECTION_ERRORS_TOTAL,
    MQTT_EVENTS_PUBLISHED_TOTAL,
    MQTT_EVENTS_DROPPED_TOTAL,
    PROCESS_RESIDENT_MEMORY_BYTES,
    PROCESS_CPU_SECONDS_TOTAL,
    PROCESS_THREADS,
];

/// Label key: a stage's name.
pub const STAGE: &str = "stage";
/// Label key: which of a stage's workers, from 0.
pub const WORKER: &str = "worker";
/// Label key: why an item was dropped ([`crate::queue::DropReason::as_str`]).
pub const REASON: &str = "reason";
/// How something ended: `ok` or `failed`.
pub const RESULT: &str = "result";
/// Label key: an edge's name.
pub const QUEUE: &str = "queue";
/// Label key: a class label's name.
pub const LABEL: &str = "label";
/// Label key: the model file's name.
pub const MODEL: &str = "model";
/// Label key: a model's weight type (`float32`, `int8`, `uint8`).
pub const DTYPE: &str = "dtype";
/// Label key: scened's version.
pub const VERSION: &str = "version";
/// Label key: an HTTP status code.
pub const CODE: &str = "code";
/// Label key: a live-view stream's kind.
pub const STREAM: &str = "stream";
/// Label key: an output of the event stream or of the frames' results.
pub const OUTPUT: &str = "output";
/// Label key: which camera a series is about. On every series when `[telemetry] camera` names
/// a daemon's one camera; on each camera's own series when it runs several ([`for_camera`]).
pub const CAMERA: &str = "camera";

/// Registers units and help texts with the installed recorder.
pub fn describe() {
    describe_histogram!(
        STAGE_DURATION_SECONDS,
        Unit::Seconds,
        "Time spent processing one item, by stage"
    );
    describe_histogram!(
        FRAME_LATENCY_SECONDS,
        Unit::Seconds,
        "Time from frame capture to its smoothed label"
    );
    describe_histogram!(
        FRAME_AGE_SECONDS,
        Unit::Seconds,
        "Time from frame capture to the start of its inference"
    );
    describe_counter!(
        FRAMES_TOTAL,
        Unit::Count,
        "Items processed successfully, by stage"
    );
    describe_counter!(
        FRAMES_DROPPED_TOTAL,
        Unit::Count,
        "Items dropped on the edge feeding a stage, by reason"
    );
    describe_counter!(
        FRAME_ERRORS_TOTAL,
        Unit::Count,
        "Items a stage failed or panicked on, by stage"
    );
    describe_counter!(
        STAGE_FAILURES_TOTAL,
        Unit::Count,
        "Stages stopped by a fault (failed, panicked, stalled)"
    );
    describe_counter!(
        SOURCE_RECONNECTS_TOTAL,
        Unit::Count,
        "Times the source was lost and reopened"
    );
    describe_gauge!(QUEUE_DEPTH, Unit::Count, "Items waiting on an edge");
    describe_gauge!(QUEUE_CAPACITY, Unit::Count, "Capacity of an edge");
    describe_gauge!(
        QUEUE_HIGH_WATER,
        Unit::Count,
        "Most items an edge has held at once"
    );
    describe_gauge!(
        FRAME_DEADLINE_SECONDS,
        Unit::Seconds,
        "Deadline of a frame's capture-to-label latency: the source's frame period"
    );
    describe_counter!(
        DEADLINE_MISSES_TOTAL,
        Unit::Count,
        "Frames whose capture-to-label latency exceeded the deadline"
    );
    describe_counter!(
        LABEL_CHANGES_TOTAL,
        Unit::Count,
        "Changes of the smoothed label"
    );
    describe_gauge!(LABEL_INFO, "1 for the current smoothed label, else 0");
    describe_gauge!(MODEL_INFO, "1 for the model being run");
    describe_gauge!(BUILD_INFO, "1, labelled with scened's version");
    describe_gauge!(HTTP_CONNECTIONS, Unit::Count, "Open HTTP connections");
    describe_counter!(
        HTTP_CONNECTIONS_REFUSED_TOTAL,
        Unit::Count,
        "HTTP connections refused at the connection limit"
    );
    describe_counter!(
        HTTP_CONNECTIONS_CUT_TOTAL,
        Unit::Count,
        "HTTP connections cut off: slow or idle, oversized, stalled or malformed"
    );
    describe_counter!(
        HTTP_ACCEPT_ERRORS_TOTAL,
        Unit::Count,
        "Failed accepts of HTTP connections, retried"
    );
    describe_counter!(
        HTTP_REQUESTS_TOTAL,
        Unit::Count,
        "HTTP requests answered, by status code"
    );
    describe_gauge!(HTTP_VIEWERS, Unit::Count, "Open live-view streams, by kind");
    describe_counter!(
        CONFIG_RELOADS_TOTAL,
        Unit::Count,
        "Config reloads, by result; a failed one changed nothing"
    );
    describe_counter!(
        HTTP_EVENTS_DROPPED_TOTAL,
        Unit::Count,
        "Events an /events viewer did not take in time"
    );
    describe_counter!(
        OUTPUT_DROPPED_TOTAL,
        Unit::Count,
        "Items an output (stdout, status) fell too far behind to take"
    );
    describe_histogram!(
        PREVIEW_ENCODE_SECONDS,
        Unit::Seconds,
        "Time to encode one live-view frame as JPEG"
    );
    describe_gauge!(MQTT_CONNECTED, "1 while connected to the MQTT broker");
    describe_counter!(
        MQTT_CONNECTIONS_TOTAL,
        Unit::Count,
        "Connections to the MQTT broker made"
    );
    describe_counter!(
        MQTT_CONNECTION_ERRORS_TOTAL,
        Unit::Count,
        "MQTT connection attempts failed and connections lost"
    );
    describe_counter!(
        MQTT_EVENTS_PUBLISHED_TOTAL,
        Unit::Count,
        "Events published to the MQTT broker"
    );
    describe_counter!(
        MQTT_EVENTS_DROPPED_TOTAL,
        Unit::Count,
        "Events that never reached the MQTT broker, by reason"
    );
}

/// Marks scened's version.
pub fn record_build(version: &str) {
    ::metrics::gauge!(BUILD_INFO, VERSION => version.to_owned()).set(1.0);
}

/// Counts a config reload that took (`ok`) or changed nothing (`failed`).
pub fn record_reload(ok: bool) {
    let result = if ok { "ok" } else { "failed" };
    ::metrics::counter!(CONFIG_RELOADS_TOTAL, RESULT => result).increment(1);
}

/// Marks a model no longer run (a reload swapped another in).
pub fn record_model_retired(model: &str, dtype: &str) {
    ::metrics::gauge!(MODEL_INFO, MODEL => model.to_owned(), DTYPE => dtype.to_owned()).set(0.0);
}

/// Marks the model being run and the deadline frames are held to, if any.
pub fn record_run(model: &str, dtype: &str, deadline: Option<Duration>) {
    ::metrics::gauge!(MODEL_INFO, MODEL => model.to_owned(), DTYPE => dtype.to_owned()).set(1.0);
    if let Some(deadline) = deadline {
        ::metrics::gauge!(FRAME_DEADLINE_SECONDS).set(deadline.as_secs_f64());
    }
}

/// The counter of what `output`'s queue evicted.
pub fn output_dropped(output: &'static str) -> ::metrics::Counter {
    ::metrics::counter!(OUTPUT_DROPPED_TOTAL, OUTPUT => output)
}

/// Runs `f` with every metric it registers labelled `camera="<camera>"`: a camera's edges,
/// stages and latency register their handles in here, so the handles carry the label wherever
/// they are used later. `None` runs `f` as it is (one camera, labelled globally if at all).
pub fn for_camera<T>(camera: Option<&str>, f: impl FnOnce() -> T) -> T {
    let Some(camera) = camera else {
        return f();
    };
    ::metrics::with_recorder(|inner| {
        let labelled = Labelled { inner, camera };
        ::metrics::with_local_recorder(&labelled, f)
    })
}

/// The recorder that was current, with a `camera` label added to every key it registers.
struct Labelled<'a> {
    inner: &'a dyn ::metrics::Recorder,
    camera: &'a str,
}

impl Labelled<'_> {
    fn key(&self, key: &::metrics::Key) -> ::metrics::Key {
        let label = ::metrics::Label::new(CAMERA, self.camera.to_owned());
        key.clone().with_extra_labels(vec![label])
    }
}

impl ::metrics::Recorder for Labelled<'_> {
    fn describe_counter(
        &self,
        key: ::metrics::KeyName,
        unit: Option<Unit>,
        text: ::metrics::SharedString,
    ) {
        self.inner.describe_counter(key, unit, text);
    }

    fn describe_gauge(
        &self,
        key: ::metrics::KeyName,
        unit: Option<Unit>,
        text: ::metrics::SharedString,
    ) {
        self.inner.describe_gauge(key, unit, text);
    }

    fn describe_histogram(
        &self,
        key: ::metrics::KeyName,
        unit: Option<Unit>,
        text: ::metrics::SharedString,
    ) {
        self.inner.describe_histogram(key, unit, text);
    }

    fn register_counter(
        &self,
        key: &::metrics::Key,
        meta: &::metrics::Metadata<'_>,
    ) -> ::metrics::Counter {
        self.inner.register_counter(&self.key(key), meta)
    }

    fn register_gauge(
        &self,
        key: &::metrics::Key,
        meta: &::metrics::Metadata<'_>,
    ) -> ::metrics::Gauge {
        self.inner.register_gauge(&self.key(key), meta)
    }

    fn register_histogram(
        &self,
        key: &::metrics::Key,
        meta: &::metrics::Metadata<'_>,
    ) -> ::metrics::Histogram {
        self.inner.register_histogram(&self.key(key), meta)
    }
}

/// Counts a label change and moves the `scened_label_info` marker to `current`.
pub fn record_label_change(previous: Option<&str>, current: &str) {
    ::metrics::counter!(LABEL_CHANGES_TOTAL).increment(1);
    if let Some(previous) = previous {
        ::metrics::gauge!(LABEL_INFO, LABEL => previous.to_owned()).set(0.0);
    }
    ::metrics::gauge!(LABEL_INFO, LABEL => current.to_owned()).set(1.0);
}

#[cfg(test)]
pub(crate) mod testing {
    //! Reads back what code under test emitted, with a recorder local to the test.

    use std::cell::OnceCell;

    use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
    use metrics_util::{CompositeKey, MetricKind};

    /// What was recorded, read once at the first query (reading resets the recorder).
    pub(crate) struct Recorded {
        snapshotter: Snapshotter,
        values: OnceCell<Vec<(CompositeKey, DebugValue)>>,
    }

    /// Runs `f` with a fresh recorder; handles registered inside keep recording after it
    /// returns, also from other threads.
    pub(crate) fn record<T>(f: impl FnOnce() -> T) -> (Recorded, T) {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let out = ::metrics::with_local_recorder(&recorder, f);
        let values = OnceCell::new();
        (
            Recorded {
                snapshotter,
                values,
            },
            out,
        )
    }

    impl Recorded {
        fn find(
            &self,
            kind: MetricKind,
            name: &str,
            labels: &[(&str, &str)],
        ) -> Option<&DebugValue> {
            let values = self.values.get_or_init(|| {
                let snapshot = self.snapshotter.snapshot().into_vec();
                snapshot
                    .into_iter()
                    .map(|(key, _, _, value)| (key, value))
                    .collect()
            });
            values
                .iter()
                .find(|(key, _)| {
                    let key_labels: Vec<(&str, &str)> =
                        key.key().labels().map(|l| (l.key(), l.value())).collect();
                    key.kind() == kind
                        && key.key().name() == name
                        && labels.iter().all(|l| key_labels.contains(l))
                        && key_labels.len() == labels.len()
                })
                .map(|(_, value)| value)
        }

        pub(crate) fn counter(&self, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
            match self.find(MetricKind::Counter, name, labels)? {
                DebugValue::Counter(value) => Some(*value),
                _ => None,
            }
        }

        pub(crate) fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
            match self.find(MetricKind::Gauge, name, labels)? {
                DebugValue::Gauge(value) => Some(value.into_inner()),
                _ => None,
            }
        }

        pub(crate) fn histogram_len(&self, name: &str, labels: &[(&str, &str)]) -> Option<usize> {
            match self.find(MetricKind::Histogram, name, labels)? {
                DebugValue::Histogram(values) => Some(values.len()),
                _ => None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::record;
    use super::*;

    #[test]
    fn a_label_change_moves_the_info_marker() {
        let (recorded, ()) = record(|| {
            record_label_change(None, "beach");
            record_label_change(Some("beach"), "forest");
        });
        assert_eq!(recorded.counter(LABEL_CHANGES_TOTAL, &[]), Some(2));
        assert_eq!(recorded.gauge(LABEL_INFO, &[(LABEL, "beach")]), Some(0.0));
        assert_eq!(recorded.gauge(LABEL_INFO, &[(LABEL, "forest")]), Some(1.0));
    }

    #[test]
    fn what_a_camera_registers_carries_its_label_and_nothing_else_does() {
        let (recorded, ()) = record(|| {
            let counter = for_camera(Some("porch"), || ::metrics::counter!(LABEL_CHANGES_TOTAL));
            counter.increment(2);
            for_camera(None, || {
                ::metrics::counter!(LABEL_CHANGES_TOTAL).increment(1)
            });
        });
        let porch = [(CAMERA, "porch")];
        assert_eq!(recorded.counter(LABEL_CHANGES_TOTAL, &porch), Some(2));
        assert_eq!(recorded.counter(LABEL_CHANGES_TOTAL, &[]), Some(1));
    }

    #[test]
    fn the_process_metrics_the_dashboards_use_are_collected_under_these_names() {
        // Burn 50 ms of CPU first (not of wall clock: on a loaded machine this thread may not
        // run at all for that long), so the CPU time read is several of the kernel's ticks.
        let cpu_time = || {
            let mut now = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: clock_gettime writes only the struct it is given.
            unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut now) };
            Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
        };
        while cpu_time() < Duration::from_millis(50) {
            std::hint::black_box(());
        }
        let (recorded, ()) = record(|| metrics_process::Collector::default().collect());
        let rss = recorded.gauge(PROCESS_RESIDENT_MEMORY_BYTES, &[]);
        assert!(rss.is_some_and(|bytes| bytes > 1e6), "{rss:?}");
        // A gauge, so that fractions of a second survive (the feature this crate enables).
        let cpu = recorded.gauge(PROCESS_CPU_SECONDS_TOTAL, &[]);
        assert!(cpu.is_some_and(|seconds| seconds > 0.0), "{cpu:?}");
        let threads = recorded.gauge(PROCESS_THREADS, &[]);
        assert!(threads.is_some_and(|n| n >= 1.0), "{threads:?}");
    }
}
