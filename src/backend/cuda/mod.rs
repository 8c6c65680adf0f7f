//! The CUDA backend: hand-written kernels in `kernels/*.cu`, launched through a [`driver::Driver`].

pub mod driver;
pub mod emu;
