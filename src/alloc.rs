//! The memory allocator scened runs with, and the glibc tunables it starts with: the library's
//! ([`scened_pipeline::allocator`] says why), installed by `main`.

pub use scened_pipeline::allocator::{tune, Allocator};
