//! The binary runs on any x86-64 CPU (issue #25): under `qemu-x86_64 -cpu Nehalem` (SSE4.2, no
//! AVX, as the Celeron-class boxes of home servers), `scened classify` of int8 and fp32 Lite0
//! gives every committed photo the top-1 it gets natively, on the slow paths the CPU check
//! picks there. Skipped, saying so, where qemu-user is not installed (`.ci/setup` installs it)
//! or the machine is not x86-64 Linux.

use std::process::Command;

use crate::util::*;

#[test]
fn lite0_classifies_alike_on_a_cpu_without_avx() {
    if !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        eprintln!("skipped: qemu-x86_64 emulates a CPU only on x86-64 Linux here");
        return;
    }
    if Command::new("qemu-x86_64")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: no qemu-x86_64 (apt-get install qemu-user)");
        return;
    }
    let photos = photos(224);
    for file in [
        "efficientnet_lite0.int8.tflite",
        "efficientnet_lite0.fp32.tflite",
    ] {
        let model = model(file);
        let mut args = vec!["classify", "--model", arg(&model), "--top", "1"];
        args.extend(photos.iter().map(|p| p.to_str().unwrap()));
        let native = scened(&args);
        assert!(native.status.success(), "{file}: {}", stderr(&native));
        let emulated = Command::new("qemu-x86_64")
            .args(["-cpu", "Nehalem", env!("CARGO_BIN_EXE_scened")])
            .args(&args)
            .current_dir(repo())
            .output()
            .unwrap();
        assert!(
            emulated.status.success(),
            "{file} under qemu -cpu Nehalem: {}",
            stderr(&emulated)
        );
        let top1 = |out: &std::process::Output| -> Vec<String> {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                .map(|l| l["top"][0]["label"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(top1(&emulated), top1(&native), "{file}");
        assert_eq!(top1(&native).len(), photos.len());
    }
}
