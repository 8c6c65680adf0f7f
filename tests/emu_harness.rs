//! Tests of the CUDA emulation harness with the kernels of `kernels/emu_selftest.cu`: each correct kernel
//! against an independent host reference under every resume order, the racy and invalid kernels, argument
//! and memory checks, concurrent drivers, and a timing printout of a batched matmul. The tensor-core
//! fragments and cp.async (`kernels/emu_selftest_tc.cu`) are tested in `emu_harness/tensor_core.rs`.

#[path = "emu_harness/tensor_core.rs"]
mod tensor_core;

use half::{bf16, f16};
use ortho_rnn::Error;
use ortho_rnn::backend::cuda::driver::{Arg, DevPtr, Driver, LaunchDims, PackedArgs};
use ortho_rnn::backend::cuda::emu::{EmuDriver, ResumeOrder, find_kernel, registered_kernels};
use std::sync::Arc;
use std::time::Instant;

#[path = "emu/grid.rs"]
mod grid;

#[path = "../emu/kernel_scan.rs"]
mod kernel_scan;
use kernel_scan::{lines_from, scan_entry_points, strip_extern_c, strip_pragma_once};

const FAMILY: &str = "emu_selftest";
const SOURCE: &str = include_str!("../kernels/emu_selftest.cu");

/// SplitMix64: a tiny seeded generator for test data.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A device buffer freed on drop.
struct Buf<'a> {
    drv: &'a EmuDriver,
    ptr: DevPtr,
    bytes: usize,
}
impl Buf<'_> {
    fn arg(&self) -> Arg {
        Arg::Ptr(self.ptr)
    }
    fn read<T: bytemuck::Pod>(&self) -> Vec<T> {
        let mut out = vec![T::zeroed(); self.bytes / size_of::<T>()];
        self.drv.dtoh(bytemuck::cast_slice_mut(&mut out), self.ptr).expect("dtoh");
        out
    }
}
impl Drop for Buf<'_> {
    fn drop(&mut self) {
        // SAFETY: allocated by this driver in `upload`/`zeroed` and not used after this.
        unsafe { self.drv.free(self.ptr) }
    }
}

fn upload<'a, T: bytemuck::Pod>(drv: &'a EmuDriver, data: &[T]) -> Buf<'a> {
    let bytes = std::mem::size_of_val(data);
    let ptr = drv.alloc(bytes).expect("alloc");
    drv.htod(ptr, bytemuck::cast_slice(data)).expect("htod");
    Buf { drv, ptr, bytes }
}

fn zeroed<T: bytemuck::Pod>(drv: &EmuDriver, n: usize) -> Buf<'_> {
    upload(drv, &vec![T::zeroed(); n])
}

fn launch(
    drv: &EmuDriver,
    kernel: &str,
    grid: (u32, u32, u32),
    block: (u32, u32, u32),
    args: &[Arg],
) -> ortho_rnn::Result<()> {
    let mut packed = PackedArgs::new(args);
    let mut ptrs = packed.pointers();
    // SAFETY: the arguments follow the kernel's documented signature and buffer sizes (a mismatch in count
    // or size is reported by the harness, which is part of what these tests check).
    unsafe { drv.launch(FAMILY, kernel, LaunchDims { grid, block }, &mut ptrs, packed.sizes()) }
}

/// `file:line` of the line of emu_selftest.cu containing `marker`.
fn site(marker: &str) -> String {
    let line = SOURCE.lines().position(|l| l.contains(marker)).expect("marker in source") + 1;
    format!("kernels/emu_selftest.cu:{line}")
}

fn device_msg(r: ortho_rnn::Result<()>) -> String {
    match r {
        Err(Error::Device(msg)) => msg,
        other => panic!("expected Error::Device, got {other:?}"),
    }
}

#[test]
fn registry_lists_every_selftest_kernel_with_its_signature() {
    let names: Vec<&str> = registered_kernels().iter().filter(|k| k.family == FAMILY).map(|k| k.name).collect();
    for want in [
        "selftest_reduce_f32",
        "selftest_warp_ops_i32",
        "selftest_atomics_i32",
        "selftest_cast_f16",
        "selftest_cast_bf16",
        "selftest_index_u32",
        "selftest_bmm_f32",
        "selftest_shift_f32",
        "selftest_racy_shift_f32",
        "selftest_early_exit_f32",
        "selftest_divergent_barrier_f32",
        "selftest_partial_warp_f32",
        "selftest_block_sum_twice_f64",
        "selftest_warp_drift_i32",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    // `selftest_shift` is a __device__ helper, not an entry point.
    assert!(!names.contains(&"selftest_shift"));
    let k = find_kernel(FAMILY, "selftest_atomics_i32").expect("registered");
    let sizes: Vec<(usize, bool)> = k.params.iter().map(|p| (p.size, p.pointer)).collect();
    assert_eq!(sizes, [(8, true), (4, false), (8, true), (8, true), (8, true), (8, true), (8, true)]);
}

#[test]
fn scanner_finds_exactly_the_registered_entry_points() {
    // The selftest family uses no macros, so scanning its raw text must agree with the build's registry.
    let registered: Vec<&str> = registered_kernels().iter().filter(|k| k.family == FAMILY).map(|k| k.name).collect();
    assert_eq!(scan_entry_points(SOURCE).expect("scan"), registered);
    let src = r#"
        extern "C" __global__ void __launch_bounds__(256, 2) after_void(int n) {}
        extern "C" __global__ __launch_bounds__(128) void before_void(float* x) {}
        // extern "C" __global__ void commented_out(int) {}
        /* extern "C" __global__ void block_commented(int) {} */
        const char* s = "extern \"C\" __global__ void in_string(";
        extern "C" __device__ float not_global(float x) { return x; }
        __global__ void not_extern_c(int) {}
        extern "C"
        __global__
        void split_over_lines (int) {}
        extern "C" __global__ void after_void(int n);
    "#;
    let want: Vec<String> = ["after_void", "before_void", "split_over_lines"].map(String::from).into();
    assert_eq!(scan_entry_points(src), Ok(want));
    assert!(scan_entry_points("extern \"C\" { __global__ void k() {} }").is_err());
}

#[test]
fn only_lines_from_kernel_files_are_scanned() {
    let pre = "# 1 \"scan.cpp\"\nint a;\n# 1 \"kernels/x.cu\"\nint b;\n# 1 \"/usr/include/math.h\" 1 3 4\n\
               extern \"C\" {\n# 7 \"kernels/x.cu\" 2\nint c;\n";
    assert_eq!(lines_from(pre, "kernels/"), "int b;\nint c;\n");
}

#[test]
fn extern_c_and_pragma_once_are_blanked_keeping_line_numbers() {
    let src = "extern \"C\" __global__ void k();\n#define K extern \\\n  \"C\" __global__\nexternal \"C\";\n";
    let out = strip_extern_c(src);
    assert_eq!(out.len(), src.len());
    assert_eq!(out.lines().count(), src.lines().count());
    assert!(!out.contains("extern ") && !out.contains("\"C\" __global__"), "{out}");
    assert!(out.contains("external \"C\";"), "only the keyword extern is touched: {out}");
    assert_eq!(strip_pragma_once("#pragma once\nint x;"), "\nint x;");
}

#[test]
fn block_reduction_matches_host_under_every_order() {
    let n = 10_000usize;
    let mut rng = Rng(1);
    let x: Vec<f32> = (0..n).map(|_| rng.uniform() * 2.0 - 1.0).collect();
    let (blocks, threads) = (7usize, 256usize);
    let mut want = vec![0f64; blocks];
    for (j, v) in x.iter().enumerate() {
        want[(j / threads) % blocks] += *v as f64;
    }
    let mut first: Option<Vec<f32>> = None;
    for order in ResumeOrder::TEST_SET {
        let drv = EmuDriver::with_order(order);
        let (xb, out) = (upload(&drv, &x), zeroed::<f32>(&drv, blocks));
        launch(&drv, "selftest_reduce_f32", (7, 1, 1), (256, 1, 1), &[xb.arg(), out.arg(), Arg::I32(n as i32)])
            .expect("launch");
        let got: Vec<f32> = out.read();
        for (b, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!((*g as f64 - w).abs() < 1e-4, "{order}: block {b}: {g} vs {w}");
        }
        // A correctly synchronized tree gives the same bits whatever the interleaving.
        let first = first.get_or_insert_with(|| got.clone());
        assert_eq!(bytemuck::cast_slice::<f32, u32>(first), bytemuck::cast_slice::<f32, u32>(&got), "{order}");
    }
}

/// `block_sum_d` (kernels/common.cuh) called twice in a row: every thread of every block gets both
/// sums under every resume order. (On a GPU the barrier that guards the shared partials on entry
/// keeps a warp entering the second call from overwriting partials another warp has not read yet;
/// under random orders the emulator's warps drift apart by several collectives, so deleting that
/// barrier fails the softmax kernel's parity tests, which reduce four times in a row.)
#[test]
fn consecutive_block_sums_under_every_order() {
    for (blocks, threads) in [(3usize, 1024usize), (2, 96)] {
        let mut rng = Rng(7 + threads as u64);
        let x: Vec<f64> = (0..blocks * threads).map(|_| rng.uniform() as f64 * 2.0 - 1.0).collect();
        let want: Vec<(f64, f64)> =
            x.chunks(threads).map(|b| (b.iter().sum::<f64>(), b.iter().map(|v| 2.0 * v + 1.0).sum::<f64>())).collect();
        for order in ResumeOrder::TEST_SET {
            let drv = EmuDriver::with_order(order);
            let (xb, out) = (upload(&drv, &x), zeroed::<f64>(&drv, 2 * blocks * threads));
            let dims = (blocks as u32, 1, 1);
            launch(&drv, "selftest_block_sum_twice_f64", dims, (threads as u32, 1, 1), &[xb.arg(), out.arg()])
                .expect("launch");
            let got: Vec<f64> = out.read();
            for (i, pair) in got.chunks(2).enumerate() {
                let (w1, w2) = want[i / threads];
                assert!(
                    (pair[0] - w1).abs() <= 1e-9 * (1.0 + w1.abs()) && (pair[1] - w2).abs() <= 1e-9 * (1.0 + w2.abs()),
                    "{order}: {blocks}x{threads}, thread {i}: got ({}, {}), want ({w1}, {w2})",
                    pair[0],
                    pair[1]
                );
            }
        }
    }
}

/// CUDA's documented shuffle semantics for lane `l` (independent of the PTX formulation in runtime.cpp).
fn shfl_ref(v: &[i32], l: usize, op: &str, arg: usize, width: usize) -> i32 {
    let group = l / width * width;
    match op {
        "idx" => v[group + arg % width],
        "up" if l % width >= arg => v[l - arg],
        "down" if l % width + arg < width => v[l + arg],
        "xor" if (l ^ arg) / width <= l / width => v[l ^ arg],
        _ => v[l],
    }
}

/// Expected output of `selftest_warp_ops_i32` for blocks of `threads` threads.
fn warp_ops_want(x: &[i32], threads: usize) -> Vec<i32> {
    let mut want = vec![0i32; x.len() * 14];
    for w in 0..x.len() / 32 {
        let v = &x[w * 32..w * 32 + 32];
        let mut down = v.to_vec();
        for d in [16, 8, 4, 2, 1] {
            down = (0..32).map(|l| down[l] + shfl_ref(&down, l, "down", d, 32)).collect();
        }
        let ballot = (0..32).fold(0u32, |b, l| b | (((v[l] > 0) as u32) << l));
        let block = (w * 32) / threads;
        let count = x[block * threads..(block + 1) * threads].iter().filter(|&&e| e > 0).count() as i32;
        for l in 0..32 {
            let o = &mut want[(w * 32 + l) * 14..(w * 32 + l + 1) * 14];
            o[0] = v.iter().sum();
            o[1] = down[l];
            o[2] = v[..=l].iter().sum();
            o[3] = shfl_ref(v, l, "idx", (7 * l + 3) % 32, 32);
            o[4] = shfl_ref(v, l, "xor", 5, 8);
            o[5] = shfl_ref(v, l, "down", 3, 16);
            o[6] = shfl_ref(v, l, "up", 2, 8);
            o[7] = ballot as i32;
            o[8] = v.contains(&7) as i32;
            o[9] = v.iter().all(|&e| e >= 0) as i32;
            o[10] = v[31 - l];
            o[11] = 31 - l as i32;
            o[12] = v[l ^ 1];
            o[13] = count;
        }
    }
    want
}

#[test]
fn warp_collectives_match_reference_under_every_order() {
    let mut rng = Rng(2);
    // Even warps non-negative (so __all_sync(x >= 0) is true there), odd warps with negatives.
    let x: Vec<i32> = (0..1024).map(|i| rng.below(13) as i32 - if (i / 32) % 2 == 0 { 0 } else { 3 }).collect();
    // Three blocks of 64 threads under every order, then one block of the maximum 1024 threads.
    let cases = ResumeOrder::TEST_SET.map(|o| (o, 3, 64)).into_iter().chain([(ResumeOrder::Random(21), 1, 1024)]);
    for (order, blocks, threads) in cases {
        let x = &x[..blocks * threads];
        let want = warp_ops_want(x, threads);
        let drv = EmuDriver::with_order(order);
        let (xb, out) = (upload(&drv, x), zeroed::<i32>(&drv, x.len() * 14));
        launch(&drv, "selftest_warp_ops_i32", (blocks as u32, 1, 1), (threads as u32, 1, 1), &[xb.arg(), out.arg()])
            .expect("launch");
        let got: Vec<i32> = out.read();
        for (i, (g, w)) in got.chunks(14).zip(want.chunks(14)).enumerate() {
            assert_eq!(g, w, "{order}, blocks of {threads}: thread {i}");
        }
    }
}

#[test]
fn atomics_from_many_blocks_and_workers() {
    let n = 1000usize;
    let mut rng = Rng(3);
    let x: Vec<i32> = (0..n).map(|_| rng.below(500) as i32).collect();
    let drivers = [
        EmuDriver::new(),
        EmuDriver::with_order(ResumeOrder::Reversed),
        EmuDriver::with_order(ResumeOrder::Random(9)).with_workers(3).expect("workers"),
    ];
    for drv in &drivers {
        let xb = upload(drv, &x);
        let mut c0 = vec![0i32; 24];
        c0[3] = i32::MAX;
        let c = upload(drv, &c0);
        let u = upload(drv, &[0u32, 0, u32::MAX, n as u32, 0, 0]);
        let (f, d, w) = (zeroed::<f32>(drv, 1), zeroed::<f64>(drv, 1), zeroed::<u64>(drv, 1));
        let args = [xb.arg(), Arg::I32(n as i32), c.arg(), u.arg(), f.arg(), d.arg(), w.arg()];
        launch(drv, "selftest_atomics_i32", (8, 1, 1), (128, 1, 1), &args).expect("launch");
        let c: Vec<i32> = c.read();
        let name = drv.name();
        assert_eq!(c[0], n as i32, "{name}");
        assert_eq!(c[1], x.iter().sum::<i32>(), "{name}");
        assert_eq!(c[2], *x.iter().max().expect("nonempty"), "{name}");
        assert_eq!(c[3], *x.iter().min().expect("nonempty"), "{name}");
        assert_eq!(c[4], 2 * n as i32, "{name}");
        assert!((0..n as i32).contains(&c[5]), "{name}: atomicExch left {}", c[5]);
        for b in 0..16 {
            assert_eq!(c[8 + b], x.iter().filter(|&&v| v % 16 == b as i32).count() as i32, "{name}: bin {b}");
        }
        let xor = (0..n as u32).fold(0, |a, j| a ^ j);
        assert_eq!(u.read::<u32>(), [3 * n as u32, n as u32 - 1, 0, 0, u32::MAX, xor], "{name}");
        assert_eq!(f.read::<f32>(), [n as f32], "{name}");
        assert_eq!(d.read::<f64>(), [x.iter().map(|&v| 0.5 * v as f64).sum::<f64>()], "{name}");
        assert_eq!(w.read::<u64>(), [(n as u64) << 33], "{name}");
    }
}

/// Values that stress round-to-nearest-even: every half-way point between neighbouring representable
/// values and its two f32 neighbours, plus specials and a sweep of bit patterns.
fn rounding_inputs(neighbours: impl Fn(u16) -> (f32, f32), last_finite: u16) -> Vec<f32> {
    let mut xs = Vec::new();
    for h in 0..last_finite {
        let (a, b) = neighbours(h);
        let mid = (a + b) / 2.0;
        for v in [mid, f32::from_bits(mid.to_bits() + 1), f32::from_bits(mid.to_bits().saturating_sub(1)), a] {
            xs.extend([v, -v]);
        }
    }
    let specials = [0x7f80_0000u32, 0xff80_0000, 0x7fc0_0000, 0x7f80_0001, 0xffa0_1234, 0x7fbf_ffff, 0x0000_0001];
    xs.extend(specials.iter().map(|&b| f32::from_bits(b)));
    xs.extend([f32::MAX, f32::MIN_POSITIVE, 65504.0, 65519.99, 65520.0, 1e-8, 3e-8, 6e-8]);
    xs.extend((0..100_000u32).map(|k| f32::from_bits(k.wrapping_mul(0x9E37_79B1))));
    xs
}

fn cast_round_trip(kernel: &str, xs: &[f32]) -> (Vec<u16>, Vec<f32>) {
    let drv = EmuDriver::new();
    let n = xs.len();
    let (xb, h, back) = (upload(&drv, xs), zeroed::<u16>(&drv, n), zeroed::<f32>(&drv, n));
    let blocks = n.div_ceil(256) as u32;
    launch(&drv, kernel, (blocks, 1, 1), (256, 1, 1), &[xb.arg(), h.arg(), back.arg(), Arg::I32(n as i32)])
        .expect("launch");
    (h.read(), back.read())
}

#[test]
fn half_round_trips_match_the_half_crate_bit_for_bit() {
    let f16_of = |h: u16| f16::from_bits(h).to_f32();
    let xs = rounding_inputs(|h| (f16_of(h), f16_of(h + 1)), 0x7bff);
    let (h, back) = cast_round_trip("selftest_cast_f16", &xs);
    for (i, &x) in xs.iter().enumerate() {
        let want = f16::from_f32(x);
        assert_eq!(h[i], want.to_bits(), "__float2half({x:e} = {:#010x})", x.to_bits());
        assert_eq!(back[i].to_bits(), want.to_f32().to_bits(), "__half2float({:#06x})", h[i]);
    }
}

#[test]
fn bfloat16_round_trips_match_the_half_crate_bit_for_bit() {
    let bf16_of = |h: u16| bf16::from_bits(h).to_f32();
    let xs = rounding_inputs(|h| (bf16_of(h), bf16_of(h + 1)), 0x7f7f);
    let (h, back) = cast_round_trip("selftest_cast_bf16", &xs);
    for (i, &x) in xs.iter().enumerate() {
        let want = bf16::from_f32(x);
        assert_eq!(h[i], want.to_bits(), "__float2bfloat16({x:e} = {:#010x})", x.to_bits());
        assert_eq!(back[i].to_bits(), want.to_f32().to_bits(), "__bfloat162float({:#06x})", h[i]);
    }
}

#[test]
fn builtin_indices_of_a_3d_grid_of_3d_blocks() {
    let (g, b) = ((3u32, 2u32, 2u32), (4u32, 3u32, 2u32));
    let mut want = Vec::new();
    for (bz, by, bx) in itertools_3(g) {
        for (tz, ty, tx) in itertools_3(b) {
            want.extend([tx, ty, tz, bx, by, bz, b.0, b.1, b.2, g.0, g.1, g.2]);
        }
    }
    for order in [ResumeOrder::InOrder, ResumeOrder::Random(4)] {
        let drv = EmuDriver::with_order(order);
        let out = zeroed::<u32>(&drv, want.len());
        launch(&drv, "selftest_index_u32", g, b, &[out.arg()]).expect("launch");
        assert_eq!(out.read::<u32>(), want, "{order}");
    }
}

/// (z, y, x) for x fastest.
fn itertools_3(d: (u32, u32, u32)) -> impl Iterator<Item = (u32, u32, u32)> {
    (0..d.2).flat_map(move |z| (0..d.1).flat_map(move |y| (0..d.0).map(move |x| (z, y, x))))
}

fn bmm_ref(a: &[f32], b: &[f32], batch: usize, m: usize, n: usize, k: usize) -> Vec<f64> {
    let mut c = vec![0f64; batch * m * n];
    for p in 0..batch {
        for i in 0..m {
            for l in 0..k {
                let av = a[(p * m + i) * k + l] as f64;
                for j in 0..n {
                    c[(p * m + i) * n + j] += av * b[(p * k + l) * n + j] as f64;
                }
            }
        }
    }
    c
}

fn run_bmm(drv: &EmuDriver, a: &[f32], b: &[f32], batch: usize, m: usize, n: usize, k: usize) -> Vec<f32> {
    let (ab, bb, cb) = (upload(drv, a), upload(drv, b), zeroed::<f32>(drv, batch * m * n));
    let grid = (n.div_ceil(16) as u32, m.div_ceil(16) as u32, batch as u32);
    let args = [ab.arg(), bb.arg(), cb.arg(), Arg::I32(m as i32), Arg::I32(n as i32), Arg::I32(k as i32)];
    launch(drv, "selftest_bmm_f32", grid, (16, 16, 1), &args).expect("launch");
    cb.read()
}

fn assert_close(got: &[f32], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((*g as f64 - w).abs() <= tol * (1.0 + w.abs()), "{what}: element {i}: {g} vs {w}");
    }
}

#[test]
fn tiled_batched_matmul_matches_host_under_every_order() {
    let (batch, m, n, k) = (3, 37, 29, 45);
    let mut rng = Rng(5);
    let a: Vec<f32> = (0..batch * m * k).map(|_| rng.uniform() - 0.5).collect();
    let b: Vec<f32> = (0..batch * k * n).map(|_| rng.uniform() - 0.5).collect();
    let want = bmm_ref(&a, &b, batch, m, n, k);
    for order in ResumeOrder::TEST_SET {
        let got = run_bmm(&EmuDriver::with_order(order), &a, &b, batch, m, n, k);
        assert_close(&got, &want, 1e-5, &format!("{order}"));
    }
    let drv = EmuDriver::with_order(ResumeOrder::Random(6)).with_workers(2).expect("workers");
    assert_close(&run_bmm(&drv, &a, &b, batch, m, n, k), &want, 1e-5, "2 workers");
}

fn shift_ref(x: &[f32]) -> Vec<f32> {
    (0..x.len()).map(|i| if i % 64 == 0 { x[i] } else { x[i - 1] }).collect()
}

#[test]
fn shift_with_barrier_is_right_under_every_order_and_without_it_some_order_is_wrong() {
    let mut rng = Rng(7);
    let mut wrong_orders = Vec::new();
    for (run, order) in ResumeOrder::TEST_SET.into_iter().enumerate() {
        // Fresh values per run, so that stale shared memory cannot hold the right answer by chance.
        let x: Vec<f32> = (0..4 * 64).map(|i| 1.0 + rng.uniform() + (run * 1000 + i) as f32).collect();
        let drv = EmuDriver::with_order(order);
        let (xb, y) = (upload(&drv, &x), zeroed::<f32>(&drv, x.len()));
        launch(&drv, "selftest_shift_f32", (4, 1, 1), (64, 1, 1), &[xb.arg(), y.arg()]).expect("launch");
        assert_eq!(y.read::<f32>(), shift_ref(&x), "{order}: the synchronized kernel");
        launch(&drv, "selftest_racy_shift_f32", (4, 1, 1), (64, 1, 1), &[xb.arg(), y.arg()]).expect("launch");
        if y.read::<f32>() != shift_ref(&x) {
            wrong_orders.push(order);
        }
    }
    println!("racy kernel gave wrong results under: {wrong_orders:?}");
    // In order, every thread writes before its right neighbour reads, which hides the race; the other
    // orders are what catch it.
    assert!(!wrong_orders.contains(&ResumeOrder::InOrder));
    assert!(wrong_orders.contains(&ResumeOrder::Reversed), "{wrong_orders:?}");
}

#[test]
fn exited_threads_count_as_arrived_at_a_barrier() {
    let n = 300;
    let x: Vec<f32> = (0..n).map(|i| i as f32 * 0.5).collect();
    let want: Vec<f32> = (0..n)
        .map(|i| {
            let (base, t) = (i / 128 * 128, i % 128);
            let active = 128.min(n - base);
            x[i] + x[base + (t + 1) % active]
        })
        .collect();
    for order in ResumeOrder::TEST_SET {
        let drv = EmuDriver::with_order(order);
        let (xb, y) = (upload(&drv, &x), zeroed::<f32>(&drv, n));
        let args = [xb.arg(), y.arg(), Arg::I32(n as i32)];
        launch(&drv, "selftest_early_exit_f32", (3, 1, 1), (128, 1, 1), &args).expect("launch");
        assert_eq!(y.read::<f32>(), want, "{order}");
    }
}

#[test]
fn divergent_barrier_is_an_error_naming_both_lines() {
    let (a, b) = (site("divergent barrier A"), site("divergent barrier B"));
    let two_workers = || EmuDriver::with_order(ResumeOrder::Random(13)).with_workers(2).expect("workers");
    let drivers = ResumeOrder::TEST_SET.map(EmuDriver::with_order).into_iter().chain(std::iter::once_with(two_workers));
    for drv in drivers {
        let order = drv.name();
        let y = zeroed::<f32>(&drv, 64);
        let msg = device_msg(launch(&drv, "selftest_divergent_barrier_f32", (8, 1, 1), (64, 1, 1), &[y.arg()]));
        assert!(msg.contains("divergent __syncthreads") && msg.contains(&a) && msg.contains(&b), "{order}: {msg}");
        assert!(msg.contains("selftest_divergent_barrier_f32"), "{msg}");
        // The driver (and this thread's fibers) are fine after an aborted launch.
        let x = upload(&drv, &[1.0f32; 300]);
        let out = zeroed::<f32>(&drv, 1);
        launch(&drv, "selftest_reduce_f32", (1, 1, 1), (128, 1, 1), &[x.arg(), out.arg(), Arg::I32(300)])
            .expect("launch after an error");
        assert_eq!(out.read::<f32>(), [300.0]);
    }
}

#[test]
fn partial_warp_collectives_are_errors_naming_the_line() {
    let drv = EmuDriver::with_order(ResumeOrder::Random(8));
    let y = zeroed::<f32>(&drv, 64);
    let msg = device_msg(launch(&drv, "selftest_partial_warp_f32", (1, 1, 1), (64, 1, 1), &[y.arg(), Arg::I32(0)]));
    assert!(msg.contains("__shfl_xor_sync") && msg.contains(&site("selftest: partial warp")), "{msg}");
    assert!(msg.contains("part of") || msg.contains("only"), "{msg}");
    let msg = device_msg(launch(&drv, "selftest_partial_warp_f32", (1, 1, 1), (64, 1, 1), &[y.arg(), Arg::I32(1)]));
    assert!(msg.contains("full-warp mask") && msg.contains(&site("selftest: partial mask")), "{msg}");
    for order in [ResumeOrder::InOrder, ResumeOrder::Reversed] {
        let drv = EmuDriver::with_order(order);
        let y = zeroed::<f32>(&drv, 64);
        let r = launch(&drv, "selftest_partial_warp_f32", (1, 1, 1), (64, 1, 1), &[y.arg(), Arg::I32(2)]);
        let msg = device_msg(r);
        let (shuffle, barrier) = (site("selftest: deadlock shuffle"), site("selftest: deadlock barrier"));
        assert!(msg.contains("deadlock") && msg.contains(&shuffle) && msg.contains(&barrier), "{order}: {msg}");
    }
    // A block that is not a multiple of 32 threads cannot use warp collectives.
    let x = zeroed::<i32>(&drv, 48);
    let out = zeroed::<i32>(&drv, 48 * 14);
    let msg = device_msg(launch(&drv, "selftest_warp_ops_i32", (1, 1, 1), (48, 1, 1), &[x.arg(), out.arg()]));
    assert!(msg.contains("not a multiple of 32"), "{msg}");
}

#[test]
fn argument_and_lookup_errors() {
    let drv = EmuDriver::new();
    let (x, out) = (zeroed::<f32>(&drv, 256), zeroed::<f32>(&drv, 1));
    let kernel = "selftest_reduce_f32";
    // n passed as a 64-bit integer where the kernel takes int.
    let msg = device_msg(launch(&drv, kernel, (1, 1, 1), (256, 1, 1), &[x.arg(), out.arg(), Arg::I64(256)]));
    assert!(msg.contains(kernel) && msg.contains("argument 2") && msg.contains("4 bytes"), "{msg}");
    let msg = device_msg(launch(&drv, kernel, (1, 1, 1), (256, 1, 1), &[x.arg(), out.arg()]));
    assert!(msg.contains("takes 3 arguments, got 2"), "{msg}");
    let msg = device_msg(launch(&drv, "selftest_nope_f32", (1, 1, 1), (32, 1, 1), &[]));
    assert!(msg.contains("selftest_nope_f32") && msg.contains("selftest_bmm_f32"), "{msg}");
    let msg = device_msg(launch(&drv, kernel, (1, 1, 1), (2048, 1, 1), &[x.arg(), out.arg(), Arg::I32(1)]));
    assert!(msg.contains("invalid launch dimensions"), "{msg}");
    let msg = device_msg(launch(&drv, kernel, (1, 1, 1), (256, 1, 1), &[Arg::Ptr(0x1000), out.arg(), Arg::I32(1)]));
    assert!(msg.contains("argument 0") && msg.contains("live allocation"), "{msg}");
    // SAFETY: no arguments are read for an unknown family.
    let r =
        unsafe { drv.launch("no_such_family", kernel, LaunchDims { grid: (1, 1, 1), block: (1, 1, 1) }, &mut [], &[]) };
    assert!(device_msg(r).contains(FAMILY));
}

#[test]
fn memory_is_aligned_poisoned_and_range_checked() {
    let drv = EmuDriver::new();
    let a = drv.alloc(10).expect("alloc");
    assert_eq!(a % 256, 0);
    let mut back = [0u8; 10];
    drv.dtoh(&mut back, a).expect("dtoh");
    assert_eq!(back, [0xFF; 10], "fresh memory is poisoned");
    drv.memset_zero(a + 2, 8).expect("memset inside");
    assert!(drv.memset_zero(a + 2, 9).is_err(), "past the end");
    assert!(drv.htod(a + 8, &[1, 2, 3]).is_err(), "past the end");
    let b = drv.alloc(10).expect("alloc");
    drv.htod(a, &[7; 10]).expect("htod");
    drv.dtod(b, a, 10).expect("dtod");
    drv.dtoh(&mut back, b).expect("dtoh");
    assert_eq!(back, [7; 10]);
    assert_eq!(drv.live_allocations(), 2);
    // SAFETY: both came from this driver's alloc and are not used again.
    unsafe {
        drv.free(a);
        drv.free(b);
    }
    assert_eq!(drv.live_allocations(), 0);
    assert!(drv.dtoh(&mut back, a).is_err(), "freed memory is no longer accessible");
}

#[test]
fn drivers_work_concurrently_from_threads() {
    let (batch, m, n, k) = (2, 20, 24, 33);
    let mut rng = Rng(10);
    let a: Vec<f32> = (0..batch * m * k).map(|_| rng.uniform()).collect();
    let b: Vec<f32> = (0..batch * k * n).map(|_| rng.uniform()).collect();
    let want = bmm_ref(&a, &b, batch, m, n, k);
    let shared = Arc::new(EmuDriver::with_order(ResumeOrder::Random(11)).with_workers(2).expect("workers"));
    std::thread::scope(|s| {
        for (t, order) in ResumeOrder::TEST_SET.into_iter().enumerate() {
            let (a, b, want, shared) = (&a, &b, &want, Arc::clone(&shared));
            s.spawn(move || {
                let own = EmuDriver::with_order(order);
                for _ in 0..3 {
                    assert_close(&run_bmm(&own, a, b, batch, m, n, k), want, 1e-5, &format!("thread {t} {order}"));
                    assert_close(&run_bmm(&shared, a, b, batch, m, n, k), want, 1e-5, &format!("thread {t} shared"));
                }
            });
        }
    });
}

#[test]
fn timing_of_a_64x128x128x128_batched_matmul() {
    let (batch, m, n, k) = (64, 128, 128, 128);
    let mut rng = Rng(12);
    let a: Vec<f32> = (0..batch * m * k).map(|_| rng.uniform() - 0.5).collect();
    let b: Vec<f32> = (0..batch * k * n).map(|_| rng.uniform() - 0.5).collect();
    let want = bmm_ref(&a, &b, batch, m, n, k);
    for drv in [EmuDriver::new(), EmuDriver::new().with_workers(2).expect("workers")] {
        let (start, cpu_start) = (Instant::now(), thread_cpu_seconds());
        let got = run_bmm(&drv, &a, &b, batch, m, n, k);
        let secs = start.elapsed().as_secs_f64();
        let cpu = thread_cpu_seconds().zip(cpu_start).map(|(e, s)| format!(", launching thread CPU {:.3} s", e - s));
        let resumes = (batch * m * n) as f64 * (2.0 * (k / 16) as f64 + 1.0);
        println!(
            "emu timing: bmm {batch}x{m}x{n}x{k} on {}: wall {secs:.3} s{} ({:.1} ns wall per fiber resume)",
            drv.name(),
            cpu.unwrap_or_default(),
            secs * 1e9 / resumes
        );
        assert_close(&got, &want, 1e-5, "timing run");
    }
}

/// CPU time of the calling thread (Linux; None elsewhere): the machine may be shared, so wall time alone
/// says little about the emulator's speed.
fn thread_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(stat.split_whitespace().next()?.parse::<f64>().ok()? * 1e-9)
}

/// Warps drift apart under random orders: a read of another warp's shared slot separated from its
/// write by warp collectives only (no `__syncthreads`) sees the old value in some random orders and the
/// new one in order, as independent warps can on a GPU. Without that drift, `emu/mutate_syncthreads.sh`
/// could not catch a barrier deleted between collective-separated phases (the tensor-core GEMM's
/// epilogue, `block_sum_d`'s entry).
#[test]
fn warps_drift_apart_under_random_orders() {
    let blocks = 32usize;
    let values = |order: ResumeOrder| -> Vec<i32> {
        let drv = EmuDriver::with_order(order);
        let out = zeroed::<i32>(&drv, blocks * 64);
        launch(&drv, "selftest_warp_drift_i32", (blocks as u32, 1, 1), (64, 1, 1), &[out.arg()]).expect("launch");
        out.read()
    };
    // In order, warps pass one collective per round together: every read sees the new value.
    assert!(values(ResumeOrder::InOrder).iter().all(|&v| v == 2), "in order");
    let mut seen = [false; 2];
    for seed in 0..8 {
        for v in values(ResumeOrder::Random(seed)) {
            assert!(v == 1 || v == 2, "seed {seed}: read {v}");
            seen[(v - 1) as usize] = true;
        }
    }
    assert!(seen[0], "no random order let a warp read before the other warp wrote");
    assert!(seen[1], "no random order let a warp read after the other warp wrote");
}
