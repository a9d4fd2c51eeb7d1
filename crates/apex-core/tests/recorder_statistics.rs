//! The per-batch unit statistics (spec §2.1, §2.3) computed on the CPU
//! backend from known activations, with padding masked and counted, and fed
//! through a recorder.

use apex_core::recorder::{channel_norms, head_norms, head_output_norms, ScoreRecorder};
use apex_core::settings::RecordMethod;
use apex_core::{ApexError, ApexSettings, Backend};
use apex_cpu::CpuBackend;

fn close(got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "got {got:?}, want {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-6, "got {got:?}, want {want:?}");
    }
}

/// Two valid tokens and one padding row of 9s.
const VALID: [bool; 3] = [true, true, false];

#[test]
fn channel_norms_mask_padding_unless_counted() {
    let cpu = CpuBackend::<f32>::new();
    #[rustfmt::skip]
    let silu_gate = cpu.upload(&[
        3.0, 4.0, 0.0, 1.0,
        0.0, 0.0, 2.0, 2.0,
        9.0, 9.0, 9.0, 9.0,
    ], &[3, 4]).unwrap();
    let masked = channel_norms(&cpu, &silu_gate, Some(&VALID)).unwrap();
    close(&masked, &[3.0, 4.0, 2.0, 5f64.sqrt()]);
    // count_padding: 90 = 9 + 81, 97 = 16 + 81, 85 = 4 + 81, 86 = 1 + 4 + 81.
    let counted = channel_norms(&cpu, &silu_gate, None).unwrap();
    close(
        &counted,
        &[90f64.sqrt(), 97f64.sqrt(), 85f64.sqrt(), 86f64.sqrt()],
    );
    let reference = ApexSettings::reference();
    assert_eq!(
        channel_norms(&cpu, &silu_gate, reference.row_mask(&VALID)).unwrap(),
        counted
    );

    // Fed to a rank recorder with k = 1: top channel 1, bottom channel 2.
    let mut recorder = ScoreRecorder::new(RecordMethod::Rank, 4, 1).unwrap();
    recorder.update(&masked).unwrap();
    assert_eq!(recorder.scores(), vec![0.0, 1.0, -1.0, 0.0]);
}

#[test]
fn head_context_norms_sum_each_heads_columns() {
    let cpu = CpuBackend::<f32>::new();
    // 2 heads of width 2: head 0 = columns 0..2, head 1 = columns 2..4.
    #[rustfmt::skip]
    let context = cpu.upload(&[
        1.0, 2.0, 0.0, 1.0,
        2.0, 0.0, 3.0, 2.0,
        5.0, 5.0, 5.0, 5.0,
    ], &[3, 4]).unwrap();
    // head 0: 1 + 4 + 4 = 9; head 1: 1 + 9 + 4 = 14.
    close(
        &head_norms(&cpu, &context, 2, Some(&VALID)).unwrap(),
        &[3.0, 14f64.sqrt()],
    );
    // The padding row adds 50 to each head.
    close(
        &head_norms(&cpu, &context, 2, None).unwrap(),
        &[59f64.sqrt(), 8.0],
    );
}

#[test]
fn attention_probability_norms_use_the_same_per_head_layout() {
    let cpu = CpuBackend::<f32>::new();
    // Queries in rows, head h's distribution over 2 keys in columns [2h, 2h+2).
    #[rustfmt::skip]
    let probs = cpu.upload(&[
        1.0, 0.0, 1.0, 0.0,
        0.5, 0.5, 0.0, 1.0,
    ], &[2, 4]).unwrap();
    // head 0 spreads its second query (1 + 0.25 + 0.25); head 1 stays sharp (1 + 1).
    close(
        &head_norms(&cpu, &probs, 2, None).unwrap(),
        &[1.5f64.sqrt(), 2f64.sqrt()],
    );
}

#[test]
fn head_output_norms_apply_each_heads_o_proj_columns() {
    let cpu = CpuBackend::<f64>::new();
    // 2 heads of width 1, d = 2; padding row of 7s.
    let context = cpu
        .upload(&[1.0, 2.0, 3.0, 0.0, 7.0, 7.0], &[3, 2])
        .unwrap();
    // o_proj columns: head 0 → [1, 2], head 1 → [0, 1].
    let o_proj = cpu.upload(&[1.0, 0.0, 2.0, 1.0], &[2, 2]).unwrap();
    // head 0: rows [1,2] and [3,6] → 50; head 1: rows [0,2] and [0,0] → 4.
    close(
        &head_output_norms(&cpu, &context, &o_proj, 2, Some(&VALID)).unwrap(),
        &[50f64.sqrt(), 2.0],
    );
    // Padding adds 49·5 to head 0 and 49 to head 1.
    close(
        &head_output_norms(&cpu, &context, &o_proj, 2, None).unwrap(),
        &[295f64.sqrt(), 53f64.sqrt()],
    );
}

#[test]
fn inconsistent_inputs_are_typed_errors() {
    let cpu = CpuBackend::<f32>::new();
    let x = cpu.zeros(&[3, 4]).unwrap();
    assert!(matches!(
        channel_norms(&cpu, &x, Some(&[true, false])),
        Err(ApexError::ShapeMismatch { .. })
    ));
    assert!(matches!(
        head_norms(&cpu, &x, 3, None),
        Err(ApexError::InvalidConfig { .. })
    ));
    let o_proj = cpu.zeros(&[2, 5]).unwrap();
    assert!(matches!(
        head_output_norms(&cpu, &x, &o_proj, 2, None),
        Err(ApexError::ShapeMismatch { .. })
    ));
}
