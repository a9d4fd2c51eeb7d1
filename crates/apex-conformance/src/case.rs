//! One APEX operator evaluated on host data: the op, its flags and its named
//! input tensors, run on any backend to produce the named outputs of spec §0.1.

use apex_core::{
    ops, ApexError, Backend, Element, MixColumn, MixRow, Mixer, MixerGrads, Monarch, Result,
    S2Linear,
};
use std::collections::BTreeMap;

/// The operators a conformance case can exercise (spec §0.1 `op`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Monarch,
    MixColumn,
    MixRow,
    S2Column,
    S2Row,
}

impl Op {
    /// Parses the metadata spelling (`monarch`, `mix_column`, …).
    pub fn parse(name: &str) -> Option<Op> {
        Some(match name {
            "monarch" => Op::Monarch,
            "mix_column" => Op::MixColumn,
            "mix_row" => Op::MixRow,
            "s2_column" => Op::S2Column,
            "s2_row" => Op::S2Row,
            _ => return None,
        })
    }

    /// The metadata spelling.
    pub fn name(self) -> &'static str {
        match self {
            Op::Monarch => "monarch",
            Op::MixColumn => "mix_column",
            Op::MixRow => "mix_row",
            Op::S2Column => "s2_column",
            Op::S2Row => "s2_row",
        }
    }

    /// Input tensor names (optional `bias` excluded).
    pub fn inputs(self) -> &'static [&'static str] {
        match self {
            Op::Monarch => &["x", "blkdiag1", "blkdiag2", "grad_out"],
            Op::MixColumn => &[
                "x",
                "weight",
                "s2",
                "blkdiag1",
                "blkdiag2",
                "mixer_vec",
                "mixer_scale",
                "grad_out",
            ],
            Op::MixRow => &[
                "x",
                "weight",
                "s2",
                "blkdiag1",
                "blkdiag2",
                "mixer_vec",
                "grad_out",
            ],
            Op::S2Column | Op::S2Row => &["x", "weight", "s2", "grad_out"],
        }
    }
}

/// A host tensor: f64 values, row-major, and a shape.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    pub data: Vec<f64>,
    pub shape: Vec<usize>,
}

impl HostTensor {
    pub fn new(data: Vec<f64>, shape: &[usize]) -> Self {
        debug_assert_eq!(data.len(), shape.iter().product::<usize>());
        HostTensor {
            data,
            shape: shape.to_vec(),
        }
    }
}

/// An operator with its inputs. `grad_out` is the output gradient G; all
/// gradients are of L = Σ out ⊙ G.
#[derive(Clone, Debug)]
pub struct Case {
    pub op: Op,
    /// mix_channels mode (MixColumn / MixRow).
    pub mix: bool,
    pub inputs: BTreeMap<String, HostTensor>,
}

/// Named outputs of a case, as host tensors.
pub type Outputs = BTreeMap<String, HostTensor>;

impl Case {
    /// Input `name`, or a format error naming it.
    pub fn input(&self, name: &str) -> Result<&HostTensor> {
        self.inputs.get(name).ok_or_else(|| {
            ApexError::format(self.op.name(), format!("missing input tensor `{name}`"))
        })
    }

    /// L = Σ out ⊙ G for this case on `backend` (for finite differences).
    pub fn loss<B: Backend>(&self, backend: &B) -> Result<f64> {
        let outputs = run_case(backend, self)?;
        let out = &outputs["out"].data;
        let g = &self.input("grad_out")?.data;
        Ok(out.iter().zip(g).map(|(a, b)| a * b).sum())
    }
}

fn upload<B: Backend>(backend: &B, t: &HostTensor) -> Result<B::Tensor> {
    ops::upload_f64(backend, &t.data, &t.shape)
}

fn download<B: Backend>(backend: &B, t: &B::Tensor) -> Result<HostTensor> {
    Ok(HostTensor {
        data: ops::download_f64(backend, t)?,
        shape: backend.shape(t).to_vec(),
    })
}

/// Runs `case` on `backend`: forward, backward for `grad_out`, and fusion.
/// Output names follow spec §0.1 without the `expected.` prefix.
pub fn run_case<B: Backend>(backend: &B, case: &Case) -> Result<Outputs> {
    let get = |name: &str| -> Result<B::Tensor> { upload(backend, case.input(name)?) };
    let bias = match case.inputs.get("bias") {
        Some(b) => Some(upload(backend, b)?),
        None => None,
    };
    let mut outputs = Outputs::new();
    let mut put = |name: &str, t: &B::Tensor| -> Result<()> {
        outputs.insert(name.to_string(), download(backend, t)?);
        Ok(())
    };
    let x = get("x")?;
    let g = get("grad_out")?;
    match case.op {
        Op::Monarch => {
            let monarch = Monarch::from_factors(backend, get("blkdiag1")?, get("blkdiag2")?)?;
            let out = monarch.forward(backend, &x)?;
            let (grad_x, grads) = monarch.backward(backend, &x, &g)?;
            put("out", &out)?;
            put("grad_x", &grad_x)?;
            put("grad_blkdiag1", &grads.blkdiag1)?;
            put("grad_blkdiag2", &grads.blkdiag2)?;
            put("dense", &monarch.dense(backend)?)?;
        }
        Op::MixColumn | Op::MixRow => {
            let monarch = Monarch::from_factors(backend, get("blkdiag1")?, get("blkdiag2")?)?;
            let mixer = Mixer::from_parts(backend, monarch, get("mixer_vec")?)?;
            let k = mixer.size();
            let s2 = get("s2")?;
            let weight = get("weight")?;
            let mut shared = MixerGrads::zeros(backend, &mixer)?;
            if case.op == Op::MixColumn {
                let t = backend.shape(&s2)[0];
                let mut module = MixColumn::new(backend, &weight, bias, k, t, case.mix)?;
                module.linear.add_s2(backend, &s2)?;
                module.mixer_scale = get("mixer_scale")?;
                ops::expect_shape(backend, &module.mixer_scale, &[k], "mix_column.mixer_scale")?;
                let (out, cache) = module.forward(backend, &mixer, &x)?;
                let (grads, grad_x) =
                    module.backward(backend, &mixer, &cache, &g, &mut shared, true)?;
                let (fused_weight, fused_bias) = module.fuse(backend, &mixer)?;
                put("out", &out)?;
                put("grad_x", &grad_x.expect("requested"))?;
                put("grad_s2", &grads.s2)?;
                put("grad_mixer_scale", &grads.mixer_scale)?;
                put("fused_weight", &fused_weight)?;
                if let Some(b) = fused_bias {
                    put("fused_bias", &b)?;
                }
            } else {
                let t = ops::dims2(backend, &s2, "mix_row.s2")?.1;
                let mut module = MixRow::new(backend, &weight, bias, k, t, case.mix)?;
                module.linear.add_s2(backend, &s2)?;
                let (out, cache) = module.forward(backend, &mixer, &x)?;
                let (grad_s2, grad_x) =
                    module.backward(backend, &mixer, &cache, &g, &mut shared, true)?;
                let (fused_weight, _) = module.fuse(backend, &mixer)?;
                put("out", &out)?;
                put("grad_x", &grad_x.expect("requested"))?;
                put("grad_s2", &grad_s2)?;
                put("fused_weight", &fused_weight)?;
            }
            put("grad_blkdiag1", &shared.monarch.blkdiag1)?;
            put("grad_blkdiag2", &shared.monarch.blkdiag2)?;
            put("grad_mixer_vec", &shared.mixer_vec)?;
        }
        Op::S2Column | Op::S2Row => {
            let s2 = get("s2")?;
            let weight = get("weight")?;
            let module = if case.op == Op::S2Column {
                let e = backend.shape(&s2)[0];
                S2Linear::column(backend, &weight, bias, e)?
            } else {
                let e = ops::dims2(backend, &s2, "s2_row.s2")?.1;
                S2Linear::row(backend, &weight, bias, e)?
            };
            let mut module = module;
            module.linear.add_s2(backend, &s2)?;
            let out = module.forward(backend, &x)?;
            let (grad_s2, grad_x) = module.backward(backend, &x, &g, true)?;
            put("out", &out)?;
            put("grad_x", &grad_x.expect("requested"))?;
            put("grad_s2", &grad_s2)?;
        }
    }
    Ok(outputs)
}

/// The relative tolerance a backend's element type can be held to.
pub fn tolerance<B: Backend>() -> f64 {
    if <B::Elem as Element>::EPSILON < 1e-10 {
        1e-9
    } else {
        1e-4
    }
}
