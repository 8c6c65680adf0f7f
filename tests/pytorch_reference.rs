//! Forward and backward numbers of one small Elman RNN against PyTorch 2.15 (float64).
//!
//! Produced by this script (`python3 elman_ref.py`):
//!
//! ```python
//! import torch, math
//! torch.set_default_dtype(torch.float64)
//! T, B, I, N, C = 3, 2, 3, 4, 5
//! def det(shape, k):  # deterministic, irregular values
//!     n = math.prod(shape)
//!     return torch.tensor([math.sin(k * 1.3 + 0.7 * i) * 0.5 for i in range(n)]).reshape(shape)
//! rnn = torch.nn.RNN(I, N, nonlinearity="tanh", bias=True)
//! with torch.no_grad():
//!     rnn.weight_ih_l0.copy_(det((N, I), 1)); rnn.weight_hh_l0.copy_(det((N, N), 2))
//!     rnn.bias_ih_l0.copy_(det((N,), 3)); rnn.bias_hh_l0.zero_()
//! readout = torch.nn.Linear(N, C)
//! with torch.no_grad():
//!     readout.weight.copy_(det((C, N), 4)); readout.bias.copy_(det((C,), 5))
//! x = det((T, B, I), 6) * 2
//! y = torch.tensor([[1, 4], [0, 2], [3, 3]])
//! h, _ = rnn(x, torch.zeros(1, B, N))
//! loss = torch.nn.functional.cross_entropy(readout(h).reshape(T * B, C), y.reshape(-1))
//! loss.backward()
//! fmt = lambda t: ", ".join(f"{v:.15e}" for v in t.detach().reshape(-1).tolist())
//! print("loss", f"{loss.item():.15e}")
//! print("h_T", fmt(h[-1]))
//! for name, p in [("dV", rnn.weight_ih_l0), ("dW", rnn.weight_hh_l0), ("db", rnn.bias_ih_l0),
//!                 ("dWo", readout.weight), ("dbo", readout.bias)]:
//!     print(name, fmt(p.grad))
//! ```

use ortho_rnn::backend::cpu::Cpu;
use ortho_rnn::backend::{Activation, Backend, Slice, SliceMut};
use ortho_rnn::nn::rnn::{Rnn, RnnConfig};
use ortho_rnn::nn::{Model, Pass};
use ortho_rnn::optim::regularize::Regularizers;
use ortho_rnn::param::free::Free;
use ortho_rnn::tasks::{Batch, LossKind};
use rand::SeedableRng;

const LOSS: f64 = 1.707370048674136e+00;
const H_T: [f64; 8] = [
    -8.294795264438048e-01,
    5.195058272655152e-01,
    -6.617343503657483e-01,
    -5.058121283665138e-01,
    -2.352063241230943e-01,
    -7.062637106217858e-01,
    -1.210_018_594_288_35e-1,
    3.396180464481695e-02,
];
const DV: [f64; 12] = [
    -1.489880888878526e-02,
    -3.733333918996651e-02,
    -4.220941672059002e-02,
    2.850610641213433e-02,
    2.064198632775214e-03,
    -2.534853401757137e-02,
    7.429134800238268e-02,
    -8.380177246130278e-03,
    -8.711037419190665e-02,
    6.398892051353507e-02,
    1.153377709824974e-02,
    -4.634588190658102e-02,
];
const DW: [f64; 16] = [
    -4.961916180964919e-02,
    7.621387761674643e-02,
    3.584956455113359e-02,
    -5.382242841180024e-02,
    -3.029153450780367e-02,
    1.052948196607447e-01,
    4.237950091689179e-02,
    -5.564632252712719e-02,
    -8.376034476605991e-02,
    1.294476589324665e-01,
    6.205652416538537e-02,
    -1.006723746606395e-01,
    -4.062490255803115e-02,
    5.110615361920755e-02,
    3.032914169563669e-02,
    -4.816376111834288e-02,
];
const DB: [f64; 4] = [-1.300799594987388e-01, -9.524588852736708e-02, -8.898979286660147e-02, -1.073739601116519e-02];
const DWO: [f64; 20] = [
    2.142462499450756e-02,
    4.744209587420753e-02,
    -4.282701975381376e-02,
    -2.845309361576365e-03,
    -1.145623258672346e-01,
    8.332076616913417e-02,
    2.649470655703911e-02,
    -1.066500197718233e-01,
    -1.621142760817084e-01,
    2.208559352633353e-02,
    -3.139_264_773_836_99e-2,
    -1.014962604187116e-01,
    1.550_099_377_050_24e-1,
    -1.156035349132171e-02,
    6.787631630932955e-02,
    8.115840494125051e-02,
    1.002420392494114e-01,
    -1.412881020783535e-01,
    -2.015135537418501e-02,
    1.298331846108608e-01,
];
const DBO: [f64; 5] = [
    -2.156361073910665e-04,
    4.186751643884233e-04,
    1.444_192_567_348_01e-1,
    -1.978869170673669e-01,
    5.326462127556861e-02,
];

fn det(len: usize, k: f64) -> Vec<f64> {
    (0..len).map(|i| (k * 1.3 + 0.7 * i as f64).sin() * 0.5).collect()
}

#[test]
fn elman_rnn_matches_pytorch() {
    let (t, bs, inp, n, c) = (3, 2, 3, 4, 5);
    let b = Cpu::<f64>::new(1);
    let cfg = RnnConfig {
        input: inp,
        hidden: n,
        loss: LossKind::XentEveryStep { classes: c },
        acc_last: None,
        activation: Activation::Tanh,
        prelu_slope: 0.7,
        prelu_trainable: false,
        regs: Regularizers::default(),
        init_in: Default::default(),
        init_out: Default::default(),
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let tp = Free::params(&b, n, &det(n * n, 2.0)).unwrap();
    let mut m = Rnn::new(&b, cfg, &mut rng, Box::new(Free), tp).unwrap();
    for (name, k) in [("W_in", 1.0), ("b", 3.0), ("W_o", 4.0), ("b_o", 5.0)] {
        let p = m.params_mut().iter_mut().find(|p| p.name == name).unwrap();
        let v = det(p.len(), k);
        b.write(SliceMut::all(&mut p.value), &v).unwrap();
    }
    m.refresh().unwrap();
    let x: Vec<f32> = det(t * bs * inp, 6.0).iter().map(|v| (v * 2.0) as f32).collect();
    // f32 inputs are exact enough here: the reference used the same values rounded to f64, so
    // compare the inputs' effect at the f32 rounding level below.
    let batch = Batch { t, batch: bs, input_dim: inp, x, y: vec![1.0, 4.0, 0.0, 2.0, 3.0, 3.0] };
    let st = m.run(&batch, Pass::Train).unwrap();
    // Inputs pass through f32 in a Batch (rounding ~3e-8 relative), so 1e-6 is the honest bound.
    let close = |got: &[f64], want: &[f64], what: &str| {
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() <= 1e-6 * (1.0 + w.abs()), "{what}[{i}]: got {g:.15e}, PyTorch {w:.15e}");
        }
    };
    close(&[st.loss], &[LOSS], "loss");
    let grad = |name: &str| {
        let p = m.params().iter().find(|p| p.name == name).unwrap();
        b.download(Slice::all(&p.grad)).unwrap()
    };
    close(&grad("W_in"), &DV, "dV");
    close(&grad("W"), &DW, "dW");
    close(&grad("b"), &DB, "db");
    close(&grad("W_o"), &DWO, "dW_o");
    close(&grad("b_o"), &DBO, "db_o");
    close(&m.last_hidden().unwrap(), &H_T, "h_T");
}
