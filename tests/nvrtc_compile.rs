//! Every kernel family compiles for real GPUs: NVRTC (through cudarc, with the production options of
//! `kernels::NVRTC_OPTIONS`) to PTX for `sm_80` and `sm_90`, then `ptxas -v` on that PTX. A compile or
//! assembly error fails; registers, stack and spills per kernel are printed as a table.
//!
//! cudarc finds `libnvrtc` by name only, so `LD_LIBRARY_PATH` must hold the wheel's `lib` folder before
//! the process starts. The outer test therefore locates the pip wheels (`nvidia-cuda-nvrtc-cu12`,
//! `nvidia-cuda-runtime-cu12` for `cuda_fp16.h`, `nvidia-cuda-nvcc-cu12` for `ptxas`) through
//! `python3 -c "import nvidia"` and re-runs this test binary with the variable set, selecting the
//! ignored inner test. Policy: no wheels (no python3, no `nvidia` package, or no `libnvrtc.so.12`) →
//! a visible `SKIPPED` line and a pass; wheels present → any failure (loading NVRTC, compiling,
//! `ptxas`, a missing `ptxas`) fails.

use ortho_rnn::backend::cuda::cudarc_driver::{compile_family, compile_family_cubin, nvrtc_present, nvrtc_version};
use ortho_rnn::backend::cuda::kernels::{FAMILIES, entry_points};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

const INNER: &str = "inner_compile_every_family_with_nvrtc_and_ptxas";
/// Set by the outer test for the inner one: the wheels' `nvidia` folder.
const WHEELS_VAR: &str = "ORTHO_NVRTC_TEST_WHEELS";
const ARCHS: [&str; 2] = ["sm_80", "sm_90"];

/// Writes straight to fd 2, which the test harness does not capture.
fn say(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// The `nvidia` package folders of the Python on PATH, or why there are none.
fn wheel_roots() -> Result<Vec<PathBuf>, String> {
    let out = Command::new("python3")
        .args(["-c", "import nvidia; print('\\n'.join(nvidia.__path__))"])
        .output()
        .map_err(|e| format!("python3 could not be run: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!("`import nvidia` failed: {}", err.lines().last().unwrap_or_default().trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()).map(PathBuf::from).collect())
}

#[test]
fn nvrtc_compiles_every_kernel_family_for_sm80_and_sm90() {
    let roots = match wheel_roots() {
        Ok(r) => r,
        Err(why) => return say(&format!("\nSKIPPED: NVRTC compile check: CUDA wheels not installed ({why})\n")),
    };
    let Some(root) = roots.iter().find(|r| r.join("cuda_nvrtc/lib/libnvrtc.so.12").is_file()) else {
        let why = format!("no nvidia/cuda_nvrtc/lib/libnvrtc.so.12 under {roots:?}");
        return say(&format!("\nSKIPPED: NVRTC compile check: CUDA wheels not installed ({why})\n"));
    };
    let lib = root.join("cuda_nvrtc/lib");
    let ld = match std::env::var("LD_LIBRARY_PATH") {
        Ok(old) if !old.is_empty() => format!("{}:{old}", lib.display()),
        _ => lib.display().to_string(),
    };
    let exe = std::env::current_exe().expect("current test executable");
    let out = Command::new(exe)
        .args(["--ignored", "--exact", INNER, "--nocapture", "--test-threads=1"])
        .env("LD_LIBRARY_PATH", ld)
        .env(WHEELS_VAR, root)
        .output()
        .expect("re-running the test binary");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    say(&format!("\n{}\n", text.trim()));
    assert!(out.status.success(), "the NVRTC / ptxas check failed (output above)");
    assert!(text.contains("1 passed"), "the inner test `{INNER}` did not run (output above)");
}

/// One `ptxas -v` report for one kernel.
#[derive(Default)]
struct Usage {
    registers: u32,
    /// Static shared memory in bytes.
    smem: u32,
    stack: u32,
    spill_stores: u32,
    spill_loads: u32,
}

/// Parses `ptxas -v` output into `(kernel, usage)` in order.
fn parse_ptxas(log: &str) -> Vec<(String, Usage)> {
    let mut out: Vec<(String, Usage)> = Vec::new();
    let num_before = |line: &str, unit: &str| -> Option<u32> {
        let i = line.find(unit)?;
        line[..i].split_whitespace().last()?.parse().ok()
    };
    for line in log.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            let name = rest.split('\'').next().unwrap_or_default().to_string();
            out.push((name, Usage::default()));
        } else if let Some((_, u)) = out.last_mut() {
            if line.contains("bytes spill stores") {
                u.stack = num_before(line, "bytes stack frame").unwrap_or(0);
                u.spill_stores = num_before(line, "bytes spill stores").unwrap_or(0);
                u.spill_loads = num_before(line, "bytes spill loads").unwrap_or(0);
            } else if line.contains("Used") && line.contains("registers") {
                u.registers = num_before(line, "registers").unwrap_or(0);
                u.smem = num_before(line, "bytes smem").unwrap_or(0);
            }
        }
    }
    out
}

#[test]
fn ptxas_reports_are_parsed() {
    let log = "ptxas info    : Compiling entry function 'gemm_f32' for 'sm_80'\n\
               ptxas info    : Function properties for gemm_f32\n    \
               8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads\n\
               ptxas info    : Used 128 registers, used 1 barriers, 25088 bytes smem, 472 bytes cmem[0]\n\
               ptxas info    : Compiling entry function 'fill_f32' for 'sm_80'\n\
               ptxas info    : Used 10 registers, 380 bytes cmem[0]\n";
    let got = parse_ptxas(log);
    assert_eq!(got.len(), 2);
    let (name, u) = &got[0];
    assert_eq!((name.as_str(), u.registers, u.stack, u.spill_stores, u.spill_loads), ("gemm_f32", 128, 8, 4, 12));
    assert_eq!(u.smem, 25088);
    assert_eq!((got[1].0.as_str(), got[1].1.registers, got[1].1.spill_stores, got[1].1.smem), ("fill_f32", 10, 0, 0));
}

/// Per-kernel usage of one family on one architecture, or what failed.
type JobResult = Result<Vec<(String, Usage)>, String>;

/// NVRTC then `ptxas -v` for one family and architecture: per-kernel usage in source order, or what failed.
fn compile_and_assemble(family: &str, src: &str, arch: &'static str, ptxas: &Path, dir: &Path) -> JobResult {
    let ptx = compile_family(family, arch).map_err(|e| format!("{family} {arch}: NVRTC: {e}"))?;
    let file = dir.join(format!("{family}_{arch}.ptx"));
    std::fs::write(&file, &ptx).map_err(|e| format!("writing {}: {e}", file.display()))?;
    let out = Command::new(ptxas)
        .args(["-v", &format!("-arch={arch}"), "-o"])
        .arg(dir.join(format!("{family}_{arch}.cubin")))
        .arg(&file)
        .output()
        .map_err(|e| format!("running {}: {e}", ptxas.display()))?;
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        return Err(format!("{family} {arch}: ptxas failed:\n{log}"));
    }
    let mut usage = parse_ptxas(&log);
    let want = entry_points(src);
    let mut names: Vec<&str> = usage.iter().map(|(n, _)| n.as_str()).collect();
    let mut sorted_want = want.clone();
    names.sort_unstable();
    sorted_want.sort();
    if names != sorted_want {
        return Err(format!("{family} {arch}: ptxas compiled {names:?}, the source declares {sorted_want:?}"));
    }
    usage.sort_by_key(|(n, _)| want.iter().position(|w| w == n));
    Ok(usage)
}

/// Run by the outer test with `LD_LIBRARY_PATH` and the wheel folder set.
#[test]
#[ignore = "run by nvrtc_compiles_every_kernel_family_for_sm80_and_sm90 with LD_LIBRARY_PATH set"]
fn inner_compile_every_family_with_nvrtc_and_ptxas() {
    let Some(root) = std::env::var_os(WHEELS_VAR).map(PathBuf::from) else {
        println!("nothing to do: run through nvrtc_compiles_every_kernel_family_for_sm80_and_sm90");
        return;
    };
    assert!(nvrtc_present(), "libnvrtc did not load although LD_LIBRARY_PATH holds {}", root.display());
    let ptxas = root.join("cuda_nvcc/bin/ptxas");
    assert!(ptxas.is_file(), "ptxas not found at {} (install nvidia-cuda-nvcc-cu12)", ptxas.display());
    let dir = std::env::temp_dir().join(format!("ortho_nvrtc_{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    println!("NVRTC {:?}, ptxas {}", nvrtc_version().unwrap_or((0, 0)), ptxas.display());
    println!(
        "{:<15} {:<6} {:<31} {:>5} {:>6} {:>6} {:>7} {:>7}",
        "family", "arch", "kernel", "regs", "smem", "stack", "spill-st", "spill-ld"
    );
    // (family, arch) jobs, compiled on as many threads as there are cores; printed in order.
    // The GEMM families (eight tensor-core instantiations, <mma.h>) take longest: start them first.
    let mut order: Vec<&(&str, &str)> = FAMILIES.iter().collect();
    order.sort_by_key(|(f, _)| !f.starts_with("gemm"));
    let jobs: Vec<(&str, &str, &str)> =
        order.iter().flat_map(|&&(f, src)| ARCHS.iter().map(move |&a| (f, src, a))).collect();
    let results: Vec<Mutex<Option<JobResult>>> = jobs.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(jobs.len());
    std::thread::scope(|sc| {
        for _ in 0..threads {
            sc.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(family, src, arch)) = jobs.get(i) else { break };
                    let r = compile_and_assemble(family, src, arch, &ptxas, &dir);
                    *results[i].lock().expect("result slot") = Some(r);
                }
            });
        }
    });
    let mut failures = Vec::new();
    let mut spills = Vec::new();
    for ((family, _, arch), result) in jobs.iter().zip(results) {
        let usage = match result.into_inner().expect("result slot").expect("every job ran") {
            Ok(u) => u,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        for (name, u) in &usage {
            println!(
                "{family:<15} {arch:<6} {name:<31} {:>5} {:>6} {:>6} {:>7} {:>7}",
                u.registers, u.smem, u.stack, u.spill_stores, u.spill_loads
            );
            if u.spill_stores + u.spill_loads > 0 {
                spills.push(format!("{name} ({arch}): {} B stores, {} B loads", u.spill_stores, u.spill_loads));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    // The loader's first choice: a CUBIN straight from NVRTC for the device's architecture (one
    // small family; the table above already assembled every family with ptxas).
    for arch in ARCHS {
        match compile_family_cubin("reduce", arch) {
            Ok(bin) => assert!(bin.starts_with(b"\x7fELF"), "the {arch} CUBIN is not an ELF image"),
            Err(e) => failures.push(format!("reduce {arch}: CUBIN: {e}")),
        }
    }
    println!("CUBIN (NVRTC -arch=sm_XY): reduce for {ARCHS:?}, ELF images");
    if spills.is_empty() {
        println!("register spills: none");
    } else {
        println!("REGISTER SPILLS: {}", spills.join("; "));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_inner_test_name_matches() {
    // The outer test selects the inner one by exact name; keep the constant in step with the function.
    let here = include_str!("nvrtc_compile.rs");
    assert!(here.contains(&format!("fn {INNER}()")));
    assert!(Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels").is_dir());
}
