//! `scened cameras`: every camera the OS reports, with the modes it offers.

use std::process::ExitCode;

use scened_pipeline::source::camera::list_cameras;

pub fn list() -> anyhow::Result<ExitCode> {
    let cameras = list_cameras()?;
    if cameras.is_empty() {
        eprintln!("no camera found");
    }
    for camera in cameras {
        println!("{}: {} ({})", camera.index, camera.name, camera.description);
        match camera.modes {
            Ok(modes) => modes.iter().for_each(|mode| println!("    {mode}")),
            Err(error) => println!("    cannot list its modes: {error}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}
