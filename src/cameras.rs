//! `scened cameras`: every camera the OS reports, with its id and the modes it offers.

use std::process::ExitCode;

use scened_pipeline::source::camera::list_cameras;

pub fn list() -> anyhow::Result<ExitCode> {
    let cameras = list_cameras()?;
    if cameras.is_empty() {
        eprintln!("no camera found");
    }
    for listing in cameras {
        let camera = listing.camera;
        print!("{}: {} ({})", camera.index, camera.name, camera.description);
        match camera.id {
            Some(id) => println!(" id {id}"),
            None => println!(),
        }
        match listing.modes {
            Ok(modes) => modes.iter().for_each(|mode| println!("    {mode}")),
            Err(error) => println!("    cannot list its modes: {error}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}
