//! The emulator's tensor-core fragments (`nvcuda::wmma`) and asynchronous copies (cp.async), with the
//! kernels of `kernels/emu_selftest_tc.cu`: results against a host model of the documented semantics
//! (bit for bit), under every resume order, and the invalid uses as errors naming the line.

use super::{Rng, device_msg, upload, zeroed};
use half::bf16;
use ortho_rnn::backend::cuda::driver::{Arg, Driver, LaunchDims, PackedArgs};
use ortho_rnn::backend::cuda::emu::{EmuDriver, ResumeOrder};

const FAMILY: &str = "emu_selftest_tc";
const SOURCE: &str = include_str!("../../kernels/emu_selftest_tc.cu");

fn launch(drv: &EmuDriver, kernel: &str, grid: u32, block: u32, args: &[Arg]) -> ortho_rnn::Result<()> {
    let mut packed = PackedArgs::new(args);
    let mut ptrs = packed.pointers();
    let dims = LaunchDims { grid: (grid, 1, 1), block: (block, 1, 1) };
    // SAFETY: the arguments follow the kernel's documented signature and the buffer sizes it reads.
    unsafe { drv.launch(FAMILY, kernel, dims, &mut ptrs, packed.sizes()) }
}

/// `file:line` of the line of emu_selftest_tc.cu containing `marker`.
fn site(marker: &str) -> String {
    let line = SOURCE.lines().position(|l| l.contains(marker)).expect("marker in source") + 1;
    format!("kernels/emu_selftest_tc.cu:{line}")
}

/// `cvt.rna.tf32.f32`: round to 10 mantissa bits, to nearest, ties away from zero.
fn tf32_round(x: f32) -> f32 {
    let b = x.to_bits();
    if b & 0x7F80_0000 == 0x7F80_0000 { x } else { f32::from_bits((b + 0x1000) & 0xFFFF_E000) }
}

/// What the tensor core reads of an f32 operand: its low 13 mantissa bits are ignored.
fn tf32_truncate(x: f32) -> f32 {
    if x.is_nan() { x } else { f32::from_bits(x.to_bits() & 0xFFFF_E000) }
}

#[test]
fn tf32_rounding_model() {
    let one = 1.0f32;
    let ulp10 = 2f32.powi(-10);
    assert_eq!(tf32_round(one + ulp10 / 2.0), one + ulp10, "a tie rounds away from zero");
    assert_eq!(tf32_round(-(one + ulp10 / 2.0)), -(one + ulp10));
    assert_eq!(tf32_round(one + ulp10 / 4.0), one);
    assert_eq!(tf32_round(one + 3.0 * ulp10 / 4.0), one + ulp10);
    assert_eq!(tf32_truncate(one + 3.0 * ulp10 / 4.0), one);
    assert!(tf32_round(f32::NAN).is_nan() && tf32_round(f32::INFINITY) == f32::INFINITY);
}

/// The selftest chain on the host: `D = C + sum_s A_s B_s`, operands as the tensor core reads them,
/// products accumulated in f32 with one fused multiply-add per k, in k order (the emulator's documented
/// order; a GPU may differ in the last bits, which is why this is an emulator test).
#[allow(clippy::too_many_arguments)]
fn chain_ref(
    a: &[f32],
    b: &[f32],
    c: &[f32],
    problems: usize,
    steps: usize,
    ks: usize,
    layout: u32,
    read: impl Fn(f32) -> f32,
) -> Vec<f32> {
    let (a_col, b_col, c_col, d_col) = (layout & 1 != 0, layout & 2 != 0, layout & 4 != 0, layout & 8 != 0);
    let mut out = vec![0f32; problems * 256];
    for p in 0..problems {
        let mut acc = [[0f32; 16]; 16];
        for (r, row) in acc.iter_mut().enumerate() {
            for (col, v) in row.iter_mut().enumerate() {
                *v = c[p * 256 + if c_col { col * 16 + r } else { r * 16 + col }];
            }
        }
        for s in 0..steps {
            let base = (p * steps + s) * 16 * ks;
            let av = |r: usize, k: usize| read(a[base + if a_col { k * 16 + r } else { r * ks + k }]);
            let bv = |k: usize, col: usize| read(b[base + if b_col { col * ks + k } else { k * 16 + col }]);
            for (r, row) in acc.iter_mut().enumerate() {
                for (col, v) in row.iter_mut().enumerate() {
                    for k in 0..ks {
                        *v = av(r, k).mul_add(bv(k, col), *v);
                    }
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (col, v) in row.iter().enumerate() {
                out[p * 256 + if d_col { col * 16 + r } else { r * 16 + col }] = *v;
            }
        }
    }
    out
}

const WARPS: usize = 3;
const BLOCKS: usize = 2;
const STEPS: usize = 3;

#[test]
fn wmma_tf32_matches_the_host_model_bit_for_bit_under_every_order() {
    let problems = WARPS * BLOCKS;
    let mut rng = Rng(21);
    let mut vals = |n: usize| (0..n).map(|_| rng.uniform() * 2.0 - 1.0).collect::<Vec<f32>>();
    let (a, b, c) = (vals(problems * STEPS * 128), vals(problems * STEPS * 128), vals(problems * 256));
    for convert in [0, 1] {
        let read = if convert == 1 { tf32_round } else { tf32_truncate };
        for layout in 0..16u32 {
            let want = chain_ref(&a, &b, &c, problems, STEPS, 8, layout, read);
            for order in ResumeOrder::TEST_SET {
                let drv = EmuDriver::with_order(order);
                let (da, db, dc, dd) =
                    (upload(&drv, &a), upload(&drv, &b), upload(&drv, &c), zeroed::<f32>(&drv, 256 * problems));
                let args = [
                    Arg::I32(STEPS as i32),
                    Arg::I32(layout as i32),
                    Arg::I32(convert),
                    da.arg(),
                    db.arg(),
                    dc.arg(),
                    dd.arg(),
                ];
                launch(&drv, "selftest_wmma_tf32", BLOCKS as u32, 32 * WARPS as u32, &args).expect("launch");
                let got: Vec<f32> = dd.read();
                assert!(
                    got.iter().zip(&want).all(|(g, w)| g.to_bits() == w.to_bits()),
                    "tf32 layout {layout:04b} convert {convert} {order}: first mismatch {:?}",
                    got.iter().zip(&want).enumerate().find(|(_, (g, w))| g.to_bits() != w.to_bits())
                );
            }
        }
        // Sanity of the model: within TF32's operand error of the exact f64 product.
        let exact = chain_ref(&a, &b, &c, problems, STEPS, 8, 0, |x| x);
        let model = chain_ref(&a, &b, &c, problems, STEPS, 8, 0, read);
        let worst = exact.iter().zip(&model).map(|(e, m)| (e - m).abs()).fold(0f32, f32::max);
        assert!(worst > 0.0 && worst < 24.0 * 2.0 * 2f32.powi(-10), "convert {convert}: {worst}");
    }
}

#[test]
fn wmma_bf16_matches_the_host_model_bit_for_bit_under_every_order() {
    let problems = WARPS * BLOCKS;
    let mut rng = Rng(22);
    let mut vals = |n: usize| (0..n).map(|_| bf16::from_f32(rng.uniform() * 2.0 - 1.0)).collect::<Vec<bf16>>();
    let (a, b) = (vals(problems * STEPS * 256), vals(problems * STEPS * 256));
    let c: Vec<f32> = (0..problems * 256).map(|i| (i % 17) as f32 * 0.125 - 1.0).collect();
    let (af, bf): (Vec<f32>, Vec<f32>) =
        (a.iter().map(|v| v.to_f32()).collect(), b.iter().map(|v| v.to_f32()).collect());
    for layout in 0..16u32 {
        let want = chain_ref(&af, &bf, &c, problems, STEPS, 16, layout, |x| x);
        for order in ResumeOrder::TEST_SET {
            let drv = EmuDriver::with_order(order);
            let (da, db, dc, dd) =
                (upload(&drv, &a), upload(&drv, &b), upload(&drv, &c), zeroed::<f32>(&drv, 256 * problems));
            let args = [Arg::I32(STEPS as i32), Arg::I32(layout as i32), da.arg(), db.arg(), dc.arg(), dd.arg()];
            launch(&drv, "selftest_wmma_bf16", BLOCKS as u32, 32 * WARPS as u32, &args).expect("launch");
            let got: Vec<f32> = dd.read();
            assert!(got.iter().zip(&want).all(|(g, w)| g.to_bits() == w.to_bits()), "bf16 layout {layout:04b} {order}");
        }
    }
}

#[test]
fn wmma_fill_and_element_wise_updates() {
    for order in [ResumeOrder::InOrder, ResumeOrder::Random(3)] {
        let drv = EmuDriver::with_order(order);
        let d = zeroed::<f32>(&drv, 256);
        launch(&drv, "selftest_wmma_fill", 1, 32, &[Arg::F32(0.75), d.arg()]).expect("launch");
        assert_eq!(d.read::<f32>(), vec![3.5f32; 256], "{order}: 2 (0.75 + 8 * 0.5 * 0.25)");
    }
}

#[test]
fn wmma_misuse_is_an_error_naming_the_line() {
    for order in [ResumeOrder::InOrder, ResumeOrder::Reversed, ResumeOrder::Random(4)] {
        let drv = EmuDriver::with_order(order);
        let d = zeroed::<f32>(&drv, 256);
        let msg = device_msg(launch(&drv, "selftest_wmma_partial_warp", 1, 32, &[d.arg()]));
        assert!(msg.contains(&site("selftest: partial mma")), "{order}: {msg}");
        assert!(msg.contains("part of") || msg.contains("exited while"), "{order}: {msg}");
        let x = upload(&drv, &[1f32; 300]);
        let msg = device_msg(launch(&drv, "selftest_wmma_misaligned", 1, 32, &[x.arg(), d.arg()]));
        assert!(msg.contains(&site("selftest: misaligned load")) && msg.contains("32-byte aligned"), "{msg}");
        // The worker recovers: a valid launch after the failures.
        launch(&drv, "selftest_wmma_fill", 1, 32, &[Arg::F32(0.0), d.arg()]).expect("launch after errors");
        assert_eq!(d.read::<f32>(), vec![2.0f32; 256]);
    }
}

#[test]
fn cp_async_copies_land_at_the_wait_of_their_group() {
    let src: Vec<f32> = (0..832).map(|i| i as f32 + 0.5).collect();
    for prior in [0usize, 1, 2, 3, 9] {
        for order in [ResumeOrder::InOrder, ResumeOrder::Reversed, ResumeOrder::Random(5)] {
            let drv = EmuDriver::with_order(order);
            let (s, out) = (upload(&drv, &src), zeroed::<f32>(&drv, 64 * 14));
            launch(&drv, "selftest_cp_async_groups", 1, 64, &[s.arg(), Arg::I32(prior as i32), out.arg()])
                .expect("launch");
            let got: Vec<f32> = out.read();
            // Groups 0, 1, 2 are committed; waiting with `prior` leaves the newest min(prior, 8) pending.
            let landed = 3usize.saturating_sub(prior.min(8));
            for t in 0..64 {
                let row = &got[14 * t..14 * t + 14];
                for g in 0..3 {
                    for j in 0..4 {
                        let want = if g < landed { src[256 * g + 4 * t + j] } else { -1.0 };
                        assert_eq!(row[4 * g + j], want, "prior {prior} {order}: thread {t} group {g}");
                    }
                }
                assert_eq!(row[12], -1.0, "prior {prior}: an uncommitted copy never lands at a wait");
                assert_eq!(row[13], if landed > 0 { 0.0 } else { -1.0 }, "prior {prior}: zero fill of group 0");
            }
        }
    }
}

#[test]
fn cp_async_data_of_other_threads_needs_the_barrier_after_the_wait() {
    let (blocks, threads) = (3usize, 96usize);
    let mut rng = Rng(23);
    let x: Vec<f32> = (0..blocks * threads).map(|_| rng.uniform() + 1.0).collect();
    let want: Vec<f32> =
        (0..blocks * threads).map(|i| x[i / threads * threads + (i % threads + 1) % threads]).collect();
    let mut wrong = Vec::new();
    for order in ResumeOrder::TEST_SET {
        let drv = EmuDriver::with_order(order);
        let (xb, out) = (upload(&drv, &x), zeroed::<f32>(&drv, blocks * threads));
        launch(&drv, "selftest_cp_async_shift", blocks as u32, threads as u32, &[xb.arg(), Arg::I32(1), out.arg()])
            .expect("launch");
        assert_eq!(out.read::<f32>(), want, "{order}: with the barrier");
        launch(&drv, "selftest_cp_async_shift", blocks as u32, threads as u32, &[xb.arg(), Arg::I32(0), out.arg()])
            .expect("launch");
        if out.read::<f32>() != want {
            wrong.push(order);
        }
    }
    // Without the barrier a thread that runs ahead reads its neighbour's slot before that thread's
    // wait performed the copy; in order, the last thread of each block still reads thread 0's landed
    // copy, but every other thread reads ahead of its neighbour.
    assert!(wrong.contains(&ResumeOrder::InOrder) && wrong.len() == ResumeOrder::TEST_SET.len(), "{wrong:?}");
}

#[test]
fn cp_async_misaligned_copy_is_an_error_naming_the_line() {
    let drv = EmuDriver::new();
    let (x, out) = (upload(&drv, &[1f32; 8]), zeroed::<f32>(&drv, 32));
    let msg = device_msg(launch(&drv, "selftest_cp_async_misaligned", 1, 32, &[x.arg(), out.arg()]));
    assert!(msg.contains(&site("selftest: misaligned copy")) && msg.contains("16-byte aligned"), "{msg}");
}
