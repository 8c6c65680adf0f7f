//! Cooperative launches, the grid-wide barrier and graph record/replay of the emulated driver, with the
//! kernels of `kernels/emu_selftest_grid.cu` (a module of the `emu_harness` test binary).

use super::{Rng, upload, zeroed};
use ortho_rnn::Error;
use ortho_rnn::backend::cuda::driver::{Arg, Driver, LaunchDims, PackedArgs};
use ortho_rnn::backend::cuda::emu::{EmuDriver, ResumeOrder};

const FAMILY: &str = "emu_selftest_grid";
const SOURCE: &str = include_str!("../../kernels/emu_selftest_grid.cu");

fn run(drv: &EmuDriver, kernel: &str, grid: u32, block: u32, args: &[Arg], cooperative: bool) -> ortho_rnn::Result<()> {
    let mut packed = PackedArgs::new(args);
    let mut ptrs = packed.pointers();
    let dims = LaunchDims { grid: (grid, 1, 1), block: (block, 1, 1) };
    // SAFETY: the arguments follow the kernel's signature in emu_selftest_grid.cu and the buffers hold
    // gridDim * blockDim elements (what the kernels index).
    unsafe {
        if cooperative {
            drv.launch_cooperative(FAMILY, kernel, dims, &mut ptrs, packed.sizes())
        } else {
            drv.launch(FAMILY, kernel, dims, &mut ptrs, packed.sizes())
        }
    }
}

fn site(marker: &str) -> String {
    let line = SOURCE.lines().position(|l| l.contains(marker)).expect("marker in source") + 1;
    format!("kernels/emu_selftest_grid.cu:{line}")
}

fn device_msg(r: ortho_rnn::Result<()>) -> String {
    match r {
        Err(Error::Device(msg)) => msg,
        other => panic!("expected Error::Device, got {other:?}"),
    }
}

fn rotated(x: &[f32], steps: usize) -> Vec<f32> {
    (0..x.len()).map(|i| x[(i + steps) % x.len()]).collect()
}

/// Rotating a vector one position per step across 5 blocks with a grid barrier per step is right under
/// every resume order (blocks and threads) and with several workers; without the barrier some order is
/// wrong.
#[test]
fn grid_barrier_orders_every_block_and_without_it_some_order_is_wrong() {
    let (grid, block, steps) = (5u32, 64u32, 7usize);
    let n = (grid * block) as usize;
    let mut rng = Rng(21);
    let mut wrong = Vec::new();
    let drivers: Vec<(String, EmuDriver)> = ResumeOrder::TEST_SET
        .into_iter()
        .map(|o| (o.to_string(), EmuDriver::with_order(o)))
        .chain(std::iter::once((
            "3 workers".to_string(),
            EmuDriver::with_order(ResumeOrder::Random(5)).with_workers(3).expect("workers"),
        )))
        .collect();
    for (name, drv) in &drivers {
        let x: Vec<f32> = (0..n).map(|_| rng.uniform()).collect();
        let (a, b) = (upload(drv, &x), zeroed::<f32>(drv, n));
        run(drv, "selftest_grid_rotate_f32", grid, block, &[a.arg(), b.arg(), Arg::I32(steps as i32)], true)
            .expect("rotate");
        assert_eq!(b.read::<f32>(), rotated(&x, steps), "{name}");
        let (a, b) = (upload(drv, &x), zeroed::<f32>(drv, n));
        run(drv, "selftest_grid_racy_rotate_f32", grid, block, &[a.arg(), b.arg(), Arg::I32(steps as i32)], true)
            .expect("racy rotate");
        if b.read::<f32>() != rotated(&x, steps) {
            wrong.push(name.clone());
        }
    }
    println!("the rotation without its grid barrier was wrong under: {wrong:?}");
    assert!(wrong.len() >= 2, "{wrong:?}");
}

/// Every block keeps its own shared memory while all blocks are alive, and partials written before a
/// grid barrier are seen by every block after it.
#[test]
fn shared_memory_is_per_block_across_grid_barriers() {
    let (grid, block) = (6u32, 256u32);
    let n = (grid * block) as usize;
    let x: Vec<f32> = (0..n).map(|i| (i % 17) as f32).collect();
    let want_total: f32 = x.iter().sum();
    for order in ResumeOrder::TEST_SET {
        let drv = EmuDriver::with_order(order);
        let (xb, part, out, total) = (
            upload(&drv, &x),
            zeroed::<f32>(&drv, grid as usize),
            zeroed::<f32>(&drv, grid as usize),
            zeroed::<f32>(&drv, 1),
        );
        let args = [xb.arg(), part.arg(), out.arg(), total.arg()];
        run(&drv, "selftest_grid_shared_f32", grid, block, &args, true).expect("launch");
        assert_eq!(out.read::<f32>(), (0..grid).map(|b| b as f32).collect::<Vec<_>>(), "{order}");
        assert_eq!(total.read::<f32>()[0], want_total, "{order}");
    }
}

#[test]
fn invalid_grid_barriers_are_errors_naming_the_lines() {
    for order in ResumeOrder::TEST_SET {
        let drv = EmuDriver::with_order(order);
        let x = zeroed::<f32>(&drv, 4 * 64);
        let msg = device_msg(run(&drv, "selftest_grid_divergent_f32", 4, 64, &[x.arg()], true));
        assert!(msg.contains("divergent grid barriers"), "{order}: {msg}");
        let (a, b) = (site("divergent grid barrier A"), site("divergent grid barrier B"));
        assert!(msg.contains(&a) && msg.contains(&b), "{order}: {msg} should name {a} and {b}");

        let msg = device_msg(run(&drv, "selftest_grid_early_exit_f32", 4, 64, &[x.arg()], true));
        assert!(msg.contains("exited") && msg.contains(&site("early-exit grid barrier")), "{order}: {msg}");

        let msg = device_msg(run(&drv, "selftest_grid_mixed_f32", 2, 64, &[x.arg()], true));
        let (g, s) = (site("mixed grid barrier"), site("mixed block barrier"));
        assert!(msg.contains(&g) && msg.contains(&s), "{order}: {msg}");
    }
    // A grid barrier in a plain launch.
    let drv = EmuDriver::new();
    let (a, b) = (zeroed::<f32>(&drv, 128), zeroed::<f32>(&drv, 128));
    let msg = device_msg(run(&drv, "selftest_grid_rotate_f32", 2, 64, &[a.arg(), b.arg(), Arg::I32(1)], false));
    assert!(msg.contains("not cooperative"), "{msg}");
}

#[test]
fn grids_larger_than_the_device_or_the_emulator_co_schedules_are_errors() {
    // One SM holds 2048 / 1024 = 2 blocks of 1024 threads: 3 blocks cannot be co-resident.
    let drv = EmuDriver::new().with_sm_count(1).expect("sm count");
    let (a, b) = (zeroed::<f32>(&drv, 3 * 1024), zeroed::<f32>(&drv, 3 * 1024));
    let args = [a.arg(), b.arg(), Arg::I32(1)];
    let msg = device_msg(run(&drv, "selftest_grid_rotate_f32", 3, 1024, &args, true));
    assert!(msg.contains("cannot be co-resident") && msg.contains("1 SMs x 2 blocks"), "{msg}");
    run(&drv, "selftest_grid_rotate_f32", 2, 1024, &args, true).expect("2 blocks fit");
    // 1025 blocks of 32 threads fit a 1024-SM device but not the emulator (1024 blocks at most).
    let drv = EmuDriver::new().with_sm_count(1024).expect("sm count");
    let (a, b) = (zeroed::<f32>(&drv, 1025 * 32), zeroed::<f32>(&drv, 1025 * 32));
    let msg = device_msg(run(&drv, "selftest_grid_rotate_f32", 1025, 32, &[a.arg(), b.arg(), Arg::I32(1)], true));
    assert!(msg.contains("larger than the emulator co-schedules"), "{msg}");
}

/// A recorded graph replays the launch list with the arguments it was recorded with (a later change of
/// the host-side argument does not reach it), memsets and device copies included; host transfers and
/// synchronizations inside a capture are errors; the profile counts replayed kernels.
#[test]
fn graphs_record_and_replay_launches_memsets_and_copies() {
    let drv = EmuDriver::with_order(ResumeOrder::Random(3));
    let n = 4 * 64;
    let x: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let (a, b, c) = (upload(&drv, &x), zeroed::<f32>(&drv, n), zeroed::<f32>(&drv, n));
    drv.begin_capture().expect("begin");
    let mut steps = 3;
    run(&drv, "selftest_grid_rotate_f32", 4, 64, &[a.arg(), b.arg(), Arg::I32(steps)], true).expect("record");
    steps = 1; // not seen by the graph: arguments are recorded by value
    let _ = steps;
    drv.dtod(c.ptr, b.ptr, 4 * n).expect("record copy");
    drv.memset_zero(a.ptr, 4 * n).expect("record memset");
    let msg = device_msg(drv.htod(a.ptr, &[0u8; 4]));
    assert!(msg.contains("during graph capture"), "{msg}");
    assert!(drv.synchronize().is_err() && drv.alloc(4).is_err());
    let g = drv.end_capture().expect("end");
    assert_eq!(b.read::<f32>(), vec![0.0; n], "recording runs nothing");
    let before = drv.counters().snapshot();
    drv.replay(g).expect("replay");
    let p = drv.counters().snapshot().since(&before);
    assert_eq!((p.launches, p.graph_kernels, p.graph_replays, p.cooperative_launches), (1, 1, 1, 1));
    assert_eq!(b.read::<f32>(), rotated(&x, 3));
    assert_eq!(c.read::<f32>(), rotated(&x, 3));
    assert_eq!(a.read::<f32>(), vec![0.0; n]);
    // Replaying again from new contents of `a` runs the same list on the new data.
    drv.htod(a.ptr, bytemuck::cast_slice(&x)).expect("htod");
    drv.replay(g).expect("replay");
    assert_eq!(c.read::<f32>(), rotated(&x, 3));
    drv.destroy_graph(g);
    assert!(drv.replay(g).is_err());
}
