//! The emulated driver: kernels/*.cu compiled for the host and run by the emulation harness.
