//! The kernel sources, embedded at compile time, and what NVRTC compiles them with.
//!
//! Each family is `kernels/common.cuh` followed by `kernels/<family>.cu`; the emulated driver's
//! `build.rs` assembles the same text.

/// The shared header prepended to every family.
pub const COMMON: &str = include_str!("../../../kernels/common.cuh");

/// `(family, source)` of every kernel family.
pub const FAMILIES: &[(&str, &str)] = &[
    ("activation", include_str!("../../../kernels/activation.cu")),
    ("elementwise", include_str!("../../../kernels/elementwise.cu")),
    ("emu_selftest", include_str!("../../../kernels/emu_selftest.cu")),
    ("emu_selftest_tc", include_str!("../../../kernels/emu_selftest_tc.cu")),
    ("emu_selftest_grid", include_str!("../../../kernels/emu_selftest_grid.cu")),
    ("gemm", include_str!("../../../kernels/gemm.cu")),
    ("gemm_tc", include_str!("../../../kernels/gemm_tc.cu")),
    ("loss", include_str!("../../../kernels/loss.cu")),
    ("lstm", include_str!("../../../kernels/lstm.cu")),
    ("lu", include_str!("../../../kernels/lu.cu")),
    ("optim", include_str!("../../../kernels/optim.cu")),
    ("recurrent", include_str!("../../../kernels/recurrent.cu")),
    ("reduce", include_str!("../../../kernels/reduce.cu")),
];

/// The full source NVRTC compiles for `family`, or `None` for an unknown family.
pub fn source(family: &str) -> Option<String> {
    FAMILIES.iter().find(|(f, _)| *f == family).map(|(_, src)| format!("{COMMON}\n#line 1 \"{family}.cu\"\n{src}"))
}

/// Production NVRTC options (besides the architecture and include paths). The grid-wide barrier of
/// `cooperative_groups` (recurrent.cu) needs no relocatable device code (`-rdc`) with NVRTC 12.9: the
/// NVRTC/ptxas test assembles those kernels to a plain cubin for sm_80 and sm_90. It does need
/// `<nv/target>` from CCCL on the include path (a toolkit's include folder, or the
/// `nvidia-cuda-cccl-cu12` wheel).
/// No `--use_fast_math`:
/// it maps `tanhf`/`expf` to hardware approximations (`tanh.approx.f32`, relative error ~5e-4),
/// which would make GPU training differ from the CPU and from PyTorch for little gain (the
/// transcendental work is `O(T B n)` against the GEMMs' `O(T B n^2)`).
pub const NVRTC_OPTIONS: &[&str] = &["--std=c++17", "-default-device"];

/// The entry points declared in a source (`extern "C" __global__ void <name>(`), in order.
pub fn entry_points(src: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in src.match_indices("extern \"C\" __global__") {
        let rest = &src[i..];
        let Some(open) = rest.find('(') else { continue };
        let head = &rest[..open];
        // The name is the last identifier before the parameter list (after `void` and any
        // `__launch_bounds__(...)`, whose own parenthesis we skip).
        let head = if head.trim_end().ends_with("__launch_bounds__") {
            let after = &rest[open..];
            let close = after.find(')').map_or(0, |c| c + 1);
            let tail = &after[close..];
            let Some(open2) = tail.find('(') else { continue };
            tail[..open2].to_string()
        } else {
            head.to_string()
        };
        if let Some(name) = head.split(|c: char| !(c.is_alphanumeric() || c == '_')).rfind(|s| !s.is_empty()) {
            out.push(name.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_points_are_found_and_unique() {
        let mut all = Vec::new();
        for (family, src) in FAMILIES {
            let names = entry_points(src);
            assert!(!names.is_empty(), "{family} has no entry points");
            all.extend(names);
        }
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n, "entry point names must be unique across families");
        assert!(all.contains(&"gemm_f32".to_string()));
        assert!(all.contains(&"lu_panel_32x1_f32".to_string()));
    }

    #[test]
    fn every_kernel_file_is_embedded() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter_map(|e| e.path().file_name()?.to_str()?.strip_suffix(".cu").map(str::to_string))
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = FAMILIES.iter().map(|(f, _)| f.to_string()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded, "kernels/*.cu and kernels::FAMILIES must list the same families");
    }

    #[test]
    fn the_emulator_registers_the_same_entry_points() {
        let mut emu: Vec<(String, String)> = super::super::emu::registered_kernels()
            .iter()
            .map(|k| (k.family.to_string(), k.name.to_string()))
            .collect();
        emu.sort();
        let mut here: Vec<(String, String)> = FAMILIES
            .iter()
            .flat_map(|(f, src)| entry_points(src).into_iter().map(move |k| (f.to_string(), k)))
            .collect();
        here.sort();
        assert_eq!(emu, here);
    }
}
