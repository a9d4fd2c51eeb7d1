//! Finite-difference gradient checks of the whole decoder in f64.

mod common;

use apex_core::{Backend, IGNORE_INDEX};
use apex_model::{Batch, CvRegulariser, Gradients, Linear, LlamaModel, Lora, StepConfig};
use common::{tiny_model, Cpu64};

fn batch() -> Batch {
    let mut b = Batch::next_token(&[&[1, 4, 2, 9, 3], &[7, 7, 0, 10, 5]]).unwrap();
    b.labels[2] = IGNORE_INDEX; // a masked supervised position
    b
}

/// A fixed pseudo-random direction for a tensor of `n` elements.
fn direction(n: usize, salt: usize) -> Vec<f64> {
    (0..n)
        .map(|i| (((i * 7919 + salt * 104729) % 1000) as f64 / 500.0) - 1.0)
        .collect()
}

/// Replaces the trainable tensor `name` by `f(values)`.
fn edit(model: &mut LlamaModel<Cpu64>, name: &str, f: &dyn Fn(&[f64]) -> Vec<f64>) {
    let cpu = Cpu64::new();
    model
        .visit_trainable(&mut |n, _, t| {
            if n == name {
                let shape = cpu.shape(t).to_vec();
                *t = cpu.upload(&f(&cpu.download(t)?), &shape)?;
            }
            Ok(())
        })
        .unwrap();
}

/// The objective `forward_backward` differentiates: mean CE (+ λ·R).
fn objective(model: &LlamaModel<Cpu64>, config: &StepConfig) -> f64 {
    let out = model
        .forward_backward(&Cpu64::new(), &batch(), config, &mut Gradients::new())
        .unwrap();
    let lambda = config.cv.map_or(0.0, |cv| cv.weight);
    out.loss.mean() + lambda * out.regulariser
}

/// Checks ⟨∂L/∂θ, D⟩ against a central difference along D for every trainable
/// tensor, and returns the names that were checked.
fn check_all(model: &mut LlamaModel<Cpu64>) -> Vec<String> {
    check_all_with(model, &StepConfig::plain())
}

fn check_all_with(model: &mut LlamaModel<Cpu64>, config: &StepConfig) -> Vec<String> {
    let cpu = Cpu64::new();
    let mut grads = Gradients::new();
    model
        .forward_backward(&cpu, &batch(), config, &mut grads)
        .unwrap();
    let mut names = Vec::new();
    model
        .visit_trainable(&mut |n, _, t| {
            names.push((n.to_string(), cpu.shape(t).iter().product::<usize>()));
            Ok(())
        })
        .unwrap();
    for (salt, (name, n)) in names.iter().enumerate() {
        let dir = direction(*n, salt);
        let grad = cpu
            .download(
                grads
                    .get(name)
                    .unwrap_or_else(|| panic!("no grad for {name}")),
            )
            .unwrap();
        let analytic: f64 = grad.iter().zip(&dir).map(|(g, d)| g * d).sum();
        let h = 1e-5;
        let mut plus = model.clone();
        edit(&mut plus, name, &|v| {
            v.iter().zip(&dir).map(|(a, d)| a + h * d).collect()
        });
        let mut minus = model.clone();
        edit(&mut minus, name, &|v| {
            v.iter().zip(&dir).map(|(a, d)| a - h * d).collect()
        });
        let numeric = (objective(&plus, config) - objective(&minus, config)) / (2.0 * h);
        let err = (analytic - numeric).abs();
        assert!(
            err <= 1e-6 * (1.0 + numeric.abs()),
            "{name}: analytic {analytic}, finite difference {numeric}"
        );
    }
    assert_eq!(
        grads.len(),
        names.len(),
        "a gradient for each trainable tensor only"
    );
    names.into_iter().map(|(n, _)| n).collect()
}

#[test]
fn every_parameter_gradient_matches_finite_differences_untied() {
    let mut model = tiny_model(false, 3);
    model.set_embeddings_trainable(true);
    model.set_norms_trainable(true);
    model.set_projections_trainable(true);
    let names = check_all(&mut model);
    assert_eq!(names.len(), 1 + 2 * 9 + 1 + 1);
    assert!(names.iter().any(|n| n == "lm_head.weight"));
}

#[test]
fn tied_embedding_gets_input_and_output_gradient() {
    let mut model = tiny_model(true, 4);
    model.set_embeddings_trainable(true);
    model.set_projections_trainable(true);
    let names = check_all(&mut model);
    assert!(names.iter().any(|n| n == "model.embed_tokens.weight"));
    assert!(!names.iter().any(|n| n.contains("norm")));
}

#[test]
fn lora_factor_gradients_match_finite_differences() {
    let cpu = Cpu64::new();
    let mut model = tiny_model(false, 5);
    for (i, layer) in model.layers.iter_mut().enumerate() {
        for (j, (_, linear)) in layer.projections_mut().into_iter().enumerate() {
            let base = linear.dense_weight(&cpu, None).unwrap();
            let (out, inp) = linear.dims(&cpu).unwrap();
            let r = 2;
            let a = direction(r * inp, 10 * i + j);
            // A non-zero B so that ∂A is not trivially zero.
            let b: Vec<f64> = direction(out * r, 50 + 10 * i + j)
                .iter()
                .map(|x| 0.3 * x)
                .collect();
            *linear = Linear::Lora(Lora {
                base,
                lora_a: cpu.upload(&a, &[r, inp]).unwrap(),
                lora_b: cpu.upload(&b, &[out, r]).unwrap(),
                scale: 0.75,
            });
        }
    }
    let names = check_all(&mut model);
    assert_eq!(names.len(), 2 * 7 * 2);
}

#[test]
fn frozen_weights_get_no_gradient() {
    let cpu = Cpu64::new();
    let mut model = tiny_model(false, 6);
    if let Linear::Dense(d) = &mut model.layers[1].up_proj {
        d.trainable = true;
    }
    let mut grads = Gradients::new();
    model
        .forward_backward(&cpu, &batch(), &StepConfig::plain(), &mut grads)
        .unwrap();
    let names: Vec<&str> = grads.iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["model.layers.1.mlp.up_proj.weight"]);
}

#[test]
fn apex_module_and_shared_mixer_gradients_match_finite_differences() {
    let mut model = common::apex_model(8);
    let names = check_all(&mut model);
    // Per layer: q, k, v, gate, up, down s2; v, gate, up mixer_scale; 2 o replicas;
    // two mixers of 3 tensors each.
    assert_eq!(names.len(), 2 * (6 + 3 + 2 + 6));
    assert!(names
        .iter()
        .any(|n| n == "model.layers.1.self_attn.o_proj.replica1.s2"));
    assert!(names
        .iter()
        .any(|n| n == "model.layers.0.mlp.mixer.blkdiag2"));
}

#[test]
fn cv_regulariser_gradient_matches_finite_differences() {
    let mut model = tiny_model(false, 9);
    model.set_projections_trainable(true);
    // Layer 1 of 2 only, with a weight that makes R matter next to the CE.
    let cv = CvRegulariser {
        weight: 0.7,
        first: 1,
        end: 2,
    };
    let config = StepConfig {
        cv: Some(cv),
        ..StepConfig::plain()
    };
    let out = model
        .forward_backward(&Cpu64::new(), &batch(), &config, &mut Gradients::new())
        .unwrap();
    assert!(out.regulariser > 0.0);
    let names = check_all_with(&mut model, &config);
    assert!(names
        .iter()
        .any(|n| n == "model.layers.1.mlp.gate_proj.weight"));
}
